"""Contract for the ``_security`` pair: :meth:`DbStore.get_security` /
:meth:`WriteTxn.put_security`, run against both shipped backends.

The security object is per database, not a document: no seq, not in ``changes()``,
atomic with the transaction that stores it, gone with its database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from couchpoint.storage.base import Storage
from couchpoint.storage.memory import MemoryStorage
from couchpoint.storage.sqlite import SQLiteStorage

SEC = {"admins": {"names": ["boss"], "roles": []}, "members": {"names": [], "roles": ["staff"]}}


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    store: Storage = MemoryStorage() if request.param == "memory" else SQLiteStorage(tmp_path / "s.sqlite3")
    await store.open()
    yield store
    await store.close()


async def test_unset_is_none_then_stored_object_is_returned(storage: Storage) -> None:
    db = await storage.create_db("a")
    assert await db.get_security() is None
    async with db.write() as txn:
        await txn.put_security(SEC)
    assert await db.get_security() == SEC
    async with db.write() as txn:
        await txn.put_security({})
    assert await db.get_security() == {}


async def test_security_is_per_database_and_not_a_change(storage: Storage) -> None:
    a = await storage.create_db("a")
    b = await storage.create_db("b")
    async with a.write() as txn:
        await txn.put_security(SEC)
    assert await b.get_security() is None
    info = await a.info()
    assert info.update_seq == 0 and info.doc_count == 0
    assert await a.changes(0, 10) == []


async def test_rolled_back_transaction_keeps_the_old_object(storage: Storage) -> None:
    db = await storage.create_db("a")
    async with db.write() as txn:
        await txn.put_security(SEC)
    with pytest.raises(RuntimeError):
        async with db.write() as txn:
            await txn.put_security({"members": {"names": ["intruder"]}})
            raise RuntimeError("boom")
    assert await db.get_security() == SEC


async def test_returned_object_is_a_copy(storage: Storage) -> None:
    db = await storage.create_db("a")
    async with db.write() as txn:
        await txn.put_security(SEC)
    got = await db.get_security()
    assert got is not None
    got["admins"]["names"].append("mallory")
    assert await db.get_security() == SEC


async def test_deleted_and_recreated_db_starts_unset(storage: Storage) -> None:
    db = await storage.create_db("a")
    async with db.write() as txn:
        await txn.put_security(SEC)
    await storage.delete_db("a")
    again = await storage.create_db("a")
    assert await again.get_security() is None


async def test_sqlite_security_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    async with SQLiteStorage(path) as first:
        db = await first.create_db("a")
        async with db.write() as txn:
            await txn.put_security(SEC)
    async with SQLiteStorage(path) as second:
        db2 = await second.get_db("a")
        assert db2 is not None
        assert await db2.get_security() == SEC
