"""Change notification: how a committed write wakes the ``_changes`` feeds waiting on it."""

from __future__ import annotations

import asyncio


class ChangeNotifier:
    """Wakes ``_changes`` listeners of one database after each committed write.

    One per database and process; a write publishes its highest seq, every waiter whose
    ``since`` is below it wakes once and reads the new rows itself.
    """

    def __init__(self, seq: int = 0) -> None:
        self.seq = seq
        self._event = asyncio.Event()

    def publish(self, seq: int) -> None:
        """Record that everything up to ``seq`` is committed and wake all waiters."""
        if seq > self.seq:
            self.seq = seq
            event, self._event = self._event, asyncio.Event()
            event.set()

    async def wait(self, after: int, timeout: float | None) -> bool:
        """Wait until a seq greater than ``after`` is published or ``timeout`` seconds pass.

        Returns ``True`` when there is something new, ``False`` on timeout.
        """
        if self.seq > after:
            return True
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return self.seq > after
        return True
