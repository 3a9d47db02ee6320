"""Change notification: how a committed write wakes the ``_changes`` feeds waiting on it.

Two pieces, both per process:

* :class:`ChangeNotifier` -- one per database.  Feeds that have sent everything up to
  their ``since`` wait on it.  A write publishes its highest seq; the notifier then reads
  the new rows **once** (one bounded page from storage, by one short-lived task per db,
  however many feeds wait) and hands the same :class:`ChangeBatch` to every waiting feed.
  Feeds apply their own filter, ``style`` and ``include_docs`` to the shared rows; the
  revision bodies those need are read once per batch too (:meth:`ChangeBatch.revisions`).
  A waiting feed costs one future and one timer handle: no task, no buffer.
* :class:`SeqWatcher` -- one per process.  While any feed waits, it polls
  :meth:`Storage.update_seqs() <couchpoint.storage.base.Storage.update_seqs>` every
  ``interval`` seconds and publishes seqs written by *other* processes on the same storage
  (``couchpoint serve --workers N`` on one SQLite file) to the local notifiers.  It also
  ends the feeds of a database deleted by another process.

See ``docs/feeds.md`` for the design and its numbers.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from couchpoint.storage.base import DocSummary, Revision

if TYPE_CHECKING:
    from couchpoint.storage.base import DbStore, Storage

log = logging.getLogger("couchpoint.notify")

BATCH_PAGE: Final = 1000
"""Rows read per wakeup; a feed further behind catches up by reading storage itself."""

WATCH_INTERVAL: Final = 0.15
"""Seconds between two :meth:`Storage.update_seqs` polls while feeds wait."""


class Signal:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


TIMEOUT: Final = Signal("TIMEOUT")
""":meth:`ChangeNotifier.wait`: nothing new within the timeout."""
CLOSED: Final = Signal("CLOSED")
""":meth:`ChangeNotifier.wait`: the database is gone (deleted, or the server stops)."""
CATCH_UP: Final = Signal("CATCH_UP")
""":meth:`ChangeNotifier.wait`: there are newer changes than the caller's ``since`` that no
shared batch covers; read them from storage."""


class ChangeBatch:
    """Changes committed after ``after`` up to ``last``, read once for every waiting feed.

    ``rows``: the :class:`DocSummary` of each doc changed in ``(after, last]``, ascending
    seq (each doc once, at its latest seq).  ``last``: the highest seq the batch has
    *examined*; feeds continue from it.  It is at least the seq that was published, so a
    feed never reads the same wakeup twice.
    """

    __slots__ = ("_revisions", "_seqs", "_store", "after", "last", "rows")

    def __init__(self, store: DbStore, after: int, last: int, rows: Sequence[DocSummary]) -> None:
        self._store = store
        self.after = after
        self.last = last
        self.rows = rows
        self._seqs = [row.seq for row in rows]
        self._revisions: asyncio.Future[dict[tuple[str, str], Revision]] | None = None

    def __repr__(self) -> str:
        return f"ChangeBatch(after={self.after}, last={self.last}, rows={len(self.rows)})"

    def covers(self, since: int) -> bool:
        """True if the batch holds every change after ``since`` up to :attr:`last`."""
        return self.after <= since < self.last

    def rows_after(self, since: int) -> Sequence[DocSummary]:
        """The rows with ``seq > since`` (``since`` must be covered)."""
        return self.rows[bisect.bisect_right(self._seqs, since) :]

    async def revisions(self) -> dict[tuple[str, str], Revision]:
        """The bodies of every leaf of every row, read from storage once per batch (on
        first use, shared by all feeds that need bodies: ``include_docs``, ``_selector``).
        The read runs in its own task, so a feed that goes away does not cancel it for
        the others."""
        if self._revisions is None:
            keys = [(row.id, rev) for row in self.rows if row.id for rev, _ in row.leaves]
            self._revisions = asyncio.ensure_future(self._store.get_revisions(keys))
            self._revisions.add_done_callback(_retrieve)  # no "never retrieved" if all left
        return await asyncio.shield(self._revisions)


class ChangeNotifier:
    """Wakes the ``_changes`` feeds of one database after each committed write.

    One per database and process.  ``seq`` is the highest seq known to be committed.
    ``store``: the database's storage, read once per wakeup for all waiters (without it,
    waiters get :data:`CATCH_UP` and read storage themselves).  ``watcher``: the
    process's :class:`SeqWatcher`, told when the first feed starts waiting.
    """

    def __init__(
        self,
        seq: int = 0,
        store: DbStore | None = None,
        watcher: SeqWatcher | None = None,
        *,
        page: int = BATCH_PAGE,
    ) -> None:
        self.seq = seq
        self.closed = False
        self.fetches = 0
        """How many times storage was read for waiters (one per wakeup, not per feed)."""
        self._store = store
        self._watcher = watcher
        self._page = page
        self._waiters: dict[asyncio.Future[Any], int] = {}  # future -> the waiter's since
        self._batch: ChangeBatch | None = None
        self._fetcher: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """How many feeds wait right now."""
        return len(self._waiters)

    def publish(self, seq: int) -> None:
        """Record that everything up to ``seq`` is committed and wake the waiters."""
        if seq <= self.seq or self.closed:
            return
        self.seq = seq
        if not self._waiters:
            return
        if self._store is None:
            for future in self._waiters:
                if not future.done():
                    future.set_result(CATCH_UP)
            self._waiters.clear()
        elif self._fetcher is None:
            self._fetcher = asyncio.get_running_loop().create_task(self._fetch())

    def close(self) -> None:
        """The database is gone: wake every waiter with :data:`CLOSED`, now and later."""
        if self.closed:
            return
        self.closed = True
        self._batch = None
        for future in self._waiters:
            if not future.done():
                future.set_result(CLOSED)
        self._waiters.clear()
        if self._fetcher is not None:
            self._fetcher.cancel()
            self._fetcher = None

    async def wait(self, since: int, timeout: float | None) -> ChangeBatch | Signal:
        """Wait for changes after ``since`` (the caller has sent everything up to it).

        Returns a :class:`ChangeBatch` covering ``since`` (shared with the other
        waiters), :data:`CATCH_UP` when newer changes exist that no batch covers,
        :data:`TIMEOUT` after ``timeout`` seconds without one (``None`` = no limit), or
        :data:`CLOSED` once the database is gone.  Cancelling the caller removes its
        waiter at once.
        """
        if self.closed:
            return CLOSED
        if self.seq > since:
            batch = self._batch
            if batch is not None and batch.covers(since):
                return batch
            return CATCH_UP
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiters[future] = since
        timer = None if timeout is None else loop.call_later(timeout, _expire, future)
        if len(self._waiters) == 1 and self._watcher is not None:
            self._watcher.wake()
        try:
            result: ChangeBatch | Signal = await future
            return result
        finally:
            waiters = self._waiters
            waiters.pop(future, None)
            if not waiters:
                self._waiters = {}  # a dict keeps the table of its peak size: drop it
            if timer is not None:
                timer.cancel()

    async def _fetch(self) -> None:
        """Read the rows the waiters miss, once, and hand them out; again while new seqs
        were published meanwhile."""
        store = self._store
        assert store is not None
        try:
            while self._waiters:
                after = min(self._waiters.values())
                target = self.seq
                if after >= target:
                    break
                self.fetches += 1
                rows = await store.changes(after, self._page)
                if self.closed:
                    return
                if len(rows) >= self._page:
                    last = rows[-1].seq
                else:
                    last = max(target, rows[-1].seq) if rows else target
                batch = ChangeBatch(store, after, last, rows)
                self._batch = batch
                woken = [f for f, since in self._waiters.items() if since < last]
                for future in woken:
                    del self._waiters[future]
                    if not future.done():
                        future.set_result(batch)
                # Give the woken feeds a turn before the next read (they re-register).
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("reading changes of %s for %d waiting feeds", store.name, len(self._waiters))
            for future in self._waiters:
                if not future.done():
                    future.set_exception(exc)
            self._waiters.clear()
        finally:
            if self._fetcher is asyncio.current_task():
                self._fetcher = None


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(TIMEOUT)


class SeqWatcher:
    """Publishes writes made by other processes to this process's notifiers.

    One per process (owned by :class:`couchpoint.database.Server`).  It runs one task,
    and only while at least one feed waits: every ``interval`` seconds it reads
    ``{db: update_seq}`` with :meth:`Storage.update_seqs` (one cheap query) and calls
    :meth:`ChangeNotifier.publish` where a seq grew, or :meth:`ChangeNotifier.close`
    where the database disappeared (or was re-created, its seq going down).
    """

    def __init__(self, storage: Storage, interval: float = WATCH_INTERVAL) -> None:
        self.storage = storage
        self.interval = interval
        self.polls = 0
        self._notifiers: dict[str, ChangeNotifier] = {}
        self._task: asyncio.Task[None] | None = None
        self._disabled = interval <= 0

    def attach(self, name: str, notifier: ChangeNotifier, store: DbStore) -> None:
        """Let ``notifier`` read ``store`` for its waiters and watch database ``name``
        for it (closing the notifier it replaces, whose database is gone)."""
        notifier._store = store
        notifier._watcher = self
        self.track(name, notifier)

    def track(self, name: str, notifier: ChangeNotifier) -> None:
        """Watch database ``name`` for ``notifier`` (closing the notifier it replaces)."""
        old = self._notifiers.get(name)
        if old is not None and old is not notifier:
            old.close()
        self._notifiers[name] = notifier

    def forget(self, name: str) -> None:
        """Stop watching ``name`` (it was deleted here) and close its notifier."""
        notifier = self._notifiers.pop(name, None)
        if notifier is not None:
            notifier.close()

    def wake(self) -> None:
        """Start polling (a feed began to wait); no-op if it already runs."""
        if self._disabled or self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def running(self) -> bool:
        return self._task is not None

    async def close(self) -> None:
        """Stop polling and close every notifier (their feeds end)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        for notifier in self._notifiers.values():
            notifier.close()
        self._notifiers.clear()

    def _anyone_waiting(self) -> bool:
        return any(n.waiting for n in self._notifiers.values())

    async def _run(self) -> None:
        try:
            while self._anyone_waiting():
                await asyncio.sleep(self.interval)
                known = {name: (n, n.seq) for name, n in self._notifiers.items()}
                try:
                    seqs = await self.storage.update_seqs()
                except (AttributeError, NotImplementedError):
                    log.warning(
                        "%r has no update_seqs(): writes of other processes wake no feeds", self.storage
                    )
                    self._disabled = True
                    return
                except Exception:
                    log.exception("polling update_seqs()")
                    continue
                self.polls += 1
                self.apply(seqs, known)
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    def apply(self, seqs: dict[str, int], known: dict[str, tuple[ChangeNotifier, int]]) -> None:
        """Publish ``{db: update_seq}`` read from storage to the local notifiers.

        ``known``: each tracked notifier and its seq from *before* the read started.  Only
        those are judged (a db created here during the read is not in ``seqs`` yet, and a
        local write that committed during the read may be newer than ``seqs``)."""
        for name, (notifier, seq_before) in known.items():
            seq = seqs.get(name)
            if seq is None or seq < seq_before:
                # Deleted (or deleted and re-created) by another process.
                if self._notifiers.get(name) is notifier:
                    del self._notifiers[name]
                notifier.close()
            elif seq > notifier.seq:
                notifier.publish(seq)
