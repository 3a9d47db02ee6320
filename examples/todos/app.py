"""The example: a FastAPI todo app that works offline.

The app keeps its data in one plain SQLite table, ``todos(id, owner, title, done)``, and
reads and writes it with ``sqlite3`` like any app would (``/api/todos``).  Mounted at
``/sync``, couchpoint exposes that table as the CouchDB database ``todos`` that PouchDB
(or CouchDB) replicates with, through :class:`~examples.todos.storage.TodoStorage`:

* rows the app changes show up in ``_changes`` and sync to devices;
* documents that devices write land in the table;
* :func:`~examples.todos.rules.validate_todo` rejects anything but a todo owned by its
  writer, and :func:`~examples.todos.rules.can_read` shows each user only their todos.

Run it (``python -m examples.todos --help``)::

    python -m examples.todos --db todos.sqlite3 --user alice:secret --user bob:hunter2

and sync from a browser or Node::

    const db = new PouchDB("todos");
    db.sync("http://127.0.0.1:8000/sync/todos", {
      live: true, retry: true, auth: {username: "alice", password: "secret"},
    });
"""

from __future__ import annotations

import secrets
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, Field
from starlette.applications import Starlette

import couchpoint
from examples.todos.auth import SyncGuard
from examples.todos.rules import can_read, validate_todo
from examples.todos.storage import TodoStorage

SYNC_DB = "todos"


class NewTodo(BaseModel):
    title: str = Field(min_length=1)
    done: bool = False


class TodoPatch(BaseModel):
    title: str | None = Field(default=None, min_length=1)
    done: bool | None = None


class Todo(BaseModel):
    id: str
    owner: str
    title: str
    done: bool


basic_auth = HTTPBasic()


def current_user(request: Request, credentials: Annotated[HTTPBasicCredentials, Depends(basic_auth)]) -> str:
    """The app's own login check (HTTP Basic against the configured users)."""
    expected = request.app.state.users.get(credentials.username)
    if expected is None or not secrets.compare_digest(credentials.password, expected):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "Wrong name or password", {"WWW-Authenticate": "Basic"}
        )
    return credentials.username


User = Annotated[str, Depends(current_user)]


@contextmanager
def connect(request: Request) -> Iterator[sqlite3.Connection]:
    """The app's own connection: plain SQL; it has no idea that the table syncs."""
    conn = sqlite3.connect(request.app.state.db_path, timeout=10)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def todo(row: tuple[Any, ...]) -> Todo:
    return Todo(id=row[0], owner=row[1], title=row[2], done=bool(row[3]))


api = APIRouter(prefix="/api")


@api.get("/todos")
def list_todos(request: Request, user: User) -> list[Todo]:
    with connect(request) as conn:
        rows = conn.execute(
            "SELECT id, owner, title, done FROM todos WHERE owner = ? ORDER BY title, id", (user,)
        )
        return [todo(row) for row in rows]


@api.post("/todos", status_code=201)
def add_todo(request: Request, new: NewTodo, user: User) -> Todo:
    row = (uuid.uuid4().hex, user, new.title, int(new.done))
    with connect(request) as conn:
        conn.execute("INSERT INTO todos (id, owner, title, done) VALUES (?, ?, ?, ?)", row)
    return todo(row)


@api.patch("/todos/{todo_id}")
def edit_todo(request: Request, todo_id: str, patch: TodoPatch, user: User) -> Todo:
    with connect(request) as conn:
        found = conn.execute(
            "SELECT id, owner, title, done FROM todos WHERE id = ? AND owner = ?", (todo_id, user)
        ).fetchone()
        if found is None:
            raise HTTPException(404, "No such todo")
        title = found[2] if patch.title is None else patch.title
        done = found[3] if patch.done is None else int(patch.done)
        conn.execute("UPDATE todos SET title = ?, done = ? WHERE id = ?", (title, done, todo_id))
    return todo((todo_id, user, title, done))


@api.delete("/todos/{todo_id}", status_code=204)
def delete_todo(request: Request, todo_id: str, user: User) -> None:
    with connect(request) as conn:
        gone = conn.execute("DELETE FROM todos WHERE id = ? AND owner = ?", (todo_id, user))
        if gone.rowcount == 0:
            raise HTTPException(404, "No such todo")


def create_sync_app(storage: TodoStorage, users: Mapping[str, str]) -> Starlette:
    """couchpoint over ``storage`` with the example's hooks (see :mod:`examples.todos.auth`
    for why the users are couchpoint admins)."""
    return couchpoint.create_app(
        storage,
        couchpoint.Settings(),
        admins=dict(users),
        validate_doc_update={SYNC_DB: validate_todo},
        read_access={SYNC_DB: can_read},
    )


def create_todo_app(db_path: str | Path, users: Mapping[str, str]) -> FastAPI:
    """The FastAPI app over the SQLite file ``db_path``; ``users`` maps names to
    passwords (for the app's own API and for sync)."""
    storage = TodoStorage(db_path, table_db=SYNC_DB)
    sync = create_sync_app(storage, users)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A mounted app gets no lifespan events of its own: open couchpoint here.
        server = sync.state.server
        await server.start()
        if SYNC_DB not in await server.all_dbs():
            await server.create_db(SYNC_DB)
        try:
            yield
        finally:
            await server.close()

    app = FastAPI(title="todos", lifespan=lifespan)
    app.state.db_path = Path(db_path)
    app.state.users = dict(users)
    app.state.storage = storage
    app.state.sync = sync
    app.include_router(api)
    app.mount("/sync", SyncGuard(sync, SYNC_DB))
    return app
