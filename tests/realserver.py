"""A real ``couchpoint serve`` process for end-to-end tests (PouchDB in Node, ...).

:func:`real_server` starts ``python -m couchpoint serve`` on a free loopback port with its
own data directory, polls ``GET /`` until the server answers 200 with CouchDB's welcome
object (against a deadline; no fixed sleeps), yields a :class:`RealServer` and stops the
process at the end (SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT` seconds). The
server's stdout and stderr go to a log file; its tail is part of every failure message
(failed start, crash during the test) and of the failure reports of tests that call
:meth:`RealServer.log_tail`.

The child gets the parent's environment minus every ``COUCHPOINT_*`` variable, so a
developer's shell settings (admins, CORS, ...) cannot change what the tests see. Knobs,
read in the test process only:

* ``COUCHPOINT_TEST_SERVER_LOG_LEVEL`` -- ``serve --log-level`` (default ``info``, which
  logs every request; ``debug`` for more);
* ``COUCHPOINT_TEST_SERVER_STARTUP`` -- seconds to wait for ``GET /`` (default 30).

Fixtures (load this module as a plugin in a test module: ``pytest_plugins = ("tests.realserver",)``):

* ``couchpoint_real_server`` -- function-scoped :class:`RealServer` on a fresh data dir;
* ``couchpoint_server`` -- its base URL, e.g. ``http://127.0.0.1:41234``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

HOST = "127.0.0.1"
STARTUP_TIMEOUT = float(os.environ.get("COUCHPOINT_TEST_SERVER_STARTUP", "30"))
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.05
LOG_LEVEL = os.environ.get("COUCHPOINT_TEST_SERVER_LOG_LEVEL", "info")
LOG_TAIL_LINES = 80
PORT_ATTEMPTS = 3

__all__ = [
    "RealServer",
    "ServerError",
    "couchpoint_real_server",
    "couchpoint_server",
    "free_port",
    "real_server",
    "serve_command",
]


class ServerError(RuntimeError):
    """The server did not start, or died while it was in use."""


@dataclass
class RealServer:
    url: str
    port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    welcome: dict[str, Any]
    stopped_on_purpose: bool = False

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _tail(self.log_path, lines)

    def kill(self) -> None:
        """SIGKILL the server (a crash) and wait for it; not an error at the end of the block."""
        self.stopped_on_purpose = True
        self.process.kill()
        self.process.wait()

    def terminate(self, timeout: float) -> bool:
        """SIGTERM the server; True if it exited within ``timeout`` s (else it is SIGKILLed)."""
        self.stopped_on_purpose = True
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return False
        return True


def free_port(host: str = HOST) -> int:
    """A port that was free a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def serve_command(port: int, data_dir: Path, *, host: str = HOST, log_level: str = LOG_LEVEL) -> list[str]:
    """``python -m couchpoint serve ...``, or the ``couchpoint`` script if there is no ``__main__``."""
    args = [
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--log-level",
        log_level,
    ]
    if importlib.util.find_spec("couchpoint.__main__") is not None:
        return [sys.executable, "-m", "couchpoint", *args]
    script = Path(sys.executable).with_name("couchpoint")
    found = str(script) if script.exists() else shutil.which("couchpoint")
    if found is None:
        raise ServerError("neither `python -m couchpoint` nor a `couchpoint` script is available")
    return [found, *args]


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(no server log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUCHPOINT_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(process: subprocess.Popen[bytes], url: str, timeout: float) -> dict[str, Any]:
    """Poll ``GET /`` until 200 + welcome JSON; :class:`ServerError` if it exits or times out."""
    deadline = time.monotonic() + timeout
    last: str = "no answer yet"
    with httpx.Client(timeout=2.0) as client:
        while True:
            code = process.poll()
            if code is not None:
                raise ServerError(f"couchpoint serve exited with code {code} during start-up ({last})")
            try:
                response = client.get(url + "/")
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    welcome = response.json()
                    if not (isinstance(welcome, dict) and welcome.get("couchdb") == "Welcome"):
                        raise ServerError(f"GET / answered 200 but not CouchDB's welcome object: {welcome!r}")
                    return welcome
                last = f"GET / answered {response.status_code}: {response.text[:200]}"
            if time.monotonic() > deadline:
                raise ServerError(f"couchpoint serve did not answer GET / within {timeout:g} s ({last})")
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=POLL_INTERVAL)  # the poll interval; returns early if it dies


@contextlib.contextmanager
def real_server(
    data_dir: Path,
    *,
    log_path: Path | None = None,
    startup_timeout: float = STARTUP_TIMEOUT,
    log_level: str = LOG_LEVEL,
    extra_args: Sequence[str] = (),
    port: int | None = None,
) -> Iterator[RealServer]:
    """Run ``couchpoint serve`` on ``port`` (default: a free one) with ``data_dir``; stop it on exit.

    Raises :class:`ServerError` (with the tail of the server's log) if the server does not
    come up, or if it exited by itself (not through :meth:`RealServer.kill` /
    :meth:`RealServer.terminate`) before the ``with`` block ended.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_path or data_dir.with_name(data_dir.name + ".log")
    fixed_port = port
    attempts = PORT_ATTEMPTS if fixed_port is None else 1
    for attempt in range(1, attempts + 1):
        port = free_port() if fixed_port is None else fixed_port
        url = f"http://{HOST}:{port}"
        command = [*serve_command(port, data_dir, log_level=log_level), *extra_args]
        with log_path.open("ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=_child_env()
            )
        try:
            welcome = _wait_until_up(process, url, startup_timeout)
        except ServerError as exc:
            _stop(process)
            tail = _tail(log_path, LOG_TAIL_LINES)
            if attempt < attempts and "address already in use" in tail.lower():
                continue  # another process took the port between free_port() and bind()
            raise ServerError(f"{exc}\n--- server log ({log_path}) ---\n{tail}") from None
        break
    server = RealServer(url, port, data_dir, log_path, process, welcome)
    try:
        yield server
    except BaseException:
        _stop(process)
        raise
    code = process.poll()
    _stop(process)
    if code is not None and not server.stopped_on_purpose:
        raise ServerError(
            f"couchpoint serve exited by itself with code {code} while in use\n"
            f"--- server log ({log_path}) ---\n{server.log_tail()}"
        )


@pytest.fixture
def couchpoint_real_server(tmp_path: Path) -> Iterator[RealServer]:
    """A fresh ``couchpoint serve`` (SQLite in ``tmp_path/data``), stopped after the test."""
    try:
        with real_server(tmp_path / "data", log_path=tmp_path / "server.log") as server:
            yield server
    except ServerError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def couchpoint_server(couchpoint_real_server: RealServer) -> str:
    """The base URL of a fresh ``couchpoint serve``, e.g. ``http://127.0.0.1:41234``."""
    return couchpoint_real_server.url
