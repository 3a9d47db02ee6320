"""SQLiteStorage beyond the contract: the file format apps may query, several storages
(processes) on one file, connection hygiene and failure handling."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import sys
import threading
import warnings
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import couchpoint.storage.sqlite as sqlite_module
from couchpoint import errors
from couchpoint.revtree import RevTree
from couchpoint.storage.base import DocWrite, LocalDoc
from couchpoint.storage.sqlite import SQLiteStorage

from .contract import blob_write_of, conflicted_tree, ids, linear_tree, put, put_ids, write_of


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "couchpoint.sqlite"


@pytest.fixture
async def storage(path: Path) -> AsyncIterator[SQLiteStorage]:
    async with SQLiteStorage(path) as storage:
        yield storage


@pytest.fixture
def raw(path: Path, storage: SQLiteStorage) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection on the same file: an application, or another process."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


# -- the file -----------------------------------------------------------------------------


async def test_file_is_wal_with_schema_version_2(storage: SQLiteStorage, raw: sqlite3.Connection) -> None:
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert raw.execute("PRAGMA user_version").fetchone() == (2,)
    assert sqlite_module.SCHEMA_VERSION == 2
    tables = {
        name for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
    }
    assert {"server", "dbs", "docs", "revs", "local_docs", "revision_blobs", "winning_docs"} <= tables


async def test_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "data.sqlite"
    async with SQLiteStorage(path) as storage:
        await storage.create_db("db")
    assert path.is_file()


async def test_docs_are_plain_json_queryable_with_sql(
    storage: SQLiteStorage, raw: sqlite3.Connection
) -> None:
    db = await storage.create_db("db")
    await put(
        db,
        write_of("a", 2, body={"title": "héllo", "n": 1}),
        write_of("gone", deleted=True),
        DocWrite("c", conflicted_tree()),  # no bodies stored
    )
    async with db.write() as txn:
        await txn.put_local(LocalDoc("cp", 3, {"last_seq": 2}))
    assert raw.execute(
        "SELECT doc_id, rev, seq, json_extract(body, '$.title') FROM winning_docs"
        " WHERE db = 'db' ORDER BY doc_id"
    ).fetchall() == [("a", "2-r2", 1, "héllo"), ("c", "2-c", 3, None)]
    row = raw.execute("SELECT seq, winner_rev, deleted, leaves, tree FROM docs WHERE doc_id = 'c'").fetchone()
    seq, winner, deleted, leaves, tree = row
    assert (seq, winner, deleted) == (3, "2-c", 0)
    assert orjson.loads(leaves) == [["2-c", False], ["2-b", False]]
    assert orjson.loads(tree) == [[1, "a", -1, 2], [2, "b", 0, 0], [2, "c", 0, 0]]
    assert raw.execute("SELECT deleted FROM docs WHERE doc_id = 'gone'").fetchone() == (1,)
    assert raw.execute("SELECT rev, deleted, size, body FROM revs WHERE doc_id = 'a'").fetchone() == (
        "2-r2",
        0,
        len(orjson.dumps({"title": "héllo", "n": 1})),
        '{"title":"héllo","n":1}',
    )
    assert raw.execute("SELECT rev, json_extract(body, '$.last_seq') FROM local_docs").fetchone() == (3, 2)
    assert raw.execute("SELECT name, update_seq, revs_limit FROM dbs").fetchall() == [("db", 3, 1000)]
    uuid = await storage.server_uuid()
    assert raw.execute("SELECT uuid FROM server").fetchall() == [(uuid,)]


async def test_module_docstring_documents_every_column(
    storage: SQLiteStorage, raw: sqlite3.Connection
) -> None:
    doc = sqlite_module.__doc__ or ""
    names = [
        name for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
    ]
    for name in names:
        if name.startswith("sqlite_"):
            continue
        assert f"``{name}" in doc, name
        for column in raw.execute(f"PRAGMA table_info({name})"):
            assert column[1] in doc, f"{name}.{column[1]}"


# -- construction and lifecycle -----------------------------------------------------------


def test_rejects_bad_options(path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStorage(path, synchronous="SOMETIMES")
    with pytest.raises(ValueError, match="readers"):
        SQLiteStorage(path, readers=0)
    assert SQLiteStorage(path, synchronous="normal") is not None


async def test_synchronous_is_applied(path: Path) -> None:
    async with SQLiteStorage(path, synchronous="NORMAL") as storage:
        assert storage._writer is not None
        rows = list(await storage._writer.execute_fetchall("PRAGMA synchronous"))
        assert rows == [(1,)]


async def test_closed_storage_raises_runtime_error(path: Path) -> None:
    storage = SQLiteStorage(path)
    with pytest.raises(RuntimeError, match="not open"):
        await storage.all_dbs()
    async with storage:
        db = await storage.create_db("db")
    with pytest.raises(RuntimeError):
        await db.info()
    with pytest.raises(RuntimeError):
        async with db.write():
            pass
    with pytest.raises(RuntimeError):
        await storage.server_uuid()


async def test_the_same_object_reopens(path: Path) -> None:
    storage = SQLiteStorage(path)
    async with storage:
        await put_ids(await storage.create_db("db"), "a")
        uuid = await storage.server_uuid()
    async with storage:
        db = await storage.get_db("db")
        assert db is not None
        assert ids(await db.all_docs()) == ["a"]
        assert await storage.server_uuid() == uuid


async def test_close_leaks_no_connection_or_thread(path: Path) -> None:
    gc.collect()  # objects leaked by earlier tests must not be blamed on this one
    before = set(threading.enumerate())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        storage = SQLiteStorage(path, readers=3)
        await storage.open()
        await storage.open()
        db = await storage.create_db("db")
        await put_ids(db, "a")
        await db.all_docs()
        workers = set(threading.enumerate()) - before
        assert len(workers) == 4  # one per connection: the writer and 3 readers
        await storage.close()
        await storage.close()
        del storage, db
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    for thread in workers:
        thread.join(timeout=10)
        assert not thread.is_alive()


async def test_close_waits_for_the_running_transaction(path: Path) -> None:
    storage = SQLiteStorage(path)
    await storage.open()
    db = await storage.create_db("db")
    inside = asyncio.Event()
    release = asyncio.Event()

    async def writer() -> list[int]:
        async with db.write() as txn:
            inside.set()
            await release.wait()
            return await txn.put_docs([write_of("a")])

    task = asyncio.create_task(writer())
    await inside.wait()
    closing = asyncio.create_task(storage.close())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not closing.done()
    release.set()
    assert await task == [1]
    await closing
    async with SQLiteStorage(path) as again:
        reopened = await again.get_db("db")
        assert reopened is not None
        assert ids(await reopened.changes(0, 10)) == ["a"]


async def test_server_uuid_is_shared_by_storages_opening_a_new_file(path: Path) -> None:
    one, two = SQLiteStorage(path), SQLiteStorage(path)
    try:
        await asyncio.gather(one.open(), two.open())
        uuid = await one.server_uuid()
        assert await two.server_uuid() == uuid
    finally:
        await one.close()
        await two.close()
    async with SQLiteStorage(path) as three:
        assert await three.server_uuid() == uuid


# -- databases ----------------------------------------------------------------------------


async def test_instance_start_times_are_distinct_across_recreation(storage: SQLiteStorage) -> None:
    seen = set()
    for _ in range(5):
        db = await storage.create_db("db")
        seen.add((await db.info()).instance_start_time)
        await storage.delete_db("db")
    assert len(seen) == 5
    assert all(value.isdigit() for value in seen)


async def test_delete_db_removes_every_row(storage: SQLiteStorage, raw: sqlite3.Connection) -> None:
    db = await storage.create_db("db")
    keep = await storage.create_db("keep")
    for target in (db, keep):
        await put_ids(target, "a", "b")
        async with target.write() as txn:
            await txn.put_local(LocalDoc("cp", 1, {}))
    await storage.delete_db("db")
    for table in ("docs", "revs", "local_docs"):
        assert raw.execute(f"SELECT COUNT(*) FROM {table}").fetchone() == (2 if table != "local_docs" else 1,)
    assert raw.execute("SELECT name FROM dbs").fetchall() == [("keep",)]


async def test_a_handle_on_a_deleted_db_is_not_found(storage: SQLiteStorage) -> None:
    db = await storage.create_db("db")
    await put_ids(db, "a")
    await storage.delete_db("db")
    await storage.create_db("db")  # same name, new db: the old handle must not see it
    with pytest.raises(errors.NotFound):
        await db.info()
    with pytest.raises(errors.NotFound):
        async with db.write():
            pass
    assert await db.get_docs(["a"]) == {}
    assert await db.all_docs() == []


# -- transactions -------------------------------------------------------------------------


async def test_nested_transactions_raise_instead_of_deadlocking(storage: SQLiteStorage) -> None:
    db = await storage.create_db("db")
    other = await storage.create_db("other")
    async with db.write() as txn:
        with pytest.raises(RuntimeError, match="already inside"):
            async with other.write():
                pass
        with pytest.raises(RuntimeError, match="already inside"):
            await storage.create_db("third")
        with pytest.raises(RuntimeError, match="already inside"):
            await storage.close()
        assert await txn.put_docs([write_of("a")]) == [1]
    assert ids(await db.all_docs()) == ["a"]


async def test_a_transaction_cannot_be_used_after_its_block(storage: SQLiteStorage) -> None:
    db = await storage.create_db("db")
    async with db.write() as txn:
        pass
    with pytest.raises(RuntimeError, match="ended"):
        await txn.put_docs([write_of("a")])
    with pytest.raises(RuntimeError, match="ended"):
        await txn.get_docs(["a"])


async def test_a_cancelled_transaction_rolls_back(storage: SQLiteStorage) -> None:
    db = await storage.create_db("db")
    inside = asyncio.Event()

    async def writer() -> None:
        async with db.write() as txn:
            await txn.put_docs([write_of("a")])
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(writer())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await db.get_docs(["a"]) == {}
    assert await put_ids(db, "b") == [1]


async def test_put_docs_rejects_an_empty_tree(storage: SQLiteStorage) -> None:
    db = await storage.create_db("db")
    with pytest.raises(ValueError, match="empty revision tree"):
        async with db.write() as txn:
            await txn.put_docs([write_of("a"), DocWrite("b", RevTree.empty())])
    assert (await db.info()).update_seq == 0


async def test_a_body_orjson_cannot_encode_fails_before_any_write(storage: SQLiteStorage) -> None:
    db = await storage.create_db("db")
    async with db.write() as txn:
        with pytest.raises(TypeError):
            await txn.put_docs([write_of("a", body={"n": 2**70})])
        assert await txn.put_docs([write_of("b")]) == [1]


# -- batching -------------------------------------------------------------------------------


class CallCounter:
    """Counts the calls made on an aiosqlite connection (each one is a thread hop)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, conn: Any) -> None:
        self.calls = 0
        for name in ("execute", "executemany", "execute_fetchall"):
            monkeypatch.setattr(conn, name, self._wrap(getattr(conn, name)))

    def _wrap(self, method: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return method(*args, **kwargs)

        return counted


async def test_put_docs_costs_the_same_statements_for_1_or_500_docs(
    storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = await storage.create_db("db")
    await put(db, *(write_of(f"d{i:03}") for i in range(500)))  # so the rewrites drop revs
    counter = CallCounter(monkeypatch, storage._writer)
    costs = []
    for batch in (
        [write_of("x", 2, drop_revs=["1-r1"])],
        [write_of(f"d{i:03}", 2, drop_revs=["1-r1"]) for i in range(500)],
    ):
        counter.calls = 0
        async with db.write() as txn:
            await txn.put_docs(batch)
        costs.append(counter.calls)
    # BEGIN, db check, seq, drop bodies, drop blob references, docs, revs, COMMIT
    assert costs[0] == costs[1] <= 8
    # With blob references: one more statement, still whatever the batch size.
    with_blobs = []
    for batch in (
        [blob_write_of("x", 3, ["k1", "k2"], drop_revs=["2-r2"])],
        [blob_write_of(f"d{i:03}", 3, ["k1", "k2"], drop_revs=["2-r2"]) for i in range(500)],
    ):
        counter.calls = 0
        async with db.write() as txn:
            await txn.put_docs(batch)
        with_blobs.append(counter.calls)
    assert with_blobs[0] == with_blobs[1] <= 9
    assert (await db.info()).update_seq == 1502


async def test_multi_key_reads_are_one_query(storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    db = await storage.create_db("db")
    await put_ids(db, *(f"d{i}" for i in range(1200)))
    counters = [CallCounter(monkeypatch, reader) for reader in storage._readers]
    keys = [f"d{i}" for i in range(1200)] + ["missing"]
    assert len(await db.get_docs(keys)) == 1200
    assert len(await db.get_summaries(keys)) == 1200
    assert len(await db.get_revisions([(key, "1-r1") for key in keys])) == 1200
    assert sum(counter.calls for counter in counters) == 3


async def test_huge_multi_key_reads_are_split(
    storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "_IDS_PER_QUERY", 500)
    monkeypatch.setattr(sqlite_module, "_PAIRS_PER_QUERY", 250)
    db = await storage.create_db("db")
    await put_ids(db, *(f"d{i}" for i in range(1200)))
    counters = [CallCounter(monkeypatch, reader) for reader in storage._readers]
    keys = [f"d{i}" for i in range(1200)] + ["missing", "d0"]
    assert set(await db.get_docs(keys)) == set(keys) - {"missing"}
    assert sum(counter.calls for counter in counters) == 3
    revisions = await db.get_revisions([(key, "1-r1") for key in keys])
    assert set(revisions) == {(key, "1-r1") for key in keys if key != "missing"}
    assert sum(counter.calls for counter in counters) == 3 + 5


# -- several storages (processes) on one file ---------------------------------------------


async def test_a_second_storage_sees_committed_writes(path: Path, storage: SQLiteStorage) -> None:
    db = await storage.create_db("db")
    async with SQLiteStorage(path) as other:
        assert await other.all_dbs() == ["db"]
        mirror = await other.get_db("db")
        assert mirror is not None
        await put(db, write_of("a", 2), DocWrite("b", conflicted_tree()))
        async with db.write() as txn:
            await txn.put_local(LocalDoc("cp", 1, {"x": 1}))
        assert (await mirror.get_docs(["a"]))["a"].tree == linear_tree(2)
        assert ids(await mirror.changes(0, 10)) == ["a", "b"]
        assert await mirror.get_local("cp") == LocalDoc("cp", 1, {"x": 1})
        # ... and the other way round.
        assert await put_ids(mirror, "c") == [3]
        assert ids(await db.all_docs()) == ["a", "b", "c"]
        await other.delete_db("db")
        assert await storage.all_dbs() == []
        with pytest.raises(errors.CouchError) as caught:
            await put_ids(db, "d")
        assert caught.value.status == 404
        await other.create_db("db")
        recreated = await storage.get_db("db")
        assert recreated is not None
        assert recreated is not db
        assert await recreated.changes(0, 10) == []


async def test_concurrent_writes_from_two_storages_get_distinct_seqs(
    path: Path, storage: SQLiteStorage
) -> None:
    await storage.create_db("db")
    async with SQLiteStorage(path) as other:
        dbs = [await storage.get_db("db"), await other.get_db("db")]

        async def write(n: int) -> list[int]:
            db = dbs[n % 2]
            assert db is not None
            return await put(db, write_of(f"doc{n}"), write_of(f"pair{n}"))

        results = await asyncio.gather(*(write(n) for n in range(40)))
    seqs = sorted(seq for result in results for seq in result)
    assert seqs == list(range(1, 81))
    assert all(second == first + 1 for first, second in results)
    db = await storage.get_db("db")
    assert db is not None
    assert await db.count_changes(0) == 80
    assert (await db.info()).update_seq == 80


async def test_reads_are_not_blocked_by_another_processs_writer(
    storage: SQLiteStorage, raw: sqlite3.Connection
) -> None:
    db = await storage.create_db("db")
    await put_ids(db, "a")
    raw.execute("BEGIN IMMEDIATE")
    raw.execute("UPDATE dbs SET update_seq = update_seq + 5")
    try:
        info = await asyncio.wait_for(db.info(), timeout=10)
        assert info.update_seq == 1
        assert ids(await db.all_docs()) == ["a"]
    finally:
        raw.execute("ROLLBACK")


async def test_a_writer_waits_for_another_processs_write_lock(
    storage: SQLiteStorage, raw: sqlite3.Connection
) -> None:
    db = await storage.create_db("db")
    raw.execute("BEGIN IMMEDIATE")
    raw.execute("UPDATE dbs SET update_seq = update_seq + 5")
    task = asyncio.create_task(put_ids(db, "a"))
    for _ in range(5):
        await asyncio.sleep(0)
    raw.execute("COMMIT")
    # The transaction read update_seq after taking the lock: no seq is handed out twice.
    assert await task == [6]


async def test_a_busy_timeout_surfaces_as_database_is_locked(path: Path, raw: sqlite3.Connection) -> None:
    async with SQLiteStorage(path, busy_timeout=0) as impatient:
        db = await impatient.create_db("db")
        raw.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                await put_ids(db, "a")
        finally:
            raw.execute("ROLLBACK")
        # The failed BEGIN left the writer clean.
        assert await put_ids(db, "a") == [1]


CHILD = """
import asyncio, json, sys
from couchpoint.errors import CouchError
from couchpoint.storage.sqlite import SQLiteStorage
from tests.storage.contract import write_of

async def main(path, tag):
    async with SQLiteStorage(path) as storage:
        db = await storage.get_db("db")
        if db is None:
            try:
                db = await storage.create_db("db")
            except CouchError:
                db = await storage.get_db("db")
        seqs = []
        for i in range(10):
            async with db.write() as txn:
                seqs += await txn.put_docs([write_of(f"{tag}-{i}-{j}") for j in range(3)])
        print(json.dumps({"uuid": await storage.server_uuid(), "seqs": seqs}))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_processes_sharing_a_fresh_file(tmp_path: Path) -> None:
    """Real processes open a new file at once, create the db, and write concurrently."""
    path = tmp_path / "new" / "shared.sqlite"
    root = Path(__file__).resolve().parents[2]
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, str(path), str(n), cwd=root, stdout=PIPE, stderr=PIPE
        )
        for n in range(3)
    ]
    results = []
    for child in children:
        out, err = await child.communicate()
        assert child.returncode == 0, err.decode()
        results.append(orjson.loads(out))
    assert len({result["uuid"] for result in results}) == 1
    assert sorted(seq for result in results for seq in result["seqs"]) == list(range(1, 91))
    async with SQLiteStorage(path) as storage:
        db = await storage.get_db("db")
        assert db is not None
        assert (await db.info()).doc_count == 90
