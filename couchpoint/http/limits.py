"""Slow clients: time limits on request heads and bodies, for ``couchpoint serve``.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) and caps the size of
a request head (``h11_max_incomplete_event_size``), but a client that connects and then
sends its request head a byte at a time, or stops half-way through a body, holds a
connection (and, for the body, a request task) for ever.  Two guards:

* :class:`HeadTimeoutMixin` for uvicorn's h11 protocol: a connection that has not sent
  a complete request head ``header_timeout_s`` seconds after it opened (or after its
  previous response ended and it sent the next byte) is closed;
* :class:`BodyTimeout`, an ASGI wrapper: while a request body is still coming, each
  read waits at most ``body_timeout_s`` seconds, then the request fails with
  ``408 request_timeout`` (rendered by the router like any CouchDB error).  Once the
  body is complete, reads are not timed (feeds wait for the disconnect).

:func:`configure` sets the limits from :class:`~couchpoint.config.Settings` (also in
each ``--workers`` process, where uvicorn builds the protocol from an import string).
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from couchpoint import errors

HEADER_TIMEOUT_S: float = 10.0


def configure(settings: Any) -> None:
    global HEADER_TIMEOUT_S
    HEADER_TIMEOUT_S = float(settings.header_timeout_s)


class HeadTimeoutMixin:
    """Mix into an ``H11Protocol`` subclass (before it in the bases)."""

    _head_timer: asyncio.TimerHandle | None = None
    _cycle_at_arm: Any = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        cycle = getattr(self, "cycle", None)
        if self._head_timer is None and (cycle is None or cycle.response_complete):
            self._arm_head_timer()
        super().data_received(data)  # type: ignore[misc]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm_head_timer(self) -> None:
        if HEADER_TIMEOUT_S <= 0:
            return
        loop = asyncio.get_running_loop()
        self._cycle_at_arm = getattr(self, "cycle", None)
        self._head_timer = loop.call_later(HEADER_TIMEOUT_S, self._head_timeout)

    def _head_timeout(self) -> None:
        self._head_timer = None
        cycle = getattr(self, "cycle", None)
        if cycle is not self._cycle_at_arm:
            return  # a request head arrived in time
        if cycle is not None and not cycle.response_complete:
            return  # a request is being served
        transport = getattr(self, "transport", None)
        if transport is not None and not transport.is_closing():
            transport.close()


class BodyTimeout:
    """ASGI wrapper: 408 when a request body stalls for ``timeout_s`` seconds."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.timeout_s <= 0:
            await self.app(scope, receive, send)
            return
        done = False

        async def timed_receive() -> Message:
            nonlocal done
            if done:
                return await receive()
            try:
                with anyio.fail_after(self.timeout_s):
                    message = await receive()
            except TimeoutError:
                raise errors.CouchError(
                    "the request body was not received in time", status=408, error="request_timeout"
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                done = True
            return message

        await self.app(scope, timed_receive, send)
