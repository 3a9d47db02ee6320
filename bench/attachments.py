"""Attachment streaming benchmark: PUT and GET one large attachment through a real server.

    .venv/bin/python bench/attachments.py                 # 1 GiB (issue 3's acceptance run)
    .venv/bin/python bench/attachments.py --size 20MiB    # a quick run
    .venv/bin/python bench/attachments.py --json          # one JSON object instead of the table

What it does:

1. starts ``python -m couchpoint serve`` on a free loopback port with a fresh temp data dir
   (SQLite, blob files beside it), ``max_attachment_size`` and ``max_request_size`` raised
   above ``--size`` (the defaults are 1 GiB and 256 MiB);
2. warms the server up (a 1 MiB PUT and GET), reads its ``VmRSS`` as the baseline and resets
   its ``VmHWM`` (``/proc/<pid>/clear_refs``);
3. PUTs ``--size`` bytes of incompressible data as ``application/octet-stream``, generated
   lazily in 1 MiB chunks and streamed by httpx from a generator (never held whole, on
   either side), hashing them with SHA-256 as they go;
4. GETs the attachment back, streamed, hashing on the fly, and checks the digest;
5. samples the server's ``VmRSS`` every 20 ms during each transfer and reads ``VmHWM``
   after it, and prints throughput (MiB/s each way) and the server's peak RSS growth over
   the baseline; the target is at most 64 MiB.

Exit status: 0 when the bytes came back identical (and, with ``--strict``, the RSS growth
met the target), 1 otherwise.  Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
CHUNK = 1024 * 1024
MIB = 1024 * 1024
TARGET_GROWTH = 64 * MIB
SAMPLE_INTERVAL = 0.02
STARTUP_TIMEOUT = 60.0
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "ki": 1024, "mi": 1024**2, "gi": 1024**3}


def parse_size(text: str) -> int:
    """``1GiB``, ``20MiB``, ``500MB``, ``1048576`` → bytes (``KB``/``MB``/``GB`` are powers
    of 1000, ``KiB``/``MiB``/``GiB`` of 1024)."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1GiB, 20MiB, 500MB)")
    number, unit = match.groups()
    unit = (unit or "").lower().rstrip("b")
    return int(float(number) * _UNITS[unit])


# -- the server -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def proc_status(pid: int) -> dict[str, int]:
    """``VmRSS``/``VmHWM`` (bytes) of ``pid`` from ``/proc/<pid>/status``."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0]) * 1024
    return out


def reset_peak(pid: int) -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ≥ 4.0, same user or root)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


@contextlib.contextmanager
def couchpoint_server(
    data_dir: Path, size: int, log_path: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``python -m couchpoint serve`` on a free port; yields ``(url, process)``."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUCHPOINT_")}
    limit = str(max(size + 16 * MIB, 2 * 1024 * MIB))
    env.update({"COUCHPOINT_MAX_ATTACHMENT_SIZE": limit, "COUCHPOINT_MAX_REQUEST_SIZE": limit})
    env["PYTHONUNBUFFERED"] = "1"
    command = [
        sys.executable,
        "-m",
        "couchpoint",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--log-level",
        "warning",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx.Client(timeout=2.0) as client:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"couchpoint serve exited with {process.returncode}: {log_path.read_text()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get(url + "/").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"couchpoint serve did not start within {STARTUP_TIMEOUT:g} s")
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.05)
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class RssSampler:
    """Samples ``VmRSS`` of ``pid`` in a thread until stopped; ``peak`` is the highest
    sample or the ``VmHWM`` read at the end, whichever is higher."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, proc_status(self.pid)["VmRSS"])
                self.samples += 1
            self._stop.wait(SAMPLE_INTERVAL)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(OSError):
            self.peak = max(self.peak, proc_status(self.pid)["VmHWM"])


# -- the transfers ----------------------------------------------------------------------


def generate(size: int, digest: hashlib._Hash) -> Iterator[bytes]:  # type: ignore[name-defined]
    """``size`` incompressible bytes in 1 MiB chunks, made as they are sent: one random
    block, each chunk stamped with its index (so no two chunks are equal)."""
    block = os.urandom(CHUNK)
    sent = 0
    index = 0
    while sent < size:
        n = min(CHUNK, size - sent)
        chunk = index.to_bytes(8, "little") + block[8:n] if n > 8 else block[:n]
        digest.update(chunk)
        sent += n
        index += 1
        yield chunk


@dataclass
class Direction:
    seconds: float
    mib_per_s: float
    server_peak_rss_growth_mib: float
    rss_samples: int


@dataclass
class Result:
    size_bytes: int
    content_type: str
    identical: bool
    put: Direction
    get: Direction
    server_baseline_rss_mib: float
    server_peak_rss_growth_mib: float
    target_growth_mib: float = TARGET_GROWTH / MIB
    within_target: bool = False
    environment: dict[str, str] = field(default_factory=dict)


def run(size: int, content_type: str = "application/octet-stream") -> Result:
    with tempfile.TemporaryDirectory(prefix="couchpoint-bench-att-") as tmp:
        root = Path(tmp)
        with couchpoint_server(root / "data", size, root / "server.log") as (url, process):
            pid = process.pid
            with httpx.Client(base_url=url, timeout=httpx.Timeout(600.0, connect=10.0)) as client:
                assert client.put("/bench").status_code == 201
                warm = os.urandom(MIB)
                assert client.put("/bench/warmup/w.bin", content=warm).status_code == 201
                assert client.get("/bench/warmup/w.bin").content == warm
                baseline = proc_status(pid)["VmRSS"]
                reset_peak(pid)

                sent = hashlib.sha256()
                headers = {"Content-Type": content_type, "Content-Length": str(size)}
                with RssSampler(pid) as put_rss:
                    started = time.perf_counter()
                    response = client.put("/bench/doc/big.bin", content=generate(size, sent), headers=headers)
                    put_s = time.perf_counter() - started
                if response.status_code != 201:
                    raise RuntimeError(f"PUT answered {response.status_code}: {response.text[:300]}")
                reset_peak(pid)

                got = hashlib.sha256()
                received = 0
                with RssSampler(pid) as get_rss:
                    started = time.perf_counter()
                    identity = {"Accept-Encoding": "identity"}  # decoded, even if stored gzip
                    with client.stream("GET", "/bench/doc/big.bin", headers=identity) as stream:
                        if stream.status_code != 200:
                            raise RuntimeError(f"GET answered {stream.status_code}")
                        for chunk in stream.iter_raw(CHUNK):
                            got.update(chunk)
                            received += len(chunk)
                    get_s = time.perf_counter() - started

    def direction(seconds: float, peak: int, samples: int) -> Direction:
        growth = round(max(0, peak - baseline) / MIB, 1)
        return Direction(round(seconds, 3), round(size / MIB / seconds, 1), growth, samples)

    put = direction(put_s, put_rss.peak, put_rss.samples)
    get = direction(get_s, get_rss.peak, get_rss.samples)
    growth = max(put.server_peak_rss_growth_mib, get.server_peak_rss_growth_mib)
    return Result(
        size_bytes=size,
        content_type=content_type,
        identical=received == size and got.hexdigest() == sent.hexdigest(),
        put=put,
        get=get,
        server_baseline_rss_mib=round(baseline / MIB, 1),
        server_peak_rss_growth_mib=growth,
        within_target=growth * MIB <= TARGET_GROWTH,
        environment=environment(),
    )


def environment() -> dict[str, str]:
    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    tmp = tempfile.gettempdir()
    memory = ""
    with contextlib.suppress(OSError):
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            memory = f"{int(meminfo.readline().split()[1]) / 1024**2:.1f} GiB"
    return {
        "cpus": str(os.cpu_count()),
        "memory": memory,
        "python": platform.python_version(),
        "couchpoint": version("couchpoint"),
        "uvicorn": version("uvicorn"),
        "starlette": version("starlette"),
        "httpx": version("httpx"),
        "platform": platform.platform(),
        "disk_free": f"{shutil.disk_usage(tmp).free / 1024**3:.0f} GiB in {tmp}",
    }


def table(result: Result) -> str:
    size = result.size_bytes
    label = f"{size / 1024**3:g} GiB" if size >= 1024**3 else f"{size / MIB:g} MiB"
    rows = [
        f"couchpoint attachment streaming: {label} of {result.content_type}, "
        "real `couchpoint serve` (SQLite)",
        "",
        "| direction | seconds | MiB/s | server peak RSS growth (MiB) |",
        "|---|---:|---:|---:|",
        f"| PUT (streamed upload) | {result.put.seconds:.2f} | {result.put.mib_per_s:.1f} | "
        f"{result.put.server_peak_rss_growth_mib:.1f} |",
        f"| GET (streamed download) | {result.get.seconds:.2f} | {result.get.mib_per_s:.1f} | "
        f"{result.get.server_peak_rss_growth_mib:.1f} |",
        "",
        f"bytes identical: {'yes' if result.identical else 'NO'}; server RSS baseline "
        f"{result.server_baseline_rss_mib:.1f} MiB, peak growth {result.server_peak_rss_growth_mib:.1f} MiB "
        f"(target ≤ {result.target_growth_mib:.0f} MiB: {'met' if result.within_target else 'NOT met'})",
        "environment: " + ", ".join(f"{k} {v}" for k, v in result.environment.items()),
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=1024**3, help="attachment size (default 1GiB)")
    parser.add_argument(
        "--content-type",
        default="application/octet-stream",
        help="attachment type (a compressible one, e.g. text/plain, makes the server gzip it)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--strict", action="store_true", help="exit 1 if the RSS growth misses the target")
    args = parser.parse_args(argv)
    if not Path("/proc/self/status").exists():
        parser.error("needs Linux /proc to read the server's RSS")
    result = run(args.size, args.content_type)
    print(json.dumps(asdict(result)) if args.json else table(result))
    if not result.identical:
        return 1
    return 1 if args.strict and not result.within_target else 0


if __name__ == "__main__":
    sys.exit(main())
