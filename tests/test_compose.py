"""compose.yaml, the Dockerfile and compose/setup.sh, checked without a Docker engine.

compose.yaml is read with PyYAML. compose/setup.sh really runs (``sh`` + ``curl``) against
two small stub servers on 127.0.0.1 standing in for couchpoint and CouchDB, which record
what it sends.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from couchpoint import cli

ROOT = Path(__file__).resolve().parent.parent
SETUP_SCRIPT = ROOT / "compose" / "setup.sh"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def dockerfile_instruction(name: str) -> str:
    lines = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith(name + " ")]
    assert len(lines) == 1, f"expected one {name} line in the Dockerfile"
    return lines[0][len(name) + 1 :].strip()


def test_the_three_services_exist(compose: dict[str, Any]) -> None:
    assert {"couchpoint", "couchdb", "setup"} <= set(compose["services"])


def test_couchpoint_is_built_from_the_repo_dockerfile(compose: dict[str, Any]) -> None:
    build = compose["services"]["couchpoint"]["build"]
    if isinstance(build, str):
        build = {"context": build}
    assert (ROOT / build["context"]).resolve() == ROOT
    assert (ROOT / build.get("dockerfile", "Dockerfile")).resolve() == ROOT / "Dockerfile"
    assert (ROOT / "Dockerfile").is_file()


def test_couchpoint_gets_an_admin_because_it_binds_all_interfaces(compose: dict[str, Any]) -> None:
    env = compose["services"]["couchpoint"]["environment"]
    assert ":" in env["COUCHPOINT_ADMINS"]


def test_couchdb_is_couchdb_3_with_an_admin(compose: dict[str, Any]) -> None:
    couchdb = compose["services"]["couchdb"]
    assert couchdb["image"] == "couchdb:3"
    assert {"COUCHDB_USER", "COUCHDB_PASSWORD"} <= set(couchdb["environment"])


def test_setup_waits_for_both_servers_to_be_healthy(compose: dict[str, Any]) -> None:
    depends_on = compose["services"]["setup"]["depends_on"]
    for name in ("couchpoint", "couchdb"):
        assert depends_on[name]["condition"] == "service_healthy"
        assert "healthcheck" in compose["services"][name]


def test_setup_runs_the_setup_script_against_the_service_names(compose: dict[str, Any]) -> None:
    setup = compose["services"]["setup"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in setup["volumes"]}
    script_in_container = setup["entrypoint"][-1]
    assert (ROOT / mounts[script_in_container]).resolve() == SETUP_SCRIPT
    assert setup["environment"]["COUCHPOINT_URL"] == "http://couchpoint:5984"
    assert setup["environment"]["COUCHDB_URL"] == "http://couchdb:5984"


def test_dockerfile_runs_couchpoint_serve_on_all_interfaces_with_data_in_the_volume() -> None:
    assert dockerfile_instruction("FROM") == "python:3.11-slim"
    cmd = json.loads(dockerfile_instruction("CMD"))
    assert cmd[:2] == ["couchpoint", "serve"]
    options = dict(zip(cmd[2::2], cmd[3::2], strict=True))
    assert options == {"--host": "0.0.0.0", "--port": "5984", "--data-dir": "/data"}
    assert dockerfile_instruction("VOLUME") == "/data"
    assert dockerfile_instruction("EXPOSE") == "5984"


def test_dockerfile_cmd_is_accepted_by_the_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(cli, "build_app", lambda settings: object())
    monkeypatch.setattr(cli.uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    cmd = json.loads(dockerfile_instruction("CMD"))
    args = [str(tmp_path) if arg == "/data" else arg for arg in cmd[1:]]
    # compose.yaml gives the container its admin through COUCHPOINT_ADMINS
    env = {"COUCHPOINT_ADMINS": "admin:password", "COUCHPOINT_CONFIG": None}
    result = CliRunner().invoke(cli.main, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert calls[0]["host"] == "0.0.0.0"
    assert calls[0]["port"] == 5984
    # without an admin the image refuses to start on 0.0.0.0 (issue 5)
    calls.clear()
    result = CliRunner().invoke(cli.main, args, env={"COUCHPOINT_ADMINS": None, "COUCHPOINT_CONFIG": None})
    assert result.exit_code != 0 and not calls
    assert "without a server admin" in result.output


# --- compose/setup.sh against stub servers -------------------------------------------


@dataclass
class StubCouch:
    """A CouchDB-shaped stub: answers GET /, creates databases and documents once."""

    name: str
    requests: list[tuple[str, str, Any, str | None]] = field(default_factory=list)
    existing: set[str] = field(default_factory=set)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub.requests.append(("GET", self.path, None, self.headers.get("Authorization")))
                self.reply(200, {"couchdb": "Welcome"})

            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                body = json.loads(raw) if raw else None
                stub.requests.append(("PUT", self.path, body, self.headers.get("Authorization")))
                if self.path in stub.existing:
                    is_db = self.path.count("/") == 1
                    self.reply(412 if is_db else 409, {"error": "file_exists" if is_db else "conflict"})
                else:
                    stub.existing.add(self.path)
                    self.reply(201, {"ok": True})

            def reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def puts(self) -> list[str]:
        return [path for method, path, _, _ in self.requests if method == "PUT"]


@pytest.fixture
def stubs() -> Iterator[tuple[StubCouch, StubCouch]]:
    pair = (StubCouch("couchpoint"), StubCouch("couchdb"))
    threads = []
    for stub in pair:
        stub.server = ThreadingHTTPServer(("127.0.0.1", 0), stub.handler())
        thread = threading.Thread(target=stub.server.serve_forever, daemon=True)
        thread.start()
        threads.append(thread)
    yield pair
    for stub, thread in zip(pair, threads, strict=True):
        assert stub.server is not None
        stub.server.shutdown()
        stub.server.server_close()
        thread.join()


def run_setup(couchpoint_url: str, couchdb_url: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "COUCHPOINT_URL": couchpoint_url,
        "COUCHDB_URL": couchdb_url,
        "COUCHDB_USER": "admin",
        "COUCHDB_PASSWORD": 'pa"ss',
        "DB_NAME": "app",
        "WAIT_SECONDS": "10",
        **extra,
    }
    return subprocess.run(
        ["sh", str(SETUP_SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


needs_sh_and_curl = pytest.mark.skipif(
    not (shutil.which("sh") and shutil.which("curl")), reason="needs sh and curl"
)


@needs_sh_and_curl
def test_setup_creates_the_databases_and_both_continuous_replications(
    stubs: tuple[StubCouch, StubCouch],
) -> None:
    couchpoint, couchdb = stubs
    done = run_setup(couchpoint.url, couchdb.url)
    assert done.returncode == 0, done.stderr

    assert couchpoint.puts() == ["/app"]
    assert {"/_users", "/_replicator", "/app"} <= set(couchdb.puts())

    replications = {
        path.removeprefix("/_replicator/"): body
        for method, path, body, _ in couchdb.requests
        if method == "PUT" and path.startswith("/_replicator/")
    }
    directions = {(doc["source"]["url"], doc["target"]["url"]) for doc in replications.values()}
    assert directions == {
        (f"{couchpoint.url}/app", f"{couchdb.url}/app"),
        (f"{couchdb.url}/app", f"{couchpoint.url}/app"),
    }
    for doc in replications.values():
        assert doc["continuous"] is True
        for side in ("source", "target"):
            assert doc[side]["auth"]["basic"] == {"username": "admin", "password": 'pa"ss'}


@needs_sh_and_curl
def test_setup_can_run_again(stubs: tuple[StubCouch, StubCouch]) -> None:
    couchpoint, couchdb = stubs
    assert run_setup(couchpoint.url, couchdb.url).returncode == 0
    again = run_setup(couchpoint.url, couchdb.url)
    assert again.returncode == 0, again.stderr
    assert "already exists" in again.stdout


@needs_sh_and_curl
def test_setup_fails_when_a_server_never_answers(stubs: tuple[StubCouch, StubCouch]) -> None:
    _, couchdb = stubs
    done = run_setup(closed_port_url(), couchdb.url, WAIT_SECONDS="2")
    assert done.returncode != 0
    assert "did not answer" in done.stderr
