"""Unit tests of :mod:`couchpoint.notify`: the per-db notifier and the per-process
watcher, on the memory backend (no HTTP)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from couchpoint.notify import CATCH_UP, CLOSED, TIMEOUT, ChangeBatch, ChangeNotifier, SeqWatcher
from couchpoint.revs import format_rev
from couchpoint.revtree import RevTree
from couchpoint.storage import MemoryStorage
from couchpoint.storage.base import DbStore, DocWrite, Revision
from couchpoint.update import interactive_edit

from .conftest import eventually


@pytest.fixture
async def storage() -> AsyncIterator[MemoryStorage]:
    storage = MemoryStorage()
    await storage.open()
    await storage.create_db("db")
    yield storage
    await storage.close()


async def _write(store: DbStore, *doc_ids: str) -> int:
    writes = []
    for doc_id in doc_ids:
        tree, key = interactive_edit(RevTree.empty(), None, deleted=False, body={"id": doc_id})
        rev = format_rev(key)
        writes.append(DocWrite(doc_id, tree, [Revision(doc_id, rev, False, {"id": doc_id})]))
    async with store.write() as txn:
        seqs = await txn.put_docs(writes)
    return max(seqs)


async def _notifier(storage: MemoryStorage, page: int = 1000) -> tuple[DbStore, ChangeNotifier]:
    store = await storage.get_db("db")
    assert store is not None
    return store, ChangeNotifier((await store.info()).update_seq, store, page=page)


async def test_wait_times_out(storage: MemoryStorage) -> None:
    _, notifier = await _notifier(storage)
    started = time.monotonic()
    assert await notifier.wait(0, 0.05) is TIMEOUT
    assert 0.04 <= time.monotonic() - started < 1.0
    assert notifier.waiting == 0


async def test_one_read_per_wakeup_shared_by_all_waiters(storage: MemoryStorage) -> None:
    store, notifier = await _notifier(storage)
    waiters = [asyncio.ensure_future(notifier.wait(0, 5)) for _ in range(50)]
    await eventually(lambda: notifier.waiting == 50, "50 waiters")
    seq = await _write(store, "a", "b")
    notifier.publish(seq)
    batches = await asyncio.gather(*waiters)
    assert notifier.fetches == 1
    batch = batches[0]
    assert isinstance(batch, ChangeBatch)
    assert all(b is batch for b in batches)
    assert (batch.after, batch.last) == (0, 2)
    assert [r.id for r in batch.rows] == ["a", "b"]
    assert [r.id for r in batch.rows_after(1)] == ["b"]
    # bodies are read once for everyone, on first use
    first, second = await asyncio.gather(batch.revisions(), batch.revisions())
    assert first is second
    assert {k[0] for k in first} == {"a", "b"}


async def test_catch_up_when_behind_and_no_batch_covers(storage: MemoryStorage) -> None:
    store, notifier = await _notifier(storage)
    notifier.publish(await _write(store, "a"))
    assert await notifier.wait(0, 1) is CATCH_UP  # nobody waited: no batch was read
    waiter = asyncio.ensure_future(notifier.wait(1, 5))
    await eventually(lambda: notifier.waiting == 1, "waiting")
    notifier.publish(await _write(store, "b"))
    batch = await waiter
    assert isinstance(batch, ChangeBatch) and batch.covers(1)
    # a feed that is still at 1 gets the same batch without waiting
    assert await notifier.wait(1, 5) is batch
    assert await notifier.wait(0, 5) is CATCH_UP  # before the batch: read storage


async def test_bounded_page(storage: MemoryStorage) -> None:
    store, notifier = await _notifier(storage, page=2)
    waiter = asyncio.ensure_future(notifier.wait(0, 5))
    await eventually(lambda: notifier.waiting == 1, "waiting")
    notifier.publish(await _write(store, "a", "b", "c", "d", "e"))
    batch = await waiter
    assert isinstance(batch, ChangeBatch)
    assert [r.id for r in batch.rows] == ["a", "b"] and batch.last == 2
    assert await notifier.wait(batch.last, 5) is CATCH_UP


async def test_cancelled_waiter_is_removed(storage: MemoryStorage) -> None:
    _, notifier = await _notifier(storage)
    waiter = asyncio.ensure_future(notifier.wait(0, None))
    await eventually(lambda: notifier.waiting == 1, "waiting")
    waiter.cancel()
    await eventually(lambda: notifier.waiting == 0, "removed")


async def test_close_wakes_everyone_for_good(storage: MemoryStorage) -> None:
    _, notifier = await _notifier(storage)
    waiters = [asyncio.ensure_future(notifier.wait(0, None)) for _ in range(3)]
    await eventually(lambda: notifier.waiting == 3, "waiting")
    notifier.close()
    assert await asyncio.gather(*waiters) == [CLOSED] * 3
    assert await notifier.wait(0, None) is CLOSED


async def test_a_failed_read_reaches_the_waiters(
    storage: MemoryStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, notifier = await _notifier(storage)

    async def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(store, "changes", broken)
    waiter = asyncio.ensure_future(notifier.wait(0, 5))
    await eventually(lambda: notifier.waiting == 1, "waiting")
    notifier.publish(1)
    with pytest.raises(OSError, match="disk gone"):
        await waiter


async def test_watcher_publishes_other_processes_writes(storage: MemoryStorage) -> None:
    """Another process (here: a write that bypasses the notifier) commits; the watcher
    polls ``update_seqs()`` and wakes the feeds; it polls only while someone waits."""
    watcher = SeqWatcher(storage, interval=0.02)
    store, notifier = await _notifier(storage)
    watcher.attach("db", notifier, store)
    assert not watcher.running
    waiter = asyncio.ensure_future(notifier.wait(0, 5))
    await eventually(lambda: watcher.running, "polling")
    seq = await _write(store, "elsewhere")  # no publish: the notifier does not know
    batch = await asyncio.wait_for(waiter, 2)
    assert isinstance(batch, ChangeBatch) and [r.id for r in batch.rows] == ["elsewhere"]
    assert notifier.seq == seq
    await eventually(lambda: not watcher.running, "idle once nobody waits")
    polls = watcher.polls
    await asyncio.sleep(0.1)
    assert watcher.polls == polls
    await watcher.close()


async def test_watcher_closes_a_db_deleted_elsewhere(storage: MemoryStorage) -> None:
    watcher = SeqWatcher(storage, interval=0.02)
    store, notifier = await _notifier(storage)
    watcher.attach("db", notifier, store)
    waiter = asyncio.ensure_future(notifier.wait(0, 5))
    await eventually(lambda: notifier.waiting == 1, "waiting")
    await storage.delete_db("db")
    assert await asyncio.wait_for(waiter, 2) is CLOSED
    await watcher.close()


async def test_watcher_keeps_local_writes_racing_its_read() -> None:
    """A seq read from storage before a local write committed is older than the
    notifier's: that is not a re-created db."""
    notifier = ChangeNotifier(5)
    watcher = SeqWatcher(MemoryStorage())
    watcher.track("db", notifier)
    known = {"db": (notifier, 5)}
    notifier.publish(7)  # committed and published while the poll ran
    watcher.apply({"db": 6}, known)
    assert not notifier.closed and notifier.seq == 7
    watcher.apply({"db": 4}, known)  # lower than before the read: re-created elsewhere
    assert notifier.closed
