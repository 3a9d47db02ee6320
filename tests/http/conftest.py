"""Fixtures for the HTTP tests: every test runs once per storage backend.

* ``app``: ``create_app(storage=...)`` over :class:`MemoryStorage` and over
  :class:`SQLiteStorage` (``tmp_path/"x.sqlite3"``); both must answer identically.
  Storage opens on the first request (no lifespan) and is closed at teardown.
* ``make_app``: the same backend with settings overrides (``cors_origins=...``,
  ``admins=...``), each on its own storage.
* ``client``: an ``httpx.AsyncClient`` on the app, sending ``Accept: application/json``
  like both replicators do (httpx's default ``*/*`` would select multipart answers).
* ``db``: a created database's name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from couchpoint import create_app
from couchpoint.config import Settings
from couchpoint.storage import MemoryStorage, SQLiteStorage

from . import BASE_URL, bounded

BACKENDS = ["memory", "sqlite"]
REQUEST_TIMEOUT = 30.0
"""Seconds one in-process request may take before its test fails."""

MakeApp = Callable[..., Awaitable[Starlette]]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def make_app(backend: str, tmp_path: Path) -> AsyncIterator[MakeApp]:
    """Build apps on fresh storage of the current backend; all are closed at teardown.

    Keyword arguments override :class:`Settings` fields (environment variables are not
    read, so the tests do not depend on the shell that runs them).
    """
    apps: list[Starlette] = []

    async def factory(**overrides: Any) -> Starlette:
        if backend == "memory":
            storage: Any = MemoryStorage()
        else:
            name = "x.sqlite3" if not apps else f"x{len(apps)}.sqlite3"
            storage = SQLiteStorage(tmp_path / name)
        app = create_app(storage=storage, settings=Settings(), **overrides)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        await bounded(app.state.server.close(), REQUEST_TIMEOUT, "closing the storage")


@pytest.fixture
async def app(make_app: MakeApp) -> Starlette:
    return await make_app()


class BoundedASGITransport(httpx.ASGITransport):
    """``ASGITransport`` with an upper bound per request, so a server that never answers
    fails its test instead of hanging the suite (ASGITransport has no timeouts)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        what = f"{request.method} {request.url}"
        return await bounded(super().handle_async_request(request), REQUEST_TIMEOUT, what)


def client_for(app: Starlette) -> httpx.AsyncClient:
    """An in-process client for ``app`` (JSON accepted, CouchDB's port in the URL)."""
    return httpx.AsyncClient(
        transport=BoundedASGITransport(app=app),
        base_url=BASE_URL,
        headers={"Accept": "application/json"},
        follow_redirects=False,
    )


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c


@pytest.fixture
async def db(client: httpx.AsyncClient) -> str:
    """A new, empty database named ``db``."""
    response = await client.put("/db")
    assert response.status_code == 201, response.text
    return "db"
