"""Database endpoints: BC-22 (``update_seq``, ``instance_start_time``), the name rule
(§3.4), create/delete (§3.7, §3.8), 404 on every route of a missing db, ``_revs_limit``
(§3.11)."""

from __future__ import annotations

import httpx
import pytest

from . import (
    ILLEGAL_DB_NAME,
    JSON,
    assert_error,
    assert_ok,
    body_of,
    changes,
    db_info,
    put,
    replicate,
    revisions,
)

# -- BC-22 ------------------------------------------------------------------------------


async def test_bc22_db_info_fields(client: httpx.AsyncClient, db: str) -> None:
    """BC-22, §3.6, d01[1]: ``GET /db`` has ``db_name``, ``update_seq`` (same value as the
    feed's ``last_seq``), a string ``instance_start_time``, and the counts."""
    info = await db_info(client, db)
    for key in ("db_name", "update_seq", "instance_start_time", "doc_count", "doc_del_count", "sizes"):
        assert key in info, key
    assert info["db_name"] == db
    assert isinstance(info["instance_start_time"], str) and info["instance_start_time"]
    assert (info["doc_count"], info["doc_del_count"]) == (0, 0)
    assert info["update_seq"] == (await changes(client, db))["last_seq"]
    rev = (await put(client, f"/{db}/a", {}))["rev"]
    await put(client, f"/{db}/b", {})
    assert_ok(await client.delete(f"/{db}/a", params={"rev": rev}), 200)
    await put(client, f"/{db}/_local/cp", {"x": 1})
    info = await db_info(client, db)
    assert (info["doc_count"], info["doc_del_count"]) == (1, 1)
    assert info["update_seq"] == (await changes(client, db))["last_seq"]
    assert info["update_seq"] != 0


async def test_bc22_ensure_full_commit_and_recreate(client: httpx.AsyncClient, db: str) -> None:
    """BC-22, §3.10, d01[69-70]: ``_ensure_full_commit`` (JSON content type, empty body)
    → 201 ``{"ok":true,"instance_start_time":<same string as GET /db>}``; the value is
    stable for the db's life and different after delete + recreate."""
    first = (await db_info(client, db))["instance_start_time"]
    response = await client.post(f"/{db}/_ensure_full_commit", headers=JSON)
    assert assert_ok(response, 201) == {"ok": True, "instance_start_time": first}
    await put(client, f"/{db}/a", {})
    assert (await db_info(client, db))["instance_start_time"] == first
    response = await client.post(f"/{db}/_ensure_full_commit", headers=JSON, content=b"{}")
    assert assert_ok(response, 201) == {"ok": True, "instance_start_time": first}
    assert_ok(await client.delete(f"/{db}"), 200)
    assert_ok(await client.put(f"/{db}"), 201)
    second = (await db_info(client, db))["instance_start_time"]
    assert isinstance(second, str) and second != first
    response = await client.post(f"/{db}/_ensure_full_commit", headers=JSON)
    assert assert_ok(response, 201) == {"ok": True, "instance_start_time": second}


async def test_recreated_db_is_empty(client: httpx.AsyncClient, db: str) -> None:
    """§3.7, §3.8: a deleted and re-created db has no docs, no ``_local`` docs, and a feed
    that starts over."""
    await put(client, f"/{db}/a", {})
    await put(client, f"/{db}/_local/cp", {"x": 1})
    assert_ok(await client.delete(f"/{db}"), 200)
    assert_ok(await client.put(f"/{db}"), 201)
    info = await db_info(client, db)
    assert (info["doc_count"], info["doc_del_count"]) == (0, 0)
    assert (await changes(client, db))["results"] == []
    assert_error(await client.get(f"/{db}/a"), 404, "not_found", "missing")
    assert_error(await client.get(f"/{db}/_local/cp"), 404, "not_found", "missing")


# -- §3.4 names, §3.7 create, §3.8 delete -------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("Bad_DB_Name", "Bad_DB_Name"),
        ("1abc", "1abc"),
        ("abc.def", "abc.def"),
        ("a%20b", "a b"),
        ("%C3%A9t%C3%A9", "été"),
        ("_foo", "_foo"),
        ("-abc", "-abc"),
        ("abc%3F", "abc?"),
    ],
)
async def test_illegal_db_names(client: httpx.AsyncClient, path: str, name: str) -> None:
    """§3.4, d01[6]: ``PUT /<bad name>`` → 400 ``illegal_database_name`` with CouchDB's
    reason naming the decoded name; nothing is created."""
    assert_error(await client.put(f"/{path}"), 400, "illegal_database_name", ILLEGAL_DB_NAME.format(name))
    assert name not in assert_ok(await client.get("/_all_dbs"), 200)


@pytest.mark.parametrize(
    ("path", "name"),
    [("a", "a"), ("a-b_c$d(e)f+g", "a-b_c$d(e)f+g"), ("a%2Fb", "a/b"), ("z0", "z0"), ("a%2Bb", "a+b")],
)
async def test_legal_db_names(client: httpx.AsyncClient, path: str, name: str) -> None:
    """§3.4, §3.7: legal names are created (201 ``{"ok":true}`` with an absolute
    ``Location``), readable with ``db_name`` decoded (``%2F`` is a ``/`` inside the name),
    listed in ``_all_dbs``, usable for docs, and deleted with 200."""
    response = await client.put(f"/{path}")
    assert assert_ok(response, 201) == {"ok": True}
    assert response.headers["location"].startswith("http://127.0.0.1:5984/")
    assert (await db_info(client, path))["db_name"] == name
    assert name in assert_ok(await client.get("/_all_dbs"), 200)
    await put(client, f"/{path}/doc", {"v": 1})
    assert assert_ok(await client.get(f"/{path}/doc"), 200)["v"] == 1
    assert assert_ok(await client.delete(f"/{path}"), 200) == {"ok": True}
    assert_error(await client.get(f"/{path}"), 404, "not_found", "Database does not exist.")


async def test_create_existing_db(client: httpx.AsyncClient, db: str) -> None:
    """§3.7: ``PUT`` on an existing db → 412 ``file_exists`` "The database could not be
    created, the file already exists." (and the db keeps its data)."""
    await put(client, f"/{db}/a", {})
    response = await client.put(f"/{db}")
    assert_error(response, 412, "file_exists", "The database could not be created, the file already exists.")
    assert (await db_info(client, db))["doc_count"] == 1


async def test_delete_db_rules(client: httpx.AsyncClient, db: str) -> None:
    """§3.8: DELETE with ``?rev=`` → 400 (guard against a forgotten doc id; the db
    survives); a missing db → 404; a good DELETE → 200 ``{"ok":true}``."""
    assert_error(await client.delete(f"/{db}", params={"rev": "1-abc"}), 400, "bad_request")
    assert (await db_info(client, db))["db_name"] == db
    assert_error(await client.delete("/nodb"), 404, "not_found", "Database does not exist.")
    assert assert_ok(await client.delete(f"/{db}"), 200) == {"ok": True}


async def test_get_illegal_db_name(client: httpx.AsyncClient) -> None:
    """§10.2 notes: for methods other than PUT an invalid name may be treated as an absent
    db (404); CouchDB's ``illegal_database_name`` is also fine.  Never a 500."""
    response = await client.get("/Bad_DB_Name")
    body = body_of(response)
    assert (response.status_code, body) in [
        (404, {"error": "not_found", "reason": "Database does not exist."}),
        (400, {"error": "illegal_database_name", "reason": ILLEGAL_DB_NAME.format("Bad_DB_Name")}),
    ]


DB_ROUTES = [
    ("GET", "/nodb", None),
    ("DELETE", "/nodb", None),
    ("POST", "/nodb", b'{"v":1}'),
    ("GET", "/nodb/_changes", None),
    ("GET", "/nodb/_changes?feed=continuous&timeout=10", None),
    ("GET", "/nodb/_changes?feed=longpoll&timeout=10", None),
    ("POST", "/nodb/_changes", b"{}"),
    ("POST", "/nodb/_bulk_docs", b'{"docs":[{"_id":"a"}]}'),
    ("POST", "/nodb/_bulk_get", b'{"docs":[{"id":"a"}]}'),
    ("POST", "/nodb/_revs_diff", b'{"a":["1-x"]}'),
    ("POST", "/nodb/_missing_revs", b'{"a":["1-x"]}'),
    ("GET", "/nodb/_all_docs", None),
    ("POST", "/nodb/_all_docs", b'{"keys":["a"]}'),
    ("POST", "/nodb/_ensure_full_commit", b""),
    ("GET", "/nodb/_revs_limit", None),
    ("PUT", "/nodb/_revs_limit", b"10"),
    ("GET", "/nodb/_security", None),
    ("GET", "/nodb/doc", None),
    ("GET", "/nodb/doc?open_revs=all", None),
    ("GET", '/nodb/doc?open_revs=["1-x"]', None),
    ("PUT", "/nodb/doc", b'{"v":1}'),
    ("PUT", "/nodb/doc?new_edits=false", b'{"_rev":"1-x"}'),
    ("DELETE", "/nodb/doc?rev=1-x", None),
    ("COPY", "/nodb/doc", None),
    ("GET", "/nodb/_design/x", None),
    ("PUT", "/nodb/_design/x", b"{}"),
    ("GET", "/nodb/_local/x", None),
    ("PUT", "/nodb/_local/x", b"{}"),
    ("DELETE", "/nodb/_local/x", None),
    ("GET", "/nodb/", None),
    ("GET", "/nodb/_all_docs/", None),
]


@pytest.mark.parametrize(("method", "target", "body"), DB_ROUTES)
async def test_missing_db_is_404_on_every_route(
    client: httpx.AsyncClient, method: str, target: str, body: bytes | None
) -> None:
    """§3.6, d01[4-5]: every route under a missing db → 404 ``not_found`` "Database does
    not exist." (well-formed requests, JSON content type), and it is not created."""
    headers = {**JSON, "Destination": "copy"}
    response = await client.request(method, target, content=body, headers=headers)
    assert_error(response, 404, "not_found", "Database does not exist.")
    assert "nodb" not in assert_ok(await client.get("/_all_dbs"), 200)


async def test_revs_limit(client: httpx.AsyncClient, db: str) -> None:
    """§3.11, d01[71]: ``GET _revs_limit`` → bare ``1000``; ``PUT`` a positive integer →
    ``{"ok":true}``; stemming then keeps at most that many revisions in ``_revisions``."""
    assert assert_ok(await client.get(f"/{db}/_revs_limit"), 200) == 1000
    assert assert_ok(await client.put(f"/{db}/_revs_limit", content=b"3", headers=JSON), 200) == {"ok": True}
    assert assert_ok(await client.get(f"/{db}/_revs_limit"), 200) == 3
    await replicate(
        client, db, {"_id": "s", "_rev": "5-e", "_revisions": revisions("5-e", "4-d", "3-c", "2-b", "1-a")}
    )
    got = assert_ok(await client.get(f"/{db}/s", params={"revs": "true"}), 200)
    assert got["_revisions"] == {"start": 5, "ids": ["e", "d", "c"]}
    response = await client.post(f"/{db}/_revs_diff", json={"s": ["1-a", "3-c"]})
    assert assert_ok(response, 200) == {"s": {"missing": ["1-a"]}}
    for bad in (b"0", b"-1", b'"3"', b"1.5", b"{}"):
        response = await client.put(f"/{db}/_revs_limit", content=bad, headers=JSON)
        assert_error(response, 400, "bad_request")
    assert assert_ok(await client.get(f"/{db}/_revs_limit"), 200) == 3
