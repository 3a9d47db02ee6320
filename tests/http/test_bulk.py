"""Fetching revisions: ``_bulk_get`` (BC-20, §7.3), ``open_revs`` (BC-08, §5.8, §7.4,
§7.5) and ``_revs_diff`` / ``_missing_revs`` (§5.7, §7.1)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from . import (
    assert_error,
    assert_ok,
    body_of,
    parse_multipart,
    put,
    replicate,
    revisions,
)

MISSING = {"error": "not_found", "reason": "missing"}


async def d_at_2b(client: httpx.AsyncClient, db: str) -> None:
    """BC-20's doc ``d``: ``1-a`` then ``2-b``."""
    await replicate(
        client,
        db,
        {"_id": "d", "_rev": "1-a", "v": 1},
        {"_id": "d", "_rev": "2-b", "v": 2, "_revisions": revisions("2-b", "1-a")},
    )


def error_entry(doc_id: str | None, rev: str | None, error: str, reason: str) -> dict[str, Any]:
    return {"error": {"id": doc_id, "rev": rev, "error": error, "reason": reason}}


# -- BC-20: _bulk_get ------------------------------------------------------------------------


async def test_bc20_bulk_get(client: httpx.AsyncClient, db: str) -> None:
    """BC-20 exactly: one result per entry in request order, only ``results`` at the top
    level; ``latest`` follows ``1-a`` to ``2-b``; item-level errors for a missing doc, a
    missing rev, an entry without id and an entry that is not an object."""
    await d_at_2b(client, db)
    body = {
        "docs": [
            {"id": "d", "rev": "1-a"},
            {"id": "nope", "rev": "1-z"},
            {"id": "d"},
            {"id": "d", "rev": "9-q"},
            {},
            "x",
        ]
    }
    response = await client.post(f"/{db}/_bulk_get", params={"revs": "true", "latest": "true"}, json=body)
    d2 = {"_id": "d", "_rev": "2-b", "v": 2, "_revisions": {"start": 2, "ids": ["b", "a"]}}
    assert assert_ok(response, 200) == {
        "results": [
            {"id": "d", "docs": [{"ok": d2}]},
            {"id": "nope", "docs": [error_entry("nope", "1-z", "not_found", "missing")]},
            {"id": "d", "docs": [{"ok": d2}]},
            {"id": "d", "docs": [error_entry("d", "9-q", "not_found", "missing")]},
            {"id": None, "docs": [error_entry(None, None, "bad_request", "document id missed")]},
            {"id": None, "docs": [error_entry(None, None, "bad_request", "document must be a JSON object")]},
        ]
    }


async def test_bulk_get_recorded_answers(client: httpx.AsyncClient, db: str) -> None:
    """d01[25]: no rev on a missing doc → ``"rev":"undefined"``; an unknown rev of an
    existing doc → ``missing``; a malformed rev → ``bad_request`` "Invalid rev format"; a
    specific old rev without ``latest`` is that rev."""
    rev1 = (await put(client, f"/{db}/doc-1", {"v": 1}))["rev"]
    await put(client, f"/{db}/doc-2", {"v": 1})
    doc1 = {"_id": "doc-1", "_rev": rev1, "v": 1, "_revisions": {"start": 1, "ids": [rev1[2:]]}}
    body = {
        "docs": [
            {"id": "doc-1"},
            {"id": "doc-1", "rev": rev1},
            {"id": "no-such-doc"},
            {"id": "doc-1", "rev": "1-44444444444444444444444444444444"},
            {"id": "doc-2", "rev": "bad-rev"},
        ]
    }
    response = await client.post(f"/{db}/_bulk_get", params={"revs": "true"}, json=body)
    assert assert_ok(response, 200) == {
        "results": [
            {"id": "doc-1", "docs": [{"ok": doc1}]},
            {"id": "doc-1", "docs": [{"ok": doc1}]},
            {"id": "no-such-doc", "docs": [error_entry("no-such-doc", "undefined", "not_found", "missing")]},
            {
                "id": "doc-1",
                "docs": [error_entry("doc-1", "1-44444444444444444444444444444444", "not_found", "missing")],
            },
            {"id": "doc-2", "docs": [error_entry("doc-2", "bad-rev", "bad_request", "Invalid rev format")]},
        ]
    }


async def test_bulk_get_all_leaves_and_latest_branches(client: httpx.AsyncClient, db: str) -> None:
    """BC-20, §7.3: no ``rev`` means every leaf (one ``ok`` per leaf, tombstones
    included); ``latest`` on a shared ancestor returns every descendant leaf."""
    await replicate(
        client,
        db,
        {"_id": "d", "_rev": "1-a", "v": 1},
        {"_id": "d", "_rev": "2-b", "v": 2, "_revisions": revisions("2-b", "1-a")},
        {"_id": "d", "_rev": "2-c", "_deleted": True, "_revisions": revisions("2-c", "1-a")},
    )
    response = await client.post(
        f"/{db}/_bulk_get", params={"latest": "true"}, json={"docs": [{"id": "d"}, {"id": "d", "rev": "1-a"}]}
    )
    results = assert_ok(response, 200)["results"]
    leaves = [
        {"ok": {"_id": "d", "_rev": "2-b", "v": 2}},
        {"ok": {"_id": "d", "_rev": "2-c", "_deleted": True}},
    ]
    assert len(results) == 2
    for result in results:
        assert result["id"] == "d"
        assert sorted(result["docs"], key=lambda e: e["ok"]["_rev"]) == leaves


async def test_bulk_get_options_from_body_and_empty(client: httpx.AsyncClient, db: str) -> None:
    """§7.3: options may come as body keys too (the CouchDB replicator mirrors ``revs``
    and ``latest`` there); ``{"docs":[]}`` → ``{"results":[]}``; unknown keys ignored."""
    await d_at_2b(client, db)
    body = {
        "docs": [{"id": "d", "rev": "1-a", "atts_since": []}],
        "revs": True,
        "latest": True,
        "attachments": False,
    }
    response = await client.post(f"/{db}/_bulk_get", json=body)
    [result] = assert_ok(response, 200)["results"]
    assert result["docs"] == [
        {"ok": {"_id": "d", "_rev": "2-b", "v": 2, "_revisions": {"start": 2, "ids": ["b", "a"]}}}
    ]
    response = await client.post(f"/{db}/_bulk_get", json={"docs": []})
    assert assert_ok(response, 200) == {"results": []}


async def test_bulk_get_request_errors(client: httpx.AsyncClient, db: str) -> None:
    """BC-20, §7.3: a body without a ``docs`` list → 400 "Missing JSON list of 'docs'.";
    ``open_revs``/``rev``/``atts_since``/``new_edits``/``w`` in the query → 400
    ``"<param>" query parameter is not acceptable``; GET → 405."""
    for body in ({"nodocs": []}, {"docs": "x"}, {"docs": {"id": "d"}}):
        response = await client.post(f"/{db}/_bulk_get", json=body)
        assert_error(response, 400, "bad_request", "Missing JSON list of 'docs'.")
    for param in ("open_revs", "rev", "atts_since", "new_edits", "w"):
        response = await client.post(f"/{db}/_bulk_get", params={param: "all"}, json={"docs": []})
        assert_error(response, 400, "bad_request", f'"{param}" query parameter is not acceptable')
    assert_error(await client.get(f"/{db}/_bulk_get"), 405, "method_not_allowed")


async def test_bulk_get_multipart_mixed(client: httpx.AsyncClient, db: str) -> None:
    """§7.3, d01[26]: asked for ``multipart/mixed`` only, CouchDB sends one part per doc
    (``Content-Type: application/json``) and error parts (``application/json;
    error="true"``).  The multipart form is optional (§7.3): a JSON ``{"results"}``
    answer is also accepted, but a multipart one must be exactly right."""
    rev1 = (await put(client, f"/{db}/doc-1", {"v": 1}))["rev"]
    body = {
        "docs": [
            {"id": "doc-1", "rev": rev1},
            {"id": "no-such-doc", "rev": "1-55555555555555555555555555555555"},
        ]
    }
    response = await client.post(
        f"/{db}/_bulk_get",
        params={"revs": "true", "latest": "true"},
        json=body,
        headers={"Accept": "multipart/mixed"},
    )
    assert response.status_code == 200
    content_type = response.headers["content-type"]
    if content_type.split(";")[0].strip() == "application/json":
        assert set(body_of(response)) == {"results"}
        return
    assert content_type.startswith("multipart/mixed;"), content_type
    ok_part, error_part = parse_multipart(content_type, response.content)
    assert ok_part.headers == [("Content-Type", "application/json")]
    assert orjson.loads(ok_part.body) == {
        "_id": "doc-1",
        "_rev": rev1,
        "v": 1,
        "_revisions": {"start": 1, "ids": [rev1[2:]]},
    }
    assert error_part.headers == [("Content-Type", 'application/json; error="true"')]
    error = orjson.loads(error_part.body)
    assert error["error"] == "not_found" and error["reason"] == "missing"
    assert error["rev"] == "1-55555555555555555555555555555555"


# -- BC-08: open_revs ---------------------------------------------------------------------


async def d_aaa_bbb(client: httpx.AsyncClient, db: str) -> None:
    """BC-08's doc ``d``: ``1-aaa`` → ``2-bbb``."""
    await replicate(
        client,
        db,
        {"_id": "d", "_rev": "1-aaa", "v": 1},
        {"_id": "d", "_rev": "2-bbb", "v": 2, "_revisions": revisions("2-bbb", "1-aaa")},
    )


async def test_bc08_open_revs_json(client: httpx.AsyncClient, db: str) -> None:
    """BC-08 exactly (JSON forms, ``Accept: application/json``): an array in request
    order; unknown revs and revs of a missing doc are ``{"missing": rev}``; ``open_revs=all``
    on a missing doc → 404 ``missing``."""
    await d_aaa_bbb(client, db)
    response = await client.get(f"/{db}/d", params={"open_revs": '["2-bbb"]', "revs": "true"})
    assert assert_ok(response, 200) == [
        {"ok": {"_id": "d", "_rev": "2-bbb", "v": 2, "_revisions": {"start": 2, "ids": ["bbb", "aaa"]}}}
    ]
    assert assert_ok(await client.get(f"/{db}/d", params={"open_revs": '["9-zzz"]'}), 200) == [
        {"missing": "9-zzz"}
    ]
    assert assert_ok(await client.get(f"/{db}/nodoc", params={"open_revs": '["1-x"]'}), 200) == [
        {"missing": "1-x"}
    ]
    assert_error(await client.get(f"/{db}/nodoc", params={"open_revs": "all"}), 404, "not_found", "missing")
    response = await client.get(f"/{db}/d", params={"open_revs": '["2-bbb","9-zzz","1-aaa"]'})
    assert assert_ok(response, 200) == [
        {"ok": {"_id": "d", "_rev": "2-bbb", "v": 2}},
        {"missing": "9-zzz"},
        {"ok": {"_id": "d", "_rev": "1-aaa", "v": 1}},
    ]


async def test_bc08_open_revs_latest(client: httpx.AsyncClient, db: str) -> None:
    """BC-08, §5.8: ``latest=true`` replaces a requested rev with the leaf or leaves
    descending from it (not the rev itself); a leaf stays itself."""
    await d_aaa_bbb(client, db)
    response = await client.get(f"/{db}/d", params={"open_revs": '["1-aaa"]', "latest": "true"})
    assert assert_ok(response, 200) == [{"ok": {"_id": "d", "_rev": "2-bbb", "v": 2}}]
    await replicate(
        client, db, {"_id": "d", "_rev": "2-ccc", "v": 3, "_revisions": revisions("2-ccc", "1-aaa")}
    )
    response = await client.get(f"/{db}/d", params={"open_revs": '["1-aaa"]', "latest": "true"})
    assert sorted(e["ok"]["_rev"] for e in assert_ok(response, 200)) == ["2-bbb", "2-ccc"]
    response = await client.get(f"/{db}/d", params={"open_revs": '["2-bbb","9-zzz"]', "latest": "true"})
    assert assert_ok(response, 200) == [{"ok": {"_id": "d", "_rev": "2-bbb", "v": 2}}, {"missing": "9-zzz"}]


async def test_open_revs_all_includes_tombstones(client: httpx.AsyncClient, db: str) -> None:
    """BC-11, §5.8, d01[53]: ``open_revs=all`` returns every leaf, deleted ones included."""
    await d_aaa_bbb(client, db)
    await replicate(
        client, db, {"_id": "d", "_rev": "2-ccc", "_deleted": True, "_revisions": revisions("2-ccc", "1-aaa")}
    )
    response = await client.get(f"/{db}/d", params={"open_revs": "all"})
    entries = sorted(assert_ok(response, 200), key=lambda e: e["ok"]["_rev"])
    assert entries == [
        {"ok": {"_id": "d", "_rev": "2-bbb", "v": 2}},
        {"ok": {"_id": "d", "_rev": "2-ccc", "_deleted": True}},
    ]


@pytest.mark.parametrize("value", ["[2-bbb]", "{", '"2-bbb"', "[1]", '["bad"]', "{}"])
async def test_open_revs_malformed(client: httpx.AsyncClient, db: str, value: str) -> None:
    """§5.8: ``open_revs`` that is not ``all`` or a JSON array of valid revs → 400
    ``bad_request`` (``Invalid rev format`` for a bad rev string)."""
    await d_aaa_bbb(client, db)
    body = assert_error(await client.get(f"/{db}/d", params={"open_revs": value}), 400, "bad_request")
    if value == '["bad"]':
        assert body["reason"] == "Invalid rev format"


async def test_bc08_open_revs_multipart_mixed(client: httpx.AsyncClient, db: str) -> None:
    """BC-08, §7.5, d01[54]: with ``Accept: multipart/mixed`` each result is a part; a doc
    without attachment bodies has exactly ``Content-Type: application/json``, a missing
    rev exactly ``application/json; error="true"`` with ``{"missing": rev}``."""
    await d_aaa_bbb(client, db)
    params = {"revs": "true", "open_revs": '["2-bbb","3-ccc"]', "latest": "true", "atts_since": '["1-aaa"]'}
    response = await client.get(f"/{db}/d", params=params, headers={"Accept": "multipart/mixed"})
    assert response.status_code == 200
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/mixed; boundary="), content_type
    ok_part, missing_part = parse_multipart(content_type, response.content)
    assert ok_part.headers == [("Content-Type", "application/json")]
    assert orjson.loads(ok_part.body) == {
        "_id": "d",
        "_rev": "2-bbb",
        "v": 2,
        "_revisions": {"start": 2, "ids": ["bbb", "aaa"]},
    }
    assert missing_part.headers == [("Content-Type", 'application/json; error="true"')]
    assert orjson.loads(missing_part.body) == {"missing": "3-ccc"}


@pytest.mark.parametrize("accept", [None, "*/*", "multipart/*", "application/json;q=0.9, multipart/mixed"])
async def test_open_revs_multipart_selection(client: httpx.AsyncClient, db: str, accept: str | None) -> None:
    """§7.5: CouchDB picks multipart/mixed when ``Accept`` is missing or accepts
    ``multipart/mixed`` (exact, ``multipart/*`` or ``*/*``)."""
    await d_aaa_bbb(client, db)
    request = client.build_request("GET", f"/{db}/d", params={"open_revs": '["2-bbb"]'})
    if accept is None:
        del request.headers["Accept"]
    else:
        request.headers["Accept"] = accept
    response = await client.send(request)
    assert response.status_code == 200
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/mixed"), content_type
    [part] = parse_multipart(content_type, response.content)
    assert orjson.loads(part.body) == {"_id": "d", "_rev": "2-bbb", "v": 2}


# -- §7.1: _revs_diff ---------------------------------------------------------------------


async def test_revs_diff_recorded(client: httpx.AsyncClient, db: str) -> None:
    """d01[24], §7.1: a missing doc lists all its revs as missing (no ancestors); a known
    doc lists the missing revs and, as ``possible_ancestors``, its leaves below them."""
    rev1 = (await put(client, f"/{db}/doc-1", {"v": 1}))["rev"]
    body = {
        "unknown-doc": ["1-11111111111111111111111111111111", "2-22222222222222222222222222222222"],
        "doc-1": [rev1, "2-33333333333333333333333333333333"],
    }
    response = await client.post(f"/{db}/_revs_diff", json=body)
    assert assert_ok(response, 200) == {
        "unknown-doc": {
            "missing": ["1-11111111111111111111111111111111", "2-22222222222222222222222222222222"]
        },
        "doc-1": {"missing": ["2-33333333333333333333333333333333"], "possible_ancestors": [rev1]},
    }


async def test_revs_diff_rules(client: httpx.AsyncClient, db: str) -> None:
    """§5.7, §7.1: internal and deleted revs count as present; ids with nothing missing
    are omitted (``{}`` when nothing is missing); ``possible_ancestors`` are the leaves
    (deleted included) below the highest missing pos, omitted when empty; revs come back
    in canonical lower case."""
    await replicate(
        client,
        db,
        {"_id": "x", "_rev": "3-c", "_revisions": revisions("3-c", "2-b", "1-a")},
        {"_id": "x", "_rev": "2-d", "_deleted": True, "_revisions": revisions("2-d", "1-a")},
    )
    response = await client.post(f"/{db}/_revs_diff", json={"x": ["1-a", "2-b", "3-c", "2-d"]})
    assert assert_ok(response, 200) == {}
    assert assert_ok(await client.post(f"/{db}/_revs_diff", json={}), 200) == {}
    response = await client.post(f"/{db}/_revs_diff", json={"x": ["4-e", "1-a"]})
    diff = assert_ok(response, 200)
    assert diff["x"]["missing"] == ["4-e"]
    assert sorted(diff["x"]["possible_ancestors"]) == ["2-d", "3-c"]
    response = await client.post(f"/{db}/_revs_diff", json={"x": ["2-e"]})
    assert assert_ok(response, 200) == {"x": {"missing": ["2-e"]}}
    upper = "5-" + "ABCDEF0123456789" * 2
    response = await client.post(f"/{db}/_revs_diff", json={"x": [upper]})
    assert assert_ok(response, 200)["x"]["missing"] == [upper.lower()]


async def test_revs_diff_errors(client: httpx.AsyncClient, db: str) -> None:
    """§7.1: an invalid rev → 400 ``bad_request`` "Invalid rev format"; a body that is
    not an object → 400; GET → 405."""
    response = await client.post(f"/{db}/_revs_diff", json={"x": ["bad"]})
    assert_error(response, 400, "bad_request", "Invalid rev format")
    response = await client.post(f"/{db}/_revs_diff", json=["x"])
    assert_error(response, 400, "bad_request", "Request body must be a JSON object")
    assert_error(await client.get(f"/{db}/_revs_diff"), 405, "method_not_allowed")


async def test_missing_revs(client: httpx.AsyncClient, db: str) -> None:
    """§7.1: the legacy ``_missing_revs`` answers ``{"missing_revs": {id: [revs]}}``."""
    rev1 = (await put(client, f"/{db}/doc-1", {"v": 1}))["rev"]
    response = await client.post(f"/{db}/_missing_revs", json={"doc-1": [rev1, "2-x"], "nope": ["1-y"]})
    assert assert_ok(response, 200) == {"missing_revs": {"doc-1": ["2-x"], "nope": ["1-y"]}}
