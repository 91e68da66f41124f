//! Telemetry: request counters and latency histograms, rendered as Prometheus text, and
//! the access log's JSON lines.
//!
//! Every series a request touches is resolved when the gateway is compiled: an operation
//! and a view each own a [`RouteMetrics`] (counters by status class and cache outcome, and a
//! latency histogram), a connector owns its upstream latency [`Histogram`]. Counting a
//! request is then a few relaxed atomic additions, with no label string built and no lock
//! taken. The counters of the cache, the rate limits, the breakers and the Redis link
//! already exist (they feed `GET /api/v1/traffic`); [`render`] reads them at scrape time
//! instead of counting twice.
//!
//! Traces are in [`trace`] (W3C trace context, spans) and [`otlp`] (the exporter); the
//! stages' times of one request are its [`StageTimings`].
//!
//! Why not the `metrics` facade: its recorder is process-global, and one process runs many
//! gateways (the tests start dozens); each gateway owns its [`Metrics`] here, and a reload
//! hands them on (`Gateway::compile_with_metrics` in `junction-runtime`),
//! so counters survive a swap. The names and labels are documented in `docs/telemetry.md`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use serde::Serialize;

use junction_traffic::ratelimit::LimitSnapshot;
use junction_traffic::resilience::breaker::{BreakerSnapshot, BreakerState};
use junction_traffic::resilience::concurrency::ConcurrencySnapshot;
use junction_traffic::status::{RetryCounts, TrafficStatus};

pub mod otlp;
pub mod stats;
pub mod trace;

/// Upper bounds of the latency histograms' buckets, in seconds (`+Inf` follows).
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// [`BUCKETS`] in microseconds, compared against on the hot path.
const BUCKET_MICROS: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// A latency histogram: a count per bucket (not cumulative; [`render`] adds them up), the
/// sum in microseconds, and the count.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn record(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let at = BUCKET_MICROS
            .iter()
            .position(|bound| micros <= *bound)
            .unwrap_or(BUCKET_MICROS.len());
        if let Some(bucket) = self.buckets.get(at) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Writes the `_bucket`, `_sum` and `_count` lines of `name` with `labels` (already
    /// written as `key="value",` pairs, or empty).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (at, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            match BUCKETS.get(at) {
                Some(bound) => {
                    let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        sample(out, &format!("{name}_sum"), labels, sum);
        sample(out, &format!("{name}_count"), labels, self.count());
    }
}

/// Status classes counted: `1xx` … `5xx`.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Cache outcomes counted: the `X-Cache` values, and `none` when the response has none.
const CACHE_OUTCOMES: [&str; 5] = ["HIT", "MISS", "STALE", "BYPASS", "none"];

/// What a route is: an operation of a connector, a view, or nothing the gateway knows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RouteName {
    Operation {
        connector: String,
        operation: String,
    },
    View(String),
    /// No connector, operation or view matched (404, 405, or refused before routing).
    #[default]
    Unrouted,
}

/// `{"kind": "operation", "connector": …, "operation": …}`, `{"kind": "view", "view": …}`
/// or `{"kind": "unrouted"}`.
impl Serialize for RouteName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        match self {
            RouteName::Operation {
                connector,
                operation,
            } => {
                map.serialize_entry("kind", "operation")?;
                map.serialize_entry("connector", connector)?;
                map.serialize_entry("operation", operation)?;
            }
            RouteName::View(view) => {
                map.serialize_entry("kind", "view")?;
                map.serialize_entry("view", view)?;
            }
            RouteName::Unrouted => map.serialize_entry("kind", "unrouted")?,
        }
        map.end()
    }
}

/// The counters of one operation or view.
#[derive(Debug, Default)]
pub struct RouteMetrics {
    pub name: RouteName,
    requests: [[AtomicU64; CACHE_OUTCOMES.len()]; STATUS_CLASSES.len()],
    pub latency: Histogram,
    /// The last hour, by minute, for the console.
    pub window: stats::Window,
}

impl RouteMetrics {
    fn new(name: RouteName) -> RouteMetrics {
        RouteMetrics {
            name,
            ..RouteMetrics::default()
        }
    }

    /// Counts one answered request.
    pub fn record(&self, status: http::StatusCode, cache: Option<&'static str>, elapsed: Duration) {
        let class = usize::from(status.as_u16() / 100)
            .saturating_sub(1)
            .min(STATUS_CLASSES.len() - 1);
        let outcome = cache
            .and_then(|c| CACHE_OUTCOMES.iter().position(|o| *o == c))
            .unwrap_or(CACHE_OUTCOMES.len() - 1);
        if let Some(counter) = self.requests.get(class).and_then(|row| row.get(outcome)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.record(elapsed);
        if !matches!(self.name, RouteName::Unrouted) {
            self.window.record(stats::Sample {
                status: status.as_u16(),
                cache,
                elapsed,
            });
        }
    }

    /// The count of requests with `status` class (`"2xx"`) and `cache` outcome (`"HIT"`,
    /// `"none"`).
    pub fn count(&self, status: &str, cache: &str) -> u64 {
        let class = STATUS_CLASSES.iter().position(|s| *s == status);
        let outcome = CACHE_OUTCOMES.iter().position(|o| *o == cache);
        match (class, outcome) {
            (Some(c), Some(o)) => self
                .requests
                .get(c)
                .and_then(|row| row.get(o))
                .map_or(0, |n| n.load(Ordering::Relaxed)),
            _ => 0,
        }
    }
}

/// The `X-Cache` outcome of a response, as a static label.
pub fn cache_outcome(headers: &HeaderMap) -> Option<&'static str> {
    let value = headers.get(junction_traffic::cache::X_CACHE)?.as_bytes();
    CACHE_OUTCOMES[..4]
        .iter()
        .find(|o| o.as_bytes() == value)
        .copied()
}

/// An upstream latency histogram, with its connector's name.
#[derive(Debug, Default)]
pub struct UpstreamMetrics {
    pub connector: String,
    pub latency: Histogram,
}

/// Every series of one gateway (and of the gateways that replace it on reload), and the
/// access log the server opened for it.
#[derive(Debug, Default)]
pub struct Metrics {
    routes: Mutex<Vec<Arc<RouteMetrics>>>,
    upstreams: Mutex<Vec<Arc<UpstreamMetrics>>>,
    unrouted: Arc<RouteMetrics>,
    /// The gateway's problem types (the last part of their URIs), in its order.
    problem_types: &'static [&'static str],
    /// Failed requests by problem type, indexed like `problem_types`.
    errors: Box<[AtomicU64]>,
    /// `[log] access`, opened by the server that serves the first table.
    access: OnceLock<AccessLog>,
    /// When counting began (Unix seconds), for the rates of a process younger than the
    /// statistics' window.
    started: u64,
    /// The span exporter's queue, when `[telemetry] otlp_endpoint` is set (set by the
    /// server that serves the first table).
    tracer: OnceLock<Arc<otlp::Tracer>>,
}

impl Metrics {
    /// Metrics of a gateway whose problems are of `problem_types` (counted by type).
    pub fn new(problem_types: &'static [&'static str]) -> Arc<Metrics> {
        Arc::new(Metrics {
            started: stats::unix_now(),
            problem_types,
            errors: problem_types.iter().map(|_| AtomicU64::new(0)).collect(),
            ..Metrics::default()
        })
    }

    /// The statistics of the last hour of every operation and view that had requests in
    /// it, as `GET /api/v1/stats` answers them.
    pub fn stats(&self) -> StatsReport {
        let now = stats::unix_now();
        let routes: Vec<Arc<RouteMetrics>> =
            self.routes.lock().map(|r| r.clone()).unwrap_or_default();
        let routes = routes
            .iter()
            .filter_map(|route| {
                let summary = route.window.snapshot(now, self.started)?;
                Some(RouteStats {
                    name: route.name.clone(),
                    summary,
                })
            })
            .collect();
        StatsReport {
            window_seconds: stats::SLOTS as u64 * stats::SLOT_SECONDS,
            slot_seconds: stats::SLOT_SECONDS,
            now,
            routes,
        }
    }

    /// The series of `name`, created on first use (a reload finds the old one again).
    pub fn route(&self, name: RouteName) -> Arc<RouteMetrics> {
        let Ok(mut routes) = self.routes.lock() else {
            return Arc::new(RouteMetrics::new(name));
        };
        if let Some(found) = routes.iter().find(|r| r.name == name) {
            return found.clone();
        }
        let created = Arc::new(RouteMetrics::new(name));
        routes.push(created.clone());
        created
    }

    /// The upstream histogram of `connector`, created on first use.
    pub fn upstream(&self, connector: &str) -> Arc<UpstreamMetrics> {
        let created = || {
            Arc::new(UpstreamMetrics {
                connector: connector.to_owned(),
                latency: Histogram::default(),
            })
        };
        let Ok(mut upstreams) = self.upstreams.lock() else {
            return created();
        };
        if let Some(found) = upstreams.iter().find(|u| u.connector == connector) {
            return found.clone();
        }
        let made = created();
        upstreams.push(made.clone());
        made
    }

    /// The access log, when `[log] access` is on.
    pub fn access_log(&self) -> Option<&AccessLog> {
        self.access.get()
    }

    /// Sets the access log (once; later calls keep the first).
    pub fn set_access_log(&self, log: AccessLog) {
        let _ = self.access.set(log);
    }

    /// The span exporter's queue, when traces are exported.
    pub fn tracer(&self) -> Option<&Arc<otlp::Tracer>> {
        self.tracer.get()
    }

    /// Sets the span exporter's queue (once; later calls keep the first).
    pub fn set_tracer(&self, tracer: Arc<otlp::Tracer>) {
        let _ = self.tracer.set(tracer);
    }

    /// The series of requests no route matched.
    pub fn unrouted(&self) -> &RouteMetrics {
        &self.unrouted
    }

    /// Counts a failed request of problem type `kind` (one of the gateway's types).
    pub fn error(&self, kind: &str) {
        if let Some(at) = self.problem_types.iter().position(|k| *k == kind)
            && let Some(counter) = self.errors.get(at)
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The series of an operation, for tests and the console.
    pub fn find(&self, name: &RouteName) -> Option<Arc<RouteMetrics>> {
        let routes = self.routes.lock().ok()?;
        routes.iter().find(|r| r.name == *name).cloned()
    }
}

/// The statistics of the last hour (`GET /api/v1/stats`).
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    pub window_seconds: u64,
    pub slot_seconds: u64,
    /// Unix seconds.
    pub now: u64,
    pub routes: Vec<RouteStats>,
}

/// One operation's or view's last hour.
#[derive(Debug, Clone, Serialize)]
pub struct RouteStats {
    #[serde(flatten)]
    pub name: RouteName,
    #[serde(flatten)]
    pub summary: stats::Summary,
}

/// Writes `key="value"` with the value escaped as the text format asks.
fn label(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push_str("\",");
}

/// Writes a series without labels: its `# HELP` and `# TYPE` lines and its sample. For the
/// figures of other parts (the store's, read by the server at scrape time).
pub fn write_series(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    value: impl std::fmt::Display,
) {
    header(out, name, kind, help);
    sample(out, name, "", value);
}

/// Writes a series with one label: its `# HELP` and `# TYPE` lines and a sample per
/// `(label value, value)` (nothing when there is none).
pub fn write_labelled(
    out: &mut String,
    (name, kind, help): (&str, &str, &str),
    key: &str,
    samples: &[(&str, f64)],
) {
    if samples.is_empty() {
        return;
    }
    header(out, name, kind, help);
    for (value_of_label, value) in samples {
        let mut labels = String::new();
        label(&mut labels, key, value_of_label);
        sample(out, name, &labels, value);
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    let labels = labels.trim_end_matches(',');
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// One kind of route in [`render`]: its counter, its histogram, what it counts, and which
/// routes belong to it.
type Section = (
    &'static str,
    &'static str,
    &'static str,
    fn(&RouteName) -> bool,
);

/// The Prometheus text exposition (format 0.0.4) of `metrics` and of `traffic`'s counters.
pub fn render(metrics: &Metrics, traffic: &TrafficStatus) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let routes: Vec<Arc<RouteMetrics>> =
        metrics.routes.lock().map(|r| r.clone()).unwrap_or_default();
    let all: Vec<&RouteMetrics> = routes
        .iter()
        .map(Arc::as_ref)
        .chain(std::iter::once(metrics.unrouted()))
        .collect();

    let route_labels = |route: &RouteMetrics| {
        let mut labels = String::new();
        match &route.name {
            RouteName::Operation {
                connector,
                operation,
            } => {
                label(&mut labels, "connector", connector);
                label(&mut labels, "operation", operation);
            }
            RouteName::View(view) => label(&mut labels, "view", view),
            RouteName::Unrouted => {}
        }
        labels
    };
    let sections: [Section; 3] = [
        (
            "junction_requests_total",
            "junction_request_duration_seconds",
            "operation",
            |n| matches!(n, RouteName::Operation { .. }),
        ),
        (
            "junction_view_requests_total",
            "junction_view_request_duration_seconds",
            "view",
            |n| matches!(n, RouteName::View(_)),
        ),
        (
            "junction_unrouted_requests_total",
            "junction_unrouted_request_duration_seconds",
            "request no operation or view matched",
            |n| matches!(n, RouteName::Unrouted),
        ),
    ];
    for (counter, histogram, what, belongs) in sections {
        header(
            &mut out,
            counter,
            "counter",
            &format!("Data-plane requests answered, by {what}, status class and cache outcome."),
        );
        for route in all.iter().filter(|r| belongs(&r.name)) {
            let base = route_labels(route);
            for (c, class) in STATUS_CLASSES.iter().enumerate() {
                for (o, outcome) in CACHE_OUTCOMES.iter().enumerate() {
                    let n = route.count(class, outcome);
                    // Every route shows its 2xx/none line, so it is listed from the start.
                    let always = c == 1 && o == CACHE_OUTCOMES.len() - 1;
                    if n == 0 && !always {
                        continue;
                    }
                    let mut labels = base.clone();
                    label(&mut labels, "status", STATUS_CLASSES[c]);
                    label(&mut labels, "cache", CACHE_OUTCOMES[o]);
                    sample(&mut out, counter, &labels, n);
                }
            }
        }
        header(
            &mut out,
            histogram,
            "histogram",
            "Time from the request to the response headers, in seconds.",
        );
        for route in all.iter().filter(|r| belongs(&r.name)) {
            route
                .latency
                .render(&mut out, histogram, &route_labels(route));
        }
    }

    let name = "junction_upstream_duration_seconds";
    header(
        &mut out,
        name,
        "histogram",
        "Time from sending a backend request (retries included) to its response headers, in seconds.",
    );
    if let Ok(upstreams) = metrics.upstreams.lock() {
        for upstream in upstreams.iter() {
            let mut labels = String::new();
            label(&mut labels, "connector", &upstream.connector);
            upstream.latency.render(&mut out, name, &labels);
        }
    }

    let name = "junction_errors_total";
    header(
        &mut out,
        name,
        "counter",
        "Data-plane requests that failed, by problem type (transform-failed: a jq transform; upstream-invalid: a policy or a response it could not use).",
    );
    for (at, kind) in metrics.problem_types.iter().enumerate() {
        let n = metrics
            .errors
            .get(at)
            .map_or(0, |c| c.load(Ordering::Relaxed));
        let mut labels = String::new();
        label(&mut labels, "type", kind);
        sample(&mut out, name, &labels, n);
    }

    if let Some(tracer) = metrics.tracer() {
        render_tracer(&mut out, tracer);
    }
    render_traffic(&mut out, traffic);
    out
}

/// The exporter's counters, when traces are exported.
fn render_tracer(out: &mut String, tracer: &otlp::Tracer) {
    let name = "junction_trace_spans_exported_total";
    header(out, name, "counter", "Spans the OTLP collector accepted.");
    sample(out, name, "", tracer.exported());
    let name = "junction_trace_spans_dropped_total";
    header(
        out,
        name,
        "counter",
        "Spans dropped: the export queue was full (queue_full) or the collector could not take them (export_failed).",
    );
    sample(out, name, "reason=\"queue_full\",", tracer.dropped_full());
    sample(
        out,
        name,
        "reason=\"export_failed\",",
        tracer.dropped_failed(),
    );
}

/// A `# HELP`, a `# TYPE` and one sample per item, labelled `key` = `name(item)`.
fn family<T>(
    out: &mut String,
    (name, kind, help): (&str, &str, &str),
    items: &[T],
    (key, label_of): (&str, fn(&T) -> &str),
    value: fn(&T) -> u64,
) {
    header(out, name, kind, help);
    for item in items {
        let mut labels = String::new();
        label(&mut labels, key, label_of(item));
        sample(out, name, &labels, value(item));
    }
}

fn limit_name(limit: &LimitSnapshot) -> &str {
    &limit.name
}

fn breaker_backend(breaker: &BreakerSnapshot) -> &str {
    &breaker.backend
}

fn concurrency_backend(limit: &ConcurrencySnapshot) -> &str {
    &limit.backend
}

fn retry_connector(retry: &RetryCounts) -> &str {
    &retry.connector
}

fn render_traffic(out: &mut String, traffic: &TrafficStatus) {
    if let Some(cache) = &traffic.cache {
        let counters: [(&str, u64, &str); 11] = [
            ("hits", cache.hits, "Cache lookups answered fresh."),
            (
                "misses",
                cache.misses,
                "Cache lookups that found nothing usable.",
            ),
            (
                "stale",
                cache.stale,
                "Responses served stale (while revalidating or on error).",
            ),
            (
                "bypasses",
                cache.bypasses,
                "Lookups that bypassed an unavailable store.",
            ),
            (
                "coalesced",
                cache.coalesced,
                "Requests answered by another request's upstream response.",
            ),
            (
                "revalidations",
                cache.revalidations,
                "Background refreshes started.",
            ),
            ("stores", cache.stores, "Responses stored."),
            (
                "not_stored",
                cache.not_stored,
                "Responses not stored (status, Cache-Control, cookies, size).",
            ),
            (
                "store_errors",
                cache.store_errors,
                "Store operations that failed.",
            ),
            ("purged", cache.purged, "Entries removed by purges."),
            (
                "evictions",
                cache.evictions,
                "Entries the memory store evicted to make room.",
            ),
        ];
        for (what, value, help) in counters {
            let name = format!("junction_cache_{what}_total");
            header(out, &name, "counter", help);
            sample(out, &name, "", value);
        }
        let mut gauges = vec![(
            "junction_cache_available",
            "1 while the cache store answers.",
            u64::from(cache.available),
        )];
        if let Some(usage) = cache.usage {
            gauges.push((
                "junction_cache_entries",
                "Entries in the cache store.",
                usage.entries,
            ));
            gauges.push((
                "junction_cache_bytes",
                "Bytes held by the cache store.",
                usage.bytes,
            ));
        }
        for (name, help, value) in gauges {
            header(out, name, "gauge", help);
            sample(out, name, "", value);
        }
    }

    let limit = ("limit", limit_name as fn(&LimitSnapshot) -> &str);
    family(
        out,
        (
            "junction_ratelimit_allowed_total",
            "counter",
            "Requests a rate limit let through.",
        ),
        &traffic.limits,
        limit,
        |l| l.allowed,
    );
    family(
        out,
        (
            "junction_ratelimit_rejected_total",
            "counter",
            "Requests a rate limit refused (429).",
        ),
        &traffic.limits,
        limit,
        |l| l.denied,
    );
    family(
        out,
        (
            "junction_ratelimit_failed_open_total",
            "counter",
            "Requests let through unchecked because the limit store was away.",
        ),
        &traffic.limits,
        limit,
        |l| l.failed_open,
    );
    family(
        out,
        (
            "junction_ratelimit_failed_closed_total",
            "counter",
            "Requests refused because the limit store was away.",
        ),
        &traffic.limits,
        limit,
        |l| l.failed_closed,
    );

    header(
        out,
        "junction_breaker_state",
        "gauge",
        "1 for the breaker's current state (closed, open, half-open), 0 for the others.",
    );
    for breaker in &traffic.breakers {
        for (state, text) in [
            (BreakerState::Closed, "closed"),
            (BreakerState::Open, "open"),
            (BreakerState::HalfOpen, "half-open"),
        ] {
            let mut labels = String::new();
            label(&mut labels, "backend", &breaker.backend);
            label(&mut labels, "state", text);
            sample(
                out,
                "junction_breaker_state",
                &labels,
                u8::from(breaker.state == state),
            );
        }
    }
    let breaker = ("backend", breaker_backend as fn(&BreakerSnapshot) -> &str);
    family(
        out,
        (
            "junction_breaker_opened_total",
            "counter",
            "Times the breaker opened.",
        ),
        &traffic.breakers,
        breaker,
        |b| b.opened,
    );
    family(
        out,
        (
            "junction_breaker_rejected_total",
            "counter",
            "Requests answered 503 without calling the backend.",
        ),
        &traffic.breakers,
        breaker,
        |b| b.rejected,
    );

    let backend = (
        "backend",
        concurrency_backend as fn(&ConcurrencySnapshot) -> &str,
    );
    family(
        out,
        (
            "junction_backend_in_flight",
            "gauge",
            "Requests in flight to a backend with max_concurrency.",
        ),
        &traffic.concurrency,
        backend,
        |c| u64::from(c.in_flight),
    );
    family(
        out,
        (
            "junction_backend_busy_total",
            "counter",
            "Requests refused because the backend had max_concurrency requests in flight.",
        ),
        &traffic.concurrency,
        backend,
        |c| c.rejected,
    );

    let connector = ("connector", retry_connector as fn(&RetryCounts) -> &str);
    family(
        out,
        (
            "junction_retries_total",
            "counter",
            "Upstream retries sent.",
        ),
        &traffic.retries,
        connector,
        |r| r.retries,
    );
    family(
        out,
        (
            "junction_retry_budget_exhausted_total",
            "counter",
            "Retries the retry budget refused.",
        ),
        &traffic.retries,
        connector,
        |r| r.budget_exhausted,
    );

    if let Some(redis) = &traffic.redis {
        for (name, kind, help, value) in [
            (
                "junction_redis_up",
                "gauge",
                "1 while the Redis link is up.",
                u64::from(redis.state == "up"),
            ),
            (
                "junction_redis_errors_total",
                "counter",
                "Redis commands that failed.",
                redis.errors,
            ),
            (
                "junction_redis_outages_total",
                "counter",
                "Times the Redis link went down.",
                redis.outages,
            ),
        ] {
            write_series(out, name, kind, help, value);
        }
    }

    let pool = &traffic.pool;
    for (name, kind, help, value) in [
        (
            "junction_upstream_pool_connections",
            "gauge",
            "Plain-HTTP upstream connections open (idle or carrying a request).",
            pool.open,
        ),
        (
            "junction_upstream_pool_idle_connections",
            "gauge",
            "Plain-HTTP upstream connections waiting in a pool.",
            pool.idle,
        ),
        (
            "junction_upstream_pool_connections_opened_total",
            "counter",
            "Plain-HTTP upstream connections opened.",
            pool.opened,
        ),
        (
            "junction_upstream_pool_reused_total",
            "counter",
            "Upstream requests sent on a pooled connection.",
            pool.reused,
        ),
        (
            "junction_upstream_tls_requests_total",
            "counter",
            "Upstream requests to HTTPS backends (their pool is not itemised).",
            pool.tls_requests,
        ),
    ] {
        write_series(out, name, kind, help, value);
    }
}

/// `[log]`: where access log lines go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AccessTarget {
    /// No access log (the default).
    #[default]
    Off,
    Stdout,
    /// Appended to this file.
    File(PathBuf),
}

/// The access log: one JSON object per line, made as each response's headers leave.
///
/// Lines are appended to a buffer in memory; a thread of its own writes the buffer out every
/// [`ACCESS_FLUSH_EVERY`] (and a request thread does at once when it passes
/// [`ACCESS_BUFFER_MAX`]), so a request pays for one write(2) in hundreds. [`flush`] writes
/// what is pending (the server calls it when it stops).
///
/// [`flush`]: AccessLog::flush
#[derive(Debug)]
pub struct AccessLog {
    shared: Arc<AccessShared>,
}

/// How often buffered access log lines are written out.
pub const ACCESS_FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Buffered bytes past which the request that adds a line writes the buffer out itself.
pub const ACCESS_BUFFER_MAX: usize = 256 * 1024;

#[derive(Debug)]
struct AccessShared {
    pending: Mutex<Vec<u8>>,
    sink: Mutex<Sink>,
}

#[derive(Debug)]
enum Sink {
    Stdout,
    File(std::fs::File),
}

/// One access log line. Never holds a header value other than the request id and the
/// trace id, nor a query string: secrets cannot reach it.
#[derive(Debug, Serialize)]
pub struct AccessLine<'a> {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connector: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view: Option<&'a str>,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    pub duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<f64>,
    pub cache: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

impl AccessLog {
    /// Opens the log at `target` and starts its writer thread; `None` when it is off.
    pub fn open(target: &AccessTarget) -> std::io::Result<Option<AccessLog>> {
        let sink = match target {
            AccessTarget::Off => return Ok(None),
            AccessTarget::Stdout => Sink::Stdout,
            AccessTarget::File(path) => Sink::File(open_append(path)?),
        };
        let shared = Arc::new(AccessShared {
            pending: Mutex::new(Vec::with_capacity(64 * 1024)),
            sink: Mutex::new(sink),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("junction-access-log".to_owned())
            .spawn(move || {
                // Ends once the log is gone.
                while let Some(shared) = weak.upgrade() {
                    shared.flush();
                    drop(shared);
                    std::thread::sleep(ACCESS_FLUSH_EVERY);
                }
            })?;
        Ok(Some(AccessLog { shared }))
    }

    /// Adds one line; a failure to write is logged, never returned to the client.
    pub fn write(&self, line: &AccessLine<'_>) {
        let full = {
            let Ok(mut pending) = self.shared.pending.lock() else {
                return;
            };
            let before = pending.len();
            if serde_json::to_writer(&mut *pending, line).is_err() {
                pending.truncate(before);
                return;
            }
            pending.push(b'\n');
            pending.len() >= ACCESS_BUFFER_MAX
        };
        if full {
            self.shared.flush();
        }
    }

    /// Writes out the lines added so far.
    pub fn flush(&self) {
        self.shared.flush();
    }
}

impl AccessShared {
    fn flush(&self) {
        // The sink's lock is taken first, so lines leave in the order they were added.
        let Ok(mut sink) = self.sink.lock() else {
            return;
        };
        let text = match self.pending.lock() {
            Ok(mut pending) if !pending.is_empty() => {
                std::mem::replace(&mut *pending, Vec::with_capacity(64 * 1024))
            }
            _ => return,
        };
        let written = match &mut *sink {
            Sink::Stdout => std::io::stdout().lock().write_all(&text),
            Sink::File(file) => file.write_all(&text),
        };
        if let Err(error) = written {
            tracing::warn!(%error, "cannot write the access log");
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.shared.flush();
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// `now` as RFC 3339 in UTC with milliseconds (`2026-11-27T15:04:05.123Z`).
pub fn rfc3339(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rest = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Milliseconds of `elapsed`, to the microsecond.
pub fn millis(elapsed: Duration) -> f64 {
    elapsed.as_micros() as f64 / 1_000.0
}

/// How long the stages of one request took: the upstream exchange (retries included, to
/// the response headers), the operation's request and response policies (together), the
/// cache lookup, and the whole request to its response headers. A stage that did not run
/// is `None`. Each stage writes its time on the response it hands on (its extensions, so
/// that a cached answer keeps the backend's); the pipeline takes them into the request's
/// context once answered, and the server adds the total. Spans and the `Server-Timing`
/// header are made from the same instants.
///
/// A view's response carries its own cache lookup and total; its steps' stages show as
/// spans.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimings {
    pub total: Duration,
    pub cache: Option<Duration>,
    pub policies: Option<Duration>,
    pub upstream: Option<Duration>,
}

impl StageTimings {
    /// The timings of `extensions`, added when missing.
    pub fn of(extensions: &mut http::Extensions) -> &mut StageTimings {
        extensions.get_or_insert_default::<StageTimings>()
    }

    /// The `Server-Timing` header value: `cache;dur=0.041, policy;dur=0.210,
    /// upstream;dur=12.5, total;dur=13.1` (milliseconds; only the stages that ran).
    pub fn server_timing(&self) -> String {
        let mut out = String::with_capacity(80);
        for (name, took) in [
            ("cache", self.cache),
            ("policy", self.policies),
            ("upstream", self.upstream),
            ("total", Some(self.total)),
        ] {
            if let Some(took) = took {
                if !out.is_empty() {
                    out.push_str(", ");
                }
                let _ = write!(out, "{name};dur={:.3}", millis(took));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let histogram = Histogram::default();
        histogram.record(Duration::from_micros(300));
        histogram.record(Duration::from_millis(3));
        histogram.record(Duration::from_secs(20));
        let mut out = String::new();
        histogram.render(&mut out, "h", "a=\"b\",");
        assert!(out.contains("h_bucket{a=\"b\",le=\"0.0005\"} 1\n"), "{out}");
        assert!(out.contains("h_bucket{a=\"b\",le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("h_bucket{a=\"b\",le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("h_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("h_count{a=\"b\"} 3\n"), "{out}");
    }

    #[test]
    fn counts_by_class_and_outcome_and_escapes_labels() {
        let metrics = Metrics::new(&["internal", "not-found"]);
        let route = metrics.route(RouteName::Operation {
            connector: "c".into(),
            operation: "say \"hi\"".into(),
        });
        route.record(http::StatusCode::OK, Some("HIT"), Duration::ZERO);
        route.record(http::StatusCode::NOT_FOUND, None, Duration::ZERO);
        assert_eq!(route.count("2xx", "HIT"), 1);
        assert_eq!(route.count("4xx", "none"), 1);
        // The same name finds the same series (a reload keeps counting).
        let again = metrics.route(RouteName::Operation {
            connector: "c".into(),
            operation: "say \"hi\"".into(),
        });
        assert_eq!(again.count("2xx", "HIT"), 1);
        let text = render(&metrics, &empty_traffic());
        assert!(
            text.contains(
                "junction_requests_total{connector=\"c\",operation=\"say \\\"hi\\\"\",status=\"2xx\",cache=\"HIT\"} 1"
            ),
            "{text}"
        );
    }

    fn empty_traffic() -> TrafficStatus {
        TrafficStatus {
            redis: None,
            cache: None,
            limits: Vec::new(),
            breakers: Vec::new(),
            concurrency: Vec::new(),
            retries: Vec::new(),
            pool: junction_traffic::status::PoolSnapshot::default(),
        }
    }

    #[test]
    fn writes_server_timing_for_the_stages_that_ran() {
        let timings = StageTimings {
            total: Duration::from_micros(13_100),
            cache: Some(Duration::from_micros(41)),
            policies: None,
            upstream: Some(Duration::from_micros(12_500)),
        };
        assert_eq!(
            timings.server_timing(),
            "cache;dur=0.041, upstream;dur=12.500, total;dur=13.100"
        );
    }

    #[test]
    fn writes_rfc3339() {
        let at = UNIX_EPOCH + Duration::from_millis(1_795_791_845_123);
        assert_eq!(rfc3339(at), "2026-11-27T15:04:05.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
