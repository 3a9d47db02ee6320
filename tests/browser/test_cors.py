"""CORS for PouchDB in browsers (protocol reference §11.3, BC-25): what
:class:`couchpoint.http.cors.CouchCORS` answers, checked header by header.  The real
browser path is ``test_browser_sync.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from couchpoint import create_app
from couchpoint.config import Settings
from couchpoint.storage import MemoryStorage

ORIGIN = "https://app.example"
POUCHDB_HEADERS = "accept, authorization, content-type"  # what PouchDB's fetch preflights


def _set(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",") if item.strip()}


async def _client(**overrides: Any) -> httpx.AsyncClient:
    app = create_app(storage=MemoryStorage(), settings=Settings(), **overrides)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://couchpoint.test")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with await _client() as client:
        assert (await client.put("/db")).status_code == 201
        yield client


def _preflight(
    method: str = "GET", headers: str | None = POUCHDB_HEADERS, origin: str = ORIGIN
) -> dict[str, str]:
    out = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        out["Access-Control-Request-Headers"] = headers
    return out


@pytest.mark.parametrize(
    "path", ["/db/_changes", "/db/_bulk_docs", "/missing-db/", "/_session", "/", "/db/a%2Fb"]
)
async def test_preflight_on_any_path(client: httpx.AsyncClient, path: str) -> None:
    response = await client.options(path, headers=_preflight("POST"))
    assert (response.status_code, response.content) == (204, b"")
    h = response.headers
    assert h["access-control-allow-origin"] == ORIGIN
    assert h["access-control-allow-credentials"] == "true"
    assert _set(h["access-control-allow-methods"]) == {
        "get",
        "put",
        "post",
        "head",
        "delete",
        "copy",
        "options",
    }
    assert _set(h["access-control-allow-headers"]) == _set(POUCHDB_HEADERS)
    assert h["access-control-max-age"] == "600"
    assert h["vary"] == "Origin"


async def test_preflight_echoes_custom_headers_and_lists_defaults(client: httpx.AsyncClient) -> None:
    custom = "Content-Type, X-App-Token, If-Match, Last-Event-ID"
    response = await client.options("/db/doc", headers=_preflight("PUT", custom))
    assert _set(response.headers["access-control-allow-headers"]) == _set(custom)
    response = await client.options("/db/doc", headers=_preflight("PUT", None))
    assert {
        "accept",
        "authorization",
        "content-type",
        "origin",
        "referer",
        "x-csrf-token",
        "if-match",
    } <= _set(response.headers["access-control-allow-headers"])


async def test_preflight_needs_no_credentials_when_admins_exist() -> None:
    async with await _client(admins={"admin": "pw"}) as client:
        response = await client.options("/secret/_changes", headers=_preflight())
        assert response.status_code == 204
        assert response.headers["access-control-allow-origin"] == ORIGIN
        # the actual request without credentials: 401 JSON, readable by the page
        response = await client.get("/secret/_changes", headers={"Origin": ORIGIN})
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert response.headers["access-control-allow-credentials"] == "true"
        assert "www-authenticate" not in response.headers
        response = await client.put("/secret", headers={"Origin": ORIGIN}, auth=("admin", "pw"))
        assert response.status_code == 201
        assert response.headers["access-control-allow-origin"] == ORIGIN


async def test_actual_responses_of_every_status_carry_cors(client: httpx.AsyncClient) -> None:
    cors = {"Origin": ORIGIN, "Accept": "application/json"}
    created = await client.put("/db/doc", json={"v": 1}, headers=cors)
    cases = [
        (created, 201),
        (await client.get("/db/doc", headers=cors), 200),
        (await client.get("/nodb", headers=cors), 404),
        (await client.put("/db/doc", json={"v": 2}, headers=cors), 409),
        (await client.get("/db/_changes?since=x", headers=cors), 400),
        (await client.post("/db/_bulk_docs", content=b"{}", headers=cors), 415),
    ]
    for response, status in cases:
        assert response.status_code == status
        h = response.headers
        assert h["access-control-allow-origin"] == ORIGIN, response.request.url
        assert h["access-control-allow-credentials"] == "true"
        assert "Origin" in h["vary"]
        exposed = _set(h["access-control-expose-headers"])
        assert {"etag", "x-couch-request-id", "server", "cache-control", "content-type"} <= exposed
    # the response's own non-simple headers are exposed too (Location, ETag of a write)
    assert {"location", "etag", "x-couchdb-body-time"} <= _set(
        created.headers["access-control-expose-headers"]
    )
    assert "set-cookie" not in _set(created.headers["access-control-expose-headers"])


async def test_origin_is_echoed_never_star_even_for_any_origin(client: httpx.AsyncClient) -> None:
    for origin in ("http://localhost:8080", "null", "https://x.example"):
        response = await client.get("/", headers={"Origin": origin})
        assert response.headers["access-control-allow-origin"] == origin


async def test_no_origin_no_cors_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/db")
    assert not [k for k in response.headers if k.startswith("access-control-")]
    response = await client.options("/db")  # not a preflight: CouchDB's 405 JSON
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


async def test_allow_list() -> None:
    async with await _client(cors_origins=("https://app.example", "http://localhost:3000/")) as client:
        for origin in ("https://app.example", "http://localhost:3000", "HTTPS://APP.EXAMPLE"):
            response = await client.options("/db", headers=_preflight(origin=origin))
            assert response.status_code == 204
            assert response.headers["access-control-allow-origin"] == origin
        for origin in ("https://evil.example", "https://app.example.evil", "http://localhost:3001"):
            response = await client.options("/db", headers=_preflight(origin=origin))
            assert response.status_code == 405  # the router's JSON, no CORS: the browser blocks
            assert response.json()["error"] == "method_not_allowed"
            assert not [k for k in response.headers if k.startswith("access-control-")]
            response = await client.get("/", headers={"Origin": origin})
            assert response.status_code == 200
            assert "access-control-allow-origin" not in response.headers


async def test_credentials_off() -> None:
    async with await _client(cors_credentials=False) as client:
        response = await client.options("/db", headers=_preflight())
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert "access-control-allow-credentials" not in response.headers
        response = await client.get("/", headers={"Origin": ORIGIN})
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert "access-control-allow-credentials" not in response.headers


async def test_streamed_feed_headers_carry_cors(client: httpx.AsyncClient) -> None:
    """Headers of a streamed feed are sent before its body: CORS is in them."""
    path = "/db/_changes?feed=continuous&since=now&timeout=10"
    async with client.stream("GET", path, headers={"Origin": ORIGIN}) as response:
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert response.headers["access-control-allow-credentials"] == "true"
        assert (await response.aread()).endswith(b'"pending":0}\n')
