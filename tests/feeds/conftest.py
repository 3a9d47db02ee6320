"""A real uvicorn server in the test's event loop, and a reader for streamed feeds.

``httpx.ASGITransport`` buffers a response body until the app returns, so it cannot show
what a client sees while a feed is open.  ``live`` runs ``uvicorn.Server`` (h11, as
``couchpoint serve``) as a task of the test's own loop on a loopback socket; the tests
talk to it over TCP with ``httpx.AsyncClient.stream()`` and can look inside the server
(notifiers, tasks, connections) between two awaits.

:class:`FeedReader` reads a streamed response in a background task and keeps every
chunk with its arrival time; tests wait for what they expect with
:meth:`FeedReader.wait_for` against a deadline (never a fixed sleep).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from starlette.applications import Starlette

from couchpoint import create_app
from couchpoint.config import Settings
from couchpoint.database import Server
from couchpoint.storage import SQLiteStorage

DEADLINE = 5.0
"""Seconds a test waits for something that should happen at once."""


@dataclass
class Live:
    """A running server: its URL, app, :class:`Server` and uvicorn server."""

    url: str
    app: Starlette
    server: Server
    uvicorn: uvicorn.Server
    client: httpx.AsyncClient

    def connections(self) -> int:
        return len(self.uvicorn.server_state.connections)


def _listening_socket() -> socket.socket:
    # proto=IPPROTO_TCP: asyncio then sets TCP_NODELAY on accepted connections, as on the
    # sockets uvicorn opens itself (else Nagle holds a small chunk for the client's ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def live_server(app: Starlette) -> AsyncIterator[Live]:
    sock = _listening_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", server_header=False, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + DEADLINE
    while not server.started:
        if task.done():
            task.result()
        assert time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=20)
    async with httpx.AsyncClient(base_url=url, timeout=10.0, limits=limits) as client:
        try:
            yield Live(url, app, app.state.server, server, client)
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 10)
    sock.close()


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    """couchpoint on SQLite (``tmp_path``), served by uvicorn on 127.0.0.1."""
    app = create_app(storage=SQLiteStorage(tmp_path / "feeds.sqlite3"), settings=Settings())
    async with live_server(app) as server:
        yield server


@pytest.fixture
async def db(live: Live) -> str:
    response = await live.client.put("/db")
    assert response.status_code == 201, response.text
    return "db"


@dataclass
class Chunk:
    at: float
    data: bytes


@dataclass
class FeedReader:
    """A streamed response read in the background: chunks with arrival times."""

    response: httpx.Response
    started: float
    chunks: list[Chunk] = field(default_factory=list)
    ended_at: float | None = None
    error: BaseException | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    @property
    def body(self) -> bytes:
        return b"".join(c.data for c in self.chunks)

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def lines(self) -> list[bytes]:
        """Complete lines so far (a heartbeat is an empty line)."""
        return self.body.split(b"\n")[:-1]

    def rows(self) -> list[dict[str, Any]]:
        """JSON objects of a continuous feed so far (heartbeats left out)."""
        return [orjson.loads(line) for line in self.lines() if line.strip()]

    def change_rows(self) -> list[dict[str, Any]]:
        return [row for row in self.rows() if "changes" in row]

    def times_of(self, needle: bytes) -> list[float]:
        """Arrival times (since the request) of every chunk containing ``needle``."""
        return [c.at - self.started for c in self.chunks if needle in c.data]

    async def _pump(self) -> None:
        try:
            async for data in self.response.aiter_raw():
                self.chunks.append(Chunk(time.monotonic(), data))
                self._changed.set()
        except (httpx.HTTPError, OSError) as exc:
            self.error = exc
        finally:
            self.ended_at = time.monotonic()
            self._changed.set()

    async def wait_for(
        self, predicate: Callable[[FeedReader], object], what: str, timeout: float = DEADLINE
    ) -> float:
        """Wait until ``predicate(self)`` is true; the time it took. Fails at the deadline."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0 or (self.ended and not predicate(self)):
                state = "ended" if self.ended else "still open"
                pytest.fail(f"{what}: not seen within {timeout} s ({state}); body so far: {self.body!r}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return time.monotonic() - self.started

    async def wait_end(self, timeout: float = DEADLINE) -> float:
        await self.wait_for(lambda r: r.ended, "end of the response", timeout)
        assert self.ended_at is not None
        return self.ended_at - self.started


@contextlib.asynccontextmanager
async def open_feed(
    client: httpx.AsyncClient, path: str, *, method: str = "GET", **kwargs: Any
) -> AsyncIterator[FeedReader]:
    """Open a streamed request; yields once the status line and headers arrived."""
    started = time.monotonic()
    async with client.stream(method, path, **kwargs) as response:
        reader = FeedReader(response, started)
        reader._task = asyncio.get_running_loop().create_task(reader._pump())
        try:
            yield reader
        finally:
            reader._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader._task


async def put_doc(client: httpx.AsyncClient, db: str, doc_id: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.put(f"/{db}/{doc_id}", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def update_seq(client: httpx.AsyncClient, db: str) -> int:
    response = await client.get(f"/{db}")
    seq: int = response.json()["update_seq"]
    return seq


async def eventually(predicate: Callable[[], object], what: str, timeout: float = DEADLINE) -> float:
    """Poll ``predicate`` every 10 ms until true; seconds it took; fails at the deadline."""
    started = time.monotonic()
    deadline = started + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not true within {timeout} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started
