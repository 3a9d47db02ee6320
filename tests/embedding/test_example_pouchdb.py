"""PouchDB 9 (Node) syncs with the example app served by a real uvicorn
(``python -m examples.todos``): tests/js/todos.js."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.pouchdb

ROOT = Path(__file__).resolve().parents[2]
JS_DIR = ROOT / "tests" / "js"
USERS = "alice:alice-pw,bob:bob-pw"
STARTUP_TIMEOUT = 30.0
SCENARIO_TIMEOUT = 180.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def example_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``python -m examples.todos`` on a free port; yields its base URL and log file."""
    port = _free_port()
    log_path = tmp_path / "server.log"
    command = [sys.executable, "-m", "examples.todos", "--db", str(tmp_path / "todos.sqlite3")]
    command += ["--port", str(port), "--log-level", "info"]
    for user in USERS.split(","):
        command += ["--user", user]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUCHPOINT_")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx.Client(timeout=2) as client:
            while True:
                assert process.poll() is None, f"the example app exited:\n{log_path.read_text()}"
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{url}/sync/").status_code == 200:
                        break
                assert time.monotonic() < deadline, f"the example app did not start:\n{log_path.read_text()}"
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.05)
        yield url, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_pouchdb_syncs_with_the_example_app(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "pouchdb").is_dir():
        pytest.fail("needs node and tests/js/node_modules (run ./scripts/test)", pytrace=False)
    with example_server(tmp_path) as (url, log_path):
        done = subprocess.run(
            [node, "todos.js", "--url", f"{url}/sync", "--db", "todos", "--app", url, "--users", USERS],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=SCENARIO_TIMEOUT,
        )
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        result = json.loads(lines[-1]) if lines else {"ok": False, "error": "no output"}
        assert done.returncode == 0 and result.get("ok") is True, (
            f"{json.dumps(result, indent=1)[:6000]}\n--- node stderr ---\n{done.stderr[-6000:]}\n"
            f"--- server log ---\n{log_path.read_text()[-6000:]}"
        )
    assert result["denied"] == 2
    assert result["laptop_docs"] == 3
