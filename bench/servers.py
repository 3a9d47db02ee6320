"""The servers under test, a small keep-alive HTTP client, and peak-RSS sampling.

* :func:`start_couchpoint`: ``python -m couchpoint serve`` with default settings on a
  fresh data dir (SQLite, ``synchronous=FULL``), on a free loopback port.
* :func:`start_pouchdb_server`: ``pouchdb-server --in-memory`` 4.2.0 from
  ``bench/node_modules`` (``npm ci --prefix bench``).
* :func:`external_couchdb`: an Apache CouchDB the caller runs (``COUCHDB_URL``, with
  credentials in the URL; ``COUCHDB_PID`` for its RSS, optional).

The client is :mod:`http.client` (no third-party code in the measuring process).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import orjson

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
NODE_MODULES = BENCH_DIR / "node_modules"
POUCHDB_SERVER_BIN = NODE_MODULES / "pouchdb-server" / "bin" / "pouchdb-server"
STARTUP_TIMEOUT = 60.0


class BenchError(RuntimeError):
    """A server or workload failed (the message says which and why)."""


@dataclass
class Server:
    """A running server: ``name`` (table column), base ``url`` without credentials,
    ``auth`` (an ``Authorization`` header value or ``None``), ``pid`` for RSS (or
    ``None``), and the process we started (``None`` for an external one)."""

    name: str
    url: str
    auth: str | None = None
    pid: int | None = None
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or 80

    def client(self, timeout: float = 600.0) -> Client:
        host, port = self.host_port
        return Client(host, port, self.auth, timeout)

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None:
            return ""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise BenchError(f"{self.name} exited with code {self.process.returncode}\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Client:
    """One keep-alive HTTP/1.1 connection.  ``request`` returns ``(status, body bytes)``."""

    def __init__(self, host: str, port: int, auth: str | None = None, timeout: float = 600.0) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)
        self.headers = {"Accept": "application/json"}
        if auth:
            self.headers["Authorization"] = auth

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.CannotSendRequest):
                self.conn.close()  # a server may close an idle keep-alive connection
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: object = None, expect: tuple[int, ...] = (200,)) -> object:
        status, data = self.request(method, path, None if body is None else orjson.dumps(body))
        if status not in expect:
            raise BenchError(f"{method} {path} answered {status}: {data[:300]!r}")
        return orjson.loads(data) if data else None

    def close(self) -> None:
        self.conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(server: Server, timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        server.check_alive()
        try:
            client = server.client(timeout=2)
            status, _ = client.request("GET", "/")
            client.close()
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"{server.name} did not answer GET / within {timeout:g} s\n{server.log_tail()}")
        time.sleep(0.1)


def _spawn(name: str, command: list[str], work_dir: Path, port: int, env: dict[str, str]) -> Server:
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, cwd=work_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    server = Server(name, f"http://127.0.0.1:{port}", pid=process.pid, process=process, log_path=log_path)
    try:
        _wait_until_up(server)
    except BaseException:
        server.stop()
        raise
    return server


def start_couchpoint(work_dir: Path) -> Server:
    """``couchpoint serve`` with default settings (SQLite in a fresh data dir)."""
    data_dir = work_dir / "couchpoint-data"
    shutil.rmtree(data_dir, ignore_errors=True)
    port = free_port()
    command = [sys.executable, "-m", "couchpoint", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--data-dir", str(data_dir)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUCHPOINT_")}
    return _spawn("couchpoint", command, work_dir, port, env)


def pouchdb_server_installed() -> bool:
    return POUCHDB_SERVER_BIN.is_file() and shutil.which("node") is not None


def start_pouchdb_server(work_dir: Path) -> Server:
    """``pouchdb-server --in-memory`` (4.2.0, from bench/node_modules)."""
    if not pouchdb_server_installed():
        raise BenchError("pouchdb-server is not installed: run `npm ci --prefix bench` (needs node 18+)")
    pdir = work_dir / "pouchdb-server"
    shutil.rmtree(pdir, ignore_errors=True)
    pdir.mkdir(parents=True)
    port = free_port()
    node = shutil.which("node")
    assert node is not None
    command = [node, str(POUCHDB_SERVER_BIN), "--in-memory", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--no-stdout-logs", "--config", str(pdir / "config.json"), "--dir", str(pdir)]
    return _spawn("pouchdb-server", command, pdir, port, dict(os.environ))


def external_couchdb(url: str) -> Server:
    """The CouchDB at ``url`` (``http://user:pass@host:port``); not started or stopped here."""
    parts = urlsplit(url)
    auth = None
    if parts.username is not None:
        token = f"{parts.username}:{parts.password or ''}".encode()
        auth = "Basic " + base64.b64encode(token).decode()
    netloc = parts.hostname or "127.0.0.1"
    if parts.port:
        netloc += f":{parts.port}"
    pid = os.environ.get("COUCHDB_PID")
    server = Server("couchdb", f"{parts.scheme}://{netloc}", auth=auth, pid=int(pid) if pid else None)
    server.notes.append("external (COUCHDB_URL)" + ("" if pid else "; RSS not sampled (set COUCHDB_PID)"))
    _wait_until_up(server, timeout=10)
    return server


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat", "rb") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def machine_busy(interval: float = 0.5) -> float:
    """Fraction of all cores busy over ``interval`` seconds (every process counted)."""
    busy0, total0 = _cpu_times()
    time.sleep(interval)
    busy1, total1 = _cpu_times()
    return (busy1 - busy0) / max(1, total1 - total0)


def wait_quiet(limit: float = 0.15, max_wait: float = 60.0) -> float:
    """Wait (at most ``max_wait`` s) until the machine is idle: less than ``limit`` of
    its cores busy over half a second.  Returns the last busy fraction seen, so a caller
    can note that a measurement started on a loaded machine."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = machine_busy()
        if busy < limit or time.monotonic() > deadline:
            return busy


def rss_kb(pid: int) -> int:
    """Current resident set size of ``pid`` in KiB (``VmRSS`` of /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """Samples a process's RSS every ``interval`` s in a thread; :attr:`peak_mb` is the
    highest value seen (``None`` when there is no pid)."""

    def __init__(self, pid: int | None, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        assert self.pid is not None
        with contextlib.suppress(OSError, ValueError):
            self.peak_kb = max(self.peak_kb, rss_kb(self.pid))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> RssSampler:
        if self.pid is not None:
            self._sample()
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pid is not None:
            self._stop.set()
            self._thread.join()
            self._sample()

    @property
    def peak_mb(self) -> float | None:
        return None if self.pid is None else self.peak_kb / 1024


@contextlib.contextmanager
def sampled(server: Server) -> Iterator[RssSampler]:
    with RssSampler(server.pid) as sampler:
        yield sampler
