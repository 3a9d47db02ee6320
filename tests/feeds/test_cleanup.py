"""A client that vanishes frees everything its feed held: no task, no waiter on the
notifier, no connection, no memory (issue 4, §6.6).

The server runs in the test's own loop (``live``), so the test can count the loop's
tasks, the notifier's waiters and uvicorn's connections, and trace Python memory, before
and after; it polls until they are back to the baseline against a deadline.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import struct
import tracemalloc
from collections.abc import Sequence

import orjson

from .conftest import Live, eventually, put_doc

FEEDS = [
    ("GET", "feed=continuous&since=now&heartbeat=60000", None),
    ("GET", "feed=continuous&since=now&timeout=60000", None),
    ("GET", "feed=continuous&since=0&include_docs=true&heartbeat=30000", None),
    ("GET", "feed=longpoll&since=now&heartbeat=10000", None),
    ("GET", "feed=longpoll&since=now&timeout=60000", None),
    ("GET", "feed=eventsource&since=now&heartbeat=60000", None),
    ("POST", "feed=continuous&since=now&filter=_selector&heartbeat=60000", {"selector": {"t": 1}}),
    ("POST", "feed=longpoll&since=now&filter=_doc_ids&heartbeat=60000", {"doc_ids": ["zz", "t"]}),
]


BOUNDED = [
    tracemalloc.Filter(False, "*/selectors.py"),
    tracemalloc.Filter(False, "*/weakref.py"),
    tracemalloc.Filter(False, "*/_weakrefset.py"),
    tracemalloc.Filter(False, "*/aiosqlite/core.py", lineno=147),
    tracemalloc.Filter(False, tracemalloc.__file__),
]


def _request(db: str, port: int, method: str, query: str, body: object) -> bytes:
    head = f"{method} /{db}/_changes?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if body is None:
        return (head + "\r\n").encode()
    data = orjson.dumps(body)
    head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    return head.encode() + data


async def _open(live: Live, db: str, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """``count`` feeds of every kind in :data:`FEEDS`, each on its own raw connection;
    returns once each has its headers and first bytes."""
    port = int(live.url.rsplit(":", 1)[1])
    conns = []
    for i in range(count):
        method, query, body = FEEDS[i % len(FEEDS)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_request(db, port, method, query, body))
        conns.append((reader, writer))
    for reader, _ in conns:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 "), head
        await asyncio.wait_for(reader.read(1), 5)
    return conns


def _vanish(conns: Sequence[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> None:
    """Half of the clients close their socket, the other half reset it (SO_LINGER 0)."""
    for i, (_, writer) in enumerate(conns):
        if i % 2:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()


async def _round(live: Live, db: str, count: int) -> None:
    notifier = (await live.server.get_db(db)).notifier
    conns = await _open(live, db, count)
    await eventually(lambda: notifier.waiting == count, f"{count} feeds waiting")
    _vanish(conns)
    del conns
    await eventually(lambda: notifier.waiting == 0, "no waiter left")


async def test_vanished_clients_leave_no_task_waiter_connection_or_memory(live: Live, db: str) -> None:
    await put_doc(live.client, db, "seed", {"t": 1})
    database = await live.server.get_db(db)
    notifier, watcher = database.notifier, live.server.watcher
    count = 10 * len(FEEDS)
    # Warm-up with as many feeds: first-use allocations and containers growing to their
    # peak size (selector, transports, statement cache) happen here, not in the count.
    await _round(live, db, count)
    await eventually(lambda: not watcher.running, "watcher idle after warm-up")
    gc.collect()
    base_tasks = len(asyncio.all_tasks())
    base_connections = live.connections()
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.take_snapshot()
        base_memory = tracemalloc.get_traced_memory()[0]
        conns = await _open(live, db, count)
        await eventually(lambda: notifier.waiting == count, f"{count} feeds waiting")
        assert watcher.running
        # each feed: the request's own task and its disconnect listener, nothing more
        assert len(asyncio.all_tasks()) == base_tasks + 2 * count + 1  # + the watcher
        assert live.connections() == base_connections + count
        held = tracemalloc.get_traced_memory()[0] - base_memory
        _vanish(conns)
        del conns
        took = await eventually(
            lambda: (
                notifier.waiting == 0
                and len(asyncio.all_tasks()) == base_tasks
                and live.connections() == base_connections
                and not watcher.running
            ),
            "waiters, tasks and connections back to the baseline",
        )
        for _ in range(20):  # let the callbacks already scheduled run (done tasks' handles)
            await asyncio.sleep(0)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert took < 5.0  # eventually()'s deadline; usually well under a second
    # A feed holds kilobytes while open; once it is gone nothing of it remains.  Not
    # counted: containers of the loop that keep the size they grew to (the selector's,
    # the transports' and the tasks' registries) and SQLite's statement cache.
    growth = after.filter_traces(BOUNDED).compare_to(before.filter_traces(BOUNDED), "lineno")
    left = sum(stat.size_diff for stat in growth)
    assert held > count * 5_000, held
    assert left < count * 100, (left, held, [str(stat) for stat in growth[:5]])
    # the db still works and wakes new feeds
    async with live.client.stream("GET", f"/{db}/_changes?feed=longpoll&since=now&timeout=5000") as response:
        await eventually(lambda: notifier.waiting == 1, "a new feed waits")
        await put_doc(live.client, db, "after", {})
        body = orjson.loads(await response.aread())
    assert [r["id"] for r in body["results"]] == ["after"]


async def test_disconnect_during_a_wakeup(live: Live, db: str) -> None:
    """Clients vanishing while the notifier fans a batch out to them: the others get it,
    nothing is left behind."""
    database = await live.server.get_db(db)
    notifier = database.notifier
    conns = await _open(live, db, 40)
    await eventually(lambda: notifier.waiting == 40, "40 feeds waiting")
    base_tasks_after = len(asyncio.all_tasks()) - 2 * 40 - 1
    write = asyncio.ensure_future(put_doc(live.client, db, "t", {"t": 1}))
    _vanish(conns[:20])
    await write
    for reader, _ in conns[20:]:
        data = b""
        while b'"id":"t"' not in data and b"id: " not in data:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            assert chunk, "connection ended before the row arrived"
            data += chunk
    _vanish(conns[20:])
    del conns
    await eventually(
        lambda: notifier.waiting == 0 and len(asyncio.all_tasks()) <= base_tasks_after,
        "everything released",
    )
