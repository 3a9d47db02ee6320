"""Fixtures for the example app (``examples/todos``), driven in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from examples.todos.app import create_todo_app

USERS = {"alice": "alice-pw", "bob": "bob-pw"}
ALICE = ("alice", USERS["alice"])
BOB = ("bob", USERS["bob"])


@pytest.fixture
async def todo_app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    """The example app on a fresh SQLite file, started (its lifespan entered)."""
    app = create_todo_app(tmp_path / "todos.sqlite3", USERS)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(todo_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the example app; JSON answers preferred, as the replicators ask."""
    transport = httpx.ASGITransport(app=todo_app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://todos.test", headers={"Accept": "application/json"}, timeout=30
    ) as client:
        yield client
