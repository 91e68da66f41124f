#!/usr/bin/env python3
"""Junction's benchmarks: the backend direct, nginx and Junction, measured in one run.

Started by `bench/run`, which installs the tools and builds the binaries first. This file
starts every server on loopback, pins them, runs the scenario table, and writes
`bench/results/latest.md` and `bench/results/latest.json`.

Layout (2 cores): the load generator (wrk, 1 thread) runs on CPU 0; the backend and every
server under test run on CPU 1. Every server is started once and stays up for the whole
run, idle while another is measured, so that each comparison is made back to back under
the same conditions.

Each measurement is: wait (bounded) until other processes leave the machine alone, a
discarded warm-up, then a fixed-duration wrk run with a fixed number of keep-alive
connections. CPU time of the server under test and of the backend is read from /proc
before and after, and RSS is sampled during the run. The CPU time that *other* processes
used during the run is recorded as `noise` so a reader can judge the figures.

To add a scenario, add a line to SCENARIOS; a scenario whose feature has not landed yet
names it in `needs` and is listed as "not yet" until the feature is added to LANDED.

Issue #17's rows (i to p) compare a second nginx ("nginx-edge": TLS, cleartext HTTP/2, an
access-logged port, 16k connections) with a second Junction ("junction-edge": a derived
config with a TLS listener and max_connections = 20000) and a third ("junction-log": the
same with the access log on). They use wrk (HTTP/1.1, also over TLS), h2load (HTTP/2, and
the new-connection runs) and `harness.py hold-client` (many idle connections, pinned with
the load generators).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import queue
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"

CPU_LOAD = "0"      # wrk
CPU_SERVERS = "1"   # backend + the server under test

# Features that have landed. Scenarios that need something else are listed as "not yet".
# "tls" (Junction's `listen_tls`) is added at start when `junction serve --help` offers
# `--listen-tls`, so that a build from before it still runs every other scenario.
LANDED = {"pass-through", "policies", "cache", "views", "soap", "agents"}

BACKEND_PORT = 18001
NGINX_PORT = 18080
NGINX_CACHE_PORT = 18081
# (o) A Junction with a store and an agents listener, and one outbound agent.
AGENTS_GATEWAY_PORT = 18100
AGENTS_LISTEN_PORT = 18102
# Issue #17: nginx-edge (bench/nginx/nginx-edge.conf.in) and two Junctions with derived configs.
NGINX_EDGE_PORTS = {"plain": 18082, "tls": 18083, "h2c": 18084, "log": 18085}
JUNCTION_EDGE_PORT = 18110      # + 1 admin, + 2 TLS
JUNCTION_LOG_PORT = 18114       # the same, access log on
# Connections the edge servers may hold: Junction's [limits] max_connections, nginx's
# worker_connections; both above the 10,000 of (m) with the upstream connections on top.
EDGE_MAX_CONNECTIONS = 20000
NGINX_EDGE_WORKER_CONNECTIONS = 16384
IDLE_CONNECTIONS = 10000        # (m)
ACTIVE_CONNECTIONS = 1000       # (n)
H2_CLIENTS, H2_STREAMS = 4, 100  # (l): 4 connections of 100 concurrent streams
HANDSHAKE_BATCH = 100           # (k): connections per h2load process, one request each


@dataclass
class Server:
    """One process (tree) serving HTTP on `port`."""

    name: str
    label: str
    port: int
    command: list[str]
    cpus: str = CPU_SERVERS
    process: subprocess.Popen | None = None
    # Processes that serve with it and are counted with it (an outbound agent).
    companions: list[subprocess.Popen] = field(default_factory=list)
    # Other listeners of the same process, by kind ("tls", "h2c", "log"); "plain" is `port`.
    ports: dict[str, int] = field(default_factory=dict)
    # Another name for a server registered under its own name (nginx-cache is nginx):
    # not counted twice in the idle and peak RSS figures.
    alias: bool = False

    def pids(self) -> list[int]:
        """The process and its children (nginx's workers), and its companions."""
        if self.process is None:
            return []
        pid = self.process.pid
        found = [pid]
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            found += [int(c) for c in children]
        except OSError:
            pass
        return found + [c.pid for c in self.companions]


# Junction variants: (name, label, extra arguments). The first is the default setup.
# `--baseline DIR` adds "junction-base": the default setup of another build (the `junction`
# in DIR, usually the commit before a change), measured in the same run.
JUNCTION_VARIANTS = [
    ("junction", "Junction (default: per-core)", []),
    ("junction-mt", "Junction --runtime multi-thread", ["--runtime", "multi-thread"]),
]
BASELINE = "junction-base"


@dataclass
class Post:
    """A request body: every request of the scenario is a POST of it."""

    body: str
    content_type: str
    action: str | None = None   # SOAPAction


@dataclass
class Scenario:
    letter: str
    title: str
    payload: str            # small | large | slow | cache | ...
    server: str             # a Server name
    path: str               # request path (the proxies add /connectors/bench in front)
    needs: str = "pass-through"
    note: str = ""
    connector: str = "bench"  # the Junction connector the path is under
    post: Post | None = None  # None: GET
    api_key: bool = False     # sends the bench client's API key (a gateway with a store)
    # Issue #17's rows:
    tool: str = "wrk"         # wrk | h2load | handshake (h2load, a new connection per request) | hold
    listener: str = "plain"   # plain | tls | h2c | log: which of the server's ports
    connections: int | None = None  # None: --connections
    streams: int = 1          # h2load: concurrent streams per connection
    peer: str | None = None   # the nginx row a Junction row is compared with (None: nginx/nginx-cache)
    group: str | None = None  # rows measured back to back, order rotated per round (None: payload)
    short: bool = False       # measured for --edge-duration, with a 1 s warm-up
    max_rounds: int | None = None


SMALL = "/items/abc-123?limit=10"
LARGE = "/large/abc-123?limit=10"
SLOW = "/slow/abc-123?limit=10"

# (s) The same call to the SOAP backend: its envelope directly, and JSON through Junction.
SOAP_DIRECT = Post(
    '<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
    '<s:Body><GetItems xmlns="urn:junction:bench:items"><category>tools</category><limit>10</limit>'
    '</GetItems></s:Body></s:Envelope>',
    "text/xml; charset=utf-8", '"urn:junction:bench:items#GetItems"')
SOAP_JSON = Post('{"category": "tools", "limit": 10}', "application/json")


def junction_rows(letter: str, title: str, payload: str, path: str, needs: str = "pass-through"):
    return [Scenario(letter, title, payload, name, path, needs) for name, _, _ in JUNCTION_VARIANTS]


def edge_rows(letter: str, title: str, payload: str, tls: bool = False, **options) -> list[Scenario]:
    """Issue #17's pair: nginx-edge, then junction-edge (its TLS rows need Junction's TLS)."""
    options.setdefault("short", True)
    return [Scenario(letter, title, payload, "nginx-edge", SMALL, peer="nginx-edge", **options),
            Scenario(letter, title, payload, "junction-edge", SMALL, needs="tls" if tls else "pass-through",
                     peer="nginx-edge", **options)]


def with_baseline(scenarios: list[Scenario]) -> list[Scenario]:
    """The table with a baseline row after each row of the default Junction (when a
    baseline variant is configured)."""
    if not any(name == BASELINE for name, _, _ in JUNCTION_VARIANTS):
        return scenarios
    out = []
    for scenario in scenarios:
        out.append(scenario)
        # A build from before SOAP cannot serve (s).
        if scenario.server == "junction" and scenario.needs not in ("soap", "agents"):
            out.append(Scenario(scenario.letter, scenario.title, scenario.payload, BASELINE,
                                scenario.path, scenario.needs, scenario.note, scenario.connector,
                                scenario.post))
    return out


# The scenario table. Order within a payload is the order of measurement.
SCENARIOS: list[Scenario] = [
    # (a) the floor
    Scenario("a", "direct to the backend", "small", "backend", SMALL),
    Scenario("a", "direct to the backend", "large", "backend", LARGE),
    Scenario("a", "direct to the backend", "slow", "backend", SLOW),
    # (b) the peer
    Scenario("b", "nginx pass-through", "small", "nginx", SMALL),
    Scenario("b", "nginx pass-through", "large", "nginx", LARGE),
    Scenario("b", "nginx pass-through", "slow", "nginx", SLOW),
    # (c) Junction: route, bind and validate a path string and a bounded query integer, call
    *junction_rows("c", "Junction pass-through, validated", "small", SMALL),
    *junction_rows("c", "Junction pass-through, validated", "large", LARGE),
    *junction_rows("c", "Junction pass-through, validated", "slow", SLOW),
    # (d) a 5-policy chain and a jq response transform (compared with nginx pass-through)
    Scenario("d", "Junction, 5 policies + jq transform", "small", "junction", SMALL, needs="policies",
             connector="bench-policies"),
    # (e) cache hits
    Scenario("e", "nginx proxy_cache hit", "cache", "nginx-cache", SMALL),
    Scenario("e", "Junction cache hit", "cache", "junction", SMALL, needs="cache", connector="bench-cache"),
    # (f) a view of 3 parallel steps on the 20 ms backend (compared with one slow step)
    Scenario("f", "Junction view, 3 parallel 20 ms steps", "view", "junction", "/views/bench-three", needs="views"),
    # (s) SOAP: a 10-item envelope from the backend directly, and through Junction as JSON
    # (JSON validated and written as an envelope, the XML answer read back into JSON)
    Scenario("s", "SOAP backend direct (envelope in, envelope out)", "soap", "backend", "/soap/items",
             needs="soap", post=SOAP_DIRECT),
    Scenario("s", "Junction SOAP: JSON in, JSON out", "soap", "junction", "/GetItems", needs="soap",
             connector="bench-soap", post=SOAP_JSON),
    # (o) the same small call through a Junction with a store (client API key) straight to the
    # backend, and through one outbound agent (an HTTP/2 stream over the TLS connection the
    # agent opened; the agent's CPU is counted with the gateway's)
    Scenario("o", "Junction with a store, direct", "agent", "junction-agents", SMALL, needs="agents",
             connector="bench-direct", api_key=True),
    Scenario("o", "Junction with a store, through an outbound agent", "agent", "junction-agents", SMALL,
             needs="agents", connector="bench-agent", api_key=True),
    # Issue #17: the gateway's edge. nginx-edge against junction-edge (derived config: a TLS
    # listener, max_connections = 20000), the (c) small answer; --edge-duration each, 1 s warm-up.
    # (m) 10,000 keep-alive connections opened, one request each, held idle while the server's
    # RSS is sampled, then a second request on every one. First of the edge rows, so that the
    # RSS it reports is not that of heaps grown by (l) and (n); both servers are restarted after it.
    *edge_rows("m", f"{IDLE_CONNECTIONS:,} idle keep-alive connections", "10k idle", tool="hold", max_rounds=1),
    *edge_rows("i", "HTTPS keep-alive, HTTP/1.1 over TLS 1.3 (wrk)", "https h1", tls=True, listener="tls"),
    *edge_rows("j", "HTTPS keep-alive, HTTP/2 by ALPN, 1 stream per connection (h2load)", "https h2",
               tls=True, tool="h2load", listener="tls"),
    *edge_rows("l", f"cleartext HTTP/2 (prior knowledge), {H2_CLIENTS} connections × {H2_STREAMS} streams "
               f"(h2load)", "h2c ×100", tool="h2load", listener="h2c", connections=H2_CLIENTS,
               streams=H2_STREAMS),
    *edge_rows("n", f"{ACTIVE_CONNECTIONS:,} active keep-alive connections (wrk)", "1k conns",
               connections=ACTIVE_CONNECTIONS, max_rounds=1),
    # (p) The same pass-through with the access log off and on (a file in the run directory):
    # Junction's [log] access = true, nginx's access_log (combined format) on a port of its own.
    *edge_rows("p", "pass-through, access log off", "log off", group="log"),
    Scenario("p", "pass-through, access log on (to a file)", "log on", "nginx-edge", SMALL, listener="log",
             peer="nginx-edge", group="log", short=True),
    Scenario("p", "pass-through, access log on (to a file)", "log on", "junction-log", SMALL,
             peer="nginx-edge", group="log", short=True),
    # (k) New TLS connections: a full handshake (no resumption) and one request on each.
    *edge_rows("k", "new TLS connections, full handshake + 1 request each (h2load --h1)", "handshake",
               tls=True, tool="handshake", listener="tls", connections=HANDSHAKE_BATCH),
]


# ---------------------------------------------------------------------------------------
# /proc readings


def read_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def rss_kib(pids: list[int], key: str = "VmRSS") -> int:
    return sum(read_status(pid).get(key, 0) for pid in pids)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def all_cpu() -> dict[int, float]:
    """CPU seconds of every process on the machine."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            out[int(entry)] = cpu_seconds(int(entry))
    return out


def our_tree() -> set[int]:
    """This process and all its descendants (servers, wrk, taskset)."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    ours = {os.getpid()}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in ours and pid not in ours:
                ours.add(pid)
                grew = True
    return ours


def foreign_cpu(before: dict[int, float], after: dict[int, float], ours: set[int]) -> float:
    """CPU seconds other processes used between two readings (new processes counted whole)."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items() if pid not in ours)


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def count_established(port: int) -> int:
    """Established TCP connections whose local port is `port` (the server's side), IPv4."""
    count = 0
    try:
        with open("/proc/net/tcp") as table:
            next(table)
            for line in table:
                fields = line.split(None, 4)
                if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    count += 1
    except OSError:
        pass
    return count


def raise_nofile(want: int) -> int:
    """Raises this process's open-file limit towards `want` (beyond the hard limit as root);
    returns the soft limit now in force. Children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    try:
        limit = hard if hard == resource.RLIM_INFINITY else max(hard, want)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, limit))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentiles(sorted_us: list[int]) -> dict:
    """p50, p99, p99.9 and max of latencies in microseconds (sorted)."""
    if not sorted_us:
        return {}

    def at(q: float) -> int:
        return sorted_us[min(len(sorted_us) - 1, int(q * len(sorted_us)))]

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "p999": at(0.999), "max": sorted_us[-1],
            "mean": sum(sorted_us) / len(sorted_us)}


def parse_h2load(text: str) -> dict | None:
    """h2load's summary: 2xx answers (`requests`), req/s, errors (failed requests and other
    statuses) and what it negotiated."""
    finished = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", text)
    counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                       r"(\d+) errored, (\d+) timeout", text)
    statuses = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not (finished and counts and statuses):
        return None
    ok = int(statuses.group(1))
    others = sum(int(statuses.group(i)) for i in (2, 3, 4))
    negotiated = [m.group(1).strip() for m in re.finditer(
        r"^(?:TLS Protocol|Cipher|Application protocol): (.*)$", text, re.M)]
    return {"requests": ok, "rps": float(finished.group(1)) * ok / max(1, int(counts.group(4))),
            "errors": int(counts.group(5)) + others,
            "tool": ", ".join(negotiated)}


def pump(stream, lines: queue.Queue) -> None:
    """Puts every line of `stream` on `lines`, then None at its end (for reads with a timeout)."""
    for line in stream:
        lines.put(line)
    lines.put(None)


class Meter:
    """Between start() and stop(): CPU time of the server under test and of the backend, the
    CPU other processes used (noise), and the server's peak RSS (sampled every 0.25 s)."""

    def __init__(self, bench: "Bench", server: Server):
        self.bench = bench
        self.pids = server.pids()
        self.backend = bench.servers["backend"]
        self.counts_backend = server is not self.backend
        self.server_cpu = self.backend_cpu = self.noise = self.seconds = 0.0
        self.peak = 0
        self.load: list[float] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.server_cpu0 = sum(cpu_seconds(p) for p in self.pids)
        self.backend_cpu0 = cpu_seconds(self.backend.process.pid) if self.counts_backend else 0.0
        self.machine0 = all_cpu()
        self.load = load_average()
        self.peak = rss_kib(self.pids)
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.25):
            self.peak = max(self.peak, rss_kib(self.pids))

    def stop(self, client_pids: set[int]) -> None:
        self.seconds = time.monotonic() - self.started
        self.server_cpu = sum(cpu_seconds(p) for p in self.pids) - self.server_cpu0
        if self.counts_backend:
            self.backend_cpu = cpu_seconds(self.backend.process.pid) - self.backend_cpu0
        self.noise = foreign_cpu(self.machine0, all_cpu(), self.bench.ours() | client_pids)
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_kib(self.pids))


# ---------------------------------------------------------------------------------------
# The run


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.bin = Path(args.bin_dir)
        self.run_dir = Path(tempfile.mkdtemp(prefix="junction-bench."))
        self.servers: dict[str, Server] = {}
        self.deadline = time.monotonic() + args.budget
        self.quiet_budget = args.quiet_budget
        self.log = open(self.run_dir / "bench.log", "w")
        self.tls_facts: dict[str, dict] = {}
        self.peak_before_restart: dict[str, int] = {}

    # -- processes ----------------------------------------------------------------------

    def ours(self) -> set[int]:
        return our_tree()

    def start(self, server: Server) -> None:
        command = ["taskset", "-c", server.cpus, *server.command]
        self.log.write(f"$ {' '.join(command)}\n")
        self.log.flush()
        server.process = subprocess.Popen(
            command, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.servers[server.name] = server
        until = time.monotonic() + 15
        while time.monotonic() < until:
            if server.process.poll() is not None:
                raise SystemExit(f"bench: {server.name} exited at start; see {self.run_dir}/bench.log")
            try:
                with socket.create_connection(("127.0.0.1", server.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"bench: {server.name} is not listening on {server.port} after 15 s")

    def stop_all(self) -> None:
        for server in self.servers.values():
            for companion in server.companions:
                if companion.poll() is None:
                    companion.terminate()
                    companion.wait(timeout=40)
        for server in self.servers.values():
            if server.process and server.process.poll() is None:
                try:
                    os.killpg(server.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for server in self.servers.values():
            if server.process:
                try:
                    server.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(server.process.pid, signal.SIGKILL)
                    server.process.wait(timeout=5)

    def restart(self, name: str) -> None:
        """Stops a server and starts it again with the same command (after (m), whose 10,000
        connections leave a grown heap behind); its peak RSS so far is kept for (h)."""
        server = self.servers[name]
        self.peak_before_restart[name] = max(self.peak_before_restart.get(name, 0),
                                             rss_kib(server.pids(), "VmHWM"))
        try:
            os.killpg(server.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=5)
        self.start(server)
        for port in server.ports.values():
            until = time.monotonic() + 15
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    if time.monotonic() > until:
                        raise SystemExit(f"bench: {name} is not listening on {port} after a restart") from None
                    time.sleep(0.05)

    def start_servers(self) -> None:
        backend = Server("backend", "backend direct", BACKEND_PORT,
                         [str(self.bin / "junction-bench-backend"), f"127.0.0.1:{BACKEND_PORT}"])
        self.start(backend)

        nginx_dir = self.run_dir / "nginx"
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "cache"):
            (nginx_dir / sub).mkdir(parents=True, exist_ok=True)
        conf = (BENCH / "nginx" / "nginx.conf.in").read_text()
        for key, value in {"@RUN@": str(self.run_dir), "@BACKEND_PORT@": str(BACKEND_PORT),
                           "@NGINX_PORT@": str(NGINX_PORT),
                           "@NGINX_CACHE_PORT@": str(NGINX_CACHE_PORT)}.items():
            conf = conf.replace(key, value)
        (nginx_dir / "nginx.conf").write_text(conf)
        nginx = Server("nginx", "nginx proxy_pass", NGINX_PORT,
                       [self.args.nginx, "-p", str(nginx_dir), "-c", str(nginx_dir / "nginx.conf")])
        self.start(nginx)
        # The cache block lives in the same nginx; only its port differs.
        cache = Server("nginx-cache", "nginx proxy_cache", NGINX_CACHE_PORT, [])
        cache.process = nginx.process
        self.cache_alias = cache

        for i, (name, label, extra) in enumerate(JUNCTION_VARIANTS):
            port = 18090 + 2 * i
            binary = Path(self.args.baseline) if name == BASELINE else self.bin
            server = Server(name, label, port, [
                str(binary / "junction"), "serve", "--config", str(BENCH / "junction"),
                "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{port + 1}", *extra,
            ])
            self.start(server)
        # Aliases share a process: register after the real ones so pids are not doubled.
        cache.alias = True
        self.servers["nginx-cache"] = cache
        self.start_agents_gateway()
        self.start_edge_servers()

    # -- issue #17: TLS, HTTP/2, many connections, the access log ------------------------

    def make_certificate(self) -> None:
        """One ECDSA P-256 self-signed certificate (for 127.0.0.1) that nginx and Junction
        both show."""
        tls = self.run_dir / "tls"
        tls.mkdir()
        self.cert, self.key = tls / "cert.pem", tls / "key.pem"
        done = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(self.key), "-out", str(self.cert), "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise SystemExit(f"bench: openssl could not make a certificate: {done.stderr}")

    def junction_edge_config(self, name: str, tls_port: int, access_log: bool) -> Path:
        """A config directory in the run directory: bench/junction/junction.toml with its
        connectors and views, plus a TLS listener, max_connections and, for (p), the access log."""
        home = self.run_dir / name
        home.mkdir()
        junction = BENCH / "junction"
        top = [f"# Derived by bench/harness.py from {junction / 'junction.toml'}.",
               f'connectors_dir = "{junction / "connectors"}"',
               f'views_dir = "{junction / "views"}"']
        tail = ["", "[limits]", f"max_connections = {EDGE_MAX_CONNECTIONS}"]
        if "tls" in LANDED:
            top.append(f'listen_tls = "127.0.0.1:{tls_port}"')
            tail += ["", "[tls]", f'cert_file = "{self.cert}"', f'key_file = "{self.key}"']
        if access_log:
            tail += ["", "[log]", "access = true", f'file = "{home / "access.log"}"']
        # Top-level keys go before the first [table] of the copied file.
        text = "\n".join(top) + "\n\n" + (junction / "junction.toml").read_text() + "\n".join(tail) + "\n"
        (home / "junction.toml").write_text(text)
        return home

    def start_edge_servers(self) -> None:
        """nginx-edge, junction-edge and junction-log (see the module's docstring)."""
        self.make_certificate()
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        nginx_dir = self.run_dir / "nginx-edge"
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (nginx_dir / sub).mkdir(parents=True, exist_ok=True)
        conf = (BENCH / "nginx" / "nginx-edge.conf.in").read_text()
        for key, value in {"@RUN@": str(self.run_dir), "@BACKEND_PORT@": str(BACKEND_PORT),
                           "@PLAIN_PORT@": str(NGINX_EDGE_PORTS["plain"]),
                           "@TLS_PORT@": str(NGINX_EDGE_PORTS["tls"]),
                           "@H2C_PORT@": str(NGINX_EDGE_PORTS["h2c"]),
                           "@LOG_PORT@": str(NGINX_EDGE_PORTS["log"]),
                           "@NOFILE@": str(nofile),
                           "@WORKER_CONNECTIONS@": str(NGINX_EDGE_WORKER_CONNECTIONS)}.items():
            conf = conf.replace(key, value)
        (nginx_dir / "nginx.conf").write_text(conf)
        self.start(Server("nginx-edge", "nginx edge (TLS, h2c, 16k connections)", NGINX_EDGE_PORTS["plain"],
                          [self.args.nginx, "-p", str(nginx_dir), "-c", str(nginx_dir / "nginx.conf")],
                          ports=dict(NGINX_EDGE_PORTS)))
        for name, label, port, access_log in (
                ("junction-edge", "Junction edge (TLS listener, max_connections 20000)", JUNCTION_EDGE_PORT, False),
                ("junction-log", "Junction edge, access log on", JUNCTION_LOG_PORT, True)):
            home = self.junction_edge_config(name, port + 2, access_log)
            tls = ["--listen-tls", f"127.0.0.1:{port + 2}"] if "tls" in LANDED else []
            ports = {"tls": port + 2} if tls else {}
            # The plain listener speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c).
            ports.update({"h2c": port, "log": port})
            self.start(Server(name, label, port, [
                "prlimit", f"--nofile={nofile}:{nofile}",
                str(self.bin / "junction"), "serve", "--config", str(home),
                "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{port + 1}", *tls,
            ], ports=ports))

    def junction_cli(self, *args: str, env: dict | None = None) -> str:
        """Runs the `junction` command line; returns its standard output."""
        done = subprocess.run([str(self.bin / "junction"), *args], capture_output=True, text=True,
                              timeout=60, env={**os.environ, **(env or {})})
        self.log.write(f"$ junction {' '.join(args)}\n{done.stderr}")
        if done.returncode != 0:
            raise SystemExit(f"bench: junction {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def start_agents_gateway(self) -> None:
        """(o) A gateway with a store and an agents listener, two connectors on the bench
        backend (one through the agents of pool `bench`), a client key, and one agent."""
        home = self.run_dir / "agents"
        (home / "connectors").mkdir(parents=True)
        # A folder per connector name: the same package twice.
        for name in ("bench-direct", "bench-agent"):
            shutil.copytree(BENCH / "junction" / "connectors" / "bench", home / "connectors" / name)
        (home / "master.key").write_text(self.junction_cli("keys", "generate"))
        (home / "junction.toml").write_text(f"""
[store]
path = "store.db"
key_file = "master.key"

[agents]
listen = "127.0.0.1:{AGENTS_LISTEN_PORT}"

[connector.bench-direct]
backend = "http://127.0.0.1:{BACKEND_PORT}"

[connector.bench-agent]
backend = "http://127.0.0.1:{BACKEND_PORT}"
via = "agent:bench"
""")
        created = self.junction_cli("clients", "create", "bench", "--grant", "bench-direct",
                                    "--grant", "bench-agent", "--config", str(home))
        # The key itself (its prefix is shown too): the longest `jk_…` printed.
        self.api_key = max(re.findall(r"jk_[0-9a-f]+", created), key=len)
        token = self.junction_cli("agents", "enroll", "--pool", "bench", "--config", str(home)).strip()
        gateway = Server("junction-agents", "Junction with a store and an agent", AGENTS_GATEWAY_PORT, [
            str(self.bin / "junction"), "serve", "--config", str(home),
            "--listen", f"127.0.0.1:{AGENTS_GATEWAY_PORT}",
            "--admin-listen", f"127.0.0.1:{AGENTS_GATEWAY_PORT + 1}",
        ])
        self.start(gateway)
        agent_dir = self.run_dir / "agent"
        self.junction_cli("agent", "join", "--gateway", f"https://127.0.0.1:{AGENTS_LISTEN_PORT}",
                          "--token", token, "--name", "bench", "--dir", str(agent_dir))
        (agent_dir / "agent.toml").write_text(f'allow = ["http://127.0.0.1:{BACKEND_PORT}/*"]\n')
        command = ["taskset", "-c", CPU_SERVERS, str(self.bin / "junction"), "agent", "run", "--dir", str(agent_dir)]
        self.log.write(f"$ {' '.join(command)}\n")
        agent = subprocess.Popen(command, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
        gateway.companions.append(agent)
        until = time.monotonic() + 15
        while time.monotonic() < until:
            with urllib.request.urlopen(f"http://127.0.0.1:{AGENTS_GATEWAY_PORT + 1}/api/v1/agents",
                                        timeout=5) as response:
                if json.loads(response.read())["pools"].get("bench", {}).get("connected") == 1:
                    return
            time.sleep(0.1)
        raise SystemExit(f"bench: the agent did not connect; see {self.run_dir}/bench.log")

    def url(self, server: str, path: str, connector: str = "bench", listener: str = "plain") -> str:
        port = self.servers[server].port if listener == "plain" else self.servers[server].ports[listener]
        scheme = "https" if listener == "tls" else "http"
        # Views live at /views/{name}, not under a connector.
        prefix = "" if server == "backend" or path.startswith("/views/") else f"/connectors/{connector}"
        return f"{scheme}://127.0.0.1:{port}{prefix}{path}"

    def check_answers(self) -> None:
        """Every server answers every payload with the backend's bytes."""
        expected = {}
        for path in (SMALL, LARGE, SLOW):
            for name in ("backend", "nginx", "nginx-cache", *[v[0] for v in JUNCTION_VARIANTS]):
                with urllib.request.urlopen(self.url(name, path), timeout=5) as response:
                    body = response.read()
                    if response.status != 200:
                        raise SystemExit(f"bench: {name} {path}: status {response.status}")
                expected.setdefault(path, body)
                if body != expected[path]:
                    raise SystemExit(f"bench: {name} {path}: {len(body)} bytes differ from the backend's")
        # Validation really runs: an out-of-range integer is refused.
        try:
            urllib.request.urlopen(self.url("junction", "/items/abc?limit=1000"), timeout=5)
            raise SystemExit("bench: Junction accepted limit=1000")
        except urllib.error.HTTPError as error:
            if error.code != 400:
                raise SystemExit(f"bench: Junction answered {error.code} to limit=1000") from None
        # (d) The policy chain and the transform really run.
        with urllib.request.urlopen(self.url("junction", SMALL, "bench-policies"), timeout=5) as response:
            shaped = json.loads(response.read())
            if response.headers.get("X-Served-By") != "junction" or shaped.get("source") != "junction" \
                    or any(tag != tag.upper() for tag in shaped.get("tags", [])):
                raise SystemExit(f"bench: the policy chain did not run: {shaped}")
        # (e) The cache answers with the backend's bytes, from the second call on as a hit.
        for _ in range(2):
            with urllib.request.urlopen(self.url("junction", SMALL, "bench-cache"), timeout=5) as response:
                cached, x_cache = response.read(), response.headers.get("X-Cache")
        if cached != expected[SMALL] or x_cache != "HIT":
            raise SystemExit(f"bench: the Junction cache did not answer a hit ({x_cache}): {cached[:80]!r}")
        # (s) The SOAP backend answers its envelope; Junction the same 10 items as JSON.
        def post(url: str, body: Post) -> tuple[int, bytes]:
            headers = {"Content-Type": body.content_type}
            if body.action:
                headers["SOAPAction"] = body.action
            request = urllib.request.Request(url, data=body.body.encode(), headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read()
        status, envelope = post(self.url("backend", "/soap/items"), SOAP_DIRECT)
        if status != 200 or envelope.count(b"<item ") != 10:
            raise SystemExit(f"bench: the SOAP backend answered {status}: {envelope[:80]!r}")
        for name, _, _ in JUNCTION_VARIANTS:
            if name == BASELINE:
                continue  # (s) is not measured on a baseline build (see with_baseline)
            status, answer = post(self.url(name, "/GetItems", "bench-soap"), SOAP_JSON)
            items = json.loads(answer).get("item", [])
            if status != 200 or len(items) != 10 or items[0].get("tag") != ["blue", "small"] \
                    or items[0].get("id") != 1 or items[0].get("inStock") is not False:
                raise SystemExit(f"bench: {name} SOAP GetItems answered {status}: {answer[:200]!r}")
        # (o) Direct and through the agent: the backend's bytes, with the client's key.
        for connector in ("bench-direct", "bench-agent"):
            request = urllib.request.Request(self.url("junction-agents", SMALL, connector),
                                             headers={"X-Api-Key": self.api_key})
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status != 200 or response.read() != expected[SMALL]:
                    raise SystemExit(f"bench: {connector} did not answer the backend's bytes")
        # (f) The view calls its three steps and shapes their answers.
        for name, _, _ in JUNCTION_VARIANTS:
            with urllib.request.urlopen(self.url(name, "/views/bench-three"), timeout=5) as response:
                shaped = json.loads(response.read())
                if response.status != 200 or shaped != [42, 42, 42] or response.headers.get("X-Junction-Partial"):
                    raise SystemExit(f"bench: {name} view bench-three answered {response.status}: {shaped}")

    def check_edge(self) -> None:
        """Issue #17's servers answer the backend's bytes on every listener they are measured
        on (HTTPS checked against the run's certificate, HTTP/2 with h2load), their access logs
        fill, and what each TLS listener negotiates is recorded, resumption included."""
        with urllib.request.urlopen(self.url("backend", SMALL), timeout=5) as response:
            expected = response.read()
        context = ssl.create_default_context(cafile=str(self.cert))
        checks = [("nginx-edge", "plain"), ("nginx-edge", "log"), ("nginx-edge", "tls"),
                  ("junction-edge", "plain"), ("junction-log", "plain")]
        if "tls" in LANDED:
            checks += [("junction-edge", "tls"), ("junction-log", "tls")]
        for name, listener in checks:
            url = self.url(name, SMALL, listener=listener)
            with urllib.request.urlopen(url, timeout=5, context=context if listener == "tls" else None) as response:
                if response.status != 200 or response.read() != expected:
                    raise SystemExit(f"bench: {url} did not answer the backend's bytes")
        # HTTP/2: h2c with prior knowledge on the cleartext listeners, ALPN h2 over TLS.
        h2 = [("nginx-edge", "h2c"), ("junction-edge", "h2c"), ("nginx-edge", "tls")]
        if "tls" in LANDED:
            h2.append(("junction-edge", "tls"))
        for name, listener in h2:
            url = self.url(name, SMALL, listener=listener)
            done = subprocess.run(["h2load", "-n4", "-c1", url], capture_output=True, text=True, timeout=30)
            parsed = parse_h2load(done.stdout)
            if not parsed or parsed["requests"] != 4 or parsed["errors"] \
                    or "Application protocol: h2" not in done.stdout:
                raise SystemExit(f"bench: HTTP/2 to {url} failed:\n{done.stdout[-1500:]}{done.stderr[-500:]}")
        # The access logs: a line per request.
        for path in (self.run_dir / "nginx-edge" / "access.log", self.run_dir / "junction-log" / "access.log"):
            if not path.exists() or path.stat().st_size == 0:
                raise SystemExit(f"bench: no access log line in {path}")
        # TLS: what each server negotiates with OpenSSL's defaults (wrk's), and whether it
        # resumes a session offered by a client (its second connection offers the first's).
        self.tls_facts = {}
        for name in ("nginx-edge", "junction-edge"):
            if "tls" not in self.servers[name].ports:
                continue
            facts = {}
            session = self.run_dir / "tls" / f"{name}.session"
            for step, option in (("first", "-sess_out"), ("second", "-sess_in")):
                done = subprocess.run(
                    ["openssl", "s_client", "-connect", f"127.0.0.1:{self.servers[name].ports['tls']}",
                     "-servername", "localhost", "-alpn", "http/1.1", "-ign_eof", option, str(session)],
                    input=f"GET /connectors/bench{SMALL} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                    capture_output=True, text=True, timeout=30)
                summary = re.search(r"^(New|Reused), (\S+), Cipher is (\S+)", done.stdout, re.M)
                temp_key = re.search(r"^Server Temp Key: (.*)$", done.stdout, re.M)
                if not summary or "HTTP/1.1 200" not in done.stdout:
                    raise SystemExit(f"bench: openssl s_client to {name} failed:\n"
                                     f"{done.stdout[-1500:]}{done.stderr[-500:]}")
                if step == "first":
                    facts.update({"protocol": summary.group(2), "cipher": summary.group(3),
                                  "key_exchange": temp_key.group(1) if temp_key else "?"})
                else:
                    facts["resumes_offered_session"] = summary.group(1) == "Reused"
            done = subprocess.run(["h2load", "-n1", "-c1", self.url(name, SMALL, listener="tls")],
                                  capture_output=True, text=True, timeout=30)
            facts["h2load"] = (parse_h2load(done.stdout) or {}).get("tool", "?")
            self.tls_facts[name] = facts

    # -- measuring ----------------------------------------------------------------------

    def wait_for_quiet(self) -> tuple[float, float]:
        """Waits (bounded) until other processes use less than a tenth of a core; returns the
        seconds waited and the last foreign CPU share seen."""
        waited = 0.0
        while True:
            before = all_cpu()
            time.sleep(1.0)
            share = foreign_cpu(before, all_cpu(), self.ours())
            if share < 0.1 or self.quiet_budget <= 0:
                return waited, share
            self.quiet_budget -= 1.0
            waited += 1.0
            if waited == 1.0:
                print(f"  (waiting for other processes: {share:.2f} CPU busy)", flush=True)

    def wrk(self, url: str, duration: float, connections: int, pids: set[int] | None = None,
            post: Post | None = None, api_key: bool = False) -> dict:
        """Runs wrk (bounded: it stops itself after `duration`, and is killed 30 s later);
        with `post`, every request is a POST of its body (see report.lua)."""
        command = ["taskset", "-c", CPU_LOAD, self.args.wrk, "-t1", f"-c{connections}",
                   f"-d{duration:g}s", "--timeout", "5s", "-s", str(BENCH / "report.lua"), url]
        env = dict(os.environ)
        if api_key:
            env["WRK_API_KEY"] = self.api_key
        if post is not None:
            body_file = self.run_dir / f"body-{abs(hash(post.body))}"
            body_file.write_text(post.body)
            env.update({"WRK_BODY_FILE": str(body_file), "WRK_CONTENT_TYPE": post.content_type})
            if post.action:
                env["WRK_SOAPACTION"] = post.action
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        if pids is not None:
            pids.add(process.pid)
        try:
            stdout, stderr = process.communicate(timeout=duration + 30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise SystemExit(f"bench: wrk did not finish for {url}") from None
        for line in stdout.splitlines():
            if line.startswith("WRK_JSON "):
                data = json.loads(line[len("WRK_JSON "):])
                return {"requests": data["requests"], "seconds": data["duration_us"] / 1e6,
                        "errors": sum(data["errors"].values()), "error_kinds": data["errors"],
                        "latency_us": data["latency_us"]}
        raise SystemExit(f"bench: wrk gave no result for {url}:\n{stdout}\n{stderr}")

    def times(self, scenario: Scenario) -> tuple[float, float]:
        """(warm-up, measured) seconds of a scenario: issue #17's rows are shorter."""
        if scenario.short:
            return min(self.args.warmup, 1.0), min(self.args.duration, self.args.edge_duration)
        return self.args.warmup, self.args.duration

    def measure(self, scenario: Scenario) -> dict:
        if scenario.tool == "hold":
            return self.measure_hold(scenario)
        server = self.servers[scenario.server]
        url = self.url(scenario.server, scenario.path, scenario.connector, scenario.listener)
        connections = scenario.connections or self.args.connections
        warmup, duration = self.times(scenario)
        waited, _ = self.wait_for_quiet()
        if scenario.tool == "wrk":
            self.wrk(url, warmup, connections, post=scenario.post, api_key=scenario.api_key)  # discarded
        elif scenario.tool == "handshake":
            self.handshakes(url, warmup, connections)  # discarded
        meter = Meter(self, server)
        client_pids: set[int] = set()
        if scenario.tool == "wrk":
            meter.start()
            result = self.wrk(url, duration, connections, client_pids, scenario.post, scenario.api_key)
            meter.stop(client_pids)
        elif scenario.tool == "h2load":
            # h2load's own warm-up; the meter runs from the line saying its measured phase began
            # to the one saying it ended.
            result = self.h2load(url, duration, warmup, connections, scenario.streams, meter, client_pids)
        elif scenario.tool == "handshake":
            meter.start()
            result = self.handshakes(url, duration, connections, client_pids)
            meter.stop(client_pids)
        else:
            raise SystemExit(f"bench: unknown tool {scenario.tool}")
        requests = result["requests"]
        seconds = result["seconds"]
        latency = result.get("latency_us") or {}

        def ms(key: str) -> float | None:
            return latency[key] / 1000 if key in latency else None

        return {
            "requests": requests,
            "rps": requests / seconds,
            "p50_ms": ms("p50"),
            "p99_ms": ms("p99"),
            "p999_ms": ms("p999"),
            "errors": result["errors"],
            "server_cpu_us_per_req": meter.server_cpu / requests * 1e6 if requests else None,
            "backend_cpu_us_per_req": meter.backend_cpu / requests * 1e6 if requests and meter.backend_cpu else None,
            # The server's CPU over the measured time, in cores (1.0: its core was saturated).
            "server_cores": meter.server_cpu / meter.seconds if meter.seconds else None,
            "rss_peak_kib": meter.peak,
            "load_average": meter.load,
            # Other people's work during the run, in cores (the load tools and the servers excluded).
            "noise_cpu": meter.noise / meter.seconds if meter.seconds else 0.0,
            "waited_s": waited,
            "connections": connections,
            **({"tool": result["tool"]} if "tool" in result else {}),
        }

    def h2load(self, url: str, duration: float, warmup: float, clients: int, streams: int, meter: Meter,
               pids: set[int]) -> dict:
        """h2load on CPU 0 (1 thread): `clients` connections, `streams` requests in flight on
        each, `warmup` s then `duration` s measured. HTTP/2: ALPN h2 over TLS, prior knowledge
        (h2c) on http://. Percentiles from its per-request log."""
        log = self.run_dir / "h2load.log"
        command = ["taskset", "-c", CPU_LOAD, "h2load", "-t1", f"-c{clients}", f"-m{streams}",
                   f"-D{duration:g}", f"--warm-up-time={warmup:g}", f"--log-file={log}", url]
        self.log.write(f"$ {' '.join(command)}\n")
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        pids.add(process.pid)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=pump, args=(process.stdout, lines), daemon=True).start()
        output = []
        until = time.monotonic() + warmup + duration + 30
        while True:
            try:
                line = lines.get(timeout=max(0.1, until - time.monotonic()))
            except queue.Empty:
                process.kill()
                raise SystemExit(f"bench: h2load did not finish for {url}") from None
            if line is None:
                break
            output.append(line)
            if line.startswith("Main benchmark duration is started"):
                meter.start()
            elif line.startswith("Main benchmark duration is over"):
                meter.stop(pids)
        process.wait(timeout=10)
        text = "".join(output)
        self.log.write(text)
        parsed = parse_h2load(text)
        if parsed is None or not meter.seconds:
            raise SystemExit(f"bench: h2load gave no result for {url}:\n{text[-2000:]}")
        elapsed = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines() if line.count("\t") == 2)
        log.unlink()
        parsed["latency_us"] = percentiles(elapsed)
        parsed["seconds"] = parsed["requests"] / parsed["rps"] if parsed["rps"] else meter.seconds
        return parsed

    def handshakes(self, url: str, duration: float, batch: int, pids: set[int] | None = None) -> dict:
        """New TLS connections for `duration` s: h2load processes one after the other on CPU 0,
        each opening `batch` connections at once, one HTTP/1.1 request on each (`Connection:
        close`). A new process per batch and one connection per h2load client: no client ever
        holds a session to offer, so every handshake is a full one whatever the server allows."""
        command = ["taskset", "-c", CPU_LOAD, "h2load", "--h1", "-t1", f"-c{batch}", f"-n{batch}",
                   "-H", "Connection: close", url]
        self.log.write(f"$ {' '.join(command)}  (repeated for {duration:g} s)\n")
        done = errors = batches = 0
        tool = ""
        started = time.monotonic()
        while time.monotonic() - started < duration:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if pids is not None:
                pids.add(process.pid)
            try:
                text, _ = process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                raise SystemExit(f"bench: h2load did not finish a batch of connections to {url}") from None
            parsed = parse_h2load(text)
            if parsed is None:
                raise SystemExit(f"bench: h2load gave no result for {url}:\n{text[-2000:]}")
            done += parsed["requests"]
            errors += parsed["errors"]
            batches += 1
            tool = tool or parsed.get("tool", "")
        seconds = time.monotonic() - started
        return {"requests": done, "seconds": seconds, "errors": errors, "latency_us": {},
                "tool": f"{batches} h2load runs; {tool}"}

    def measure_hold(self, scenario: Scenario) -> dict:
        """(m) `harness.py hold-client` on CPU 0 opens IDLE_CONNECTIONS connections, one request
        on each, and holds them; meanwhile the server's RSS is sampled and its established
        connections counted; then a second request on every connection."""
        server = self.servers[scenario.server]
        port = server.port
        url = self.url(scenario.server, scenario.path, scenario.connector)
        target = url.split(f":{port}", 1)[1]
        waited, _ = self.wait_for_quiet()
        pids = server.pids()
        rss_before = rss_kib(pids)
        command = ["taskset", "-c", CPU_LOAD, sys.executable, str(Path(__file__).resolve()), "hold-client",
                   "127.0.0.1", str(port), target, str(IDLE_CONNECTIONS)]
        self.log.write(f"$ {' '.join(command)}\n")
        self.log.flush()
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                   text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=pump, args=(process.stdout, lines), daemon=True).start()

        def report(timeout: float) -> dict:
            until = time.monotonic() + timeout
            while True:
                try:
                    line = lines.get(timeout=max(0.1, until - time.monotonic()))
                except queue.Empty:
                    process.kill()
                    raise SystemExit(f"bench: the hold client did not report against {scenario.server}") from None
                if line is None:
                    raise SystemExit(f"bench: the hold client ended early against {scenario.server}; "
                                     f"see {self.run_dir}/bench.log")
                if line.startswith("HOLD_JSON "):
                    return json.loads(line[len("HOLD_JSON "):])

        try:
            opened = report(120)
            # Held idle for --hold-seconds (far below Junction's idle_timeout, 60 s, and nginx's
            # keepalive_timeout, 75 s): the RSS sampled, the connections the server has open
            # counted at the start and at the end.
            samples = []
            until = time.monotonic() + self.args.hold_seconds
            established = count_established(port)
            while time.monotonic() < until:
                samples.append(rss_kib(pids))
                time.sleep(0.25)
            established_end = count_established(port)
            process.stdin.write("go\n")
            process.stdin.flush()
            second = report(120)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
        rss_held = max(samples) if samples else 0
        return {
            "held": opened["held"], "failed_to_open": opened["failed"], "open_s": opened["seconds"],
            "open_errors": opened["errors"], "established": established, "established_end": established_end,
            "rss_before_kib": rss_before, "rss_held_kib": rss_held,
            "rss_per_connection_kib": (rss_held - rss_before) / opened["held"] if opened["held"] else None,
            "served": second["served"], "second_s": second["seconds"], "second_errors": second["errors"],
            "errors": opened["failed"] + (opened["held"] - second["served"]),
            "waited_s": waited,
        }

    def validate_corpus(self) -> dict | None:
        corpus = Path(self.args.corpus)
        if not corpus.is_dir():
            return None
        runs = []
        for _ in range(3):
            self.wait_for_quiet()
            result = subprocess.run(
                ["/usr/bin/time", "-v", str(self.bin / "junction"), "validate", "--quiet", str(corpus)],
                capture_output=True, text=True, timeout=120,
            )
            wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", result.stderr)
            rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
            summary = re.search(r"validated (\d+) connectors: (\d+) loaded, (\d+) failed, (\d+) warnings",
                                result.stdout + result.stderr)
            if not (wall and rss and summary):
                raise SystemExit(f"bench: cannot read `junction validate`'s figures:\n{result.stderr[-2000:]}")
            hours, minutes, seconds = wall.groups()
            runs.append({
                "wall_s": int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds),
                "max_rss_kib": int(rss.group(1)),
                "summary": summary.group(0),
            })
        return {
            "path": str(corpus),
            "wall_s": statistics.median(r["wall_s"] for r in runs),
            "max_rss_kib": max(r["max_rss_kib"] for r in runs),
            "summary": runs[0]["summary"],
            "runs": runs,
        }

    # -- the whole suite ----------------------------------------------------------------

    def run(self) -> dict:
        started = time.monotonic()
        info = machine_info(self.args)
        print(f"bench: run directory {self.run_dir}", flush=True)
        if "--listen-tls" in self.junction_cli("serve", "--help"):
            LANDED.add("tls")
        self.start_servers()
        self.check_answers()
        self.check_edge()
        time.sleep(1.0)
        idle = {name: {"rss_kib": rss_kib(s.pids())} for name, s in self.servers.items() if not s.alias}

        available = [s for s in SCENARIOS if s.needs in LANDED]
        rounds: dict[int, list[dict]] = {i: [] for i in range(len(SCENARIOS))}
        spent = False
        for round_no in range(self.args.rounds):
            # Rotate the order within each group (a payload) from round to round, so that no
            # server is always measured first or last.
            for key in dict.fromkeys(s.group or s.payload for s in available):
                group = [i for i, s in enumerate(SCENARIOS) if s in available and (s.group or s.payload) == key
                         and (s.max_rounds is None or round_no < s.max_rounds)]
                if not group:
                    continue
                shift = round_no % len(group)
                for i in group[shift:] + group[:shift]:
                    scenario = SCENARIOS[i]
                    if time.monotonic() > self.deadline:
                        spent = True
                        break
                    result = self.measure(scenario)
                    rounds[i].append(result)
                    head = f"  round {round_no + 1} {scenario.letter} {scenario.payload:9} {scenario.server:14}"
                    if scenario.tool == "hold":
                        print(f"{head} held {result['held']} (server: {result['established']} established, "
                              f"{result['established_end']} at the end) in {result['open_s']:.1f} s, RSS "
                              f"{result['rss_before_kib'] / 1024:.1f} -> {result['rss_held_kib'] / 1024:.1f} MB, "
                              f"second round served {result['served']} {result['second_errors'] or ''}", flush=True)
                    else:
                        p50, p99 = (("-" if x is None else f"{x:.3f}") for x in (result["p50_ms"], result["p99_ms"]))
                        print(f"{head} {result['rps']:9.0f} req/s  p50 {p50} ms  p99 {p99} ms  "
                              f"cpu {result['server_cpu_us_per_req'] or 0:.1f} us/req  "
                              f"({result['server_cores'] or 0:.2f} cores)  noise {result['noise_cpu']:.2f}", flush=True)
                    # (m) reports how many connections were served: its failures are its figure.
                    if result["errors"] and scenario.tool != "hold":
                        raise SystemExit(f"bench: {result['errors']} errors in {scenario}")
                    # (m) runs on servers fresh from check_edge; the rows after it get them fresh
                    # again rather than with the heap 10,000 connections grew.
                    if scenario.tool == "hold":
                        self.restart(scenario.server)
                if spent:
                    break
            if spent:
                print("bench: time budget spent; stopping early", flush=True)
                break

        peak = {name: {"rss_hwm_kib": max(rss_kib(s.pids(), "VmHWM"), self.peak_before_restart.get(name, 0))}
                for name, s in self.servers.items() if not s.alias}
        self.stop_all()

        validate = self.validate_corpus() if not self.args.skip_validate else None
        rows = []
        for i, scenario in enumerate(SCENARIOS):
            measured = rounds[i]
            # Noise only ever slows a run down: report the round with the most requests.
            best = max(measured, key=lambda r: r.get("rps", r.get("served", 0))) if measured else None
            rows.append({
                "letter": scenario.letter, "title": scenario.title, "payload": scenario.payload,
                "server": scenario.server, "needs": scenario.needs, "tool": scenario.tool,
                "listener": scenario.listener, "peer": scenario.peer,
                "status": "measured" if best else "not yet",
                "url_path": scenario.path,
                "best": best, "rounds": measured,
            })
        return {
            "machine": info,
            "settings": {
                "connections": self.args.connections, "duration_s": self.args.duration,
                "warmup_s": self.args.warmup, "rounds": self.args.rounds,
                "cpu_load": CPU_LOAD, "cpu_servers": CPU_SERVERS,
                "junction_variants": [{"name": n, "label": l, "args": a} for n, l, a in JUNCTION_VARIANTS],
                "edge_duration_s": min(self.args.duration, self.args.edge_duration),
                "edge_warmup_s": min(self.args.warmup, 1.0),
                "hold_seconds": self.args.hold_seconds,
                "labels": {name: server.label for name, server in self.servers.items()},
                "tls": self.tls_facts,
            },
            "idle": idle, "peak": peak, "scenarios": rows, "validate": validate,
            "load_average_end": load_average(),
            "elapsed_s": time.monotonic() - started,
        }


def machine_info(args) -> dict:
    def output(command: list[str]) -> str:
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=10)
            return (result.stdout + result.stderr).strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return "unknown"

    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    commit = output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "crates", "bench/backend"],
                                capture_output=True, text=True).stdout.strip())
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": model, "cores": os.cpu_count(), "memory_gib": round(mem_kib / 1024 / 1024),
        "kernel": platform.release(),
        "nginx": output([args.nginx, "-v"]).replace("nginx version: ", ""),
        "wrk": output([args.wrk, "-v"]).split(" [")[0],
        "rustc": output(["rustc", "--version"]),
        "commit": commit + ("+dirty" if dirty else ""),
        "load_average_start": load_average(),
        "command": args.command,
    }


# ---------------------------------------------------------------------------------------
# (m) The hold client: `harness.py hold-client HOST PORT TARGET COUNT`, started by the
# harness on the load generator's core.

HOLD_IN_FLIGHT = 200      # connections opening, or requests, at once
HOLD_STEP_TIMEOUT = 10.0  # seconds for one connect or one exchange


def hold_client(argv: list[str]) -> int:
    """Opens COUNT keep-alive HTTP/1.1 connections to HOST:PORT (at most HOLD_IN_FLIGHT at
    once), sends one GET of TARGET on each and reads its answer, then holds them all idle
    and prints `HOLD_JSON {held, failed, seconds, errors}`. On a line on standard input (or
    after 120 s) it sends a second GET on every held connection and prints `HOLD_JSON
    {served, seconds, errors}`: served counts 200s whose body is the first round's. The
    connections are then reset (SO_LINGER 0: no TIME_WAIT left behind)."""
    import asyncio

    host, port, target, count = argv[0], int(argv[1]), argv[2], int(argv[3])
    raise_nofile(count + 1024)
    request = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: junction-bench-hold\r\n\r\n".encode()

    def complete(buffer: bytes) -> tuple[int, bytes] | None:
        """(status, body) once `buffer` holds a whole response; None before."""
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = buffer[:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = buffer[end + 4:]
        if "content-length" in headers:
            length = int(headers["content-length"])
            return (status, body[:length]) if len(body) >= length else None
        if headers.get("transfer-encoding", "").lower() == "chunked":
            if not body.endswith(b"0\r\n\r\n"):
                return None
            out, rest = b"", body
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    return status, out
                out, rest = out + rest[:size], rest[size + 2:]
        raise ValueError("a response without a length")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        errors: dict[str, int] = {}
        gate = asyncio.Semaphore(HOLD_IN_FLIGHT)

        def failed(error: BaseException) -> None:
            kind = type(error).__name__
            errors[kind] = errors.get(kind, 0) + 1

        async def exchange(sock: socket.socket) -> tuple[int, bytes]:
            await loop.sock_sendall(sock, request)
            buffer = b""
            while True:
                chunk = await loop.sock_recv(sock, 65536)
                if not chunk:
                    raise ConnectionResetError("closed by the server")
                buffer += chunk
                answer = complete(buffer)
                if answer:
                    return answer

        async def open_one() -> tuple[socket.socket, bytes] | None:
            async with gate:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                try:
                    await asyncio.wait_for(loop.sock_connect(sock, (host, port)), HOLD_STEP_TIMEOUT)
                    status, body = await asyncio.wait_for(exchange(sock), HOLD_STEP_TIMEOUT)
                    if status != 200:
                        raise ValueError(f"status {status}")
                    return sock, body
                except (OSError, ValueError, asyncio.TimeoutError) as error:
                    failed(error)
                    sock.close()
                    return None

        started = time.monotonic()
        opened = [c for c in await asyncio.gather(*(open_one() for _ in range(count))) if c]
        print("HOLD_JSON " + json.dumps({"held": len(opened), "failed": count - len(opened),
                                         "seconds": time.monotonic() - started, "errors": errors}), flush=True)
        try:
            await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), 120)
        except asyncio.TimeoutError:
            pass
        errors = {}
        first_body = opened[0][1] if opened else b""

        async def again(sock: socket.socket) -> bool:
            async with gate:
                try:
                    status, body = await asyncio.wait_for(exchange(sock), HOLD_STEP_TIMEOUT)
                    if status != 200 or body != first_body:
                        raise ValueError(f"status {status}, {len(body)} bytes")
                    return True
                except (OSError, ValueError, asyncio.TimeoutError) as error:
                    failed(error)
                    return False

        started = time.monotonic()
        served = sum(await asyncio.gather(*(again(sock) for sock, _ in opened)))
        print("HOLD_JSON " + json.dumps({"served": served, "seconds": time.monotonic() - started,
                                         "errors": errors}), flush=True)
        for sock, _ in opened:
            sock.close()

    asyncio.run(main())
    return 0


# ---------------------------------------------------------------------------------------
# Report


def fmt_ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"


def report(data: dict) -> str:
    rows = data["scenarios"]
    machine = data["machine"]
    s = data["settings"]

    def best(server: str, payload: str) -> dict | None:
        for row in rows:
            if row["server"] == server and row["payload"] == payload and row["best"]:
                return row["best"]
        return None

    def pick(letter: str, server: str) -> dict | None:
        """The first measured row of a scenario letter on a server."""
        for row in rows:
            if row["letter"] == letter and row["server"] == server and row["best"]:
                return row["best"]
        return None

    def ms(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    labels = {"backend": "backend direct", "nginx": "nginx proxy_pass", "nginx-cache": "nginx proxy_cache",
              "junction-agents": "Junction + store (+ agent)"}
    labels.update(s.get("labels", {}))
    labels.update({n: l for n, l, _ in JUNCTION_VARIANTS})
    out = []
    out.append(f"Measured {machine['date']} on {machine['cores']} × {machine['cpu']}, "
               f"{machine['memory_gib']} GiB, Linux {machine['kernel']}; {machine['nginx']}, "
               f"{machine['wrk']}, {machine['rustc']}; Junction at `{machine['commit']}`.  ")
    la = machine["load_average_start"]
    out.append(f"Command: `{machine['command']}`. Load average at the start {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}, "
               f"at the end {' '.join(f'{x:.2f}' for x in data['load_average_end'])}; the suite took "
               f"{data['elapsed_s'] / 60:.1f} min.  ")
    out.append(f"wrk: 1 thread on CPU {s['cpu_load']}, {s['connections']} keep-alive connections, "
               f"{s['warmup_s']:g} s warm-up (discarded) then {s['duration_s']:g} s measured, "
               f"best of {s['rounds']} rounds. Backend and server under test on CPU {s['cpu_servers']}.  ")
    if "edge_duration_s" in s:
        out.append(f"Issue #17's rows (i to p, against a second nginx and Junction with TLS listeners): "
                   f"{s['edge_warmup_s']:g} s warm-up then {s['edge_duration_s']:g} s measured, best of "
                   f"{s['rounds']} rounds, (m) and (n) 1 round; the load tool on CPU {s['cpu_load']}, as wrk.")
    out.append("")
    out.append("| | scenario | payload | server | req/s | p50 ms | p99 ms | server CPU µs/req | RSS MB | "
               "req/s ×nginx | p99 ×nginx | req/s ×direct | noise |")
    out.append("|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for row in rows:
        if row.get("tool") == "hold":
            continue  # (m) has a table of its own
        label = labels.get(row["server"], row["server"])
        b = row["best"]
        if not b:
            out.append(f"| {row['letter']} | {row['title']} | {row['payload']} | {label} | not yet "
                       f"(needs {row['needs']}) | | | | | | | | |")
            continue
        peer = row.get("peer") or ("nginx-cache" if row["payload"] == "cache" else "nginx")
        nginx = best(peer, row["payload"])
        direct = best("backend", "small" if row["payload"] == "cache" else row["payload"])
        is_junction = row["server"].startswith("junction")
        x_nginx = b["rps"] / nginx["rps"] if (is_junction and nginx) else None
        both_p99 = is_junction and nginx and b["p99_ms"] and nginx["p99_ms"]
        p99_nginx = b["p99_ms"] / nginx["p99_ms"] if both_p99 else None
        x_direct = b["rps"] / direct["rps"] if (direct and row["server"] != "backend") else None
        cpu = b["server_cpu_us_per_req"]
        out.append(
            f"| {row['letter']} | {row['title']} | {row['payload']} | {label} | {b['rps']:,.0f} | "
            f"{ms(b['p50_ms'])} | {ms(b['p99_ms'])} | {cpu:.1f} | {b['rss_peak_kib'] / 1024:.1f} | "
            f"{fmt_ratio(x_nginx)} | {fmt_ratio(p99_nginx)} | {fmt_ratio(x_direct)} | {b['noise_cpu']:.2f} |"
        )
    out.append("")
    out.append("(k): req/s is new TLS connections per second, each a full handshake and one request; "
               "its latency is not measured (h2load's clients open their connections all at once).")
    out.append("")

    # (m) many idle connections
    held_rows = [row for row in rows if row.get("tool") == "hold"]
    if held_rows:
        out.append("| | scenario | server | connections held | open at the server, start / end of the hold | "
                   "opened in | RSS MB before | RSS MB held | KB per connection | served on the second round |")
        out.append("|---|---|---|--:|--:|--:|--:|--:|--:|--:|")
        for row in held_rows:
            label = labels.get(row["server"], row["server"])
            h = row["best"]
            if not h:
                out.append(f"| {row['letter']} | {row['title']} | {label} | not yet (needs {row['needs']}) "
                           f"| | | | | | |")
                continue
            per = h["rss_per_connection_kib"]
            out.append(f"| {row['letter']} | {row['title']} | {label} | {h['held']:,} | {h['established']:,} / "
                       f"{h['established_end']:,} | {h['open_s']:.1f} s | {h['rss_before_kib'] / 1024:.1f} | "
                       f"{h['rss_held_kib'] / 1024:.1f} | {'—' if per is None else f'{per:.1f}'} | "
                       f"{h['served']:,} of {h['held']:,} |")
        out.append("")
        out.append(f"(m): the connections are opened {HOLD_IN_FLIGHT} at a time, one GET on each, then held idle "
                   f"{s.get('hold_seconds', 0):g} s after the last one opened (Junction's `idle_timeout` is 60 s, "
                   "nginx's `keepalive_timeout` 75 s) while the server's RSS (VmRSS, nginx: master + worker) is "
                   "sampled every 0.25 s (the table gives the highest) and its established connections are counted "
                   "(`/proc/net/tcp`), then a second GET on every one: served counts 200s with the first answer's "
                   "bytes.")
        out.append("")
    out.append("`noise`: CPU used by other processes during the run, in cores (0 = the machine was ours). "
               "`server CPU µs/req`: CPU time of the server under test per request (nginx: master + worker; "
               "not the backend), the figure least disturbed by noise. RSS: the highest VmRSS sampled during the run.")
    out.append("")

    # (g) and (h)
    out.append("| | measure | value |")
    out.append("|---|---|--:|")
    v = data["validate"]
    if v:
        out.append(f"| g | `junction validate` of the whole corpus: wall time (median of 3) | {v['wall_s']:.2f} s |")
        out.append(f"| g | `junction validate` of the whole corpus: peak RSS | {v['max_rss_kib'] / 1024:.1f} MB |")
    else:
        out.append("| g | `junction validate` of the whole corpus | not measured (no corpus) |")
    for name, idle in data["idle"].items():
        if name == "backend":
            continue
        label = labels.get(name, name)
        peak = data["peak"].get(name, {}).get("rss_hwm_kib", 0)
        out.append(f"| h | {label}: RSS idle after start | {idle['rss_kib'] / 1024:.1f} MB |")
        out.append(f"| h | {label}: peak RSS over the whole run (VmHWM) | {peak / 1024:.1f} MB |")
    soap, plain = best("junction", "soap"), best("junction", "small")
    if soap and plain:
        added = soap["server_cpu_us_per_req"] - plain["server_cpu_us_per_req"]
        out.append(f"| s | SOAP through Junction: Junction's CPU per call (all of it added to calling the "
                   f"backend directly) | {soap['server_cpu_us_per_req']:.1f} µs |")
        out.append(f"| s | … of which beyond a validated JSON pass-through (c, small): the SOAP codec | "
                   f"{added:.1f} µs |")
    through = [row["best"] for row in rows if row["server"] == "junction-agents" and row["best"]]
    if len(through) == 2:
        direct_row, agent_row = through
        out.append(f"| o | through an outbound agent ÷ the same gateway direct: req/s | "
                   f"{agent_row['rps'] / direct_row['rps']:.2f}× |")
        out.append(f"| o | … p99 | {agent_row['p99_ms']:.3f} ms vs {direct_row['p99_ms']:.3f} ms |")
        out.append(f"| o | … CPU per request (gateway and agent) | {agent_row['server_cpu_us_per_req']:.1f} µs vs "
                   f"{direct_row['server_cpu_us_per_req']:.1f} µs |")
    for name in ("nginx-edge", "junction-edge"):
        k = pick("k", name)
        if k:
            out.append(f"| k | {labels.get(name, name)}: server CPU per new TLS connection (full handshake + 1 "
                       f"request); its core busy | {k['server_cpu_us_per_req']:.1f} µs; "
                       f"{k['server_cores']:.2f} cores |")
    for server_off, server_on, who in (("nginx-edge", "nginx-edge", "nginx"),
                                       ("junction-edge", "junction-log", "Junction")):
        off, on = best(server_off, "log off"), best(server_on, "log on")
        if off and on:
            cost = 100 * (1 - on["rps"] / off["rps"])
            out.append(f"| p | {who}: cost of the access log, 1 − req/s on ÷ off | {cost:.1f} % |")
            out.append(f"| p | … CPU per request, on vs off | {on['server_cpu_us_per_req']:.1f} µs vs "
                       f"{off['server_cpu_us_per_req']:.1f} µs |")
    for name, facts in s.get("tls", {}).items():
        out.append(f"| TLS | {labels.get(name, name)}: negotiated with OpenSSL's defaults (as wrk) | "
                   f"{facts['protocol']}, {facts['cipher']}, {facts['key_exchange']} |")
        out.append(f"| TLS | … with h2load | {facts['h2load']} |")
        resumes = "yes" if facts["resumes_offered_session"] else "no"
        out.append(f"| TLS | … resumes a session a client offers (s_client -sess_out, then -sess_in) | {resumes} |")
    if v:
        out.append("")
        out.append(f"Corpus: {v['summary']} (`{Path(v['path']).name}`; uses both cores).")
    out.append("")

    # Targets (issue #17 and earlier ones)
    out.append("| target | figure | met |")
    out.append("|---|---|---|")

    def target(name: str, figure: str, met: bool | None) -> None:
        out.append(f"| {name} | {figure} | {'—' if met is None else ('yes' if met else 'no')} |")

    for payload, size in (("small", "small"), ("large", "100 KB")):
        j, n = pick("c", "junction") if payload == "small" else best("junction", payload), best("nginx", payload)
        if j and n:
            ratio = j["rps"] / n["rps"]
            target(f"pass-through ≥ 1.0× nginx req/s ({size})", f"{ratio:.2f}×", ratio >= 1.0)
            target(f"pass-through p99 ≤ nginx's ({size})", f"{j['p99_ms']:.3f} ms vs {n['p99_ms']:.3f} ms",
                   j["p99_ms"] <= n["p99_ms"])
    for payload, size in (("small", "small"), ("large", "100 KB")):
        j, n = pick("c", "junction") if payload == "small" else best("junction", payload), best("nginx", payload)
        if j and n:
            target(f"server CPU µs/req, pass-through ≤ nginx's ({size})",
                   f"{j['server_cpu_us_per_req']:.1f} µs vs {n['server_cpu_us_per_req']:.1f} µs",
                   j["server_cpu_us_per_req"] <= n["server_cpu_us_per_req"])
    jc, nc = best("junction", "cache"), best("nginx-cache", "cache")
    if jc and nc:
        ratio = jc["rps"] / nc["rps"]
        target("cache hits ≥ 1.2× nginx proxy_cache req/s", f"{ratio:.2f}×", ratio >= 1.2)
        target("cache hits p99 ≤ nginx proxy_cache's", f"{jc['p99_ms']:.3f} ms vs {nc['p99_ms']:.3f} ms",
               jc["p99_ms"] <= nc["p99_ms"])
    else:
        target("cache hits ≥ 1.2× nginx proxy_cache req/s", "not yet (no cache)", None)
    jd, n = pick("d", "junction"), best("nginx", "small")
    if jd and n:
        ratio = jd["rps"] / n["rps"]
        target("policy chain (d) ≥ 0.7× nginx pass-through req/s", f"{ratio:.2f}×", ratio >= 0.7)
    for letter, what in (("i", "HTTPS keep-alive HTTP/1.1 (i)"), ("j", "HTTPS keep-alive HTTP/2 (j)"),
                         ("l", "HTTP/2, 100 streams per connection (l)")):
        j, n = pick(letter, "junction-edge"), pick(letter, "nginx-edge")
        if j and n:
            ratio = j["rps"] / n["rps"]
            target(f"{what} ≥ 1.0× nginx req/s", f"{ratio:.2f}× ({j['rps']:,.0f} vs {n['rps']:,.0f})", ratio >= 1.0)
        else:
            target(f"{what} ≥ 1.0× nginx req/s", "not measured" + (" (needs tls)" if letter in "ij" else ""), None)
    j, n = pick("k", "junction-edge"), pick("k", "nginx-edge")
    if j and n:
        # On 2 cores the client (one core of OpenSSL) may not keep either server's core busy; then
        # the figure that compares them is the handshakes one core would do: 1 / CPU per handshake.
        saturated = min(j["server_cores"], n["server_cores"]) >= 0.9
        if saturated:
            ratio = j["rps"] / n["rps"]
            figure = f"{ratio:.2f}× ({j['rps']:,.0f} vs {n['rps']:,.0f} /s)"
        else:
            ratio = n["server_cpu_us_per_req"] / j["server_cpu_us_per_req"]
            figure = (f"{ratio:.2f}× per core: {1e6 / j['server_cpu_us_per_req']:,.0f} vs "
                      f"{1e6 / n['server_cpu_us_per_req']:,.0f} /s at {j['server_cpu_us_per_req']:.0f} vs "
                      f"{n['server_cpu_us_per_req']:.0f} µs each (measured {j['rps']:,.0f} vs {n['rps']:,.0f} /s, "
                      f"client-bound: servers {j['server_cores']:.2f} and {n['server_cores']:.2f} cores busy)")
        target("new TLS connections/s ≥ 1.0× nginx (k)", figure, ratio >= 1.0)
    else:
        target("new TLS connections/s ≥ 1.0× nginx (k)", "not measured (needs tls)", None)
    j, n = pick("m", "junction-edge"), pick("m", "nginx-edge")
    if j:
        met = j["held"] == IDLE_CONNECTIONS and j["rss_held_kib"] < 150 * 1024 and j["served"] == j["held"]
        peer_text = (f" (nginx: {n['held']:,}, {n['rss_held_kib'] / 1024:.1f} MB, {n['served']:,} served)"
                     if n else "")
        target(f"{IDLE_CONNECTIONS:,} idle connections held with RSS < 150 MB, then all served (m)",
               f"{j['held']:,} held, {j['rss_held_kib'] / 1024:.1f} MB, {j['served']:,} of {j['held']:,} served"
               f"{peer_text}", met)
    j, n = pick("n", "junction-edge"), pick("n", "nginx-edge")
    if j and n:
        ratio = j["p99_ms"] / n["p99_ms"]
        target(f"{ACTIVE_CONNECTIONS:,} active connections: p99 ≤ 1.5× nginx's (n)",
               f"{j['p99_ms']:.1f} ms vs {n['p99_ms']:.1f} ms = {ratio:.2f}×", ratio <= 1.5)
    on, off = best("junction-log", "log on"), best("junction-edge", "log off")
    if on and off:
        cost = 1 - on["rps"] / off["rps"]
        non, noff = best("nginx-edge", "log on"), best("nginx-edge", "log off")
        peer_text = f" (nginx: {100 * (1 - non['rps'] / noff['rps']):.1f} %)" if non and noff else ""
        target("access log costs ≤ 10 % of req/s (p)", f"{100 * cost:.1f} %{peer_text}", cost <= 0.10)
    # (f) The view's three steps each call the slow endpoint through Junction's pipeline, so
    # the slowest step's latency is that of (c) slow through Junction, measured in the same run.
    jv, js = best("junction", "view"), best("junction", "slow")
    if jv and js:
        ratio = jv["p50_ms"] / js["p50_ms"]
        target("view latency ≤ 1.1 × the slowest step (p50)",
               f"{jv['p50_ms']:.1f} ms ÷ {js['p50_ms']:.1f} ms = {ratio:.2f}×", ratio <= 1.1)
    else:
        target("view latency ≤ 1.1 × the slowest step",
               f"{jv['p50_ms']:.1f} ms (no slow-step figure)" if jv else "not yet (no views)", None)
    if v:
        target("validate the corpus < 2 s", f"{v['wall_s']:.2f} s", v["wall_s"] < 2)
    idle_j = data["idle"].get("junction", {}).get("rss_kib")
    if idle_j:
        target("idle RSS < 30 MB", f"{idle_j / 1024:.1f} MB", idle_j < 30 * 1024)
    out.append("")
    return "\n".join(out)


def main() -> int:
    if sys.argv[1:2] == ["hold-client"]:
        return hold_client(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin-dir", required=True, help="where junction and junction-bench-backend are")
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    parser.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpus" / "power-platform-connectors"))
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of discarded warm-up per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--edge-duration", type=float, default=5.0,
                        help="seconds measured per run of issue #17's rows (i to p; at most --duration)")
    parser.add_argument("--hold-seconds", type=float, default=15.0,
                        help="(m): seconds the idle connections are held (after the last opened) while the "
                             "server's RSS is sampled")
    parser.add_argument("--budget", type=float, default=800.0, help="seconds the load runs may take in all")
    parser.add_argument("--quiet-budget", type=float, default=120.0,
                        help="seconds the suite may wait, in all, for other processes to calm down")
    parser.add_argument("--skip-validate", action="store_true")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s: a smoke test, not figures")
    parser.add_argument("--out", default=str(BENCH / "results"))
    parser.add_argument("--update", action="store_true", help="also put the figures into BENCHMARKS.md")
    parser.add_argument("--command", default="bench/run", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", metavar="DIR",
                        help="also measure the `junction` in DIR (another build) as 'junction-base'")
    args = parser.parse_args()
    if args.baseline:
        global SCENARIOS
        JUNCTION_VARIANTS.append((BASELINE, f"Junction baseline ({args.baseline})", []))
        SCENARIOS = with_baseline(SCENARIOS)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 2.0, 1.0
    # (m) holds 10,000 connections: the servers (started by this process) and the hold
    # client need more descriptors than the usual 1024.
    if raise_nofile(65536) < IDLE_CONNECTIONS + 1000:
        print(f"bench: the open-file limit is {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}: (m) cannot hold "
              f"{IDLE_CONNECTIONS:,} connections (raise the hard limit: ulimit -Hn)", flush=True)

    bench = Bench(args)

    def interrupted(signum, _frame):
        bench.stop_all()
        raise SystemExit(f"bench: stopped by signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    try:
        data = bench.run()
    finally:
        bench.stop_all()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = report(data)
    (out / "latest.md").write_text("# Benchmark results (latest run)\n\n" + text)
    (out / "latest.json").write_text(json.dumps(data, indent=2) + "\n")
    print()
    print(text)
    print(f"bench: wrote {out / 'latest.md'} and {out / 'latest.json'}")
    if args.update:
        benchmarks = ROOT / "BENCHMARKS.md"
        current = benchmarks.read_text()
        begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
        if begin not in current or end not in current:
            raise SystemExit("bench: BENCHMARKS.md has no <!-- bench:begin/end --> markers")
        head, rest = current.split(begin, 1)
        _, tail = rest.split(end, 1)
        benchmarks.write_text(f"{head}{begin}\n{text}\n{end}{tail}")
        print(f"bench: updated {benchmarks}")
    shutil.rmtree(bench.run_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
