"""``GET|POST /{db}/_all_docs`` (§7.8, d01[67-68])."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from . import assert_error, assert_ok, body_of, db_info, enc, put, replicate, revisions

LIVE = ["B", "_design/x", "a", "b", "c", "z", "été"]
"""Live ids in raw UTF-8 byte order (``B`` < ``_`` < lower case < multi-byte)."""


JSON_PARAMS = {"startkey", "endkey", "start_key", "end_key", "key", "keys"}
"""``_all_docs`` parameters whose values are JSON."""


async def seed(client: httpx.AsyncClient, db: str) -> dict[str, str]:
    """The live docs above plus ``d`` (deleted) and a ``_local`` doc; returns id → rev."""
    revs = {}
    for doc_id in ("c", "a", "été", "B", "z", "b", "_design/x"):
        revs[doc_id] = (await put(client, f"/{db}/{enc(doc_id)}", {"name": doc_id}))["rev"]
    rev = (await put(client, f"/{db}/d", {"name": "d"}))["rev"]
    revs["d"] = assert_ok(await client.delete(f"/{db}/d", params={"rev": rev}), 200)["rev"]
    await put(client, f"/{db}/_local/hidden", {"x": 1})
    return revs


async def all_docs(client: httpx.AsyncClient, db: str, **params: Any) -> dict[str, Any]:
    query = {k: (orjson.dumps(v).decode() if k in JSON_PARAMS else v) for k, v in params.items()}
    body: dict[str, Any] = assert_ok(await client.get(f"/{db}/_all_docs", params=query), 200)
    return body


def ids(result: dict[str, Any]) -> list[str]:
    return [row["id"] for row in result["rows"]]


async def test_all_docs_default(client: httpx.AsyncClient, db: str) -> None:
    """§7.8, d01[67]: rows sorted by raw byte order of the id, design docs included,
    deleted and ``_local`` docs excluded; ``total_rows`` counts live docs; ``offset`` 0;
    ``value`` is ``{"rev": <winner>}``."""
    revs = await seed(client, db)
    result = await all_docs(client, db)
    assert result == {
        "total_rows": 7,
        "offset": 0,
        "rows": [{"id": i, "key": i, "value": {"rev": revs[i]}} for i in LIVE],
    }


async def test_all_docs_include_docs_and_conflicts(client: httpx.AsyncClient, db: str) -> None:
    """§7.8: ``include_docs`` adds each winner's body; ``conflicts=true`` adds
    ``_conflicts``."""
    revs = await seed(client, db)
    result = await all_docs(client, db, include_docs="true")
    assert [row["doc"] for row in result["rows"]] == [{"_id": i, "_rev": revs[i], "name": i} for i in LIVE]
    await replicate(
        client,
        db,
        {"_id": "k", "_rev": "2-b", "_revisions": revisions("2-b", "1-a")},
        {"_id": "k", "_rev": "2-c", "_revisions": revisions("2-c", "1-a")},
    )
    result = await all_docs(client, db, include_docs="true", conflicts="true", key="k")
    assert result["rows"] == [
        {
            "id": "k",
            "key": "k",
            "value": {"rev": "2-c"},
            "doc": {"_id": "k", "_rev": "2-c", "_conflicts": ["2-b"]},
        }
    ]


async def test_all_docs_ranges(client: httpx.AsyncClient, db: str) -> None:
    """§7.8: ``startkey``/``endkey`` (and ``start_key``/``end_key``) are JSON; the end is
    inclusive unless ``inclusive_end=false``; ``descending`` walks backwards from
    ``startkey``."""
    await seed(client, db)
    assert ids(await all_docs(client, db, startkey="a", endkey="c")) == ["a", "b", "c"]
    assert ids(await all_docs(client, db, start_key="a", end_key="c")) == ["a", "b", "c"]
    assert ids(await all_docs(client, db, startkey="a", endkey="c", inclusive_end="false")) == ["a", "b"]
    assert ids(await all_docs(client, db, startkey="aa")) == ["b", "c", "z", "été"]
    assert ids(await all_docs(client, db, endkey="a")) == ["B", "_design/x", "a"]
    assert ids(await all_docs(client, db, descending="true")) == LIVE[::-1]
    assert ids(await all_docs(client, db, descending="true", startkey="c", endkey="a")) == ["c", "b", "a"]
    result = await all_docs(client, db, descending="true", startkey="c", endkey="a", inclusive_end="false")
    assert ids(result) == ["c", "b"]
    assert ids(await all_docs(client, db, startkey="c", endkey="a")) == []


async def test_all_docs_limit_skip(client: httpx.AsyncClient, db: str) -> None:
    """§7.8: ``limit`` caps the rows; ``skip`` drops rows first and is reported as
    ``offset``; ``total_rows`` is unaffected."""
    await seed(client, db)
    assert ids(await all_docs(client, db, limit=2)) == ["B", "_design/x"]
    result = await all_docs(client, db, skip=2, limit=2)
    assert ids(result) == ["a", "b"] and result["offset"] == 2 and result["total_rows"] == 7
    assert ids(await all_docs(client, db, limit=0)) == []
    assert ids(await all_docs(client, db, skip=100)) == []


async def test_all_docs_keys(client: httpx.AsyncClient, db: str) -> None:
    """§7.8, d01[68]: with ``keys`` (GET JSON or POST body) rows follow the key order; a
    deleted doc gives ``value.deleted: true`` (and ``doc: null``); an unknown key gives
    ``{"key","error":"not_found"}``; ``offset`` is ``null``."""
    revs = await seed(client, db)
    keys = ["b", "d", "nope", "a"]
    expected = [
        {"id": "b", "key": "b", "value": {"rev": revs["b"]}},
        {"id": "d", "key": "d", "value": {"rev": revs["d"], "deleted": True}},
        {"key": "nope", "error": "not_found"},
        {"id": "a", "key": "a", "value": {"rev": revs["a"]}},
    ]
    posted = assert_ok(await client.post(f"/{db}/_all_docs", json={"keys": keys}), 200)
    assert posted == {"total_rows": 7, "offset": None, "rows": expected}
    got = await all_docs(client, db, keys=keys)
    assert got["rows"] == expected
    result = await all_docs(client, db, keys=keys, include_docs="true")
    docs = [row.get("doc", "absent") for row in result["rows"]]
    assert docs == [
        {"_id": "b", "_rev": revs["b"], "name": "b"},
        None,
        "absent",
        {"_id": "a", "_rev": revs["a"], "name": "a"},
    ]
    assert (await all_docs(client, db, key="b"))["rows"] == [expected[0]]


async def test_all_docs_update_seq(client: httpx.AsyncClient, db: str) -> None:
    """§7.8: ``update_seq=true`` adds the db's ``update_seq``; absent otherwise."""
    await seed(client, db)
    result = await all_docs(client, db, update_seq="true")
    assert result["update_seq"] == (await db_info(client, db))["update_seq"]
    assert "update_seq" not in await all_docs(client, db)


@pytest.mark.parametrize("params", [{"limit": "-1"}, {"limit": "abc"}, {"skip": "x"}, {"skip": "-2"}])
async def test_all_docs_bad_integers(client: httpx.AsyncClient, db: str, params: dict[str, str]) -> None:
    """§10.2: bad ``_all_docs`` integers → 400 ``query_parse_error``
    (``couch_mrview_http:parse_int``)."""
    await seed(client, db)
    assert_error(await client.get(f"/{db}/_all_docs", params=params), 400, "query_parse_error")


@pytest.mark.parametrize(
    "params", [{"startkey": "a"}, {"endkey": "{"}, {"key": "not json"}, {"start_key": "[1"}]
)
async def test_all_docs_non_json_keys(client: httpx.AsyncClient, db: str, params: dict[str, str]) -> None:
    """§10.2: a non-JSON ``startkey``/``endkey``/``key`` → 400 (``query_parse_error`` in
    the protocol reference; ``bad_request`` is accepted too), never a 500."""
    response = await client.get(f"/{db}/_all_docs", params=params)
    body = assert_error(response, 400, body_of(response).get("error", ""))
    assert body["error"] in ("query_parse_error", "bad_request"), body


async def test_all_docs_keys_must_be_a_list(client: httpx.AsyncClient, db: str) -> None:
    """§7.8 (``chttpd_db`` ``_all_docs`` clauses): ``keys`` that is not an array → 400
    "`keys` body member must be an array." (POST) / "`keys` parameter must be an array."
    (GET)."""
    response = await client.post(f"/{db}/_all_docs", json={"keys": "a"})
    assert_error(response, 400, "bad_request", "`keys` body member must be an array.")
    response = await client.get(f"/{db}/_all_docs", params={"keys": '"a"'})
    assert_error(response, 400, "bad_request", "`keys` parameter must be an array.")
