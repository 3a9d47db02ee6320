"""HTTP details: content types (BC-24), CORS (BC-25), size limits (BC-09 without
attachments), request ids and JSON headers (§11.1)."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette

from . import JSON, RawASGI, assert_error, assert_ok, body_of, put, snapshot
from .conftest import MakeApp, client_for

BAD_CT = ("bad_content_type", "Content-Type must be application/json")

# -- BC-24: content types --------------------------------------------------------------------

JSON_ENDPOINTS = [
    ("/db/_bulk_docs", b'{"docs":[{"_id":"x"}]}'),
    ("/db/_bulk_get", b'{"docs":[{"id":"a"}]}'),
    ("/db/_revs_diff", b'{"a":["1-x"]}'),
    ("/db/_missing_revs", b'{"a":["1-x"]}'),
    ("/db/_ensure_full_commit", b""),
    ("/db/_changes", b"{}"),
    ("/db", b'{"_id":"x"}'),
]


@pytest.mark.parametrize(("path", "body"), JSON_ENDPOINTS)
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "json"])
async def test_bc24_json_endpoints_require_json(
    client: httpx.AsyncClient, db: str, path: str, body: bytes, content_type: str | None
) -> None:
    """BC-24, d01[69]: ``_bulk_docs``, ``_bulk_get``, ``_revs_diff``, ``_missing_revs``,
    ``_ensure_full_commit``, POST ``_changes`` and POST ``/db`` without the media type
    ``application/json`` → 415 ``bad_content_type`` "Content-Type must be
    application/json"; nothing is written."""
    await put(client, "/db/a", {"v": 1})
    before = await snapshot(client, db)
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await client.post(path, content=body, headers=headers)
    assert_error(response, 415, *BAD_CT)
    assert await snapshot(client, db) == before


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/json;charset=UTF-8", "application/json"]
)
async def test_bc24_json_parameters_accepted(client: httpx.AsyncClient, db: str, content_type: str) -> None:
    """BC-24: only the part before ``;`` is compared, so ``application/json;
    charset=utf-8`` is accepted (201 from ``_bulk_docs``, 201 from
    ``_ensure_full_commit``, 200 from ``_revs_diff``)."""
    headers = {"Content-Type": content_type}
    response = await client.post(f"/{db}/_bulk_docs", content=b'{"docs":[{"_id":"x"}]}', headers=headers)
    assert assert_ok(response, 201)[0]["id"] == "x"
    assert_ok(await client.post(f"/{db}/_ensure_full_commit", headers=headers), 201)
    assert_ok(await client.post(f"/{db}/_revs_diff", content=b'{"x":["9-z"]}', headers=headers), 200)


async def test_bc24_doc_put_needs_no_content_type(client: httpx.AsyncClient, db: str) -> None:
    """BC-24: a JSON doc PUT does not check the type: no ``Content-Type`` (and
    ``text/plain``) → 201; the same for ``_local`` docs."""
    response = await client.put(f"/{db}/doc", content=b'{"a":1}')
    assert "content-type" not in response.request.headers
    created = assert_ok(response, 201)
    assert created["id"] == "doc"
    assert assert_ok(await client.get(f"/{db}/doc"), 200)["a"] == 1
    response = await client.put(f"/{db}/doc2", content=b'{"a":2}', headers={"Content-Type": "text/plain"})
    assert assert_ok(response, 201)["id"] == "doc2"
    response = await client.put(f"/{db}/_local/cp", content=b'{"a":3}')
    assert assert_ok(response, 201) == {"ok": True, "id": "_local/cp", "rev": "0-1"}


async def test_json_response_headers(client: httpx.AsyncClient, db: str) -> None:
    """§1.2, §11.1: JSON answers are ``application/json`` (no ``charset`` needed) with
    ``Cache-Control: must-revalidate``; an ``X-Couch-Request-ID`` is echoed when valid and
    generated otherwise."""
    response = await client.get(f"/{db}", headers={"X-Couch-Request-ID": "abc-123_XYZ"})
    assert response.headers["content-type"].split(";")[0] == "application/json"
    assert response.headers["cache-control"] == "must-revalidate"
    assert response.headers["x-couch-request-id"] == "abc-123_XYZ"
    response = await client.get(f"/{db}", headers={"X-Couch-Request-ID": "bad id!"})
    assert response.headers["x-couch-request-id"] not in ("", "bad id!")
    response = await client.get("/nodb")
    assert response.headers["x-couch-request-id"]


# -- BC-25: CORS -------------------------------------------------------------------------------

ORIGIN = "https://app.example"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "authorization, content-type",
}


def header_set(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",") if item.strip()}


@pytest.mark.parametrize("path", ["/db/_changes", "/nodb/", "/_session", "/db/doc%2Fwith%2Fslash", "/"])
async def test_bc25_preflight(client: httpx.AsyncClient, db: str, path: str) -> None:
    """BC-25, §11.3: a preflight (any path, even a missing db) → 204 without a body,
    echoing the Origin (never ``*``), ``Allow-Credentials: true``, the configured methods,
    the requested headers, ``Max-Age: 600``."""
    response = await client.options(path, headers=PREFLIGHT)
    headers = response.headers
    assert headers["access-control-allow-origin"] == ORIGIN
    assert headers["access-control-allow-credentials"] == "true"
    assert {"get", "put", "post", "head", "delete"} <= header_set(headers["access-control-allow-methods"])
    assert header_set(headers["access-control-allow-headers"]) >= {"authorization", "content-type"}
    assert headers["access-control-max-age"] == "600"
    assert (response.status_code, response.content) == (204, b"")


async def test_bc25_actual_requests_and_errors(client: httpx.AsyncClient, db: str) -> None:
    """BC-25, §11.3: actual responses (200 with a cookie, 404, 400, 405, 409) echo the
    Origin with ``Allow-Credentials: true`` and expose CouchDB's headers (``etag``,
    ``x-couch-request-id``, ...)."""
    await put(client, f"/{db}/doc", {"v": 1})
    cors = {"Origin": ORIGIN}
    requests = [
        ("GET", f"/{db}/_changes", {"Cookie": "AuthSession=abc"}, None, 200),
        ("GET", f"/{db}/doc", {}, None, 200),
        ("GET", "/nodb", {}, None, 404),
        ("GET", f"/{db}/_changes?since=garbage", {}, None, 400),
        ("PATCH", f"/{db}", {}, None, 405),
        ("PUT", f"/{db}/doc", JSON, b'{"v":2}', 409),
        ("POST", f"/{db}/_bulk_docs", {}, b"{}", 415),
    ]
    for method, path, extra, body, status in requests:
        response = await client.request(method, path, headers={**cors, **extra}, content=body)
        assert response.status_code == status, (method, path, response.status_code)
        assert response.headers.get("access-control-allow-origin") == ORIGIN, (method, path)
        assert response.headers.get("access-control-allow-credentials") == "true", (method, path)
        exposed = header_set(response.headers.get("access-control-expose-headers", ""))
        assert {"etag", "x-couch-request-id"} <= exposed, (method, path, exposed)


async def test_bc25_streaming_response_has_cors(app: Starlette, client: httpx.AsyncClient, db: str) -> None:
    """§11.3: streamed responses (a continuous feed) carry the CORS headers in the headers
    sent before the body starts."""
    target = f"/{db}/_changes?feed=continuous&since=now&heartbeat=60000"
    async with RawASGI(app, "GET", target, headers={"Origin": ORIGIN}) as call:
        status, headers = await call.start()
        assert status == 200
        assert headers.get("access-control-allow-origin") == ORIGIN
        assert headers.get("access-control-allow-credentials") == "true"


async def test_bc25_origin_not_listed(make_app: MakeApp) -> None:
    """BC-25, §11.3: with an explicit origin list, a listed origin is echoed; an unlisted
    one gets no CORS headers on the preflight or the actual request, and the preflight's
    answer is still CouchDB JSON (§1.2), never a framework text page."""
    app = await make_app(cors_origins=(ORIGIN,))
    async with client_for(app) as client:
        assert_ok(await client.put("/db"), 201)
        response = await client.options("/db", headers=PREFLIGHT)
        assert response.headers["access-control-allow-origin"] == ORIGIN
        evil = {**PREFLIGHT, "Origin": "https://evil.example"}
        response = await client.options("/db", headers=evil)
        assert "access-control-allow-origin" not in response.headers
        assert "access-control-allow-credentials" not in response.headers
        if response.content:
            body = body_of(response)
            assert set(body) == {"error", "reason"}, body
        response = await client.get("/db", headers={"Origin": "https://evil.example"})
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers


async def test_bc25_credentials_off(make_app: MakeApp) -> None:
    """BC-25: ``Allow-Credentials`` only when credentials are enabled; the Origin is still
    echoed rather than ``*``."""
    app = await make_app(cors_credentials=False)
    async with client_for(app) as client:
        response = await client.get("/", headers={"Origin": ORIGIN})
        assert response.headers.get("access-control-allow-origin") in (ORIGIN, "*")
        assert "access-control-allow-credentials" not in response.headers


async def test_bc25_preflight_needs_no_auth(make_app: MakeApp) -> None:
    """§11.3, §12.4: preflights succeed without authentication (browsers never send
    credentials on them), even when admins are configured."""
    app = await make_app(admins={"admin": "pw"})
    async with client_for(app) as client:
        response = await client.options("/db/_changes", headers=PREFLIGHT)
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert 200 <= response.status_code < 300


# -- BC-09 (no attachments): size limits --------------------------------------------------------


async def test_bc09_document_too_large(make_app: MakeApp) -> None:
    """BC-09, §4.11: a doc over ``max_document_size`` → 413 ``document_too_large`` with the
    doc id as reason; nothing is written."""
    app = await make_app(max_document_size=200)
    async with client_for(app) as client:
        assert_ok(await client.put("/db"), 201)
        before = await snapshot(client, "db")
        response = await client.put("/db/big", json={"blob": "x" * 500})
        assert_error(response, 413, "document_too_large", "big")
        assert await snapshot(client, "db") == before
        assert_ok(await client.put("/db/small", json={"blob": "x" * 10}), 201)


async def test_bc09_request_too_large(make_app: MakeApp) -> None:
    """BC-09, §4.11: a request body over the server's limit → 413 ``too_large`` "the
    request entity is too large"; nothing is written."""
    app = await make_app(max_request_size=1000)
    async with client_for(app) as client:
        assert_ok(await client.put("/db"), 201)
        before = await snapshot(client, "db")
        docs = [{"_id": f"d{i}", "blob": "x" * 100} for i in range(20)]
        response = await client.post("/db/_bulk_docs", json={"docs": docs})
        assert_error(response, 413, "too_large", "the request entity is too large")
        assert await snapshot(client, "db") == before
