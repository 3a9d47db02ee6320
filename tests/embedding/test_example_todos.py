"""The example app's storage backend and rules: the contract suite, the table mirror in
both directions, and CouchDB-shaped rejections."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from couchpoint.testing.storage_contract import StorageContract, StorageFactory, put, write_of
from examples.todos.storage import TodoStorage

from .conftest import ALICE, BOB

DB = "/sync/todos"


class TestTodoStorageContract(StorageContract):
    """The whole suite, with the mirror on (the suite's database is called ``db``)."""

    @pytest.fixture
    def storage_factory(self, tmp_path: Path) -> StorageFactory:
        return StorageFactory(lambda: TodoStorage(tmp_path / "app.sqlite3", table_db="db"), reopen=True)


def rows(todo_app: FastAPI) -> list[tuple[Any, ...]]:
    with sqlite3.connect(todo_app.state.db_path) as conn:
        return conn.execute("SELECT id, owner, title, done FROM todos ORDER BY id").fetchall()


def sql(todo_app: FastAPI, statement: str, *args: Any) -> None:
    """An edit by "the app": plain SQL on its own connection."""
    conn = sqlite3.connect(todo_app.state.db_path)
    with conn:
        conn.execute(statement, args)
    conn.close()


async def doc(client: httpx.AsyncClient, doc_id: str, auth: tuple[str, str] = ALICE, **params: str) -> Any:
    return (await client.get(f"{DB}/{doc_id}", params=params, auth=auth)).json()


# -- device -> table ------------------------------------------------------------------------


async def test_device_writes_land_in_the_table(client: httpx.AsyncClient, todo_app: FastAPI) -> None:
    first = await client.put(f"{DB}/t1", json={"owner": "alice", "title": "milk"}, auth=ALICE)
    assert first.status_code == 201
    assert rows(todo_app) == [("t1", "alice", "milk", 0)]
    rev = first.json()["rev"]
    await client.put(
        f"{DB}/t1", json={"_rev": rev, "owner": "alice", "title": "oat milk", "done": True}, auth=ALICE
    )
    assert rows(todo_app) == [("t1", "alice", "oat milk", 1)]
    rev = (await doc(client, "t1"))["_rev"]
    await client.put(f"{DB}/t1", json={"_rev": rev, "_deleted": True, "owner": "alice"}, auth=ALICE)
    assert rows(todo_app) == []


async def test_the_row_shows_the_winning_revision_of_a_conflict(
    client: httpx.AsyncClient, todo_app: FastAPI
) -> None:
    branches = [
        {"_id": "c", "_rev": "1-" + "a" * 32, "owner": "alice", "title": "loser"},
        {"_id": "c", "_rev": "1-" + "f" * 32, "owner": "alice", "title": "winner"},
    ]
    pushed = await client.post(f"{DB}/_bulk_docs", json={"docs": branches, "new_edits": False}, auth=ALICE)
    assert pushed.json() == []
    assert rows(todo_app) == [("c", "alice", "winner", 0)]
    # Deleting the winner: the other branch wins, and the row shows it.
    await client.put(
        f"{DB}/c", json={"_rev": "1-" + "f" * 32, "_deleted": True, "owner": "alice"}, auth=ALICE
    )
    assert rows(todo_app) == [("c", "alice", "loser", 0)]


async def test_a_rejected_write_leaves_the_table_alone(client: httpx.AsyncClient, todo_app: FastAPI) -> None:
    await client.put(f"{DB}/t", json={"owner": "alice", "title": "keep"}, auth=ALICE)
    bulk = await client.post(
        f"{DB}/_bulk_docs", json={"docs": [{"_id": "t2", "owner": "alice", "title": ""}]}, auth=ALICE
    )
    assert bulk.json()[0]["error"] == "forbidden"
    assert rows(todo_app) == [("t", "alice", "keep", 0)]


# -- table -> devices -----------------------------------------------------------------------


async def test_app_edits_become_revisions_in_changes(client: httpx.AsyncClient, todo_app: FastAPI) -> None:
    sql(todo_app, "INSERT INTO todos (id, owner, title, done) VALUES ('a1', 'alice', 'from SQL', 0)")
    changes = (await client.get(f"{DB}/_changes", params={"include_docs": "true"}, auth=ALICE)).json()
    [row] = changes["results"]
    assert row["id"] == "a1"
    assert row["doc"] == {
        "_id": "a1",
        "_rev": row["changes"][0]["rev"],
        "owner": "alice",
        "title": "from SQL",
        "done": False,
    }
    assert row["changes"][0]["rev"].startswith("1-")

    sql(todo_app, "UPDATE todos SET done = 1 WHERE id = 'a1'")
    edited = await doc(client, "a1", revs="true")
    assert (edited["done"], edited["_revisions"]["start"]) == (True, 2)

    sql(todo_app, "DELETE FROM todos WHERE id = 'a1'")
    assert (await client.get(f"{DB}/a1", auth=ALICE)).status_code == 404
    tombstone = await doc(client, "a1", rev=f"3-{(await _leaf(client, 'a1'))}")
    assert tombstone["_deleted"] is True
    assert tombstone["owner"] == "alice"  # so read access still knows whose deletion it is


async def _leaf(client: httpx.AsyncClient, doc_id: str) -> str:
    open_revs = (await client.get(f"{DB}/{doc_id}", params={"open_revs": "all"}, auth=ALICE)).json()
    rev: str = open_revs[0]["ok"]["_rev"]
    return rev.split("-", 1)[1]


async def test_app_edit_keeps_other_fields_and_extends_the_device_revision(
    client: httpx.AsyncClient, todo_app: FastAPI
) -> None:
    made = await client.put(f"{DB}/d", json={"owner": "alice", "title": "x", "note": "kept"}, auth=ALICE)
    sql(todo_app, "UPDATE todos SET title = 'y' WHERE id = 'd'")
    edited = await doc(client, "d", revs="true")
    assert (edited["title"], edited["note"]) == ("y", "kept")
    assert edited["_revisions"]["ids"][1] == made.json()["rev"].split("-", 1)[1]
    # A device that still holds the old revision gets a conflict, as with any edit.
    stale = await client.put(
        f"{DB}/d", json={"_rev": made.json()["rev"], "owner": "alice", "title": "z"}, auth=ALICE
    )
    assert stale.status_code == 409


async def test_an_app_edit_wakes_a_waiting_longpoll(client: httpx.AsyncClient, todo_app: FastAPI) -> None:
    # Load the database first: concurrent first loads race in Server.get_db (see report).
    database = await todo_app.state.sync.state.server.get_db("todos")
    poll = asyncio.create_task(
        client.get(f"{DB}/_changes", params={"feed": "longpoll", "since": "now"}, auth=ALICE)
    )
    deadline = asyncio.get_running_loop().time() + 10
    while not database.notifier.waiting:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    # Nothing of couchpoint is called: the poll of update_seqs() picks the edit up.
    sql(todo_app, "INSERT INTO todos (id, owner, title, done) VALUES ('w', 'alice', 'wake', 0)")
    answer = await asyncio.wait_for(poll, timeout=20)
    assert [row["id"] for row in answer.json()["results"]] == ["w"]


async def test_the_app_api_and_sync_see_the_same_data(client: httpx.AsyncClient) -> None:
    made = (await client.post("/api/todos", json={"title": "via API"}, auth=ALICE)).json()
    await client.patch(f"/api/todos/{made['id']}", json={"done": True}, auth=ALICE)
    synced = await doc(client, made["id"])
    assert (synced["title"], synced["done"], synced["owner"]) == ("via API", True, "alice")
    await client.put(f"{DB}/dev", json={"owner": "alice", "title": "via sync"}, auth=ALICE)
    listed = (await client.get("/api/todos", auth=ALICE)).json()
    assert {t["title"] for t in listed} == {"via API", "via sync"}
    assert (await client.get("/api/todos", auth=BOB)).json() == []


async def test_sync_app_edits_on_demand(tmp_path: Path) -> None:
    storage = TodoStorage(tmp_path / "x.sqlite3", table_db="db")
    await storage.open()
    try:
        db = await storage.create_db("db")
        await put(db, write_of("a", body={"owner": "o", "title": "t"}))
        conn = sqlite3.connect(storage.path)
        with conn:
            conn.execute("UPDATE todos SET title = 'edited' WHERE id = 'a'")
        conn.close()
        assert await storage.sync_app_edits() is True
        assert await storage.sync_app_edits() is False
        [row] = await db.changes(0, 10)
        assert (row.id, row.seq, row.rev.split("-")[0]) == ("a", 2, "2")
        body = (await db.get_revisions([("a", row.rev)]))[("a", row.rev)].body
        assert body == {"owner": "o", "title": "edited", "done": False}
    finally:
        await storage.close()


# -- rejections in CouchDB's shape ------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"owner": "bob", "title": "not mine"}, "A todo's owner must be the user who writes it."),
        ({"owner": "alice"}, "A todo needs a title."),
        ({"owner": "alice", "title": "  "}, "A todo needs a title."),
        ({"owner": "alice", "title": "x", "done": "yes"}, "`done` must be true or false."),
    ],
)
async def test_a_forbidden_put_is_403(client: httpx.AsyncClient, body: dict[str, Any], reason: str) -> None:
    response = await client.put(f"{DB}/t", json=body, auth=ALICE)
    assert response.status_code == 403
    assert response.json() == {"error": "forbidden", "reason": reason}
    assert (await client.get(f"{DB}/t", auth=ALICE)).status_code == 404


async def test_forbidden_docs_in_bulk_docs_are_per_doc_errors(client: httpx.AsyncClient) -> None:
    docs = [
        {"_id": "ok", "owner": "alice", "title": "fine"},
        {"_id": "bad", "owner": "bob", "title": "not mine"},
    ]
    response = await client.post(f"{DB}/_bulk_docs", json={"docs": docs}, auth=ALICE)
    assert response.status_code == 201
    ok, bad = response.json()
    assert ok["ok"] is True
    assert bad == {
        "id": "bad",
        "error": "forbidden",
        "reason": "A todo's owner must be the user who writes it.",
    }
    # Replicated writes (new_edits=false) report only the failures, as CouchDB 3.
    pushed = await client.post(
        f"{DB}/_bulk_docs",
        json={"docs": [{**docs[1], "_rev": "1-" + "c" * 32}], "new_edits": False},
        auth=ALICE,
    )
    assert pushed.json() == [
        {
            "id": "bad",
            "rev": "1-" + "c" * 32,
            "error": "forbidden",
            "reason": "A todo's owner must be the user who writes it.",
        }
    ]


async def test_a_deletion_must_keep_its_owner(client: httpx.AsyncClient) -> None:
    rev = (await client.put(f"{DB}/t", json={"owner": "alice", "title": "x"}, auth=ALICE)).json()["rev"]
    removed = await client.delete(f"{DB}/t", params={"rev": rev}, auth=ALICE)  # PouchDB's remove()
    assert removed.status_code == 403
    kept = await client.put(f"{DB}/t", json={"_rev": rev, "_deleted": True, "owner": "alice"}, auth=ALICE)
    assert kept.status_code == 200


async def test_nobody_edits_anothers_todo(client: httpx.AsyncClient) -> None:
    rev = (await client.put(f"{DB}/b", json={"owner": "bob", "title": "bob's"}, auth=BOB)).json()["rev"]
    taken = await client.put(f"{DB}/b", json={"_rev": rev, "owner": "alice", "title": "mine now"}, auth=ALICE)
    assert taken.status_code == 403
    assert taken.json()["error"] == "forbidden"


async def test_anonymous_and_wrong_passwords_are_401(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"{DB}/_changes")).status_code == 401
    wrong = await client.get(f"{DB}/_changes", auth=("alice", "nope"))
    assert (wrong.status_code, wrong.json()["error"]) == (401, "unauthorized")
    assert (await client.get("/api/todos")).status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", DB),
        ("PUT", "/sync/other"),
        ("GET", "/sync/_all_dbs"),
        ("PUT", f"{DB}/_security"),
        ("PUT", f"{DB}/_design/x"),
        ("PUT", f"{DB}/_design%2Fx"),
        ("POST", f"{DB}/_compact"),
    ],
)
async def test_the_guard_keeps_devices_to_replication(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, json={}, auth=ALICE)
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
