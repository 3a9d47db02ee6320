"""pytest plugin: an in-process couchpoint for any project's tests.

Installed with couchpoint and registered through the ``pytest11`` entry point, so its
fixtures are available in every test without an import.  Everything runs in the test's
event loop over :class:`~couchpoint.storage.memory.MemoryStorage`: no server, no port,
no files.

Fixtures (all function-scoped):

``couchpoint_storage``
    The storage, a fresh :class:`~couchpoint.storage.memory.MemoryStorage`.  Override it
    to test against another backend.
``couchpoint_options``
    A dict of keyword arguments for :func:`couchpoint.create_app` (empty by default).
    Override it to add hooks or settings::

        @pytest.fixture
        def couchpoint_options():
            return {"validate_doc_update": my_validator, "admins": {"admin": "pw"}}

``couchpoint_app``
    The ASGI app (``create_app(storage=couchpoint_storage, settings=Settings(),
    **couchpoint_options)``: default settings, environment variables are not read).
    Storage opens on the first request and is closed at teardown.
``couchpoint_client``
    An :class:`httpx.AsyncClient` bound to the app through :class:`httpx.ASGITransport`,
    with base URL :data:`BASE_URL` and ``Accept: application/json`` (what both
    replicators send; httpx's default ``*/*`` would select multipart answers).
``couchpoint_db``
    The name of a database created for the test (``"testdb"``).

The async fixtures are ``pytest_asyncio`` fixtures: with ``asyncio_mode = "auto"`` any
``async def`` test can use them, in strict mode mark the test ``@pytest.mark.asyncio``.
httpx's ASGI transport buffers whole responses, so ``feed=continuous`` never returns
through ``couchpoint_client``; use ``feed=longpoll`` (or ``normal``) in tests.

This module imports nothing from couchpoint or httpx until a fixture runs, so it adds
nothing to the start-up of test sessions that do not use it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - anyio's pytest plugin can still run them
    async_fixture: Any = pytest.fixture
else:
    async_fixture = pytest_asyncio.fixture

if TYPE_CHECKING:
    import httpx
    from starlette.applications import Starlette

    from couchpoint.storage.base import Storage

BASE_URL = "http://couchpoint.test"
"""The base URL of :func:`couchpoint_client` (any host works: nothing is resolved)."""

TEST_DB = "testdb"
"""The database :func:`couchpoint_db` creates."""


@pytest.fixture
def couchpoint_storage() -> Storage:
    """A fresh, unopened in-memory storage (override to use another backend)."""
    from couchpoint.storage.memory import MemoryStorage

    return MemoryStorage()


@pytest.fixture
def couchpoint_options() -> dict[str, Any]:
    """Keyword arguments for :func:`couchpoint.create_app` (override to add hooks)."""
    return {}


@async_fixture
async def couchpoint_app(
    couchpoint_storage: Storage, couchpoint_options: dict[str, Any]
) -> AsyncIterator[Starlette]:
    """couchpoint's ASGI app over ``couchpoint_storage``; closed at teardown."""
    from couchpoint.config import Settings
    from couchpoint.http.app import create_app

    options = dict(couchpoint_options)
    settings = options.pop("settings", None) or Settings()
    app = create_app(storage=couchpoint_storage, settings=settings, **options)
    try:
        yield app
    finally:
        await app.state.server.close()


@async_fixture
async def couchpoint_client(couchpoint_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """An ``httpx.AsyncClient`` that talks to ``couchpoint_app`` in-process."""
    import httpx

    transport = httpx.ASGITransport(app=couchpoint_app)
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE_URL, headers={"Accept": "application/json"}, timeout=30.0
    ) as client:
        yield client


@async_fixture
async def couchpoint_db(couchpoint_app: Starlette) -> str:
    """Creates :data:`TEST_DB` (directly, so it works whatever the auth settings) and
    returns its name."""
    await couchpoint_app.state.server.create_db(TEST_DB)
    return TEST_DB
