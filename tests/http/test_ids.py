"""Doc ids on the wire and routing: BC-01, BC-03 (routing), BC-04, §1.1, §1.2, §4.1.

couchpoint's rule for a raw ``+`` in a path segment (BC-01): RFC 3986, the ``+`` is kept
(``Settings.decode_plus_to_space=False``); CouchDB's default (``+`` → space) is opt-in.
"""

from __future__ import annotations

import httpx
import pytest

from . import (
    ILLEGAL_DB_NAME,
    JSON,
    RESERVED_ID,
    assert_error,
    assert_ok,
    body_of,
    bulk_docs,
    changes,
    couch_enc,
    enc,
    put,
)
from .conftest import MakeApp, client_for

# -- BC-01: "+" ------------------------------------------------------------------------


async def test_percent_2b_is_plus_in_path_and_body(client: httpx.AsyncClient, db: str) -> None:
    """BC-01: ``%2B`` always decodes to ``+``; an id written through ``_bulk_docs`` with
    ``+`` is reachable by URL; ``_changes`` carries the raw ids."""
    created = await put(client, f"/{db}/a%2Bb", {})
    assert created["ok"] is True and created["id"] == "a+b"
    got = assert_ok(await client.get(f"/{db}/a%2Bb"), 200)
    assert got["_id"] == "a+b" and got["_rev"] == created["rev"]

    [result] = await bulk_docs(client, db, [{"_id": "x+y"}])
    assert result["ok"] is True and result["id"] == "x+y"
    got = assert_ok(await client.get(f"/{db}/x%2By"), 200)
    assert got["_id"] == "x+y"

    feed = await changes(client, db)
    assert sorted(row["id"] for row in feed["results"]) == ["a+b", "x+y"]
    assert b'"id":"a+b"' in (await client.get(f"/{db}/_changes")).content.replace(b" ", b"")


async def test_raw_plus_is_kept_by_default(client: httpx.AsyncClient, db: str) -> None:
    """BC-01 rule: couchpoint keeps a raw ``+`` (RFC 3986): ``PUT /db/c+d`` creates
    ``"c+d"``, readable by ``c+d`` and ``c%2Bd``; no doc ``"c d"`` appears."""
    created = await put(client, f"/{db}/c+d", {})
    assert created["id"] == "c+d"
    assert assert_ok(await client.get(f"/{db}/c+d"), 200)["_id"] == "c+d"
    assert assert_ok(await client.get(f"/{db}/c%2Bd"), 200)["_id"] == "c+d"
    assert_error(await client.get(f"/{db}/c%20d"), 404, "not_found", "missing")


async def test_decode_plus_to_space_setting(make_app: MakeApp) -> None:
    """BC-01: with ``decode_plus_to_space`` (CouchDB 3.x's default) a raw ``+`` in a path
    segment is a space, while ``%2B`` still means ``+``."""
    app = await make_app(decode_plus_to_space=True)
    async with client_for(app) as client:
        assert (await client.put("/db")).status_code == 201
        assert (await put(client, "/db/c+d", {}))["id"] == "c d"
        assert (await put(client, "/db/a%2Bb", {}))["id"] == "a+b"
        assert assert_ok(await client.get("/db/c%20d"), 200)["_id"] == "c d"


# -- BC-04: funny ids ------------------------------------------------------------------

FUNNY_IDS = [
    "users/42",
    "100%",
    "urn:x:1",
    "été 😀",
    "a\x00b",
    "a+b",
    "sp ace",
    "q?x=1&y",
    "h#sh",
    "semi;colon,comma",
    "quote\"'",
    "s8e_7z..7Ghw==",
    "back\\slash",
    "~tilde!*()",
    "tab\tnew\nline",
    "_design/funny/id",
]


@pytest.mark.parametrize("doc_id", FUNNY_IDS)
async def test_funny_ids_round_trip(client: httpx.AsyncClient, db: str, doc_id: str) -> None:
    """BC-04: an id written in a JSON body (``_bulk_docs``) is readable by URL in both
    encodings replicators use (PouchDB's ``encodeURIComponent`` and CouchDB's
    ``url_encode``), appears verbatim in ``_changes`` and ``_all_docs``, and can be updated
    and deleted through the URL."""
    [result] = await bulk_docs(client, db, [{"_id": doc_id, "v": 1}])
    assert result["ok"] is True and result["id"] == doc_id
    for path in (enc(doc_id), couch_enc(doc_id)):
        got = assert_ok(await client.get(f"/{db}/{path}"), 200)
        assert got == {"_id": doc_id, "_rev": result["rev"], "v": 1}
    assert [row["id"] for row in (await changes(client, db))["results"]] == [doc_id]
    all_docs = assert_ok(await client.get(f"/{db}/_all_docs"), 200)
    assert [row["id"] for row in all_docs["rows"]] == [doc_id]
    updated = await put(client, f"/{db}/{enc(doc_id)}", {"_rev": result["rev"], "v": 2})
    assert updated["id"] == doc_id
    deleted = assert_ok(
        await client.delete(f"/{db}/{couch_enc(doc_id)}", params={"rev": updated["rev"]}), 200
    )
    assert deleted["id"] == doc_id
    assert_error(await client.get(f"/{db}/{enc(doc_id)}"), 404, "not_found", "deleted")


@pytest.mark.parametrize(
    ("path", "doc_id"),
    [
        ("users%2F42", "users/42"),
        ("100%25", "100%"),
        ("urn:x:1", "urn:x:1"),
        ("%C3%A9t%C3%A9%20%F0%9F%98%80", "été 😀"),
        ("a%00b", "a\x00b"),
        ("_design%2Fddoc", "_design/ddoc"),
    ],
)
async def test_put_by_encoded_path(client: httpx.AsyncClient, db: str, path: str, doc_id: str) -> None:
    """BC-04: each path segment is percent-decoded on its own (``%2F`` stays inside the
    id, ``%25`` is ``%``, ``:`` needs no escape, UTF-8 and U+0000 are valid); the URL id
    wins over nothing else and round-trips."""
    created = await put(client, f"/{db}/{path}", {})
    assert created == {"ok": True, "id": doc_id, "rev": created["rev"]}
    got = assert_ok(await client.get(f"/{db}/{path}"), 200)
    assert got["_id"] == doc_id


async def test_slash_in_id_vs_attachment_path(client: httpx.AsyncClient, db: str) -> None:
    """BC-04: ``/db/users%2F42`` is doc ``users/42``; ``/db/users/42`` is attachment
    ``42`` of doc ``users``, which does not exist → 404 ``not_found`` ``missing``."""
    await put(client, f"/{db}/users%2F42", {})
    assert assert_ok(await client.get(f"/{db}/users%2F42"), 200)["_id"] == "users/42"
    assert_error(await client.get(f"/{db}/users/42"), 404, "not_found", "missing")


async def test_url_id_wins_over_body_id(client: httpx.AsyncClient, db: str) -> None:
    """§4.1: when the id is in the URL, it wins over any ``_id`` in the body."""
    created = await put(client, f"/{db}/from-url", {"_id": "from-body", "v": 1})
    assert created["id"] == "from-url"
    assert assert_ok(await client.get(f"/{db}/from-url"), 200)["v"] == 1
    assert_error(await client.get(f"/{db}/from-body"), 404, "not_found", "missing")


async def test_invalid_utf8_id_is_illegal_docid(client: httpx.AsyncClient, db: str) -> None:
    """BC-04: ``PUT /db/%FF`` → 400 ``illegal_docid`` "Document id must be valid UTF-8"."""
    assert_error(
        await client.put(f"/{db}/%FF", json={}), 400, "illegal_docid", "Document id must be valid UTF-8"
    )


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_stray_percent_is_invalid_url_encoding(client: httpx.AsyncClient, db: str, method: str) -> None:
    """BC-04: a ``%`` not followed by two hex digits → 400 ``bad_request``
    ``invalid_url_encoding`` (``chttpd:check_url_encoding``)."""
    response = await client.request(method, f"/{db}/bad%ZZ", json={} if method == "PUT" else None)
    assert response.request.url.raw_path == f"/{db}/bad%ZZ".encode()
    assert_error(response, 400, "bad_request", "invalid_url_encoding")


@pytest.mark.parametrize("path", ["_foo", "_bad_id", "_localfoo", "_designfoo", "%5Ffoo"])
async def test_put_reserved_id_is_illegal(client: httpx.AsyncClient, db: str, path: str) -> None:
    """BC-03/BC-04, d01[7]: ``PUT /db/_foo`` → 400 ``illegal_docid`` "Only reserved
    document ids may start with underscore." (also ``_localfoo``, and ``%5F`` = ``_``)."""
    assert_error(await client.put(f"/{db}/{path}", json={"a": 1}), 400, "illegal_docid", RESERVED_ID)


async def test_post_reserved_id_is_illegal(client: httpx.AsyncClient, db: str) -> None:
    """§4.1: the same rule for ``POST /db`` with ``_id`` in the body."""
    assert_error(await client.post(f"/{db}", json={"_id": "_foo"}), 400, "illegal_docid", RESERVED_ID)


@pytest.mark.parametrize("bad_id", [5, None, ["a"], {"a": 1}, True])
async def test_non_string_id_is_illegal(client: httpx.AsyncClient, db: str, bad_id: object) -> None:
    """§4.1: a non-string ``_id`` → 400 ``illegal_docid`` "Document id must be a string"
    (``couch_doc:validate_docid``), for the whole ``_bulk_docs`` request."""
    response = await client.post(f"/{db}/_bulk_docs", json={"docs": [{"_id": "ok1"}, {"_id": bad_id}]})
    assert_error(response, 400, "illegal_docid", "Document id must be a string")
    assert_error(await client.get(f"/{db}/ok1"), 404, "not_found", "missing")


async def test_bulk_docs_reserved_id_fails_whole_request(client: httpx.AsyncClient, db: str) -> None:
    """BC-04, d01[20]: ``_bulk_docs`` with one ``_bad`` id → 400 ``illegal_docid`` for the
    whole request; the valid doc before it is not written."""
    response = await client.post(f"/{db}/_bulk_docs", json={"docs": [{"_id": "ok1"}, {"_id": "_bad"}]})
    assert_error(response, 400, "illegal_docid", RESERVED_ID)
    assert_error(await client.get(f"/{db}/ok1"), 404, "not_found", "missing")
    assert (await changes(client, db))["results"] == []


async def test_copy_validates_destination_id(client: httpx.AsyncClient, db: str) -> None:
    """BC-04 (apache/couchdb#5117), d01[75]: ``COPY`` creates the destination doc, and the
    destination id is validated like any other (``_bad`` → 400 ``illegal_docid``)."""
    source = await put(client, f"/{db}/src", {"v": 1})
    copied = assert_ok(await client.request("COPY", f"/{db}/src", headers={"Destination": "copied"}), 201)
    assert copied["ok"] is True and copied["id"] == "copied"
    got = assert_ok(await client.get(f"/{db}/copied"), 200)
    assert got["v"] == 1 and got["_rev"] == copied["rev"]
    assert assert_ok(await client.get(f"/{db}/src"), 200)["_rev"] == source["rev"]
    response = await client.request("COPY", f"/{db}/src", headers={"Destination": "_bad"})
    assert_error(response, 400, "illegal_docid", RESERVED_ID)


# -- BC-03: _local routing --------------------------------------------------------------


async def test_local_raw_slash_and_encoded_slash(client: httpx.AsyncClient, db: str) -> None:
    """BC-03, d01[40-42]: ``_local/cp1`` and ``_local%2Fcp1`` are the same doc; ``_rev`` is
    ``0-N``."""
    response = await client.put(f"/{db}/_local/cp1", json={"last_seq": "5"})
    assert assert_ok(response, 201) == {"ok": True, "id": "_local/cp1", "rev": "0-1"}
    got = assert_ok(await client.get(f"/{db}/_local%2Fcp1"), 200)
    assert got == {"_id": "_local/cp1", "_rev": "0-1", "last_seq": "5"}
    response = await client.put(f"/{db}/_local%2Fcp1", json={"_rev": "0-1", "last_seq": "9"})
    assert assert_ok(response, 201) == {"ok": True, "id": "_local/cp1", "rev": "0-2"}
    got = assert_ok(await client.get(f"/{db}/_local/cp1"), 200)
    assert got == {"_id": "_local/cp1", "_rev": "0-2", "last_seq": "9"}


async def test_local_id_with_dots_and_escapes(client: httpx.AsyncClient, db: str) -> None:
    """BC-03 (apache/couchdb#1124): a PouchDB checkpoint id with ``..`` and ``%3D%3D``
    round-trips exactly; no dot-segment normalising."""
    response = await client.put(f"/{db}/_local/s8e_7z..7Ghw%3D%3D", json={"last_seq": 3})
    assert assert_ok(response, 201)["id"] == "_local/s8e_7z..7Ghw=="
    got = assert_ok(await client.get(f"/{db}/_local/s8e_7z..7Ghw%3D%3D"), 200)
    assert got == {"_id": "_local/s8e_7z..7Ghw==", "_rev": "0-1", "last_seq": 3}
    got = assert_ok(await client.get(f"/{db}/_local%2Fs8e_7z..7Ghw%3D%3D"), 200)
    assert got["_id"] == "_local/s8e_7z..7Ghw=="


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_local_attachment_path_rejected(client: httpx.AsyncClient, db: str, method: str) -> None:
    """BC-03: ``/db/_local/cp1/att`` → 400 "_local documents do not accept attachments."."""
    await client.put(f"/{db}/_local/cp1", json={})
    response = await client.request(
        method, f"/{db}/_local/cp1/att", content=b"x" if method == "PUT" else None
    )
    assert_error(response, 400, "bad_request", "_local documents do not accept attachments.")


@pytest.mark.parametrize("path", ["_local", "_local/"])
async def test_bare_local_is_invalid(client: httpx.AsyncClient, db: str, path: str) -> None:
    """BC-03: ``GET /db/_local`` → 400 "Invalid _local document id."."""
    assert_error(await client.get(f"/{db}/{path}"), 400, "bad_request", "Invalid _local document id.")


async def test_local_docs_never_in_changes_or_all_docs(client: httpx.AsyncClient, db: str) -> None:
    """BC-03, §8.1: ``_local`` docs never appear in ``_changes``, ``_all_docs`` or
    ``doc_count``, and do not move ``update_seq``."""
    await put(client, f"/{db}/visible", {})
    before = assert_ok(await client.get(f"/{db}"), 200)
    await client.put(f"/{db}/_local/cp1", json={"last_seq": "5"})
    [result] = await bulk_docs(client, db, [{"_id": "_local/cp2", "x": 1}])
    assert result["ok"] is True and result["id"] == "_local/cp2"
    after = assert_ok(await client.get(f"/{db}"), 200)
    assert after["update_seq"] == before["update_seq"]
    assert after["doc_count"] == 1
    assert [r["id"] for r in (await changes(client, db))["results"]] == ["visible"]
    assert [r["id"] for r in assert_ok(await client.get(f"/{db}/_all_docs"), 200)["rows"]] == ["visible"]


# -- §1.1 trailing slashes and empty segments --------------------------------------------


async def test_trailing_slash_is_the_same_resource(client: httpx.AsyncClient) -> None:
    """§1.1: ``/db``, ``/db/`` and ``/db//`` are one resource (both replicators use
    ``/db/``); never a redirect."""
    created = await client.put("/tdb/")
    assert assert_ok(created, 201) == {"ok": True}
    for path in ("/tdb", "/tdb/", "/tdb//"):
        response = await client.get(path)
        info = assert_ok(response, 200)
        assert info["db_name"] == "tdb"
    assert_error(await client.put("/tdb"), 412, "file_exists")
    await put(client, "/tdb//doc/", {"v": 1})
    assert assert_ok(await client.get("/tdb/doc"), 200)["v"] == 1
    assert [r["id"] for r in assert_ok(await client.get("/tdb/_all_docs/"), 200)["rows"]] == ["doc"]
    assert [r["id"] for r in assert_ok(await client.get("/tdb//_changes"), 200)["results"]] == ["doc"]
    await put(client, "/tdb/_local/x/", {"a": 1})
    assert assert_ok(await client.get("/tdb//_local/x"), 200) == {"_id": "_local/x", "_rev": "0-1", "a": 1}
    assert assert_ok(await client.delete("/tdb/"), 200) == {"ok": True}
    assert_error(await client.get("/tdb"), 404, "not_found", "Database does not exist.")


# -- §1.2 / §10: every error is JSON -----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/db/missing-doc"),
        ("GET", "/db/_design/nope"),
        ("GET", "/db/_nonexistent_handler"),
        ("GET", "/nodb"),
        ("GET", "/nodb/doc"),
        ("GET", "/db/_local/never-existed"),
        ("DELETE", "/db/_local/never-existed"),
    ],
)
async def test_404_bodies_are_couchdb_json(
    client: httpx.AsyncClient, db: str, method: str, path: str
) -> None:
    """§1.2, d01[3-5, 45-46, 74, 76-77]: 404s are ``{"error":"not_found","reason":...}``
    JSON with CouchDB's reasons (``missing`` for docs, ``Database does not exist.`` for
    dbs)."""
    reason = "Database does not exist." if path.startswith("/nodb") else "missing"
    assert_error(await client.request(method, path), 404, "not_found", reason)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", "/db"),
        ("GET", "/db/_bulk_docs"),
        ("PUT", "/db/_bulk_docs"),
        ("GET", "/db/_bulk_get"),
        ("GET", "/db/_revs_diff"),
        ("GET", "/db/_ensure_full_commit"),
        ("PUT", "/db/_changes"),
        ("DELETE", "/db/_all_docs"),
        ("PATCH", "/db/doc"),
        ("PATCH", "/db/_local/x"),
        ("DELETE", "/"),
        ("POST", "/_uuids"),
        ("PUT", "/_up"),
    ],
)
async def test_405_bodies_are_couchdb_json(
    client: httpx.AsyncClient, db: str, method: str, path: str
) -> None:
    """§1.2, §10.1: a wrong method → 405 ``method_not_allowed`` JSON, reason
    ``Only <methods> allowed``, with an ``Allow`` header."""
    response = await client.request(method, path, headers=JSON, content=b"{}")
    body = assert_error(response, 405, "method_not_allowed")
    assert body["reason"].startswith("Only ") and body["reason"].endswith(" allowed"), body
    allow = response.headers.get("allow")
    assert allow, "405 without Allow header"
    assert method not in {m.strip() for m in allow.split(",")}


async def test_unknown_server_endpoint(client: httpx.AsyncClient) -> None:
    """§3.4, §10.2: ``/_nope`` is no endpoint and no legal db name.  CouchDB answers it
    like a missing db (404 ``Database does not exist.``) or an illegal name (400
    ``illegal_database_name``); either is JSON with CouchDB's exact reason."""
    response = await client.get("/_nope")
    body = body_of(response)
    assert (response.status_code, body) in [
        (404, {"error": "not_found", "reason": "Database does not exist."}),
        (400, {"error": "illegal_database_name", "reason": ILLEGAL_DB_NAME.format("_nope")}),
    ], (response.status_code, body)
