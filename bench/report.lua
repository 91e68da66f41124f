-- wrk script: prints one machine-readable line at the end, with exact percentiles
-- (wrk records every latency in a histogram of microseconds). With WRK_BODY_FILE set, every
-- request is a POST of that file's bytes, with WRK_CONTENT_TYPE and, when set, WRK_SOAPACTION.
-- With WRK_API_KEY set, every request carries it as X-Api-Key.
local api_key = os.getenv("WRK_API_KEY")
if api_key then
  wrk.headers["X-Api-Key"] = api_key
end
local body_file = os.getenv("WRK_BODY_FILE")
if body_file then
  local file = assert(io.open(body_file, "rb"))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE")
  local action = os.getenv("WRK_SOAPACTION")
  if action then
    wrk.headers["SOAPAction"] = action
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
