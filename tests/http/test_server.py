"""Server endpoints: ``GET /`` (§3.1), ``_uuids`` (§3.2), ``_up``, ``/_session`` (§12.3)
and the authentication answers recorded from CouchDB (d01[72-73, 78-79], BC-27)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import httpx
import pytest

from couchpoint import create_app
from couchpoint.config import Settings
from couchpoint.storage import SQLiteStorage

from . import assert_error, assert_ok
from .conftest import MakeApp, client_for

HEX32 = re.compile(r"^[0-9a-f]{32}$")


async def test_root(client: httpx.AsyncClient) -> None:
    """§3.1, d01[0]: ``GET /`` → ``couchdb: Welcome``, a version string and a 32-hex
    ``uuid`` that is the same on every request; ``HEAD /`` → 200 without a body."""
    first = assert_ok(await client.get("/"), 200)
    assert first["couchdb"] == "Welcome"
    assert isinstance(first["version"], str) and first["version"]
    assert HEX32.match(first["uuid"]), first
    assert isinstance(first.get("vendor"), dict) and isinstance(first.get("features"), list)
    second = assert_ok(await client.get("/"), 200)
    assert second["uuid"] == first["uuid"]
    response = await client.head("/")
    assert response.status_code == 200 and response.content == b""


async def test_root_uuid_persists_across_restarts(tmp_path: Path) -> None:
    """§3.1, §13(28): the ``uuid`` is stored with the data (SQLite file) and survives a
    restart; PouchDB's replication ids depend on it."""
    path = tmp_path / "persist.sqlite3"
    uuids = []
    for _ in range(2):
        app = create_app(storage=SQLiteStorage(path), settings=Settings())
        try:
            async with client_for(app) as client:
                uuids.append(assert_ok(await client.get("/"), 200)["uuid"])
        finally:
            await app.state.server.close()
    assert uuids[0] == uuids[1]


async def test_uuids(client: httpx.AsyncClient) -> None:
    """§3.2, d01[2]: ``count`` defaults to 1; N distinct 32-hex uuids; cache-busting
    headers."""
    response = await client.get("/_uuids")
    body = assert_ok(response, 200)
    assert list(body) == ["uuids"] and len(body["uuids"]) == 1 and HEX32.match(body["uuids"][0])
    assert "no-cache" in response.headers["cache-control"]
    assert response.headers["pragma"] == "no-cache"
    assert "expires" in response.headers
    three = assert_ok(await client.get("/_uuids", params={"count": 3}), 200)["uuids"]
    assert len(set(three)) == 3 and all(HEX32.match(u) for u in three)
    assert len(assert_ok(await client.get("/_uuids", params={"count": 1000}), 200)["uuids"]) == 1000


@pytest.mark.parametrize(
    ("count", "reason"),
    [
        ("1001", "count parameter too large"),
        ("-1", "count must be a positive integer"),
        ("abc", "count must be a positive integer"),
    ],
)
async def test_uuids_bad_count(client: httpx.AsyncClient, count: str, reason: str) -> None:
    """§3.2: more than 1000 → 400 "count parameter too large"; negative or non-integer →
    400 "count must be a positive integer"."""
    assert_error(await client.get("/_uuids", params={"count": count}), 400, "bad_request", reason)


async def test_up(client: httpx.AsyncClient) -> None:
    """``GET /_up`` → 200 ``{"status":"ok",…}``."""
    assert assert_ok(await client.get("/_up"), 200)["status"] == "ok"


async def test_get_session(client: httpx.AsyncClient) -> None:
    """§12.3, d01[72]: ``GET /_session`` → ``{"ok":true,"userCtx":{"name","roles"},
    "info":{"authentication_handlers":[…]}}``."""
    body = assert_ok(await client.get("/_session"), 200)
    assert body["ok"] is True
    assert set(body["userCtx"]) == {"name", "roles"} and isinstance(body["userCtx"]["roles"], list)
    assert isinstance(body["info"]["authentication_handlers"], list)


def basic(name: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def test_auth_answers(make_app: MakeApp) -> None:
    """d01[73, 78-79], §12.2, §12.3, BC-27: with an admin configured, anonymous access to a
    db → 401 "You are not authorized to access this db."; wrong Basic credentials → 401
    "Name or password is incorrect." (also on ``/``); the password is split at the first
    ``:``; ``POST /_session`` with wrong credentials → 401, with right ones → 200 and an
    ``AuthSession`` cookie (``Max-Age``, ``Path=/``, ``HttpOnly``) that authenticates."""
    app = await make_app(admins={"admin": "p:w@rd"})
    async with client_for(app) as client:
        good = basic("admin", "p:w@rd")
        assert_ok(await client.put("/db", headers=good), 201)
        assert_error(
            await client.get("/db"), 401, "unauthorized", "You are not authorized to access this db."
        )
        wrong = basic("admin", "wrong")
        assert_error(
            await client.get("/db", headers=wrong), 401, "unauthorized", "Name or password is incorrect."
        )
        assert_error(
            await client.get("/", headers=wrong), 401, "unauthorized", "Name or password is incorrect."
        )
        assert assert_ok(await client.get("/db", headers=good), 200)["db_name"] == "db"
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        response = await client.post("/_session", content=b"name=admin&password=wrong", headers=form)
        assert_error(response, 401, "unauthorized", "Name or password is incorrect.")
        response = await client.post("/_session", content=b"name=admin&password=p%3Aw%40rd", headers=form)
        assert assert_ok(response, 200) == {"ok": True, "name": "admin", "roles": ["_admin"]}
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("AuthSession=") and "Max-Age=" in cookie and "Path=/" in cookie
        assert "HttpOnly" in cookie
        token = cookie.split(";", 1)[0].split("=", 1)[1]
        client.cookies.clear()
        session = assert_ok(await client.get("/_session", headers={"Cookie": f"AuthSession={token}"}), 200)
        assert session["userCtx"]["name"] == "admin" and session["info"]["authenticated"] == "cookie"
        assert_ok(await client.get("/db", headers={"Cookie": f"AuthSession={token}"}), 200)
        response = await client.post("/_session", json={"name": "admin", "password": "p:w@rd"})
        assert assert_ok(response, 200)["name"] == "admin"
        response = await client.post(
            "/_session", content=b"name=admin", headers={"Content-Type": "text/plain"}
        )
        assert_error(
            response,
            415,
            "bad_content_type",
            "Content-Type must be 'application/x-www-form-urlencoded' or 'application/json'",
        )
        client.cookies.clear()
        anonymous = assert_ok(await client.get("/_session"), 200)
        assert anonymous["userCtx"] == {"name": None, "roles": []}
        assert assert_ok(await client.delete("/_session"), 200) == {"ok": True}
