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
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
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
LANDED = {"pass-through", "policies", "cache", "views", "soap", "agents"}

BACKEND_PORT = 18001
NGINX_PORT = 18080
NGINX_CACHE_PORT = 18081
# (o) A Junction with a store and an agents listener, and one outbound agent.
AGENTS_GATEWAY_PORT = 18100
AGENTS_LISTEN_PORT = 18102


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
        self.servers["nginx-cache"] = cache
        self.start_agents_gateway()

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

    def url(self, server: str, path: str, connector: str = "bench") -> str:
        port = self.servers[server].port
        # Views live at /views/{name}, not under a connector.
        prefix = "" if server == "backend" or path.startswith("/views/") else f"/connectors/{connector}"
        return f"http://127.0.0.1:{port}{prefix}{path}"

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
                return json.loads(line[len("WRK_JSON "):])
        raise SystemExit(f"bench: wrk gave no result for {url}:\n{stdout}\n{stderr}")

    def measure(self, scenario: Scenario) -> dict:
        server = self.servers[scenario.server]
        backend = self.servers["backend"]
        url = self.url(scenario.server, scenario.path, scenario.connector)
        waited, _ = self.wait_for_quiet()
        self.wrk(url, self.args.warmup, self.args.connections, post=scenario.post,
                 api_key=scenario.api_key)  # warm-up, discarded

        pids = server.pids()
        server_cpu0 = sum(cpu_seconds(p) for p in pids)
        backend_cpu0 = cpu_seconds(backend.process.pid) if server is not backend else 0.0
        machine0 = all_cpu()
        load = load_average()
        peak = [rss_kib(pids)]
        stop = threading.Event()

        def sample():
            while not stop.wait(0.25):
                peak[0] = max(peak[0], rss_kib(pids))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        wrk_pids: set[int] = set()
        result = self.wrk(url, self.args.duration, self.args.connections, wrk_pids, scenario.post,
                          scenario.api_key)
        stop.set()
        sampler.join()
        peak[0] = max(peak[0], rss_kib(pids))

        server_cpu = sum(cpu_seconds(p) for p in pids) - server_cpu0
        backend_cpu = (cpu_seconds(backend.process.pid) - backend_cpu0) if server is not backend else 0.0
        noise = foreign_cpu(machine0, all_cpu(), self.ours() | wrk_pids)
        seconds = result["duration_us"] / 1e6
        requests = result["requests"]
        errors = sum(result["errors"].values())
        return {
            "requests": requests,
            "rps": requests / seconds,
            "p50_ms": result["latency_us"]["p50"] / 1000,
            "p99_ms": result["latency_us"]["p99"] / 1000,
            "p999_ms": result["latency_us"]["p999"] / 1000,
            "errors": errors,
            "server_cpu_us_per_req": server_cpu / requests * 1e6 if requests else None,
            "backend_cpu_us_per_req": backend_cpu / requests * 1e6 if requests and backend_cpu else None,
            "rss_peak_kib": peak[0],
            "load_average": load,
            # Other people's work during the run, in cores (wrk and the servers excluded).
            "noise_cpu": noise / seconds,
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
        self.start_servers()
        self.check_answers()
        time.sleep(1.0)
        idle = {name: {"rss_kib": rss_kib(s.pids())} for name, s in self.servers.items()
                if name != "nginx-cache"}

        available = [s for s in SCENARIOS if s.needs in LANDED]
        rounds: dict[int, list[dict]] = {i: [] for i in range(len(SCENARIOS))}
        for round_no in range(self.args.rounds):
            # Rotate the order within each payload from round to round, so that no server is
            # always measured first or last.
            for payload in dict.fromkeys(s.payload for s in available):
                group = [i for i, s in enumerate(SCENARIOS) if s in available and s.payload == payload]
                shift = round_no % len(group)
                for i in group[shift:] + group[:shift]:
                    scenario = SCENARIOS[i]
                    if time.monotonic() > self.deadline:
                        print("bench: time budget spent; stopping early", flush=True)
                        break
                    result = self.measure(scenario)
                    rounds[i].append(result)
                    print(f"  round {round_no + 1} {scenario.letter} {scenario.payload:5} "
                          f"{scenario.server:12} {result['rps']:9.0f} req/s  p50 {result['p50_ms']:.3f} ms  "
                          f"p99 {result['p99_ms']:.3f} ms  cpu {result['server_cpu_us_per_req'] or 0:.1f} us/req  "
                          f"noise {result['noise_cpu']:.2f}", flush=True)
                    if result["errors"]:
                        raise SystemExit(f"bench: {result['errors']} errors in {scenario}")

        peak = {name: {"rss_hwm_kib": rss_kib(s.pids(), "VmHWM")} for name, s in self.servers.items()
                if name != "nginx-cache"}
        self.stop_all()

        validate = self.validate_corpus() if not self.args.skip_validate else None
        rows = []
        for i, scenario in enumerate(SCENARIOS):
            measured = rounds[i]
            # Noise only ever slows a run down: report the round with the most requests.
            best = max(measured, key=lambda r: r["rps"]) if measured else None
            rows.append({
                "letter": scenario.letter, "title": scenario.title, "payload": scenario.payload,
                "server": scenario.server, "needs": scenario.needs,
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

    labels = {"backend": "backend direct", "nginx": "nginx proxy_pass", "nginx-cache": "nginx proxy_cache",
              "junction-agents": "Junction + store (+ agent)"}
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
               f"best of {s['rounds']} rounds. Backend and server under test on CPU {s['cpu_servers']}.")
    out.append("")
    out.append("| | scenario | payload | server | req/s | p50 ms | p99 ms | server CPU µs/req | RSS MB | "
               "req/s ×nginx | p99 ×nginx | req/s ×direct | noise |")
    out.append("|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for row in rows:
        label = labels.get(row["server"], row["server"])
        b = row["best"]
        if not b:
            out.append(f"| {row['letter']} | {row['title']} | {row['payload']} | {label} | not yet "
                       f"(needs {row['needs']}) | | | | | | | | |")
            continue
        peer = "nginx-cache" if row["payload"] == "cache" else "nginx"
        nginx = best(peer, row["payload"])
        direct = best("backend", "small" if row["payload"] == "cache" else row["payload"])
        is_junction = row["server"].startswith("junction")
        x_nginx = b["rps"] / nginx["rps"] if (is_junction and nginx) else None
        p99_nginx = b["p99_ms"] / nginx["p99_ms"] if (is_junction and nginx) else None
        x_direct = b["rps"] / direct["rps"] if (direct and row["server"] != "backend") else None
        cpu = b["server_cpu_us_per_req"]
        out.append(
            f"| {row['letter']} | {row['title']} | {row['payload']} | {label} | {b['rps']:,.0f} | "
            f"{b['p50_ms']:.3f} | {b['p99_ms']:.3f} | {cpu:.1f} | {b['rss_peak_kib'] / 1024:.1f} | "
            f"{fmt_ratio(x_nginx)} | {fmt_ratio(p99_nginx)} | {fmt_ratio(x_direct)} | {b['noise_cpu']:.2f} |"
        )
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
    if v:
        out.append("")
        out.append(f"Corpus: {v['summary']} (`{Path(v['path']).name}`; uses both cores).")
    out.append("")

    # Targets
    out.append("| target | figure | met |")
    out.append("|---|---|---|")
    j, n = best("junction", "small"), best("nginx", "small")
    if j and n:
        ratio = j["rps"] / n["rps"]
        out.append(f"| pass-through ≥ 1.0× nginx req/s (small) | {ratio:.2f}× | {'yes' if ratio >= 1.0 else 'no'} |")
        out.append(f"| pass-through p99 ≤ nginx's (small) | {j['p99_ms']:.3f} ms vs {n['p99_ms']:.3f} ms | "
                   f"{'yes' if j['p99_ms'] <= n['p99_ms'] else 'no'} |")
    jl, nl = best("junction", "large"), best("nginx", "large")
    if jl and nl:
        ratio = jl["rps"] / nl["rps"]
        out.append(f"| pass-through ≥ 1.0× nginx req/s (100 KB) | {ratio:.2f}× | {'yes' if ratio >= 1.0 else 'no'} |")
        out.append(f"| pass-through p99 ≤ nginx's (100 KB) | {jl['p99_ms']:.3f} ms vs {nl['p99_ms']:.3f} ms | "
                   f"{'yes' if jl['p99_ms'] <= nl['p99_ms'] else 'no'} |")
    jc, nc = best("junction", "cache"), best("nginx-cache", "cache")
    if jc and nc:
        ratio = jc["rps"] / nc["rps"]
        out.append(f"| cache hits ≥ 1.0× nginx proxy_cache req/s | {ratio:.2f}× | {'yes' if ratio >= 1.0 else 'no'} |")
    else:
        out.append("| cache hits ≥ 1.0× nginx proxy_cache req/s | not yet (no cache) | — |")
    # (f) The view's three steps each call the slow endpoint through Junction's pipeline, so
    # the slowest step's latency is that of (c) slow through Junction, measured in the same run.
    jv, js = best("junction", "view"), best("junction", "slow")
    if jv and js:
        ratio = jv["p50_ms"] / js["p50_ms"]
        out.append(f"| view latency ≤ 1.1 × the slowest step (p50) | {jv['p50_ms']:.1f} ms ÷ {js['p50_ms']:.1f} ms "
                   f"= {ratio:.2f}× | {'yes' if ratio <= 1.1 else 'no'} |")
    else:
        out.append("| view latency ≤ 1.1 × the slowest step | " + (
            f"{jv['p50_ms']:.1f} ms (no slow-step figure) | — |" if jv else "not yet (no views) | — |"))
    if v:
        out.append(f"| validate the corpus < 2 s | {v['wall_s']:.2f} s | {'yes' if v['wall_s'] < 2 else 'no'} |")
    idle_j = data["idle"].get("junction", {}).get("rss_kib")
    if idle_j:
        out.append(f"| idle RSS < 30 MB | {idle_j / 1024:.1f} MB | {'yes' if idle_j < 30 * 1024 else 'no'} |")
    out.append("")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin-dir", required=True, help="where junction and junction-bench-backend are")
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    parser.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpus" / "power-platform-connectors"))
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of discarded warm-up per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budget", type=float, default=540.0, help="seconds the load runs may take in all")
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
