"""The CouchDB 3.4 replicator's login sequence, from the recordings (BC-27, §12.3).

Every ``c*`` recording starts with the replicator's form ``POST /_session``
(``name=admin&password=admin``); the replicator then sends only ``Cookie: AuthSession``.
Here ``c01`` (a first push) is replayed request by request: with the right password
every answer has the recorded status; with a wrong one the login is a 401 with a
clearing cookie, every later request (carrying the cookie CouchDB had issued, which
means nothing to couchpoint) is a 401, and nothing is written.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx

from .conftest import MakeApp, basic, client_for

ROOT = Path(__file__).resolve().parents[2]
RECORDING = ROOT / "recordings" / "couchdb-3.4" / "c01.jsonl"
ADMIN = basic("admin", "admin")


def exchanges() -> list[dict[str, Any]]:
    return [json.loads(line) for line in RECORDING.read_text().splitlines() if line.strip()]


def body_of(request: dict[str, Any]) -> bytes:
    body = request["body"]
    if body is None:
        return b""
    if isinstance(body, dict) and set(body) == {"base64"}:
        return base64.b64decode(body["base64"])
    return json.dumps(body).encode()


async def send(client: httpx.AsyncClient, exchange: dict[str, Any], cookie: str | None) -> httpx.Response:
    request = exchange["request"]
    headers = {
        k: v
        for k, v in request["headers"].items()
        if k.lower() in {"content-type", "accept", "user-agent", "destination"}
    }
    if cookie is not None:
        headers["Cookie"] = f"AuthSession={cookie}"
    path = exchange["meta"].get("request_target") or request["path"]
    return await client.request(request["method"], path, content=body_of(request), headers=headers)


def set_cookie(response: httpx.Response) -> str:
    [header] = [c for c in response.headers.get_list("set-cookie") if c.startswith("AuthSession=")]
    return header


async def test_recorded_login_then_cookie_replays_with_the_recorded_statuses(make_app: MakeApp) -> None:
    app = await make_app(admins={"admin": "admin"})
    recorded = exchanges()
    login = recorded[0]
    assert login["request"]["method"] == "POST" and login["request"]["path"] == "/_session"
    async with client_for(app) as client:
        assert (await client.put("/endpoint", headers=ADMIN)).status_code == 201
        client.cookies.clear()
        response = await send(client, login, None)
        assert response.status_code == 200
        assert response.json() == login["response"]["body"]  # {"ok":true,"name":"admin","roles":["_admin"]}
        header = set_cookie(response)
        token = header.split(";", 1)[0].split("=", 1)[1]
        assert token and "Max-Age=600" in header and "Path=/" in header and "HttpOnly" in header
        client.cookies.clear()
        for exchange in recorded[1:]:
            if exchange["request"]["path"] == "/_session":
                response = await send(client, exchange, None)
                token = set_cookie(response).split(";", 1)[0].split("=", 1)[1]
                continue
            response = await send(client, exchange, token)
            assert response.status_code == exchange["response"]["status"], (
                exchange["meta"]["index"],
                exchange["request"]["method"],
                exchange["request"]["path"],
                response.text[:300],
            )
        info = (await client.get("/endpoint", headers=ADMIN)).json()
        assert info["doc_count"] > 0


async def test_recorded_login_with_a_wrong_password_writes_nothing(make_app: MakeApp) -> None:
    app = await make_app(admins={"admin": "not-the-recorded-password"})
    recorded = exchanges()
    async with client_for(app) as client:
        assert (
            await client.put("/endpoint", headers=basic("admin", "not-the-recorded-password"))
        ).status_code == 201
        admin = basic("admin", "not-the-recorded-password")
        before = (await client.get("/endpoint", headers=admin)).json()
        client.cookies.clear()
        response = await send(client, recorded[0], None)
        assert response.status_code == 401
        assert response.json() == {"error": "unauthorized", "reason": "Name or password is incorrect."}
        assert set_cookie(response).startswith("AuthSession=;")
        stale = recorded[1]["request"]["headers"]["cookie"].split("=", 1)[1]  # CouchDB's own cookie
        for exchange in recorded[1:]:
            if exchange["request"]["path"] == "/_session":
                continue
            response = await send(client, exchange, stale)
            assert response.status_code == 401, (exchange["meta"]["index"], response.text)
            assert response.json() == {
                "error": "unauthorized",
                "reason": "You are not authorized to access this db.",
            }
        after = (await client.get("/endpoint", headers=admin)).json()
        assert (
            (after["update_seq"], after["doc_count"]) == (before["update_seq"], before["doc_count"]) == (0, 0)
        )
        local_ids = {
            e["request"]["path"].split("/_local/", 1)[1]
            for e in recorded
            if "/_local/" in e["request"]["path"] and e["request"]["method"] == "PUT"
        }
        assert local_ids
        for name in local_ids:
            assert (await client.get(f"/endpoint/_local/{name}", headers=admin)).status_code == 404
