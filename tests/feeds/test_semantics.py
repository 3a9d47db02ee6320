"""Feed semantics against a real uvicorn server, read as a client reads them (streamed).

Reference: protocol reference §6.4 (feeds), §6.5 (filters), BC-13 (``since=now``, headers
before the first change), BC-15 (continuous ``timeout`` / heartbeat).  Timings are
asserted against deadlines with generous tolerance; nothing sleeps to wait for an event.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import orjson
import pytest

from couchpoint import create_app
from couchpoint.config import Settings
from couchpoint.storage import SQLiteStorage

from .conftest import Live, live_server, open_feed, put_doc, update_seq

# A heartbeat every 200 ms: a newline must never come much sooner, nor much later.
HEARTBEAT_MS = 200
EARLY = 0.8  # a gap may be this fraction of the interval (timer jitter)
LATE = 0.5  # ... and up to this many seconds longer (a loaded CI machine)


async def test_continuous_headers_and_first_newline_before_any_change(live: Live, db: str) -> None:
    """BC-13: status, headers and a first newline arrive at once on an idle db."""
    path = f"/{db}/_changes?feed=continuous&since=now&heartbeat=60000"
    async with open_feed(live.client, path) as feed:
        assert time.monotonic() - feed.started < 1.0
        assert feed.response.status_code == 200
        assert feed.response.headers["content-type"] == "application/json"
        assert feed.response.headers["transfer-encoding"] == "chunked"
        took = await feed.wait_for(lambda f: f.body == b"\n", "first newline", timeout=1.0)
        assert took < 1.0


async def test_longpoll_and_eventsource_flush_headers_at_once(live: Live, db: str) -> None:
    async with open_feed(live.client, f"/{db}/_changes?feed=longpoll&since=now&heartbeat=60000") as feed:
        assert feed.response.status_code == 200
        await feed.wait_for(lambda f: f.body.startswith(b'{"results":['), "results opening", timeout=1.0)
    async with open_feed(live.client, f"/{db}/_changes?feed=eventsource&since=now&heartbeat=60000") as feed:
        assert feed.response.headers["content-type"].startswith("text/event-stream")
        assert feed.response.headers["cache-control"] == "no-cache"
        await feed.wait_for(lambda f: f.body == b"event: heartbeat\ndata: \n\n", "first event", timeout=1.0)


async def test_continuous_since_now_gets_only_later_changes(live: Live, db: str) -> None:
    """BC-13: ``since=now`` starts at the current update_seq; earlier docs never show."""
    for doc_id in ("old-1", "old-2"):
        await put_doc(live.client, db, doc_id, {"v": 1})
    start = await update_seq(live.client, db)
    async with open_feed(live.client, f"/{db}/_changes?feed=continuous&since=now&heartbeat=60000") as feed:
        await feed.wait_for(lambda f: f.body == b"\n", "first newline")
        new = await put_doc(live.client, db, "new", {"v": 2})
        await put_doc(
            live.client, db, "old-1", {"v": 3, "_rev": (await live.client.get(f"/{db}/old-1")).json()["_rev"]}
        )
        await feed.wait_for(lambda f: len(f.change_rows()) == 2, "two live rows")
        rows = feed.change_rows()
    assert [r["id"] for r in rows] == ["new", "old-1"]
    assert rows[0] == {"seq": start + 1, "id": "new", "changes": [{"rev": new["rev"]}]}
    assert rows[1]["seq"] == start + 2
    assert rows[1]["changes"][0]["rev"].startswith("2-")


async def test_continuous_catches_up_then_streams(live: Live, db: str) -> None:
    await put_doc(live.client, db, "a", {})
    async with open_feed(live.client, f"/{db}/_changes?feed=continuous&since=0&heartbeat=60000") as feed:
        await feed.wait_for(lambda f: len(f.change_rows()) == 1, "existing row")
        await put_doc(live.client, db, "b", {})
        await feed.wait_for(lambda f: len(f.change_rows()) == 2, "live row")
        assert [r["seq"] for r in feed.change_rows()] == [1, 2]
        assert b"\n\n" not in feed.body  # no heartbeat needed: rows flushed the headers


async def test_heartbeat_newlines_at_the_interval(live: Live, db: str) -> None:
    """BC-15: an idle continuous feed with ``heartbeat`` writes bare newlines every N ms
    and never ends by itself (heartbeat overrides timeout)."""
    path = f"/{db}/_changes?feed=continuous&since=now&heartbeat={HEARTBEAT_MS}&timeout=100"
    async with open_feed(live.client, path) as feed:
        await feed.wait_for(lambda f: f.body.count(b"\n") >= 6, "six newlines", timeout=5.0)
        assert not feed.ended
        assert set(feed.body) == {ord("\n")}
        times = feed.times_of(b"\n")
    interval = HEARTBEAT_MS / 1000
    assert times[0] < 1.0  # the first one flushes the headers
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(interval * EARLY <= gap <= interval + LATE for gap in gaps), gaps


async def test_heartbeat_restarts_after_a_change(live: Live, db: str) -> None:
    path = f"/{db}/_changes?feed=continuous&since=now&heartbeat={HEARTBEAT_MS}"
    async with open_feed(live.client, path) as feed:
        await feed.wait_for(lambda f: f.body.count(b"\n") >= 2, "a heartbeat")
        await put_doc(live.client, db, "x", {})
        await feed.wait_for(lambda f: len(f.change_rows()) == 1, "row")
        row_at = feed.times_of(b'"id":"x"')[0]
        await feed.wait_for(lambda f: f.body.endswith(b"}\n\n"), "heartbeat after the row")
        beat_at = feed.chunks[-1].at - feed.started
    assert HEARTBEAT_MS / 1000 * EARLY <= beat_at - row_at <= HEARTBEAT_MS / 1000 + LATE


async def test_longpoll_heartbeat_stays_valid_json(live: Live, db: str) -> None:
    path = f"/{db}/_changes?feed=longpoll&since=now&heartbeat={HEARTBEAT_MS}"
    async with open_feed(live.client, path) as feed:
        await feed.wait_for(lambda f: f.body.count(b"\n") >= 3, "heartbeats inside the JSON")
        doc = await put_doc(live.client, db, "lp", {})
        took = await feed.wait_end()
        body = orjson.loads(feed.body)
    assert took < 5.0
    seq = await update_seq(live.client, db)
    assert body == {
        "results": [{"seq": seq, "id": "lp", "changes": [{"rev": doc["rev"]}]}],
        "last_seq": seq,
        "pending": 0,
    }


@pytest.mark.parametrize("timeout_ms", [300, 800])
async def test_continuous_timeout_ends_with_last_seq_line(live: Live, db: str, timeout_ms: int) -> None:
    """BC-15: no heartbeat, idle for ``timeout`` ms → a final ``{"last_seq","pending"}``
    line and the end of the response."""
    await put_doc(live.client, db, "a", {})
    path = f"/{db}/_changes?feed=continuous&since=now&timeout={timeout_ms}"
    async with open_feed(live.client, path) as feed:
        ended = await feed.wait_end()
        lines = feed.lines()
    assert timeout_ms / 1000 * EARLY <= ended <= timeout_ms / 1000 + 1.0
    assert lines[0] == b""  # the newline that flushed the headers
    assert orjson.loads(lines[-1]) == {"last_seq": 1, "pending": 0}
    assert len(lines) == 2


async def test_continuous_timeout_counts_idle_time_after_the_last_row(live: Live, db: str) -> None:
    path = f"/{db}/_changes?feed=continuous&since=now&timeout=600"
    async with open_feed(live.client, path) as feed:
        await feed.wait_for(lambda f: f.body == b"\n", "first newline")
        await put_doc(live.client, db, "a", {})
        await feed.wait_for(lambda f: len(f.change_rows()) == 1, "row")
        row_at = feed.times_of(b'"id":"a"')[0]
        ended = await feed.wait_end()
        assert orjson.loads(feed.lines()[-1]) == {"last_seq": 1, "pending": 0}
    assert 0.6 * EARLY <= ended - row_at <= 0.6 + 1.0


async def test_longpoll_timeout_is_an_empty_result(live: Live, db: str) -> None:
    await put_doc(live.client, db, "a", {})
    await put_doc(live.client, db, "b", {})
    async with open_feed(live.client, f"/{db}/_changes?feed=longpoll&since=now&timeout=400") as feed:
        ended = await feed.wait_end()
        body = orjson.loads(feed.body)
    assert 0.4 * EARLY <= ended <= 0.4 + 1.0
    assert body == {"results": [], "last_seq": 2, "pending": 0}


async def test_longpoll_with_rows_answers_at_once(live: Live, db: str) -> None:
    await put_doc(live.client, db, "a", {})
    async with open_feed(live.client, f"/{db}/_changes?feed=longpoll&since=0&timeout=60000") as feed:
        ended = await feed.wait_end()
    assert ended < 1.0
    assert orjson.loads(feed.body)["last_seq"] == 1


async def test_continuous_limit_on_live_rows(live: Live, db: str) -> None:
    """``limit`` counts live rows too: after ``limit`` rows the feed ends with the last
    row's seq as ``last_seq`` and the rest as ``pending``."""
    async with open_feed(
        live.client, f"/{db}/_changes?feed=continuous&since=now&limit=2&heartbeat=60000"
    ) as feed:
        await feed.wait_for(lambda f: f.body == b"\n", "first newline")
        response = await live.client.post(
            f"/{db}/_bulk_docs", json={"docs": [{"_id": "a"}, {"_id": "b"}, {"_id": "c"}]}
        )
        assert response.status_code == 201
        await feed.wait_end()
        rows = feed.rows()
    assert [r["id"] for r in rows[:-1]] == ["a", "b"]
    assert rows[-1] == {"last_seq": 2, "pending": 1}


async def test_longpoll_limit_on_live_rows(live: Live, db: str) -> None:
    async with open_feed(
        live.client, f"/{db}/_changes?feed=longpoll&since=now&limit=1&timeout=10000"
    ) as feed:
        await feed.wait_for(lambda f: f.body.startswith(b'{"results"'), "opening")
        await live.client.post(f"/{db}/_bulk_docs", json={"docs": [{"_id": "a"}, {"_id": "b"}]})
        await feed.wait_end()
        body = orjson.loads(feed.body)
    assert [r["id"] for r in body["results"]] == ["a"]
    assert (body["last_seq"], body["pending"]) == (1, 1)


async def test_live_include_docs_and_conflicts(live: Live, db: str) -> None:
    path = f"/{db}/_changes?feed=continuous&since=now&include_docs=true&conflicts=true&heartbeat=60000"
    async with open_feed(live.client, path) as feed:
        await feed.wait_for(lambda f: f.body == b"\n", "first newline")
        doc = await put_doc(live.client, db, "d", {"title": "hello", "n": [1, 2]})
        response = await live.client.post(
            f"/{db}/_bulk_docs",
            json={"new_edits": False, "docs": [{"_id": "d", "_rev": "1-zzzz", "title": "other"}]},
        )
        assert response.status_code == 201
        gone = await put_doc(live.client, db, "gone", {"x": 1})
        deleted = await live.client.delete(f"/{db}/gone", params={"rev": gone["rev"]})
        assert deleted.status_code == 200
        await feed.wait_for(
            lambda f: [r["id"] for r in f.change_rows()] == ["d", "d", "gone", "gone"], "rows"
        )
        rows = feed.change_rows()
    assert rows[0]["doc"] == {"_id": "d", "_rev": doc["rev"], "title": "hello", "n": [1, 2]}
    # the conflicting 1-zzzz wins (higher rev id), the other is listed in _conflicts
    assert rows[1]["doc"] == {"_id": "d", "_rev": "1-zzzz", "title": "other", "_conflicts": [doc["rev"]]}
    assert rows[-1]["deleted"] is True
    assert rows[-1]["doc"] == {"_id": "gone", "_rev": rows[-1]["changes"][0]["rev"], "_deleted": True}


async def test_live_doc_ids_filter(live: Live, db: str) -> None:
    path = f"/{db}/_changes?feed=continuous&since=now&filter=_doc_ids&heartbeat=60000"
    async with open_feed(live.client, path, method="POST", json={"doc_ids": ["a", "c"]}) as feed:
        await feed.wait_for(lambda f: f.body == b"\n", "first newline")
        for doc_id in ("a", "b", "c", "d"):
            await put_doc(live.client, db, doc_id, {})
        await feed.wait_for(lambda f: len(f.change_rows()) == 2, "a and c")
        await put_doc(live.client, db, "a2", {})
        await put_doc(live.client, db, "b", {"_rev": (await live.client.get(f"/{db}/b")).json()["_rev"]})
        await put_doc(live.client, db, "c", {"_rev": (await live.client.get(f"/{db}/c")).json()["_rev"]})
        await feed.wait_for(lambda f: len(f.change_rows()) == 3, "c again")
        rows = feed.change_rows()
    assert [(r["id"], r["seq"]) for r in rows] == [("a", 1), ("c", 3), ("c", 7)]


async def test_live_doc_ids_filter_get_and_timeout_last_seq(live: Live, db: str) -> None:
    """Filtered-out changes still advance ``last_seq`` (examined, not emitted)."""
    path = f'/{db}/_changes?feed=continuous&since=now&filter=_doc_ids&doc_ids=["z"]&timeout=500'
    async with open_feed(live.client, path) as feed:
        await feed.wait_for(lambda f: f.body == b"\n", "first newline")
        await put_doc(live.client, db, "a", {})
        await put_doc(live.client, db, "b", {})
        await feed.wait_end()
        assert feed.change_rows() == []
        assert orjson.loads(feed.lines()[-1]) == {"last_seq": 2, "pending": 0}


async def test_live_selector_filter_all_docs(live: Live, db: str) -> None:
    path = f"/{db}/_changes?feed=continuous&since=now&filter=_selector&style=all_docs&heartbeat=60000"
    body = {"selector": {"type": "note", "n": {"$gt": 1}}}
    async with open_feed(live.client, path, method="POST", json=body) as feed:
        await feed.wait_for(lambda f: f.body == b"\n", "first newline")
        await put_doc(live.client, db, "n1", {"type": "note", "n": 1})
        await put_doc(live.client, db, "t2", {"type": "task", "n": 2})
        await put_doc(live.client, db, "n2", {"type": "note", "n": 2})
        # a conflict on n1 whose losing leaf matches: the row lists only that leaf
        response = await live.client.post(
            f"/{db}/_bulk_docs",
            json={"new_edits": False, "docs": [{"_id": "n1", "_rev": "1-0000", "type": "note", "n": 5}]},
        )
        assert response.status_code == 201
        await feed.wait_for(lambda f: len(f.change_rows()) == 2, "n2 and n1's matching leaf")
        rows = feed.change_rows()
    assert [r["id"] for r in rows] == ["n2", "n1"]
    assert rows[1]["changes"] == [{"rev": "1-0000"}]


async def test_eventsource_framing(live: Live, db: str) -> None:
    """§6.4: ``data: <row>\\nid: <seq>\\n\\n`` per row, ``event: heartbeat`` while idle,
    ``Last-Event-ID`` resumes."""
    await put_doc(live.client, db, "a", {})
    path = f"/{db}/_changes?feed=eventsource&since=0&heartbeat={HEARTBEAT_MS}"
    async with open_feed(live.client, path) as feed:
        await feed.wait_for(lambda f: b"event: heartbeat" in f.body, "heartbeat event")
        doc = await put_doc(live.client, db, "b", {"v": 1})
        await feed.wait_for(lambda f: b'"id":"b"' in f.body, "row b")
        await feed.wait_for(lambda f: f.body.count(b"event: heartbeat") >= 3, "more heartbeats")
        events = feed.body.split(b"\n\n")
    assert events[0].startswith(b'data: {"seq":1,"id":"a"')
    assert events[0].endswith(b"\nid: 1")
    row_b = next(e for e in events if b'"id":"b"' in e)
    data, ident = row_b.split(b"\n")
    assert orjson.loads(data.removeprefix(b"data: ")) == {
        "seq": 2,
        "id": "b",
        "changes": [{"rev": doc["rev"]}],
    }
    assert ident == b"id: 2"
    assert set(e for e in events[1:] if e and e != row_b) == {b"event: heartbeat\ndata: "}
    headers = {"Last-Event-ID": "1"}
    async with open_feed(
        live.client, f"/{db}/_changes?feed=eventsource&timeout=300", headers=headers
    ) as feed:
        await feed.wait_end()
    assert feed.body.startswith(b'data: {"seq":2,"id":"b"')
    assert b'"id":"a"' not in feed.body


async def test_deleting_the_db_ends_its_feeds(live: Live, db: str) -> None:
    await put_doc(live.client, db, "a", {})
    async with (
        open_feed(live.client, f"/{db}/_changes?feed=continuous&since=now&heartbeat=60000") as cont,
        open_feed(live.client, f"/{db}/_changes?feed=longpoll&since=now&heartbeat=60000") as poll,
    ):
        await cont.wait_for(lambda f: f.body == b"\n", "continuous open")
        await poll.wait_for(lambda f: f.body.startswith(b'{"results"'), "longpoll open")
        assert (await live.client.delete(f"/{db}")).status_code == 200
        assert await cont.wait_end() < 5.0
        assert await poll.wait_end() < 5.0
    assert orjson.loads(cont.lines()[-1]) == {"last_seq": 1, "pending": 0}
    assert orjson.loads(poll.body) == {"results": [], "last_seq": 1, "pending": 0}


async def test_server_shutdown_ends_idle_feeds_with_their_final_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn's graceful shutdown cancels requests still open after its timeout (2 s
    here; ``couchpoint serve``: 3 s): an idle feed then ends with its final line, which
    clients resume from, not with an error."""
    caplog.set_level(logging.ERROR)
    app = create_app(storage=SQLiteStorage(tmp_path / "s.sqlite3"), settings=Settings())
    async with live_server(app) as live:
        await live.client.put("/db")
        await put_doc(live.client, "db", "a", {})
        async with (
            open_feed(live.client, "/db/_changes?feed=continuous&since=now&heartbeat=60000") as cont,
            open_feed(live.client, "/db/_changes?feed=longpoll&since=now&heartbeat=60000") as poll,
            open_feed(live.client, "/db/_changes?feed=eventsource&since=now&heartbeat=60000") as events,
        ):
            await cont.wait_for(lambda f: f.body == b"\n", "continuous open")
            await poll.wait_for(lambda f: f.body.startswith(b'{"results"'), "longpoll open")
            await events.wait_for(lambda f: f.body.startswith(b"event: heartbeat"), "eventsource open")
            live.uvicorn.should_exit = True
            for feed in (cont, poll, events):
                assert await feed.wait_end(timeout=10) < 10
    assert orjson.loads(cont.lines()[-1]) == {"last_seq": 1, "pending": 0}
    assert orjson.loads(poll.body) == {"results": [], "last_seq": 1, "pending": 0}
    assert events.error is None and cont.error is None and poll.error is None
    assert not [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]
