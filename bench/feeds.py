#!/usr/bin/env python3
"""Live ``_changes`` feeds at scale: fan-out latency, missed changes and memory per idle
feed, for couchpoint and pouchdb-server 4.2.0 in one run (issue 4).

    .venv/bin/python bench/feeds.py                      # 1,000 and 5,000 listeners, both servers
    .venv/bin/python bench/feeds.py --listeners 50 --writes 5 --servers couchpoint   # smoke

For each server, listener count N and feed kind (``continuous``, ``longpoll``), on a fresh
server process:

1. create a db, note its ``update_seq`` S and the server's RSS (``VmRSS``);
2. open N listeners on N connections: ``continuous`` (``since=S&heartbeat=30000``) or
   ``longpoll`` (PouchDB's request: ``since=S&heartbeat=10000&style=all_docs&limit=100``,
   re-sent with ``since=last_seq`` after each answer, as PouchDB's live pull does);
3. RSS again once they are all open and idle: ``(RSS_N - RSS_0) / N`` is the memory per
   idle feed;
4. 20 writes (``PUT /db/wNNN``), one at a time on their own connection; after each, wait
   until every listener saw it (10 s at most), then until the longpoll listeners asked
   again, then ``--interval``; the fan-out latency of a (listener, write) pair is the time
   from the write's acknowledgement (its response fully read) to the listener reading the
   row (negative values, a row that arrives before the acknowledgement, count as 0);
5. missed = writes a listener never saw; duplicates are counted too.

The listeners are plain asyncio protocols in this process (no HTTP library: their cost
must not dominate); the server is another process.  The fd limit is raised with
``resource.setrlimit`` for both.  pouchdb-server runs ``--in-memory`` from
``bench/node_modules`` (``npm ci --prefix bench``).  Writes a JSON report with
``--json``.  Exit status 1 when a run failed or missed a change.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
POUCHDB_SERVER_BIN = BENCH_DIR / "node_modules" / "pouchdb-server" / "bin" / "pouchdb-server"
DB = "feeds"
HOST = "127.0.0.1"
ARRIVAL_DEADLINE = 10.0
OPEN_BATCH = 100

_ID = re.compile(rb'"id":"w(\d{3})"')
_LAST_SEQ = re.compile(rb'"last_seq":\s*("?)([^,}"]*)')


# -- servers ------------------------------------------------------------------------------


@dataclass
class ServerProcess:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    version: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    return 0


async def http(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request on its own connection; ``(status, body)``."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n"
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        writer.write(head.encode() + body)
        data = await reader.read()
    finally:
        writer.close()
    status = int(data.split(b" ", 2)[1])
    payload = data.split(b"\r\n\r\n", 1)[1]
    if b"transfer-encoding: chunked" in data.split(b"\r\n\r\n", 1)[0].lower():
        payload = _dechunk(payload)
    return status, payload


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)


async def wait_up(server: ServerProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited: {server.log_path.read_text()[-2000:]}")
        with contextlib.suppress(OSError, IndexError, ValueError):
            status, body = await http(server.port, "GET", "/")
            if status == 200:
                welcome = json.loads(body)
                server.version = str(welcome.get("version", ""))
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} did not answer within {timeout} s")
        await asyncio.sleep(0.1)


def start_server(name: str, work: Path) -> ServerProcess:
    port = free_port()
    data = work / name
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    log_path = work / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUCHPOINT_")}
    if name == "couchpoint":
        command = [sys.executable, "-m", "couchpoint", "serve", "--port", str(port), "--data-dir", str(data)]
        command += ["--log-level", "warning"]
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    elif name == "pouchdb-server":
        node = shutil.which("node")
        if node is None or not POUCHDB_SERVER_BIN.is_file():
            raise RuntimeError("pouchdb-server needs node and `npm ci --prefix bench`")
        command = [node, str(POUCHDB_SERVER_BIN), "--in-memory", "--host", HOST, "--port", str(port)]
        command += ["--no-stdout-logs", "--config", str(data / "config.json"), "--dir", str(data)]
    else:
        raise ValueError(name)
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=data, env=env)
    return ServerProcess(name, port, process, log_path)


def stop_server(server: ServerProcess) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


# -- listeners ----------------------------------------------------------------------------


class Listener(asyncio.Protocol):
    """One live feed on one connection; notes when each write's row arrives."""

    __slots__ = ("arrivals", "body", "duplicates", "framing", "headers", "kind", "open", "path", "port",
                 "requests", "since", "transport", "_pending")  # fmt: skip

    def __init__(self, kind: str, port: int, since: str) -> None:
        self.kind = kind
        self.port = port
        self.since = since
        self.arrivals: dict[int, float] = {}
        self.duplicates = 0
        self.headers = False
        self.open = False
        self.body = bytearray()
        self.framing = b""
        self.requests = 0
        self.transport: asyncio.Transport | None = None
        self._pending = b""

    def request(self) -> bytes:
        if self.kind == "continuous":
            query = f"feed=continuous&since={self.since}&heartbeat=30000"
        else:
            query = f"feed=longpoll&since={self.since}&heartbeat=10000&style=all_docs&limit=100"
        return f"GET /{DB}/_changes?{query} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n\r\n".encode()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.open = True
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.requests += 1
        self.headers = False
        self.body = bytearray()
        self._pending = b""
        self.transport.write(self.request())

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self.headers:
            data = self._pending + data
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self._pending = data
                return
            head = data[:end].lower()
            self.framing = b"chunked" if b"transfer-encoding: chunked" in head else b"length"
            if self.framing == b"length":
                match = re.search(rb"content-length:\s*(\d+)", head)
                self.framing = match.group(1) if match else b"0"
            self.headers = True
            data = data[end + 4 :]
        # rows: the id of each write appears once per row ("id":"wNNN")
        scan = self._pending[-16:] + data if self._pending else data
        for match in _ID.finditer(scan):
            index = int(match.group(1))
            if index in self.arrivals:
                self.duplicates += 1
            else:
                self.arrivals[index] = now
        if self.kind == "longpoll":
            self.body += data
            if self._complete():
                found = _LAST_SEQ.findall(self.body)
                if found:
                    self.since = found[-1][1].decode()
                self._send()
                return
        self._pending = data[-16:]

    def _complete(self) -> bool:
        if self.framing == b"chunked":
            return self.body.endswith(b"0\r\n\r\n")
        return len(self.body) >= int(self.framing)


# -- one run ------------------------------------------------------------------------------


@dataclass
class Result:
    server: str
    kind: str
    listeners: int
    writes: int
    opened: int = 0
    open_s: float = 0.0
    rss_before_kb: int = 0
    rss_idle_kb: int = 0
    rss_per_feed_kb: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    write_ms_p50: float | None = None
    missed: int = 0
    duplicates: int = 0
    dropped_connections: int = 0
    busy_before: float = 0.0
    error: str | None = None
    per_write_p99_ms: list[float] = field(default_factory=list)


def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def busy_share(seconds: float = 0.5) -> float:
    """Share of all cores busy over ``seconds`` (0..1), from ``/proc/stat``."""
    busy0, total0 = _cpu_times()
    time.sleep(seconds)
    busy1, total1 = _cpu_times()
    return (busy1 - busy0) / max(1, total1 - total0)


def wait_quiet(limit: float, timeout: float) -> float:
    """Wait (up to ``timeout`` s) until less than ``limit`` of the cores are busy: other
    processes on a small machine skew every latency.  Returns the last share seen."""
    deadline = time.monotonic() + timeout
    share = busy_share()
    while share >= limit and time.monotonic() < deadline:
        share = busy_share()
    return share


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


async def run_one(
    name: str, kind: str, count: int, writes: int, interval: float, work: Path, quiet: float, budget: float
) -> Result:
    result = Result(name, kind, count, writes)
    if quiet > 0:
        result.busy_before = round(await asyncio.to_thread(wait_quiet, quiet, 60.0), 2)
    server = start_server(name, work)
    listeners: list[Listener] = []
    try:
        await wait_up(server)
        status, _ = await http(server.port, "PUT", f"/{DB}")
        assert status in (201, 202), f"PUT /{DB}: {status}"
        status, _ = await http(server.port, "PUT", f"/{DB}/seed", b'{"seed": true}')
        assert status in (201, 202), f"PUT seed: {status}"
        status, body = await http(server.port, "GET", f"/{DB}")
        since = str(json.loads(body)["update_seq"])
        for _ in range(20):  # warm-up: a few requests of each kind
            await http(server.port, "GET", f"/{DB}/_changes?since=0")
        await asyncio.sleep(1.0)
        result.rss_before_kb = rss_kb(server.pid)

        loop = asyncio.get_running_loop()
        started = time.monotonic()
        for first in range(0, count, OPEN_BATCH):
            if time.monotonic() - started > budget:
                raise TimeoutError(f"opened only {len(listeners)} of {count} listeners in {budget:g} s")
            batch = [Listener(kind, server.port, since) for _ in range(first, min(count, first + OPEN_BATCH))]
            await asyncio.gather(*(loop.create_connection(lambda x=x: x, HOST, server.port) for x in batch))
            listeners += batch
            # continuous feeds flush their headers at once; pace the opening on them
            deadline = time.monotonic() + 10
            while kind == "continuous" and not all(x.headers for x in batch) and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
        result.open_s = round(time.monotonic() - started, 2)
        # The listeners' own objects are long-lived: keep this process's cyclic GC from
        # scanning them again and again while it measures (it would delay the reads).
        gc.collect()
        gc.freeze()
        await asyncio.sleep(max(1.0, count / 2500))  # let the server settle
        result.opened = sum(1 for x in listeners if x.open)
        result.rss_idle_kb = rss_kb(server.pid)
        result.rss_per_feed_kb = round((result.rss_idle_kb - result.rss_before_kb) / count, 1)

        latencies: list[float] = []
        write_times: list[float] = []
        acks: list[float] = []
        budget_end = time.monotonic() + budget
        for k in range(writes):
            if time.monotonic() > budget_end:
                result.error = f"time budget ({budget:g} s) spent after {k} of {writes} writes"
                result.writes = writes = k
                break
            requests_before = [x.requests for x in listeners]
            sent = time.monotonic()
            try:
                status, _ = await asyncio.wait_for(
                    http(server.port, "PUT", f"/{DB}/w{k:03d}", b'{"n": %d}' % k), ARRIVAL_DEADLINE * 6
                )
            except TimeoutError:
                raise TimeoutError(f"PUT w{k:03d}: no answer within {ARRIVAL_DEADLINE * 6:g} s") from None
            ack = time.monotonic()
            assert status in (201, 202), f"PUT w{k:03d}: {status}"
            acks.append(ack)
            write_times.append((ack - sent) * 1000)
            deadline = ack + ARRIVAL_DEADLINE
            while not all(k in x.arrivals for x in listeners) and time.monotonic() < deadline:
                await asyncio.sleep(0.002)
            got = [x.arrivals[k] - ack for x in listeners if k in x.arrivals]
            latencies += got
            if got:
                result.per_write_p99_ms.append(round(max(0.0, percentile(got, 99)) * 1000, 1))
            if kind == "longpoll":  # every listener asked again before the next write
                deadline = time.monotonic() + ARRIVAL_DEADLINE
                while time.monotonic() < deadline and any(
                    x.requests == before for x, before in zip(listeners, requests_before, strict=True)
                ):
                    await asyncio.sleep(0.002)
            await asyncio.sleep(interval)
        await asyncio.sleep(0.5)
        result.missed = sum(1 for x in listeners for k in range(writes) if k not in x.arrivals)
        result.duplicates = sum(x.duplicates for x in listeners)
        result.dropped_connections = sum(1 for x in listeners if not x.open)
        if latencies:
            clamped = [max(0.0, v) * 1000 for v in latencies]
            result.p50_ms = round(percentile(clamped, 50), 1)
            result.p99_ms = round(percentile(clamped, 99), 1)
            result.max_ms = round(max(clamped), 1)
        result.write_ms_p50 = round(percentile(write_times, 50), 1)
    except Exception as exc:  # a failed run is reported, the others go on
        result.error = f"{type(exc).__name__}: {exc}"
        result.opened = sum(1 for x in listeners if x.open)
        if listeners and not result.rss_idle_kb:
            result.rss_idle_kb = rss_kb(server.pid)
            result.rss_per_feed_kb = round((result.rss_idle_kb - result.rss_before_kb) / len(listeners), 1)
    finally:
        for x in listeners:
            if x.transport is not None:
                x.transport.abort()
        stop_server(server)
    return result


# -- report -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    node = shutil.which("node")
    node_version = (
        subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip() if node else ""
    )
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    import sqlite3

    import uvicorn

    from couchpoint import __version__

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "uvicorn": uvicorn.__version__,
        "node": node_version,
        "couchpoint": f"{__version__} ({sha.stdout.strip() or 'no git'})",
    }


def table(results: list[Result]) -> str:
    columns = ["server", "feed", "listeners", "open", "p50 ms", "p99 ms", "max ms", "missed", "dup"]
    columns += ["RSS/idle feed KB", "busy before", "error"]
    rows = ["| " + " | ".join(columns) + " |", "| --- | --- |" + " ---: |" * 9 + " --- |"]
    for r in results:
        cells = [r.server, r.kind, f"{r.listeners:,}", f"{r.opened:,}", r.p50_ms, r.p99_ms, r.max_ms]
        cells += [r.missed, r.duplicates, r.rss_per_feed_kb, f"{r.busy_before:.0%}", r.error or ""]
        rows.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(rows)


def raise_fd_limit(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = need if hard == resource.RLIM_INFINITY else min(hard, need)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def main_async(args: argparse.Namespace) -> list[Result]:
    results = []
    with tempfile.TemporaryDirectory(prefix="couchpoint-feeds-bench-") as tmp:
        for count in args.listeners:
            for name in args.servers:
                for kind in args.kinds:
                    print(
                        f"-- {name}: {count:,} {kind} listeners, {args.writes} writes",
                        file=sys.stderr,
                        flush=True,
                    )
                    result = await run_one(
                        name, kind, count, args.writes, args.interval, Path(tmp), args.wait_quiet, args.budget
                    )
                    print(table([result]).splitlines()[-1], file=sys.stderr, flush=True)
                    results.append(result)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listeners", default="1000,5000", help="comma-separated listener counts")
    parser.add_argument("--writes", type=int, default=20)
    parser.add_argument("--kinds", default="continuous,longpoll")
    parser.add_argument("--servers", default="couchpoint,pouchdb-server")
    parser.add_argument("--interval", type=float, default=0.3, help="pause between writes, s")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--budget",
        type=float,
        default=300.0,
        help="seconds for opening the listeners, and again for the writes, per run (a slow server)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.25,
        help="before each run, wait up to 60 s until less than this share of the cores is busy (0: don't)",
    )
    args = parser.parse_args()
    args.listeners = [int(n) for n in args.listeners.split(",")]
    args.kinds = args.kinds.split(",")
    args.servers = args.servers.split(",")
    limit = raise_fd_limit(max(args.listeners) * 2 + 1000)
    if limit < max(args.listeners) + 100:
        print(f"fd limit {limit} is too low for {max(args.listeners)} listeners", file=sys.stderr)
        return 1
    info = machine()
    command = "python bench/feeds.py " + " ".join(sys.argv[1:])
    results = asyncio.run(main_async(args))
    print(f"\n{command}\n{json.dumps(info)}\n")
    print(table(results))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"command": command, "machine": info, "results": [asdict(r) for r in results]}, indent=1
            )
        )
    failed = [r for r in results if r.error or r.missed]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
