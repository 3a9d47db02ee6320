"""Limits (issue 5): 413 for oversized requests, documents, attachments and security
objects; slow clients cut off by a real ``couchpoint serve`` (head timeout, stalled
body → 408, oversized head → 400).  Waits end on the server's answer or its closing
the socket, each bounded by a deadline; no sleeps."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.realserver import RealServer, ServerError, real_server

from .conftest import ADMIN_AUTH, MakeApp, client_for, error_of

JSON = {"Content-Type": "application/json", **ADMIN_AUTH}


async def test_oversized_bodies_documents_and_attachments_are_413(make_app: MakeApp) -> None:
    app = await make_app(max_request_size=4000, max_document_size=1000, max_attachment_size=500)
    async with client_for(app) as client:
        assert (await client.put("/db", headers=ADMIN_AUTH)).status_code == 201
        big = b'{"x": "' + b"a" * 5000 + b'"}'
        assert error_of(await client.put("/db/big", content=big, headers=JSON))[:2] == (413, "too_large")
        doc = b'{"x": "' + b"a" * 2000 + b'"}'
        assert error_of(await client.put("/db/doc", content=doc, headers=JSON)) == (
            413,
            "document_too_large",
            "doc",
        )
        att_headers = {"Content-Type": "application/octet-stream", **ADMIN_AUTH}
        response = await client.put("/db/a/blob", content=b"z" * 800, headers=att_headers)
        assert error_of(response)[:2] == (413, "attachment_too_large")
        sec = b'{"members": {"names": ["' + b"n" * 1500 + b'"]}}'
        assert error_of(await client.put("/db/_security", content=sec, headers=JSON))[0] == 413
        info = (await client.get("/db", headers=ADMIN_AUTH)).json()
        assert info["doc_count"] == 0 and info["update_seq"] == 0
        user = b'{"type": "user", "name": "u", "roles": [], "password": "' + b"p" * 5000 + b'"}'
        await client.put("/_users", headers=ADMIN_AUTH)
        assert error_of(await client.put("/_users/org.couchdb.user:u", content=user, headers=JSON))[0] == 413


# -- a real server ------------------------------------------------------------------------------

CONFIG = """
header_timeout_s = 1
body_timeout_s = 1
keep_alive_timeout_s = 1
max_header_size = 8192

[admins]
admin = "{hash}"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    from couchpoint.auth import hash_password

    tmp = tmp_path_factory.mktemp("limits")
    config = tmp / "couchpoint.toml"
    config.write_text(CONFIG.format(hash=hash_password("pw", 1000)))
    try:
        with real_server(
            tmp / "data", log_path=tmp / "server.log", extra_args=["--config", str(config)]
        ) as srv:
            yield srv
    except ServerError as exc:
        pytest.fail(str(exc), pytrace=False)


def connect(server: RealServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def read_until_closed(sock: socket.socket, deadline_s: float = 10.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    data = b""
    sock.settimeout(deadline_s)
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - started


AUTH = "Basic " + base64.b64encode(b"admin:pw").decode()


def test_a_slow_request_head_is_cut_off(server: RealServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
        data, took = read_until_closed(sock)
    assert data == b"" and took < 8, (data, took)


def test_an_idle_connection_is_cut_off(server: RealServer) -> None:
    with connect(server) as sock:
        data, took = read_until_closed(sock)
    assert data == b"" and took < 8


def test_a_stalled_body_is_408(server: RealServer) -> None:
    with connect(server) as sock:
        head = (
            f"PUT /slowdb HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n\r\n"
            "POST /_session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"name": "adm')
        data, took = read_until_closed(sock)
    assert b"HTTP/1.1 201" in data  # the first request
    assert b"HTTP/1.1 408" in data and b'"error":"request_timeout"' in data, data[-400:]
    assert took < 8


def test_an_oversized_request_head_is_400(server: RealServer) -> None:
    with connect(server) as sock:
        # a head still growing past max_header_size (8 KiB here) is refused at once
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000)
        data, _ = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 400"), data[:200]


def test_the_admin_from_the_config_file_works(server: RealServer) -> None:
    import httpx

    assert httpx.get(server.url + "/_all_dbs", headers={"Authorization": AUTH}).status_code == 200
    assert httpx.get(server.url + "/_all_dbs").status_code == 401


def test_config_file_admin_password_is_not_in_plain_text(tmp_path: Path) -> None:
    from couchpoint.config import Settings

    config = tmp_path / "c.toml"
    config.write_text('port = 6123\ndefault_security = "everyone"\n[admins]\nroot = "pw"\n')
    settings = Settings.from_env({}, config_file=config)
    assert (settings.port, settings.default_security, settings.admins) == (6123, "everyone", {"root": "pw"})
    config.write_text("bogus = 1\n")
    with pytest.raises(ValueError, match="unknown setting"):
        Settings.from_env({}, config_file=config)
