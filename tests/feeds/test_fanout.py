"""One shared notifier per database: a write wakes every feed of the db with rows read
from storage once, whatever the feeds' options; bursts of writes reach every feed, once
each and in order (no missed change)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from .conftest import Live, eventually, open_feed, put_doc

FEED_KINDS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "feed=continuous&heartbeat=60000", None),
    ("GET", "feed=continuous&include_docs=true&heartbeat=60000", None),
    ("GET", "feed=continuous&style=all_docs&conflicts=true&include_docs=true&heartbeat=60000", None),
    ("POST", "feed=continuous&filter=_selector&heartbeat=60000", {"selector": {"kind": "x"}}),
    ("POST", "feed=continuous&filter=_doc_ids&heartbeat=60000", {"doc_ids": ["w"]}),
    ("GET", "feed=eventsource&heartbeat=60000", None),
    ("GET", "feed=longpoll&heartbeat=60000", None),
    ("GET", "feed=longpoll&include_docs=true&timeout=60000", None),
]


class Counter:
    """Counts calls of some methods of one object (the db's store)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: object, *names: str) -> None:
        self.calls = dict.fromkeys(names, 0)
        for name in names:
            monkeypatch.setattr(target, name, self._wrap(name, getattr(target, name)))

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await method(*args, **kwargs)

        return counted


async def test_a_write_is_read_once_for_all_feeds(
    live: Live, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await put_doc(live.client, db, "seed", {})
    database = await live.server.get_db(db)
    notifier = database.notifier
    feeds = []
    async with asyncio.timeout(30):
        contexts = []
        for i in range(4 * len(FEED_KINDS)):
            method, query, body = FEED_KINDS[i % len(FEED_KINDS)]
            ctx = open_feed(live.client, f"/{db}/_changes?since=now&{query}", method=method, json=body)
            contexts.append(ctx)
            feeds.append(await ctx.__aenter__())
        try:
            await eventually(lambda: notifier.waiting == len(feeds), "every feed waiting")
            store = Counter(monkeypatch, database.store, "changes", "get_revisions", "count_changes", "info")
            fetches = notifier.fetches
            doc = await put_doc(live.client, db, "w", {"kind": "x", "text": "hello"})
            for feed in feeds:
                await feed.wait_for(lambda f: b'"id":"w"' in f.body, "the write")
            for feed in feeds[6 :: len(FEED_KINDS)] + feeds[7 :: len(FEED_KINDS)]:
                await feed.wait_end()
        finally:
            for ctx in reversed(contexts):
                await ctx.__aexit__(None, None, None)
    # one read of the new rows and one of their bodies, for 32 feeds of 8 kinds
    assert notifier.fetches == fetches + 1
    assert store.calls == {"changes": 1, "get_revisions": 1, "count_changes": 0, "info": 0}
    with_docs = [f for f in feeds if b'"doc":' in f.body]
    assert len(with_docs) == 4 * 3
    for feed in with_docs:
        assert (
            b'"doc":{"_id":"w","_rev":"' + doc["rev"].encode() + b'","kind":"x","text":"hello"}' in feed.body
        )


async def _longpoll_loop(client: httpx.AsyncClient, db: str, since: int, want: int) -> list[int]:
    """A PouchDB-like live reader: longpoll, then again from ``last_seq``."""
    seqs: list[int] = []
    while len(seqs) < want:
        response = await client.get(
            f"/{db}/_changes", params={"feed": "longpoll", "since": since, "heartbeat": 10000, "limit": 7}
        )
        body = orjson.loads(response.content)
        seqs += [row["seq"] for row in body["results"]]
        since = body["last_seq"]
    return seqs


async def test_bursts_reach_every_feed_once_and_in_order(live: Live, db: str) -> None:
    """200 writes from 10 concurrent writers while 24 feeds listen: each continuous feed
    gets 200 rows in increasing seq order without duplicates; each longpoll loop too."""
    writes, writers = 200, 10
    async with asyncio.timeout(60):
        async with (
            httpx.AsyncClient(base_url=live.url, timeout=30) as longpoll_client,
            httpx.AsyncClient(base_url=live.url, timeout=30) as write_client,
        ):
            contexts = [
                open_feed(live.client, f"/{db}/_changes?feed=continuous&since=now&heartbeat=60000")
                for _ in range(20)
            ]
            feeds = [await ctx.__aenter__() for ctx in contexts]
            try:
                pollers = [
                    asyncio.ensure_future(_longpoll_loop(longpoll_client, db, 0, writes)) for _ in range(4)
                ]
                notifier = (await live.server.get_db(db)).notifier
                await eventually(lambda: notifier.waiting >= 20, "feeds waiting")

                async def writer(k: int) -> None:
                    for i in range(k, writes, writers):
                        await put_doc(write_client, db, f"doc-{i:03d}", {"i": i})

                await asyncio.gather(*(writer(k) for k in range(writers)))
                for feed in feeds:
                    await feed.wait_for(
                        lambda f: len(f.change_rows()) >= writes, f"{writes} rows", timeout=20
                    )
                polled = await asyncio.gather(*pollers)
            finally:
                for ctx in reversed(contexts):
                    await ctx.__aexit__(None, None, None)
    expected = list(range(1, writes + 1))
    for feed in feeds:
        assert [row["seq"] for row in feed.change_rows()] == expected
    for seqs in polled:
        assert seqs == expected
