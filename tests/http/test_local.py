"""``_local`` documents (checkpoints), §8.1 with CouchDB 3 semantics (no conflict check,
``0-N`` revs), d01[40-46, 74] and BC-03."""

from __future__ import annotations

import httpx
import pytest

from . import assert_error, assert_ok, bulk_docs, enc

CDB_CHECKPOINT = {
    "session_id": "d5a34cbbdafa70e0db5cb57d02a6b955",
    "source_last_seq": "5-g1AAAAB5eJzLYWBgYMpgTmEQTM4vTc5ISXIwNDLXMwBCwxyQ",
    "replication_id_version": 4,
    "history": [
        {
            "session_id": "d5a34cbbdafa70e0db5cb57d02a6b955",
            "start_time": "Thu, 10 Oct 2024 05:56:38 GMT",
            "recorded_seq": 5,
            "docs_written": 2,
            "nested": {"float": 1.5, "null": None, "list": [1, "two", {"three": 3}], "unicode": "été 😀"},
        }
    ],
}


async def test_local_lifecycle_couchdb3(client: httpx.AsyncClient, db: str) -> None:
    """§8.1, d01[40-46]: PUT → ``0-1``; GET returns the body verbatim; PUT with
    ``_rev: 0-1`` → ``0-2``; a stale ``_rev`` is **not** a conflict in CouchDB 3 (``0-1``
    again → ``0-2``); DELETE → 200 ``0-0``; then GET → 404 ``missing``."""
    path = f"/{db}/_local/check-1"
    response = await client.put(path, json={"last_seq": "1-abc", "note": "local"})
    assert assert_ok(response, 201) == {"ok": True, "id": "_local/check-1", "rev": "0-1"}
    got = assert_ok(await client.get(path), 200)
    assert got == {"_id": "_local/check-1", "_rev": "0-1", "last_seq": "1-abc", "note": "local"}
    response = await client.put(path, json={"_rev": "0-1", "last_seq": "2-abc"})
    assert assert_ok(response, 201) == {"ok": True, "id": "_local/check-1", "rev": "0-2"}
    response = await client.put(path, json={"_rev": "0-1", "last_seq": "stale"})
    assert assert_ok(response, 201) == {"ok": True, "id": "_local/check-1", "rev": "0-2"}
    assert assert_ok(await client.get(path), 200) == {
        "_id": "_local/check-1",
        "_rev": "0-2",
        "last_seq": "stale",
    }
    response = await client.delete(path, params={"rev": "0-2"})
    assert assert_ok(response, 200) == {"ok": True, "id": "_local/check-1", "rev": "0-0"}
    assert_error(await client.get(path), 404, "not_found", "missing")
    assert_error(await client.get(f"/{db}/_local/never-existed"), 404, "not_found", "missing")
    response = await client.delete(f"/{db}/_local/never-existed", params={"rev": "0-1"})
    assert_error(response, 404, "not_found", "missing")


async def test_local_without_rev_and_with_higher_rev(client: httpx.AsyncClient, db: str) -> None:
    """§8.1: the new rev is the sent ``0-N`` (or 0 when absent) plus one: no ``_rev`` on
    an existing doc → ``0-1``; ``0-41`` → ``0-42``."""
    path = f"/{db}/_local/cp"
    await client.put(path, json={"a": 1})
    await client.put(path, json={"_rev": "0-1", "a": 2})
    assert assert_ok(await client.put(path, json={"a": 3}), 201)["rev"] == "0-1"
    assert assert_ok(await client.put(path, json={"_rev": "0-41", "a": 4}), 201)["rev"] == "0-42"
    assert assert_ok(await client.get(path), 200) == {"_id": "_local/cp", "_rev": "0-42", "a": 4}


async def test_local_checkpoint_round_trips_verbatim(client: httpx.AsyncClient, db: str) -> None:
    """§8.1, §8.2: ``_revisions`` (CDB sends ``{"start":0,"ids":["3"]}``), ``_rev`` and
    ``_id`` are stripped; every other field is stored and returned verbatim."""
    path = f"/{db}/_local/0b6b5c6e9f0a4d2e8c1b7a6f5e4d3c2b"
    await client.put(path, json=CDB_CHECKPOINT)
    body = {**CDB_CHECKPOINT, "_id": "_local/other", "_rev": "0-1", "_revisions": {"start": 0, "ids": ["1"]}}
    assert assert_ok(await client.put(path, json=body), 201)["rev"] == "0-2"
    got = assert_ok(await client.get(path), 200)
    assert got == {"_id": "_local/0b6b5c6e9f0a4d2e8c1b7a6f5e4d3c2b", "_rev": "0-2", **CDB_CHECKPOINT}
    assert_error(await client.get(f"/{db}/_local/other"), 404, "not_found", "missing")


async def test_local_pouchdb_checkpoint_id(client: httpx.AsyncClient, db: str) -> None:
    """§8.3, BC-03: PouchDB checkpoint ids (``=``, ``.``, ``_`` percent-encoded) round-trip."""
    doc_id = "Zm9vYmFy.x_abc=="
    body = {"session_id": "1b2f6c7a", "last_seq": 42, "replicator": "pouchdb", "version": 1, "history": []}
    response = await client.put(f"/{db}/_local/{enc(doc_id)}", json=body)
    assert assert_ok(response, 201) == {"ok": True, "id": f"_local/{doc_id}", "rev": "0-1"}
    got = assert_ok(await client.get(f"/{db}/_local/{enc(doc_id)}"), 200)
    assert got == {"_id": f"_local/{doc_id}", "_rev": "0-1", **body}


async def test_local_deleted_flag_deletes(client: httpx.AsyncClient, db: str) -> None:
    """§8.1: ``_deleted: true`` in a PUT body deletes the ``_local`` doc."""
    path = f"/{db}/_local/cp"
    await client.put(path, json={"a": 1})
    response = await client.put(path, json={"_rev": "0-1", "_deleted": True})
    body = assert_ok(response, 200)
    assert body["ok"] is True and body["id"] == "_local/cp"
    assert_error(await client.get(path), 404, "not_found", "missing")


@pytest.mark.parametrize("rev", ["0-abc", "1-abc", "abc", "0-", "0-1.5", 7])
async def test_local_bad_rev(client: httpx.AsyncClient, db: str, rev: object) -> None:
    """§8.1: a ``_rev`` that is not ``0-<integer>`` → 400 ``bad_request`` "Invalid rev
    format"; the stored doc is unchanged."""
    path = f"/{db}/_local/cp"
    await client.put(path, json={"a": 1})
    assert_error(await client.put(path, json={"_rev": rev, "a": 2}), 400, "bad_request", "Invalid rev format")
    assert assert_ok(await client.get(path), 200) == {"_id": "_local/cp", "_rev": "0-1", "a": 1}


async def test_local_ignores_read_options(client: httpx.AsyncClient, db: str) -> None:
    """§8.1: query options such as ``revs`` and ``conflicts`` are ignored on ``_local``."""
    path = f"/{db}/_local/cp"
    await client.put(path, json={"a": 1})
    got = assert_ok(
        await client.get(path, params={"revs": "true", "conflicts": "true", "revs_info": "true"}), 200
    )
    assert got == {"_id": "_local/cp", "_rev": "0-1", "a": 1}


async def test_local_via_bulk_docs(client: httpx.AsyncClient, db: str) -> None:
    """§8.1: ``_bulk_docs`` entries with ``_local/`` ids are written the same way (also
    with ``new_edits:false``)."""
    [result] = await bulk_docs(client, db, [{"_id": "_local/b1", "x": 1}])
    assert result == {"ok": True, "id": "_local/b1", "rev": "0-1"}
    assert await bulk_docs(client, db, [{"_id": "_local/b1", "_rev": "0-1", "x": 2}], new_edits=False) == []
    assert assert_ok(await client.get(f"/{db}/_local/b1"), 200) == {"_id": "_local/b1", "_rev": "0-2", "x": 2}


async def test_local_put_body_must_be_object(client: httpx.AsyncClient, db: str) -> None:
    """§10.2, d01[11, 13]: a ``_local`` PUT body that is not a JSON object → 400; broken
    JSON → 400 "invalid UTF-8 JSON"."""
    path = f"/{db}/_local/cp"
    assert_error(await client.put(path, json=[1, 2]), 400, "bad_request", "Document must be a JSON object")
    response = await client.put(path, content=b'{"a": 1,', headers={"Content-Type": "application/json"})
    assert_error(response, 400, "bad_request", "invalid UTF-8 JSON")
    assert_error(await client.get(path), 404, "not_found", "missing")
