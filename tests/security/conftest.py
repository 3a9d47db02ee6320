"""Fixtures: an app with a server admin and a few ``_users`` users, per storage backend.

Passwords are hashed with few PBKDF2 iterations here (``password_iterations``) so the
suite stays fast; the iteration count does not change any rule under test.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from couchpoint import create_app
from couchpoint.auth import hash_password
from couchpoint.config import Settings
from couchpoint.storage import MemoryStorage, SQLiteStorage

BASE_URL = "http://127.0.0.1:5984"
ADMIN = ("admin", "admin:p@ss")
FAST = {"password_iterations": 1000}

MakeApp = Callable[..., Awaitable[Starlette]]


def basic(name: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


ADMIN_AUTH = basic(*ADMIN)
ADMIN_HASH = hash_password(ADMIN[1], 1000)


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def make_app(backend: str, tmp_path: Path) -> AsyncIterator[MakeApp]:
    apps: list[Starlette] = []

    async def factory(**overrides: Any) -> Starlette:
        storage: Any = (
            MemoryStorage() if backend == "memory" else SQLiteStorage(tmp_path / f"s{len(apps)}.sqlite3")
        )
        options = {"admins": {ADMIN[0]: ADMIN_HASH}, **FAST, **overrides}
        app = create_app(storage=storage, settings=Settings(), **options)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        await app.state.server.close()


def client_for(app: Starlette, client: tuple[str, int] = ("127.0.0.1", 40000)) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=client),
        base_url=BASE_URL,
        headers={"Accept": "application/json"},
    )


@pytest.fixture
async def app(make_app: MakeApp) -> Starlette:
    return await make_app()


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c


async def add_user(
    client: httpx.AsyncClient, name: str, password: str, roles: list[str] | None = None
) -> str:
    """Create ``_users`` (if needed) and the user, as the server admin."""
    await client.put("/_users", headers=ADMIN_AUTH)
    doc = {"name": name, "password": password, "roles": roles or [], "type": "user"}
    response = await client.put(f"/_users/org.couchdb.user:{name}", json=doc, headers=ADMIN_AUTH)
    assert response.status_code == 201, response.text
    rev: str = response.json()["rev"]
    return rev


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"error", "reason"}, body
    return response.status_code, body["error"], body["reason"]
