"""``_changes``: BC-13, BC-14, BC-15, BC-17, BC-18 and §6.

Streaming checks (first newline at once, heartbeats, waking on a write) go through
:class:`RawASGI`; feeds that end by themselves use server-side ``timeout`` values of a
few hundred ms at most.  Nothing here sleeps.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette

from . import (
    JSON,
    RawASGI,
    assert_error,
    assert_ok,
    body_of,
    changes,
    db_info,
    put,
    replicate,
    revisions,
    seq_number,
)

ROW_KEYS = {"seq", "id", "changes", "deleted", "doc"}


def lines_of(body: bytes) -> list[dict[str, Any]]:
    """The JSON objects of a continuous feed (blank heartbeat lines skipped)."""
    return [orjson.loads(line) for line in body.split(b"\n") if line.strip()]


def check_continuous(body: bytes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Split a finished continuous feed into rows and its final ``last_seq`` object
    (BC-15: every line is JSON, the last one has ``last_seq`` and ``pending`` only)."""
    assert body.endswith(b"\n"), body[-80:]
    objects = lines_of(body)
    assert objects, body
    *rows, end = objects
    assert set(end) == {"last_seq", "pending"}, end
    for row in rows:
        assert "changes" in row and set(row) <= ROW_KEYS, row
    return rows, end


async def three_writes(client: httpx.AsyncClient, db: str) -> tuple[Any, Any, Any]:
    """BC-17's setup: a → s1, b → s2, a again → s3.  Returns the three seqs."""
    rev = (await put(client, f"/{db}/a", {}))["rev"]
    s1 = (await db_info(client, db))["update_seq"]
    await put(client, f"/{db}/b", {})
    s2 = (await db_info(client, db))["update_seq"]
    await put(client, f"/{db}/a", {"_rev": rev})
    s3 = (await db_info(client, db))["update_seq"]
    return s1, s2, s3


def rows_of(feed: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(row["id"], row["seq"]) for row in feed["results"]]


# -- BC-17: seqs are positions ----------------------------------------------------------


async def test_bc17_since_is_a_position(client: httpx.AsyncClient, db: str) -> None:
    """BC-17 exactly: each doc appears once, at its latest seq, in increasing seq order;
    ``since`` is exclusive and stays valid after the doc that held it moved on."""
    s1, s2, s3 = await three_writes(client, db)
    assert len({str(s1), str(s2), str(s3)}) == 3
    assert seq_number(s1) < seq_number(s2) < seq_number(s3)
    feed = await changes(client, db)
    assert rows_of(feed) == [("b", s2), ("a", s3)]
    assert feed["last_seq"] == s3 and feed["pending"] == 0
    feed = await changes(client, db, since=s1)
    assert rows_of(feed) == [("b", s2), ("a", s3)]
    feed = await changes(client, db, since=s2)
    assert rows_of(feed) == [("a", s3)]
    feed = await changes(client, db, since=s3)
    assert feed == {"results": [], "last_seq": s3, "pending": 0}


async def test_since_accepts_every_returned_seq_and_quoted_form(client: httpx.AsyncClient, db: str) -> None:
    """BC-14, §6.2, §13(16): every ``seq``/``last_seq`` couchpoint returned is a valid
    ``since``, also JSON-quoted (CouchDB 2.x-3.2 replicators send ``since="…"``)."""
    s1, s2, s3 = await three_writes(client, db)
    for seq in (s1, s2, s3, 0):
        plain = await changes(client, db, since=seq)
        quoted = await changes(client, db, since=orjson.dumps(str(seq)).decode())
        assert quoted == plain
    assert rows_of(await changes(client, db, since=0)) == [("b", s2), ("a", s3)]


async def test_limit_last_seq_is_last_row(client: httpx.AsyncClient, db: str) -> None:
    """§6.4, §13(15), d01[57-58]: with ``limit``, ``last_seq`` is the seq of the last row
    returned and ``pending`` counts what follows; resuming from it continues the feed."""
    s1, s2, s3 = await three_writes(client, db)
    await put(client, f"/{db}/c", {})
    s4 = (await db_info(client, db))["update_seq"]
    feed = await changes(client, db, limit=2)
    assert rows_of(feed) == [("b", s2), ("a", s3)]
    assert feed["last_seq"] == s3 and feed["pending"] == 1
    feed = await changes(client, db, since=feed["last_seq"], limit=2)
    assert rows_of(feed) == [("c", s4)]
    assert feed["last_seq"] == s4 and feed["pending"] == 0


async def test_limit_zero_is_a_pending_probe(client: httpx.AsyncClient, db: str) -> None:
    """§6.2: ``limit=0`` returns no rows, ``last_seq`` = ``since``, ``pending`` = the
    number of changes after ``since`` (the CouchDB replicator's progress probe)."""
    s1, s2, s3 = await three_writes(client, db)
    assert await changes(client, db, since=s1, limit=0) == {"results": [], "last_seq": s1, "pending": 2}
    assert await changes(client, db, since=s3, limit=0) == {"results": [], "last_seq": s3, "pending": 0}


async def test_descending(client: httpx.AsyncClient, db: str) -> None:
    """§6.2, BC-13: ``descending=true`` lists newest first and ignores ``since``
    (apache/couchdb#2733), ``since=now`` included."""
    s1, s2, s3 = await three_writes(client, db)
    for since in (None, s2, "now"):
        params = {"descending": "true"} if since is None else {"descending": "true", "since": since}
        assert rows_of(await changes(client, db, **params)) == [("a", s3), ("b", s2)]


async def test_style_all_docs_and_row_shape(client: httpx.AsyncClient, db: str) -> None:
    """§6.2, §6.3, d01[55]: ``main_only`` lists the winner, ``all_docs`` every leaf,
    winner first; ``deleted`` appears only when the winner is a tombstone; rows carry no
    other keys."""
    await put(client, f"/{db}/doc-1", {"v": 1})
    rev1 = (await changes(client, db))["results"][0]["changes"][0]["rev"]
    c, d = "2-" + "c" * 32, "2-" + "d" * 32
    await replicate(
        client,
        db,
        {"_id": "doc-1", "_rev": c, "_revisions": revisions(c, rev1)},
        {"_id": "doc-1", "_rev": d, "_revisions": revisions(d, rev1)},
        {"_id": "gone", "_rev": "2-y", "_deleted": True, "_revisions": revisions("2-y", "1-x")},
        {"_id": "gone", "_rev": "2-z", "_deleted": True, "_revisions": revisions("2-z", "1-x")},
    )
    main = {row["id"]: row for row in (await changes(client, db))["results"]}
    assert main["doc-1"]["changes"] == [{"rev": d}] and "deleted" not in main["doc-1"]
    assert main["gone"]["changes"] == [{"rev": "2-z"}] and main["gone"]["deleted"] is True
    every = {row["id"]: row for row in (await changes(client, db, style="all_docs"))["results"]}
    assert every["doc-1"]["changes"] == [{"rev": d}, {"rev": c}]
    assert every["gone"]["changes"] == [{"rev": "2-z"}, {"rev": "2-y"}]
    assert every["gone"]["deleted"] is True
    for row in every.values():
        assert set(row) <= ROW_KEYS, row


async def test_include_docs(client: httpx.AsyncClient, db: str) -> None:
    """§6.2: ``include_docs`` adds the winner's body (a tombstone as
    ``{"_id","_rev","_deleted":true}``); ``conflicts=true`` adds ``_conflicts``."""
    rev = (await put(client, f"/{db}/gone", {"v": 1}))["rev"]
    tomb = assert_ok(await client.delete(f"/{db}/gone", params={"rev": rev}), 200)["rev"]
    await replicate(
        client,
        db,
        {"_id": "c", "_rev": "2-b", "v": "b", "_revisions": revisions("2-b", "1-a")},
        {"_id": "c", "_rev": "2-c", "v": "c", "_revisions": revisions("2-c", "1-a")},
    )
    feed = await changes(client, db, include_docs="true", conflicts="true")
    docs = {row["id"]: row["doc"] for row in feed["results"]}
    assert docs["gone"] == {"_id": "gone", "_rev": tomb, "_deleted": True}
    assert docs["c"] == {"_id": "c", "_rev": "2-c", "v": "c", "_conflicts": ["2-b"]}
    feed = await changes(client, db, include_docs="true")
    assert {row["id"]: row["doc"] for row in feed["results"]}["c"] == {"_id": "c", "_rev": "2-c", "v": "c"}


# -- BC-13: since=now ----------------------------------------------------------------------


async def test_since_now_normal_and_longpoll(client: httpx.AsyncClient, db: str) -> None:
    """BC-13, d01[62]: ``since=now`` → ``{"results":[],"last_seq":<update_seq>,
    "pending":0}``; a longpoll with ``since=now`` ends after ``timeout`` the same way."""
    await three_writes(client, db)
    current = (await db_info(client, db))["update_seq"]
    expected = {"results": [], "last_seq": current, "pending": 0}
    assert await changes(client, db, since="now") == expected
    assert await changes(client, db, since="now", feed="longpoll", timeout=100) == expected


async def test_since_now_continuous_ends_with_last_seq(client: httpx.AsyncClient, db: str) -> None:
    """BC-13, BC-15, d01[63]: a continuous feed from ``now`` that stays idle for
    ``timeout`` ends with ``{"last_seq":<current>,"pending":0}`` and no rows."""
    await three_writes(client, db)
    current = (await db_info(client, db))["update_seq"]
    response = await client.get(
        f"/{db}/_changes", params={"feed": "continuous", "since": "now", "timeout": 100}
    )
    assert response.status_code == 200
    rows, end = check_continuous(response.content)
    assert rows == [] and end == {"last_seq": current, "pending": 0}


async def test_since_now_continuous_sends_newline_at_once(
    app: Starlette, client: httpx.AsyncClient, db: str
) -> None:
    """BC-13 (apache/couchdb#985, PR #2240): a continuous feed from ``now`` sends its
    headers and a first ``\\n`` at once (long before the 60 s heartbeat), then only
    changes written after the request."""
    await three_writes(client, db)
    target = f"/{db}/_changes?feed=continuous&since=now&heartbeat=60000"
    async with RawASGI(app, "GET", target) as call:
        status, headers = await call.start()
        assert status == 200
        assert headers["content-type"].startswith("application/json")
        assert await call.chunk() == b"\n"
        await put(client, f"/{db}/late", {"v": 1})
        received = b""
        while b"late" not in received:
            piece = await call.chunk()
            assert piece is not None, received
            received += piece
        [row] = lines_of(received)
        assert row["id"] == "late" and row["seq"] == (await db_info(client, db))["update_seq"]


async def test_longpoll_wakes_on_write(app: Starlette, client: httpx.AsyncClient, db: str) -> None:
    """§6.4: a longpoll with nothing after ``since`` is held until a change happens, then
    answers with it (and ``last_seq`` = its seq)."""
    await three_writes(client, db)
    current = (await db_info(client, db))["update_seq"]
    target = f"/{db}/_changes?feed=longpoll&since={current}&timeout=10000"
    async with RawASGI(app, "GET", target) as call:
        status, _ = await call.start()
        assert status == 200
        await client.get(f"/{db}")  # let the feed reach its wait
        await put(client, f"/{db}/late", {"v": 1})
        feed = orjson.loads(await call.rest())
    new_seq = (await db_info(client, db))["update_seq"]
    assert [(r["id"], r["seq"]) for r in feed["results"]] == [("late", new_seq)]
    assert feed["last_seq"] == new_seq


async def test_longpoll_heartbeat_inside_json(app: Starlette, client: httpx.AsyncClient, db: str) -> None:
    """§6.4, d01[66]: a longpoll with ``heartbeat`` writes bare newlines while waiting,
    and the whole body is still one valid JSON object once a change arrives."""
    target = f"/{db}/_changes?feed=longpoll&since=now&heartbeat=20"
    async with RawASGI(app, "GET", target) as call:
        status, _ = await call.start()
        assert status == 200
        received = b""
        while received.count(b"\n") < 4:
            piece = await call.chunk()
            assert piece is not None, received
            received += piece
        assert received.strip(b"\n").strip() in (b"", b'{"results":['), received
        await put(client, f"/{db}/late", {})
        received += await call.rest()
    feed = orjson.loads(received)
    assert [r["id"] for r in feed["results"]] == ["late"]


# -- BC-14: malformed parameters ------------------------------------------------------------

BAD_PARAMS = [
    ({"since": "garbage"}, "Malformed sequence supplied in 'since' parameter."),
    ({"since": "-1"}, "Malformed sequence supplied in 'since' parameter."),
    ({"since": "now-ish"}, "Malformed sequence supplied in 'since' parameter."),
    (
        {"feed": "continuous", "heartbeat": "-1000"},
        "The heartbeat value should be a positive integer (in milliseconds).",
    ),
    (
        {"feed": "continuous", "heartbeat": "0"},
        "The heartbeat value should be a positive integer (in milliseconds).",
    ),
    ({"heartbeat": "abc"}, "Invalid heartbeat value. Expecting a positive integer value (in milliseconds)."),
    ({"timeout": "-1"}, "The timeout value should be a non-negative integer"),
    ({"limit": "-5"}, "The limit value should be a non-negative integer"),
    ({"feed": "bogus"}, "Supported `feed` types: normal, continuous, live, longpoll, eventsource"),
]


@pytest.mark.parametrize(("params", "reason"), BAD_PARAMS)
@pytest.mark.parametrize("feed", ["normal", "longpoll", "continuous"])
async def test_bc14_malformed_params(
    client: httpx.AsyncClient, db: str, params: dict[str, str], reason: str, feed: str
) -> None:
    """BC-14 exactly, d01[59]: each malformed parameter → 400 ``bad_request`` with
    CouchDB's reason, as plain JSON before any streaming (for every feed type)."""
    await put(client, f"/{db}/a", {})
    query = {"feed": feed, "timeout": "100", **params}
    response = await client.get(f"/{db}/_changes", params=query)
    assert_error(response, 400, "bad_request", reason)
    response = await client.post(f"/{db}/_changes", params=query, headers=JSON, content=b"{}")
    assert_error(response, 400, "bad_request", reason)


@pytest.mark.parametrize(
    "params", [{"timeout": "abc"}, {"limit": "abc"}, {"limit": "1.5"}, {"timeout": "1e3"}]
)
async def test_non_integer_timeout_and_limit(
    client: httpx.AsyncClient, db: str, params: dict[str, str]
) -> None:
    """BC-14: non-integer ``timeout``/``limit`` → 400 ``bad_request`` (never a 500, never
    silently ignored)."""
    assert_error(await client.get(f"/{db}/_changes", params=params), 400, "bad_request")


async def test_heartbeat_true_is_accepted(client: httpx.AsyncClient, db: str) -> None:
    """BC-14: ``heartbeat=true`` is accepted (default interval); with rows available a
    longpoll answers at once."""
    await put(client, f"/{db}/a", {})
    assert [r["id"] for r in (await changes(client, db, heartbeat="true"))["results"]] == ["a"]
    feed = await changes(client, db, heartbeat="true", feed="longpoll")
    assert [r["id"] for r in feed["results"]] == ["a"]


async def test_live_is_continuous(client: httpx.AsyncClient, db: str) -> None:
    """§6.2: ``feed=live`` is ``continuous``."""
    await put(client, f"/{db}/a", {})
    response = await client.get(f"/{db}/_changes", params={"feed": "live", "timeout": 50})
    rows, end = check_continuous(response.content)
    assert [r["id"] for r in rows] == ["a"] and end["last_seq"] == rows[-1]["seq"]


# -- BC-15: continuous feeds -----------------------------------------------------------------


async def test_bc15_continuous_timeout_ends_with_last_seq(client: httpx.AsyncClient, db: str) -> None:
    """BC-15 exactly: ``feed=continuous&style=all_docs&since=0&timeout=…`` streams one
    row per line (all leaves, ``deleted`` for a deleted winner), then after ``timeout``
    of quiet a final ``{"last_seq","pending"}`` line; resuming from it yields nothing new."""
    await put(client, f"/{db}/a", {"v": 1})
    await replicate(
        client,
        db,
        {"_id": "b", "_rev": "2-y", "_deleted": True, "_revisions": revisions("2-y", "1-x")},
        {"_id": "b", "_rev": "2-z", "_deleted": True, "_revisions": revisions("2-z", "1-x")},
    )
    params = {"feed": "continuous", "style": "all_docs", "since": 0, "timeout": 100}
    response = await client.get(f"/{db}/_changes", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    rows, end = check_continuous(response.content)
    assert [r["id"] for r in rows] == ["a", "b"]
    assert rows[1]["deleted"] is True and rows[1]["changes"] == [{"rev": "2-z"}, {"rev": "2-y"}]
    assert "deleted" not in rows[0]
    assert end == {"last_seq": rows[-1]["seq"], "pending": 0}
    assert end["last_seq"] == (await db_info(client, db))["update_seq"]
    response = await client.get(f"/{db}/_changes", params={**params, "since": end["last_seq"]})
    assert check_continuous(response.content) == ([], end)


async def test_continuous_limit(client: httpx.AsyncClient, db: str) -> None:
    """d01[64], §6.4: a continuous feed ends after ``limit`` rows with ``last_seq`` = the
    last row's seq and ``pending`` = the changes left."""
    for name in ("a", "b", "c", "d", "e"):
        await put(client, f"/{db}/{name}", {})
    response = await client.get(f"/{db}/_changes", params={"feed": "continuous", "limit": 3, "timeout": 5000})
    rows, end = check_continuous(response.content)
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    assert end == {"last_seq": rows[-1]["seq"], "pending": 2}


async def test_continuous_heartbeat_overrides_timeout(
    app: Starlette, client: httpx.AsyncClient, db: str
) -> None:
    """BC-15, §6.2, d01[65]: with ``heartbeat`` a continuous feed writes bare newlines
    while idle and does not end at ``timeout``; it stops when the client goes away."""
    await put(client, f"/{db}/a", {})
    target = f"/{db}/_changes?feed=continuous&since=now&heartbeat=20&timeout=40"
    async with RawASGI(app, "GET", target) as call:
        status, _ = await call.start()
        assert status == 200
        received = b""
        while received.count(b"\n") < 8:
            piece = await call.chunk()
            assert piece is not None, f"feed ended: {received!r}"
            received += piece
        assert received.strip() == b"", received


async def test_continuous_streams_new_rows_then_ends(
    app: Starlette, client: httpx.AsyncClient, db: str
) -> None:
    """BC-15: rows written while a continuous feed is open are streamed; the feed still
    ends ``timeout`` ms after the last change with a resumable ``last_seq``."""
    await put(client, f"/{db}/a", {})
    target = f"/{db}/_changes?feed=continuous&since=0&timeout=1000"
    async with RawASGI(app, "GET", target) as call:
        status, _ = await call.start()
        assert status == 200
        received = b""
        while b'"a"' not in received:
            piece = await call.chunk()
            assert piece is not None, received
            received += piece
        await put(client, f"/{db}/b", {})
        received += await call.rest()
    rows, end = check_continuous(received)
    assert [r["id"] for r in rows] == ["a", "b"]
    assert end == {"last_seq": rows[-1]["seq"], "pending": 0}


# -- BC-18: filters ----------------------------------------------------------------------------


async def filter_fixture(client: httpx.AsyncClient, db: str) -> None:
    """a (note), b (other), c with leaves 2-x (note) and 2-y (other, the winner),
    d (note, written last)."""
    await put(client, f"/{db}/a", {"type": "note"})
    await put(client, f"/{db}/b", {"type": "other"})
    await replicate(
        client,
        db,
        {"_id": "c", "_rev": "1-c", "type": "note"},
        {"_id": "c", "_rev": "2-x", "type": "note", "_revisions": revisions("2-x", "1-c")},
        {"_id": "c", "_rev": "2-y", "type": "other", "_revisions": revisions("2-y", "1-c")},
    )
    await put(client, f"/{db}/d", {"type": "note"})


async def test_bc18_doc_ids_post_get_and_continuous(client: httpx.AsyncClient, db: str) -> None:
    """BC-18, d01[60-61]: ``filter=_doc_ids`` by POST body or GET ``doc_ids`` gives rows
    for those ids only, every leaf with ``style=all_docs``, in normal and continuous
    feeds; ``last_seq`` is the last seq examined (the db's ``update_seq``), not the last
    row emitted (§6.5)."""
    await filter_fixture(client, db)
    update_seq = (await db_info(client, db))["update_seq"]
    params = {"filter": "_doc_ids", "style": "all_docs", "since": 0, "feed": "normal"}
    response = await client.post(f"/{db}/_changes", params=params, json={"doc_ids": ["a", "c"]})
    posted = assert_ok(response, 200)
    assert [r["id"] for r in posted["results"]] == ["a", "c"]
    assert posted["results"][1]["changes"] == [{"rev": "2-y"}, {"rev": "2-x"}]
    assert posted["last_seq"] == update_seq
    response = await client.get(f"/{db}/_changes", params={**params, "doc_ids": '["a","c"]'})
    assert assert_ok(response, 200) == posted
    cparams = {**params, "feed": "continuous", "timeout": 100}
    response = await client.post(f"/{db}/_changes", params=cparams, json={"doc_ids": ["a", "c"]})
    rows, end = check_continuous(response.content)
    assert rows == posted["results"]
    assert end["last_seq"] == update_seq


async def test_bc18_selector(client: httpx.AsyncClient, db: str) -> None:
    """BC-18, §6.5: ``filter=_selector`` (POST) tests each leaf with ``style=all_docs`` and
    lists only matching revs; with ``main_only`` only the winner is tested."""
    await filter_fixture(client, db)
    params = {"filter": "_selector", "style": "all_docs"}
    response = await client.post(f"/{db}/_changes", params=params, json={"selector": {"type": "note"}})
    feed = assert_ok(response, 200)
    rows = {r["id"]: r["changes"] for r in feed["results"]}
    assert sorted(rows) == ["a", "c", "d"]
    assert rows["c"] == [{"rev": "2-x"}]
    assert feed["last_seq"] == (await db_info(client, db))["update_seq"]
    response = await client.post(
        f"/{db}/_changes", params={"filter": "_selector"}, json={"selector": {"type": "note"}}
    )
    assert [r["id"] for r in assert_ok(response, 200)["results"]] == ["a", "d"]
    response = await client.post(
        f"/{db}/_changes", params={"filter": "_selector"}, json={"selector": {"type": {"$in": ["other"]}}}
    )
    assert [r["id"] for r in assert_ok(response, 200)["results"]] == ["b", "c"]


async def test_bc18_filter_errors(client: httpx.AsyncClient, db: str) -> None:
    """BC-18, §6.5: ``_selector`` via GET, a non-object selector, a non-list
    ``doc_ids``, an unknown builtin filter → 400 with CouchDB's reasons."""
    await put(client, f"/{db}/a", {})
    assert_error(
        await client.get(f"/{db}/_changes", params={"filter": "_selector"}),
        400,
        "bad_request",
        "Selector must be specified in POST payload",
    )
    assert_error(
        await client.post(f"/{db}/_changes", params={"filter": "_selector"}, json={"selector": 5}),
        400,
        "bad_request",
        "Selector error: expected a JSON object",
    )
    not_a_list = "`doc_ids` filter parameter is not a list of doc ids."
    assert_error(
        await client.post(f"/{db}/_changes", params={"filter": "_doc_ids"}, json={"doc_ids": "a"}),
        400,
        "bad_request",
        not_a_list,
    )
    assert_error(
        await client.post(f"/{db}/_changes", params={"filter": "_doc_ids"}, json={"doc_ids": ["a", 1]}),
        400,
        "bad_request",
        not_a_list,
    )
    assert_error(
        await client.get(f"/{db}/_changes", params={"filter": "_doc_ids", "doc_ids": '"a"'}),
        400,
        "bad_request",
        not_a_list,
    )
    assert_error(await client.get(f"/{db}/_changes", params={"filter": "_doc_ids"}), 400, "bad_request")
    assert_error(
        await client.get(f"/{db}/_changes", params={"filter": "_nosuch"}),
        400,
        "bad_request",
        "unknown builtin filter name",
    )


async def test_js_filters_answer_json_errors(client: httpx.AsyncClient, db: str) -> None:
    """§6.5, §14(2): without a JS engine, ``ddoc/fname`` and ``_view`` filters answer a
    JSON 4xx error instead of silently replicating everything."""
    await put(client, f"/{db}/a", {})
    for params in ({"filter": "app/by_type"}, {"filter": "_view", "view": "app/v"}):
        response = await client.get(f"/{db}/_changes", params=params)
        body = body_of(response)
        assert 400 <= response.status_code < 500 and set(body) == {"error", "reason"}, body


async def test_design_filter(client: httpx.AsyncClient, db: str) -> None:
    """§6.5: ``filter=_design`` passes only design documents."""
    await put(client, f"/{db}/a", {})
    await put(client, f"/{db}/_design/x", {})
    assert [r["id"] for r in (await changes(client, db, filter="_design"))["results"]] == ["_design/x"]


async def test_post_changes_body_rules(client: httpx.AsyncClient, db: str) -> None:
    """BC-18, BC-24, §6: POST ``_changes`` needs ``application/json`` (415 otherwise);
    an empty JSON body is allowed; parameters stay in the query string."""
    await put(client, f"/{db}/a", {})
    response = await client.post(f"/{db}/_changes", content=b"{}", headers={"Content-Type": "text/plain"})
    assert_error(response, 415, "bad_content_type", "Content-Type must be application/json")
    response = await client.post(f"/{db}/_changes", content=b"", headers=JSON)
    assert [r["id"] for r in assert_ok(response, 200)["results"]] == ["a"]
    response = await client.post(f"/{db}/_changes", params={"limit": 0}, json={})
    assert assert_ok(response, 200)["results"] == []
