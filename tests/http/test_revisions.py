"""Revision trees, interactive and replicated writes, tombstones: BC-10, BC-11, §4, §5.

Reading single documents (``rev``, ``revs``, ``revs_info``, conflicts, ``ETag``) is
here too; ``open_revs`` and ``_bulk_get`` are in ``test_bulk.py``.
"""

from __future__ import annotations

import re

import httpx
import pytest

from . import (
    NEW_EDITS_FALSE_NEEDS_REV,
    assert_error,
    assert_ok,
    bulk_docs,
    changes,
    db_info,
    put,
    replicate,
    revisions,
)

REV_RE = re.compile(r"^[1-9][0-9]*-[0-9a-f]{32}$")
CONFLICT = "Document update conflict."

# -- BC-10: new_edits=false -------------------------------------------------------------


async def test_bc10_new_edits_false(client: httpx.AsyncClient, db: str) -> None:
    """BC-10 exactly: a ``new_edits:false`` doc without ``_rev``/``_revisions`` fails the
    whole request (400); success is ``201 []``; ``_revisions`` builds the path (winner
    ``3-c``); the same rule for a single PUT; ``new_edits`` must be a boolean."""
    response = await client.post(
        f"/{db}/_bulk_docs",
        json={"new_edits": False, "docs": [{"_id": "a", "_rev": "1-x", "v": 1}, {"_id": "b", "v": 2}]},
    )
    assert_error(response, 400, "bad_request", NEW_EDITS_FALSE_NEEDS_REV)
    assert_error(await client.get(f"/{db}/a"), 404, "not_found", "missing")

    response = await client.post(
        f"/{db}/_bulk_docs", json={"new_edits": False, "docs": [{"_id": "a", "_rev": "1-x", "v": 1}]}
    )
    assert assert_ok(response, 201) == []
    assert assert_ok(await client.get(f"/{db}/a"), 200) == {"_id": "a", "_rev": "1-x", "v": 1}

    doc = {"_id": "a", "_revisions": {"start": 3, "ids": ["c", "b", "x"]}, "v": 3}
    response = await client.post(f"/{db}/_bulk_docs", json={"new_edits": False, "docs": [doc]})
    assert assert_ok(response, 201) == []
    assert assert_ok(await client.get(f"/{db}/a"), 200) == {"_id": "a", "_rev": "3-c", "v": 3}
    got = assert_ok(await client.get(f"/{db}/a", params={"revs": "true"}), 200)
    assert got == {"_id": "a", "_rev": "3-c", "v": 3, "_revisions": {"start": 3, "ids": ["c", "b", "x"]}}

    response = await client.put(f"/{db}/c", params={"new_edits": "false"}, json={"v": 1})
    assert_error(response, 400, "bad_request", NEW_EDITS_FALSE_NEEDS_REV)
    response = await client.put(f"/{db}/c", params={"new_edits": "false"}, json={"_rev": "1-q", "v": 1})
    assert assert_ok(response, 201) == {"ok": True, "id": "c", "rev": "1-q"}

    response = await client.post(f"/{db}/_bulk_docs", json={"new_edits": "no", "docs": []})
    assert_error(response, 400, "bad_request", "`new_edits` parameter must be a boolean.")


async def test_new_edits_false_put_with_revisions(client: httpx.AsyncClient, db: str) -> None:
    """d01[16-17]: ``PUT ?new_edits=false`` with ``_rev`` and ``_revisions`` → 201 with the
    given rev; without either → 400."""
    response = await client.put(f"/{db}/doc-ne", params={"new_edits": "false"}, json={"v": "no _rev"})
    assert_error(response, 400, "bad_request", NEW_EDITS_FALSE_NEEDS_REV)
    ids = [
        "6a0e7e9ef3d4e1b8c5a2f9d0b1c2d3e4",
        "5a0e7e9ef3d4e1b8c5a2f9d0b1c2d3e4",
        "4a0e7e9ef3d4e1b8c5a2f9d0b1c2d3e4",
    ]
    doc = {"_rev": f"3-{ids[0]}", "v": "with _rev", "_revisions": {"start": 3, "ids": ids}}
    response = await client.put(f"/{db}/doc-ne", params={"new_edits": "false"}, json=doc)
    assert assert_ok(response, 201) == {"ok": True, "id": "doc-ne", "rev": f"3-{ids[0]}"}


async def test_replayed_revision_is_an_idempotent_no_op(client: httpx.AsyncClient, db: str) -> None:
    """BC-10, d01[21], §4.10, §6.1: writing an existing revision again succeeds (``[]``),
    keeps the first body, and gets no new seq (also several copies in one batch)."""
    doc = {"_id": "ne-1", "_rev": "2-b", "_revisions": revisions("2-b", "1-a"), "v": "replicated"}
    again = {**doc, "v": "same rev again"}
    await replicate(client, db, doc, again, {"_id": "ne-3", "_rev": "1-c", "v": "no _revisions"})
    seq = (await db_info(client, db))["update_seq"]
    feed = await changes(client, db)
    await replicate(client, db, again)
    await replicate(client, db, {"_id": "ne-1", "_rev": "1-a", "v": "ancestor, known by id only"})
    assert (await db_info(client, db))["update_seq"] == seq
    assert await changes(client, db) == feed
    assert assert_ok(await client.get(f"/{db}/ne-1"), 200) == {
        "_id": "ne-1",
        "_rev": "2-b",
        "v": "replicated",
    }


async def test_new_edits_false_never_conflicts(client: httpx.AsyncClient, db: str) -> None:
    """§4.10, §5.3, d01[51-52]: replicated branches merge without a conflict check; the
    winner is the highest (not deleted, pos, revid); the loser is in ``_conflicts``."""
    await put(client, f"/{db}/doc-1", {"v": 1})
    rev1 = assert_ok(await client.get(f"/{db}/doc-1"), 200)["_rev"]
    c = "2-" + "c" * 32
    d = "2-" + "d" * 32
    await replicate(
        client,
        db,
        {"_id": "doc-1", "_rev": c, "v": "branch c", "_revisions": revisions(c, rev1)},
        {"_id": "doc-1", "_rev": d, "v": "branch d", "_revisions": revisions(d, rev1)},
    )
    got = assert_ok(await client.get(f"/{db}/doc-1", params={"conflicts": "true"}), 200)
    assert got == {"_id": "doc-1", "_rev": d, "v": "branch d", "_conflicts": [c]}
    assert assert_ok(await client.get(f"/{db}/doc-1"), 200) == {"_id": "doc-1", "_rev": d, "v": "branch d"}


async def test_live_leaf_beats_longer_deleted_leaf(client: httpx.AsyncClient, db: str) -> None:
    """§5.3, §4.5, §6.3: any non-deleted leaf wins over every deleted leaf, however deep;
    the deleted leaf shows in ``_deleted_conflicts``, not ``_conflicts``; the doc is not
    deleted in ``_changes`` or ``_all_docs``."""
    await replicate(
        client,
        db,
        {"_id": "w", "_rev": "3-c", "_deleted": True, "_revisions": revisions("3-c", "2-b", "1-a")},
        {"_id": "w", "_rev": "2-d", "v": "live", "_revisions": revisions("2-d", "1-a")},
    )
    got = assert_ok(
        await client.get(f"/{db}/w", params={"conflicts": "true", "deleted_conflicts": "true"}), 200
    )
    assert got == {"_id": "w", "_rev": "2-d", "v": "live", "_deleted_conflicts": ["3-c"]}
    [row] = (await changes(client, db, style="all_docs"))["results"]
    assert row["id"] == "w" and "deleted" not in row
    assert row["changes"] == [{"rev": "2-d"}, {"rev": "3-c"}]
    [adrow] = assert_ok(await client.get(f"/{db}/_all_docs"), 200)["rows"]
    assert adrow == {"id": "w", "key": "w", "value": {"rev": "2-d"}}
    info = await db_info(client, db)
    assert (info["doc_count"], info["doc_del_count"]) == (1, 0)


async def test_uppercase_hex_revs_are_lowercased(client: httpx.AsyncClient, db: str) -> None:
    """§4.3: a 32-character hex revid is canonical lower case; a 32-character non-hex
    revid is ``Invalid rev format`` (``_rev``) / ``RevId isn't a valid hexadecimal``
    (``_revisions``)."""
    upper = "1-" + "ABCDEF0123456789" * 2
    response = await client.put(f"/{db}/u", params={"new_edits": "false"}, json={"_rev": upper})
    assert assert_ok(response, 201)["rev"] == upper.lower()
    assert assert_ok(await client.get(f"/{db}/u", params={"rev": upper}), 200)["_rev"] == upper.lower()
    bad = "1-" + "g" * 32
    response = await client.put(f"/{db}/v", params={"new_edits": "false"}, json={"_rev": bad})
    assert_error(response, 400, "bad_request", "Invalid rev format")
    doc = {"_id": "v", "_revisions": {"start": 1, "ids": ["g" * 32]}}
    response = await client.post(f"/{db}/_bulk_docs", json={"new_edits": False, "docs": [doc]})
    assert_error(response, 400, "doc_validation", "RevId isn't a valid hexadecimal")


# -- BC-11: tombstones ------------------------------------------------------------------


async def test_bc11_tombstones(client: httpx.AsyncClient, db: str) -> None:
    """BC-11 exactly: delete, read the tombstone, stale-rev writes conflict, recreate
    continues from the tombstone (``3-``), ``_revisions`` spans all three."""
    rev_a = (await put(client, f"/{db}/t", {"v": 1}))["rev"]
    assert rev_a.startswith("1-")
    response = await client.delete(f"/{db}/t", params={"rev": rev_a})
    deleted = assert_ok(response, 200)
    rev_b = deleted["rev"]
    assert deleted == {"ok": True, "id": "t", "rev": rev_b} and rev_b.startswith("2-")
    assert_error(await client.get(f"/{db}/t"), 404, "not_found", "deleted")
    tomb = assert_ok(await client.get(f"/{db}/t", params={"rev": rev_b}), 200)
    assert tomb == {"_id": "t", "_rev": rev_b, "_deleted": True}
    assert_error(await client.put(f"/{db}/t", json={"_rev": rev_a, "v": 9}), 409, "conflict", CONFLICT)
    assert_error(await client.delete(f"/{db}/t", params={"rev": rev_a}), 409, "conflict", CONFLICT)
    recreated = await put(client, f"/{db}/t", {"v": 2})
    rev_c = recreated["rev"]
    assert rev_c.startswith("3-")
    got = assert_ok(await client.get(f"/{db}/t", params={"revs": "true"}), 200)
    ids = [r.split("-", 1)[1] for r in (rev_c, rev_b, rev_a)]
    assert got == {"_id": "t", "_rev": rev_c, "v": 2, "_revisions": {"start": 3, "ids": ids}}


async def test_bc11_tombstone_with_body(client: httpx.AsyncClient, db: str) -> None:
    """BC-11, §4.6, §4.9(7): a tombstone written by PUT keeps its body; the PUT of a
    deletion answers 200 (CouchDB's ``update_doc``: deleted → ``ok``); ``_changes``
    marks the row ``deleted``; ``open_revs=all`` lists the deleted leaf."""
    rev_d = (await put(client, f"/{db}/u", {"type": "note"}))["rev"]
    response = await client.put(f"/{db}/u", json={"_rev": rev_d, "_deleted": True, "type": "note"})
    written = assert_ok(response, 200)
    rev_e = written["rev"]
    assert written == {"ok": True, "id": "u", "rev": rev_e} and rev_e.startswith("2-")
    got = assert_ok(await client.get(f"/{db}/u", params={"rev": rev_e}), 200)
    assert got == {"_id": "u", "_rev": rev_e, "_deleted": True, "type": "note"}
    [row] = (await changes(client, db, style="all_docs"))["results"]
    assert row["id"] == "u" and row["deleted"] is True and row["changes"] == [{"rev": rev_e}]
    leaves = assert_ok(await client.get(f"/{db}/u", params={"open_revs": "all"}), 200)
    assert leaves == [{"ok": {"_id": "u", "_rev": rev_e, "_deleted": True, "type": "note"}}]


async def test_deleted_doc_accepts_only_revless_recreate(client: httpx.AsyncClient, db: str) -> None:
    """§4.9(3): on a deleted doc, a PUT naming the tombstone rev, and a second deletion,
    are 409 in CouchDB 3 (``merge_rev_tree``: only a rev-less recreate is grafted)."""
    rev_a = (await put(client, f"/{db}/t", {"v": 1}))["rev"]
    rev_b = assert_ok(await client.delete(f"/{db}/t", params={"rev": rev_a}), 200)["rev"]
    assert_error(await client.put(f"/{db}/t", json={"_rev": rev_b, "v": 2}), 409, "conflict", CONFLICT)
    assert_error(await client.delete(f"/{db}/t", params={"rev": rev_b}), 409, "conflict", CONFLICT)
    response = await client.put(f"/{db}/t", json={"_deleted": True})
    assert_error(response, 409, "conflict", CONFLICT)
    assert_error(await client.get(f"/{db}/t"), 404, "not_found", "deleted")


async def test_delete_rules(client: httpx.AsyncClient, db: str) -> None:
    """§7.7, d01[48-50]: DELETE → 200 with the tombstone rev and ``ETag``; a missing doc
    → 404 ``missing``; no rev on an existing doc → 409; ``If-Match`` names the rev."""
    assert_error(await client.delete(f"/{db}/nope", params={"rev": "1-abc"}), 404, "not_found", "missing")
    rev = (await put(client, f"/{db}/doc-2", {"v": 1}))["rev"]
    assert_error(await client.delete(f"/{db}/doc-2"), 409, "conflict", CONFLICT)
    response = await client.delete(f"/{db}/doc-2", headers={"If-Match": f'"{rev}"'})
    body = assert_ok(response, 200)
    assert body["ok"] is True and body["id"] == "doc-2" and body["rev"].startswith("2-")
    assert response.headers["etag"] == f'"{body["rev"]}"'
    assert_error(await client.get(f"/{db}/doc-2"), 404, "not_found", "deleted")


# -- §4.9: interactive writes ------------------------------------------------------------


async def test_interactive_conflicts(client: httpx.AsyncClient, db: str) -> None:
    """§4.9, d01[8-10]: a new doc gets ``1-<32 hex>``; no rev on an existing doc, a stale
    rev, or an unknown rev → 409; a rev for a doc that does not exist → 409."""
    created = await put(client, f"/{db}/doc-1", {"v": 1})
    assert created["ok"] is True and REV_RE.match(created["rev"]) and created["rev"].startswith("1-")
    assert_error(await client.put(f"/{db}/doc-1", json={"v": "no rev"}), 409, "conflict", CONFLICT)
    stale = {"_rev": "1-00000000000000000000000000000000", "v": "stale rev"}
    assert_error(await client.put(f"/{db}/doc-1", json=stale), 409, "conflict", CONFLICT)
    updated = await put(client, f"/{db}/doc-1", {"_rev": created["rev"], "v": 2})
    assert updated["rev"].startswith("2-") and REV_RE.match(updated["rev"])
    old = {"_rev": created["rev"], "v": "edit of a non-leaf"}
    assert_error(await client.put(f"/{db}/doc-1", json=old), 409, "conflict", CONFLICT)
    response = await client.put(f"/{db}/fresh", json={"_rev": "1-abc", "v": 1})
    assert_error(response, 409, "conflict", CONFLICT)


async def test_editing_a_losing_leaf_is_allowed(client: httpx.AsyncClient, db: str) -> None:
    """§4.9(2), §5.4: any leaf may be edited (that is how conflicts are resolved);
    deleting the losing leaf leaves one live leaf and no ``_conflicts``."""
    await replicate(
        client,
        db,
        {"_id": "c", "_rev": "2-b", "v": "b", "_revisions": revisions("2-b", "1-a")},
        {"_id": "c", "_rev": "2-c", "v": "c", "_revisions": revisions("2-c", "1-a")},
    )
    got = assert_ok(await client.get(f"/{db}/c", params={"conflicts": "true"}), 200)
    assert got["_rev"] == "2-c" and got["_conflicts"] == ["2-b"]
    edited = await put(client, f"/{db}/c", {"_rev": "2-b", "v": "b edited"})
    assert edited["rev"].startswith("3-")
    got = assert_ok(await client.get(f"/{db}/c", params={"conflicts": "true"}), 200)
    assert got == {"_id": "c", "_rev": edited["rev"], "v": "b edited", "_conflicts": ["2-c"]}
    assert_ok(await client.delete(f"/{db}/c", params={"rev": "2-c"}), 200)
    got = assert_ok(await client.get(f"/{db}/c", params={"conflicts": "true"}), 200)
    assert got == {"_id": "c", "_rev": edited["rev"], "v": "b edited"}


async def test_rev_sources_must_agree(client: httpx.AsyncClient, db: str) -> None:
    """§4.9(4): body ``_rev`` and ``?rev=`` that differ → 400 "Document rev from request
    body and query string have different values"; equal ones are fine."""
    rev = (await put(client, f"/{db}/d", {"v": 1}))["rev"]
    response = await client.put(f"/{db}/d", params={"rev": "1-" + "0" * 32}, json={"_rev": rev, "v": 2})
    assert_error(
        response, 400, "bad_request", "Document rev from request body and query string have different values"
    )
    updated = await put(client, f"/{db}/d", {"_rev": rev, "v": 2}, rev=rev)
    assert updated["rev"].startswith("2-")
    third = await put(client, f"/{db}/d", {"v": 3}, rev=updated["rev"])
    assert third["rev"].startswith("3-")


async def test_write_response_headers(client: httpx.AsyncClient, db: str) -> None:
    """§4.9(7), §7.6, §3.9: PUT and POST answer 201 ``{"ok","id","rev"}`` with
    ``ETag: "<rev>"`` and an absolute ``Location``; POST without ``_id`` generates one."""
    response = await client.put(f"/{db}/with%2Fslash", json={"v": 1})
    body = assert_ok(response, 201)
    assert response.headers["etag"] == f'"{body["rev"]}"'
    assert response.headers["location"] == f"http://127.0.0.1:5984/{db}/with%2Fslash"
    response = await client.post(f"/{db}", json={"v": 2})
    body = assert_ok(response, 201)
    assert set(body) == {"ok", "id", "rev"} and body["ok"] is True
    assert re.fullmatch(r"[0-9a-f]{32}", body["id"]), body
    assert response.headers["etag"] == f'"{body["rev"]}"'
    assert response.headers["location"].endswith(f"/{db}/{body['id']}")
    assert assert_ok(await client.get(f"/{db}/{body['id']}"), 200)["v"] == 2
    response = await client.post(f"/{db}", json={"_id": "named", "v": 3})
    assert assert_ok(response, 201)["id"] == "named"


async def test_special_fields(client: httpx.AsyncClient, db: str) -> None:
    """§4.2: ``_revs_info``, ``_local_seq``, ``_conflicts``, ``_deleted_conflicts`` are
    dropped on input, ``_access`` and ``_replication_*`` are kept, any other underscore
    field → 400 ``doc_validation`` "Bad special document member: _foo"."""
    doc = {
        "v": 1,
        "_revs_info": [],
        "_local_seq": 5,
        "_conflicts": ["1-x"],
        "_deleted_conflicts": [],
        "_access": ["alice"],
        "_replication_state": "triggered",
    }
    rev = (await put(client, f"/{db}/s", doc))["rev"]
    got = assert_ok(await client.get(f"/{db}/s"), 200)
    assert got == {"_id": "s", "_rev": rev, "v": 1, "_access": ["alice"], "_replication_state": "triggered"}
    response = await client.put(f"/{db}/s2", json={"_foo": 1})
    assert_error(response, 400, "doc_validation", "Bad special document member: _foo")
    response = await client.post(
        f"/{db}/_bulk_docs", json={"docs": [{"_id": "s3"}, {"_id": "s4", "_foo": 1}]}
    )
    assert_error(response, 400, "doc_validation", "Bad special document member: _foo")
    assert_error(await client.get(f"/{db}/s3"), 404, "not_found", "missing")


# -- reading one document ---------------------------------------------------------------


async def test_get_head_etag_304(client: httpx.AsyncClient, db: str) -> None:
    """d01[27-30], §7.4, §3.5: GET returns the winner with ``ETag: "<rev>"``;
    ``If-None-Match`` with it → 304; HEAD has GET's status and no body."""
    rev = (await put(client, f"/{db}/doc-1", {"v": 1}))["rev"]
    response = await client.get(f"/{db}/doc-1")
    assert assert_ok(response, 200) == {"_id": "doc-1", "_rev": rev, "v": 1}
    assert response.headers["etag"] == f'"{rev}"'
    response = await client.get(f"/{db}/doc-1", headers={"If-None-Match": f'"{rev}"'})
    assert response.status_code == 304 and response.content == b""
    response = await client.head(f"/{db}/doc-1")
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["etag"] == f'"{rev}"'
    response = await client.head(f"/{db}/missing-doc")
    assert response.status_code == 404 and response.content == b""
    response = await client.head(f"/{db}")
    assert response.status_code == 200 and response.content == b""
    response = await client.head("/nodb")
    assert response.status_code == 404 and response.content == b""


async def test_get_specific_revisions(client: httpx.AsyncClient, db: str) -> None:
    """§5.8: ``?rev=`` returns any stored revision (internal ones too); an unknown rev →
    404 ``missing``; ``latest=true`` with ``rev`` returns the winner; a malformed rev →
    400 ``Invalid rev format`` (d01[14])."""
    rev1 = (await put(client, f"/{db}/r", {"v": 1}))["rev"]
    rev2 = (await put(client, f"/{db}/r", {"_rev": rev1, "v": 2}))["rev"]
    assert assert_ok(await client.get(f"/{db}/r", params={"rev": rev1}), 200) == {
        "_id": "r",
        "_rev": rev1,
        "v": 1,
    }
    assert_error(await client.get(f"/{db}/r", params={"rev": "1-" + "0" * 32}), 404, "not_found", "missing")
    assert_error(await client.get(f"/{db}/r", params={"rev": "9-zzz"}), 404, "not_found", "missing")
    got = assert_ok(await client.get(f"/{db}/r", params={"rev": rev1, "latest": "true"}), 200)
    assert got["_rev"] == rev2
    for bad in ("not-a-rev", "abc", "-1", "x-1"):
        response = await client.get(f"/{db}/r", params={"rev": bad})
        assert_error(response, 400, "bad_request", "Invalid rev format")


async def test_revs_info(client: httpx.AsyncClient, db: str) -> None:
    """§4.5: ``revs_info`` walks from the returned revision to the root: ``available``
    (body stored), ``missing`` (known by id only), ``deleted``."""
    await replicate(
        client,
        db,
        {"_id": "ri", "_rev": "1-a", "v": 1},
        {"_id": "ri", "_rev": "3-c", "v": 3, "_revisions": revisions("3-c", "2-b", "1-a")},
    )
    got = assert_ok(await client.get(f"/{db}/ri", params={"revs_info": "true"}), 200)
    assert got["_revs_info"] == [
        {"rev": "3-c", "status": "available"},
        {"rev": "2-b", "status": "missing"},
        {"rev": "1-a", "status": "available"},
    ]
    rev4 = assert_ok(await client.delete(f"/{db}/ri", params={"rev": "3-c"}), 200)["rev"]
    got = assert_ok(await client.get(f"/{db}/ri", params={"rev": rev4, "revs_info": "true"}), 200)
    assert got["_revs_info"][0] == {"rev": rev4, "status": "deleted"}


@pytest.mark.parametrize("flag", ["revs", "conflicts", "revs_info", "meta", "include_docs"])
async def test_query_booleans_only_literal_true(client: httpx.AsyncClient, db: str, flag: str) -> None:
    """§13(5): only the literal ``true`` enables a flag; ``false``, ``0`` and junk do
    not."""
    rev = (await put(client, f"/{db}/q", {"v": 1}))["rev"]
    for value in ("false", "0", "no", "TRUE"):
        got = assert_ok(await client.get(f"/{db}/q", params={flag: value}), 200)
        assert got == {"_id": "q", "_rev": rev, "v": 1}, (flag, value, got)


async def test_bulk_docs_mixed_outcomes(client: httpx.AsyncClient, db: str) -> None:
    """BC-23, d01[19]: interactive ``_bulk_docs`` answers 201 with one entry per doc in
    input order: conflicts as ``{"id","error","reason"}``, successes as
    ``{"ok","id","rev"}``, a generated id for a doc without ``_id``."""
    rev1 = (await put(client, f"/{db}/doc-1", {"v": 1}))["rev"]
    rev2 = (await put(client, f"/{db}/doc-2", {"v": 1}))["rev"]
    docs = [
        {"_id": "doc-1", "v": "bulk conflict"},
        {"_id": "doc-2", "_rev": rev2, "v": "bulk update ok"},
        {"_id": "bulk-new", "v": "created"},
        {"v": "server-generated id"},
        {"_id": "doc-1", "_rev": "9-deadbeefdeadbeefdeadbeefdeadbeef", "v": "unknown rev"},
    ]
    result = await bulk_docs(client, db, docs)
    assert result[0] == {"id": "doc-1", "error": "conflict", "reason": CONFLICT}
    assert result[1]["ok"] is True and result[1]["id"] == "doc-2" and result[1]["rev"].startswith("2-")
    assert result[2]["ok"] is True and result[2]["id"] == "bulk-new" and REV_RE.match(result[2]["rev"])
    assert result[3]["ok"] is True and re.fullmatch(r"[0-9a-f]{32}", result[3]["id"])
    assert result[4] == {"id": "doc-1", "error": "conflict", "reason": CONFLICT}
    assert len(result) == 5
    assert assert_ok(await client.get(f"/{db}/doc-1"), 200)["_rev"] == rev1
    generated = assert_ok(await client.get(f"/{db}/{result[3]['id']}"), 200)
    assert generated["v"] == "server-generated id"


async def test_bulk_docs_duplicate_id(client: httpx.AsyncClient, db: str) -> None:
    """BC-23: an interactive batch with the same new id twice → 201, the first is created,
    the second is a per-doc ``conflict``."""
    result = await bulk_docs(client, db, [{"_id": "n1"}, {"_id": "n1"}])
    assert result[0]["ok"] is True and result[0]["id"] == "n1" and result[0]["rev"].startswith("1-")
    assert result[1] == {"id": "n1", "error": "conflict", "reason": CONFLICT}


async def test_bulk_docs_request_shape_errors(client: httpx.AsyncClient, db: str) -> None:
    """§7.2, d01[23]: ``docs`` missing, not an array, a doc that is not an object, a
    body that is not an object → 400 for the whole request, with CouchDB's reasons."""
    cases = [
        ({"nodocs": []}, "POST body must include `docs` parameter."),
        ({"docs": 5}, "`docs` parameter must be an array."),
        ({"docs": {"a": 1}}, "`docs` parameter must be an array."),
        ({"docs": [{"_id": "fine"}, "x"]}, "Document must be a JSON object"),
        ([{"_id": "x"}], "Request body must be a JSON object"),
    ]
    for body, reason in cases:
        response = await client.post(f"/{db}/_bulk_docs", json=body)
        assert_error(response, 400, "bad_request", reason)
    assert_error(await client.get(f"/{db}/fine"), 404, "not_found", "missing")


async def test_bulk_docs_empty_and_new_edits_false_empty(client: httpx.AsyncClient, db: str) -> None:
    """BC-23, BC-10: an empty batch is ``201 []`` both ways (never 200 or 202)."""
    assert await bulk_docs(client, db, []) == []
    assert await bulk_docs(client, db, [], new_edits=False) == []


async def test_new_edits_false_without_id(client: httpx.AsyncClient, db: str) -> None:
    """§4.1: a replicated doc without ``_id`` → 400 ``illegal_docid`` "Document id must
    not be empty" (no id is generated for ``new_edits:false``)."""
    response = await client.post(f"/{db}/_bulk_docs", json={"new_edits": False, "docs": [{"_rev": "1-a"}]})
    assert_error(response, 400, "illegal_docid", "Document id must not be empty")
    response = await client.post(f"/{db}/_bulk_docs", json={"docs": [{"_id": "", "v": 1}]})
    assert_error(response, 400, "illegal_docid", "Document id must not be empty")


async def test_design_docs_are_ordinary_replicated_docs(client: httpx.AsyncClient, db: str) -> None:
    """§4.1: ``_design/<name>`` docs are written by URL (``_design/x`` or ``_design%2Fx``)
    or body, listed in ``_changes`` and ``_all_docs``; ``_design/`` alone is illegal."""
    rev = (await put(client, f"/{db}/_design/x", {"views": {}}))["rev"]
    assert assert_ok(await client.get(f"/{db}/_design%2Fx"), 200)["_rev"] == rev
    [result] = await bulk_docs(client, db, [{"_id": "_design/y"}])
    assert result["ok"] is True
    ids = [r["id"] for r in (await changes(client, db))["results"]]
    assert ids == ["_design/x", "_design/y"]
    response = await client.post(f"/{db}/_bulk_docs", json={"docs": [{"_id": "_design/"}]})
    assert_error(response, 400, "illegal_docid", "Illegal document id `_design/`")
