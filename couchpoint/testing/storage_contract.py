"""The storage conformance suite: what every couchpoint backend must do.

This module is the executable form of :mod:`couchpoint.storage.base` (as CouchDB's
``couch_pse_tests`` are for ``couch_db_engine``).  It holds no test of its own: pytest
collects it through a ``Test*`` subclass that says how to build the backend.  couchpoint
runs it against its own backends (``tests/storage/test_contract.py``); run it against
yours the same way.

Running it against a backend
----------------------------
Needs ``pytest`` and ``pytest-asyncio`` (any mode: the tests carry the ``asyncio`` mark
themselves).  In a ``test_*.py`` module, subclass :class:`StorageContract` and provide a
``storage_factory`` fixture returning a :class:`StorageFactory`::

    import pytest
    from couchpoint.testing.storage_contract import StorageContract, StorageFactory
    from mypackage import MyStorage

    class TestMyStorage(StorageContract):
        @pytest.fixture
        def storage_factory(self, tmp_path):
            # Every call must build an *unopened* storage over the same data.
            return StorageFactory(lambda: MyStorage(tmp_path / "data"), reopen=True)

``reopen=True`` declares the backend persistent: a storage built by a later call sees
what an earlier, closed one committed.  The durability tests are skipped without it
(as for :class:`~couchpoint.storage.memory.MemoryStorage`).  The suite opens storages
through the factory and closes every one of them at teardown.  To skip a test your
backend does not aim to pass, override it in the subclass with a skipping test.

Tests are plain ``async def`` methods; none sleeps.  The building blocks
(:func:`write_of`, :func:`put`, :func:`linear_tree`, ...) are public for your own tests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
import pytest_asyncio

from couchpoint import errors
from couchpoint.revs import format_rev
from couchpoint.revtree import RevTree, merge
from couchpoint.storage.base import (
    BlobInfo,
    BlobTooLarge,
    DbStore,
    DocInfo,
    DocSummary,
    DocWrite,
    LocalDoc,
    Revision,
    Storage,
    WriteTxn,
)

__all__ = [
    "Boom",
    "StorageContract",
    "StorageFactory",
    "blob_info_of",
    "blob_write_of",
    "conflicted_tree",
    "ids",
    "leaf_rev",
    "linear_tree",
    "put",
    "put_ids",
    "read_all",
    "stream",
    "write_of",
]


class StorageFactory:
    """Builds and tracks storages for the suite.

    ``make``: a zero-argument callable returning a new, **unopened** :class:`Storage`; for
    a persistent backend every call must return one over the same data.  ``reopen``:
    whether such a new storage sees what a closed earlier one committed.
    """

    def __init__(self, make: Callable[[], Storage], *, reopen: bool = False) -> None:
        self.make = make
        self.reopen = reopen
        self._opened: list[Storage] = []

    async def open(self) -> Storage:
        """A new storage from ``make``, opened; closed again by :meth:`aclose`."""
        storage = self.make()
        self._opened.append(storage)
        await storage.open()
        return storage

    async def aclose(self) -> None:
        """Close every storage this factory opened (``close`` is idempotent)."""
        while self._opened:
            await self._opened.pop().close()


# -- building blocks ---------------------------------------------------------------------


def linear_tree(length: int = 1, *, tag: str = "r", deleted: bool = False) -> RevTree:
    """A one-branch tree ``1-<tag>1 -> ... -> N-<tag>N``; its leaf is a tombstone if
    ``deleted``."""
    path = [(pos, f"{tag}{pos}") for pos in range(1, length + 1)]
    tree, _ = merge(RevTree.empty(), path, deleted=deleted)
    return tree


def leaf_rev(length: int = 1, *, tag: str = "r") -> str:
    """The leaf rev of :func:`linear_tree` with the same arguments."""
    return format_rev((length, f"{tag}{length}"))


def write_of(
    doc_id: str,
    length: int = 1,
    *,
    tag: str = "r",
    deleted: bool = False,
    body: dict[str, Any] | None = None,
    drop_revs: Sequence[str] = (),
) -> DocWrite:
    """A :class:`DocWrite` storing a linear tree and a body for its leaf."""
    rev = leaf_rev(length, tag=tag)
    body = {"v": doc_id} if body is None else body
    return DocWrite(
        doc_id,
        linear_tree(length, tag=tag, deleted=deleted),
        revisions=[Revision(doc_id, rev, deleted, body)],
        drop_revs=drop_revs,
    )


async def put(db: DbStore, *writes: DocWrite) -> list[int]:
    """Commit ``writes`` in one transaction; return their seqs."""
    async with db.write() as txn:
        return await txn.put_docs(writes)


def blob_write_of(
    doc_id: str, length: int, blobs: Sequence[str], *, drop_revs: Sequence[str] = ()
) -> DocWrite:
    """:func:`write_of` whose leaf revision references the blobs ``blobs``."""
    rev = leaf_rev(length)
    revision = Revision(doc_id, rev, False, {"v": doc_id}, tuple(blobs))
    return DocWrite(doc_id, linear_tree(length), revisions=[revision], drop_revs=drop_revs)


async def stream(data: bytes, sizes: Sequence[int] = (65_536,)) -> AsyncIterator[bytes]:
    """``data`` as an async stream of chunks whose sizes cycle through ``sizes``."""
    offset = 0
    for size in itertools.cycle(sizes):
        if offset >= len(data):
            return
        yield data[offset : offset + size]
        offset += size
        await asyncio.sleep(0)


async def read_all(storage: Storage, key: str, start: int = 0, end: int | None = None) -> bytes:
    """Every byte :meth:`Storage.read_blob` streams (checking each chunk is non-empty)."""
    parts = []
    async for chunk in storage.read_blob(key, start, end):
        assert isinstance(chunk, bytes)
        assert chunk
        parts.append(chunk)
    return b"".join(parts)


def blob_info_of(data: bytes) -> BlobInfo:
    """The :class:`BlobInfo` every backend must return for ``data``."""
    md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
    return BlobInfo(hashlib.sha256(data).hexdigest(), len(data), f"md5-{md5}")


async def put_ids(db: DbStore, *doc_ids: str, length: int = 1) -> list[int]:
    """Commit one linear doc per id in one transaction."""
    return await put(db, *(write_of(doc_id, length) for doc_id in doc_ids))


def ids(rows: Sequence[DocSummary]) -> list[str]:
    return [row.id for row in rows]


class Boom(Exception):
    """Raised on purpose inside a transaction."""


def conflicted_tree(*, live_loser: bool = True, deleted_winner: bool = False) -> RevTree:
    """``1-a -> (2-b | 2-c)`` where ``2-c`` (higher revid) wins unless it is deleted."""
    tree, _ = merge(RevTree.empty(), [(1, "a"), (2, "b")], deleted=not live_loser)
    tree, _ = merge(tree, [(1, "a"), (2, "c")], deleted=deleted_winner)
    return tree


# -- the suite -----------------------------------------------------------------------------


class StorageContract:
    """The conformance tests.  Subclass it and provide ``storage_factory`` (see the module
    docstring)."""

    pytestmark = pytest.mark.asyncio(loop_scope="function")

    @pytest.fixture
    def storage_factory(self) -> StorageFactory:
        pytest.fail("a StorageContract subclass must provide a storage_factory fixture")

    @pytest_asyncio.fixture(loop_scope="function")
    async def factory(self, storage_factory: StorageFactory) -> AsyncIterator[StorageFactory]:
        try:
            yield storage_factory
        finally:
            await storage_factory.aclose()

    @pytest_asyncio.fixture(loop_scope="function")
    async def storage(self, factory: StorageFactory) -> Storage:
        return await factory.open()

    @pytest_asyncio.fixture(loop_scope="function")
    async def db(self, storage: Storage) -> DbStore:
        return await storage.create_db("db")

    @staticmethod
    async def reopen(factory: StorageFactory, storage: Storage) -> Storage:
        """Close ``storage`` and open a new one over the same data (skips the test when
        the backend is not persistent)."""
        if not factory.reopen:
            pytest.skip("backend is not persistent (no reopen capability)")
        await storage.close()
        return await factory.open()

    # -- protocol and server identity -------------------------------------------------

    async def test_implements_the_protocols(self, storage: Storage, db: DbStore) -> None:
        assert isinstance(storage, Storage)
        assert isinstance(db, DbStore)
        async with db.write() as txn:
            assert isinstance(txn, WriteTxn)

    async def test_open_and_close_are_idempotent(self, storage: Storage) -> None:
        await storage.open()
        await storage.create_db("a")
        await storage.open()
        assert await storage.all_dbs() == ["a"]
        await storage.close()
        await storage.close()

    async def test_server_uuid_is_32_hex_and_stable(self, storage: Storage) -> None:
        uuid = await storage.server_uuid()
        assert len(uuid) == 32
        assert int(uuid, 16) >= 0
        assert uuid == uuid.lower()
        assert await storage.server_uuid() == uuid

    async def test_server_uuid_survives_reopen(self, factory: StorageFactory, storage: Storage) -> None:
        uuid = await storage.server_uuid()
        storage = await self.reopen(factory, storage)
        assert await storage.server_uuid() == uuid

    # -- databases ----------------------------------------------------------------------

    async def test_create_and_get_db(self, storage: Storage) -> None:
        assert await storage.get_db("db") is None
        created = await storage.create_db("db")
        assert created.name == "db"
        found = await storage.get_db("db")
        assert found is not None
        assert found.name == "db"
        assert await storage.all_dbs() == ["db"]

    async def test_get_db_returns_one_handle_per_database_instance(self, storage: Storage) -> None:
        """:class:`couchpoint.database.Server` caches per-db state (change listeners) keyed
        by the handle's identity, so it must be stable, and change on re-creation."""
        created = await storage.create_db("db")
        assert await storage.get_db("db") is created
        assert await storage.get_db("db") is created
        await storage.delete_db("db")
        assert await storage.get_db("db") is None
        again = await storage.create_db("db")
        assert again is not created
        assert await storage.get_db("db") is again

    async def test_new_db_info(self, db: DbStore) -> None:
        info = await db.info()
        assert info.name == "db"
        assert (info.update_seq, info.doc_count, info.doc_del_count) == (0, 0, 0)
        assert info.revs_limit == 1000
        assert isinstance(info.instance_start_time, str)
        assert info.instance_start_time
        assert set(info.sizes) == {"active", "external", "file"}
        assert all(isinstance(size, int) and size >= 0 for size in info.sizes.values())

    async def test_create_existing_db_is_412_file_exists(self, storage: Storage, db: DbStore) -> None:
        with pytest.raises(errors.CouchError) as caught:
            await storage.create_db("db")
        assert (caught.value.status, caught.value.error) == (412, "file_exists")
        assert await storage.all_dbs() == ["db"]

    async def test_delete_db(self, storage: Storage, db: DbStore) -> None:
        await storage.create_db("other")
        await storage.delete_db("db")
        assert await storage.get_db("db") is None
        assert await storage.all_dbs() == ["other"]

    async def test_delete_missing_db_is_404(self, storage: Storage) -> None:
        with pytest.raises(errors.CouchError) as caught:
            await storage.delete_db("nope")
        assert (caught.value.status, caught.value.error) == (404, "not_found")

    async def test_all_dbs_sorted_by_code_point(self, storage: Storage) -> None:
        names = ["b", "a/b", "a", "a-b", "a$", "z9", "a_b", "a(1)", "a+b"]
        for name in names:
            await storage.create_db(name)
        assert await storage.all_dbs() == sorted(names)

    async def test_recreated_db_is_empty_with_new_instance_start_time(self, storage: Storage) -> None:
        db = await storage.create_db("db")
        await put_ids(db, "a", "b")
        async with db.write() as txn:
            await txn.put_local(LocalDoc("cp", 1, {"x": 1}))
            await txn.set_revs_limit(5)
        first = await db.info()
        await storage.delete_db("db")
        again = await storage.create_db("db")
        info = await again.info()
        assert info.instance_start_time != first.instance_start_time
        assert (info.update_seq, info.doc_count, info.doc_del_count, info.revs_limit) == (0, 0, 0, 1000)
        assert await again.get_docs(["a", "b"]) == {}
        assert await again.get_revisions([("a", leaf_rev())]) == {}
        assert await again.get_local("cp") is None
        assert await again.changes(0, 10) == []
        assert await put_ids(again, "c") == [1]

    async def test_databases_are_independent(self, storage: Storage) -> None:
        one = await storage.create_db("one")
        two = await storage.create_db("two")
        await put_ids(one, "a", "b", "c")
        assert await put_ids(two, "a") == [1]
        assert ids(await two.all_docs()) == ["a"]
        assert (await one.info()).update_seq == 3
        await storage.delete_db("two")
        assert ids(await one.changes(0, 10)) == ["a", "b", "c"]
        assert (await one.get_revisions([("a", leaf_rev())]))[("a", leaf_rev())].body == {"v": "a"}

    # -- seqs and changes ---------------------------------------------------------------

    async def test_put_docs_assigns_consecutive_seqs_in_input_order(self, db: DbStore) -> None:
        assert await put_ids(db, "c", "a", "b") == [1, 2, 3]
        assert await put_ids(db, "d", "e") == [4, 5]
        assert (await db.info()).update_seq == 5
        changes = await db.changes(0, 10)
        assert [(row.id, row.seq) for row in changes] == [("c", 1), ("a", 2), ("b", 3), ("d", 4), ("e", 5)]

    async def test_put_docs_with_nothing_does_nothing(self, db: DbStore) -> None:
        async with db.write() as txn:
            assert await txn.put_docs([]) == []
        assert (await db.info()).update_seq == 0

    async def test_rewritten_doc_moves_to_a_new_seq_and_appears_once(self, db: DbStore) -> None:
        await put_ids(db, "a", "b", "c")
        assert await put(db, write_of("a", 2)) == [4]
        changes = await db.changes(0, 10)
        assert [(row.id, row.seq) for row in changes] == [("b", 2), ("c", 3), ("a", 4)]
        assert changes[-1].rev == leaf_rev(2)
        assert (await db.get_docs(["a"]))["a"].seq == 4
        assert await db.count_changes(0) == 3

    async def test_seqs_are_never_reused_after_a_rewrite(self, db: DbStore) -> None:
        await put_ids(db, "a", "b")
        # Rewrite the doc holding the highest seq: its old seq (2) must not come back.
        assert await put(db, write_of("b", 2)) == [3]
        assert await put(db, write_of("b", 3)) == [4]
        assert await put_ids(db, "c") == [5]
        assert (await db.info()).update_seq == 5
        assert [row.seq for row in await db.changes(0, 10)] == [1, 4, 5]

    async def test_seqs_are_never_reused_after_reopen(
        self, factory: StorageFactory, storage: Storage
    ) -> None:
        db = await storage.create_db("db")
        await put_ids(db, "a", "b")
        await put(db, write_of("b", 2))
        storage = await self.reopen(factory, storage)
        db = await storage.get_db("db")
        assert db is not None
        assert (await db.info()).update_seq == 3
        assert await put_ids(db, "c") == [4]
        assert await put(db, write_of("c", 2)) == [5]

    async def test_changes_since_and_limit(self, db: DbStore) -> None:
        await put_ids(db, "a", "b", "c", "d", "e")
        assert ids(await db.changes(0, 100)) == ["a", "b", "c", "d", "e"]
        assert ids(await db.changes(2, 100)) == ["c", "d", "e"]
        assert ids(await db.changes(2, 2)) == ["c", "d"]
        assert await db.changes(5, 10) == []
        assert await db.changes(0, 0) == []
        assert await db.changes(99, 10) == []

    async def test_changes_descending_ignores_since(self, db: DbStore) -> None:
        await put_ids(db, "a", "b", "c")
        await put(db, write_of("a", 2))
        assert [(row.id, row.seq) for row in await db.changes(0, 10, descending=True)] == [
            ("a", 4),
            ("c", 3),
            ("b", 2),
        ]
        assert ids(await db.changes(3, 2, descending=True)) == ["a", "c"]

    async def test_changes_rows_carry_all_leaves_in_winning_order(self, db: DbStore) -> None:
        await put(db, DocWrite("x", conflicted_tree()), DocWrite("y", conflicted_tree(deleted_winner=True)))
        x, y = await db.changes(0, 10)
        assert x.leaves == (("2-c", False), ("2-b", False))
        assert (x.rev, x.deleted) == ("2-c", False)
        assert y.leaves == (("2-b", False), ("2-c", True))
        assert (y.rev, y.deleted) == ("2-b", False)

    async def test_count_changes(self, db: DbStore) -> None:
        assert await db.count_changes(0) == 0
        await put_ids(db, "a", "b", "c")
        await put(db, write_of("a", 2))
        assert await db.count_changes(0) == 3
        assert await db.count_changes(2) == 2
        assert await db.count_changes(4) == 0

    # -- reading docs and bodies --------------------------------------------------------

    async def test_get_docs_returns_present_ids_only(self, db: DbStore) -> None:
        tree = conflicted_tree()
        await put(db, DocWrite("a", tree), write_of("b", 3))
        found = await db.get_docs(["a", "missing", "b", "a"])
        assert set(found) == {"a", "b"}
        assert found["a"] == DocInfo("a", 1, tree)
        assert found["b"] == DocInfo("b", 2, linear_tree(3))
        assert await db.get_docs([]) == {}
        assert await db.get_docs(["nope"]) == {}

    async def test_unusual_ids_are_read_back_exactly(self, db: DbStore) -> None:
        # Every valid UTF-8 string is a possible id, U+0000 included (CouchDB only asks
        # for valid UTF-8), as are strings that look like JSON or SQL.
        odd = ["a\x00", "a\x00b", "\x00", '"q"', "\\", "[1]", "null", "1", "' OR 1=1 --", "e\u0301", " "]
        await put_ids(db, *odd)
        assert set(await db.get_docs(odd)) == set(odd)
        assert set(await db.get_summaries(odd)) == set(odd)
        found = await db.get_revisions([(doc_id, "1-r1") for doc_id in odd])
        assert {key: rev.body for key, rev in found.items()} == {(i, "1-r1"): {"v": i} for i in odd}
        assert await db.get_docs(["a", "a\x00c"]) == {}
        assert sorted(ids(await db.all_docs())) == sorted(odd)
        assert ids(await db.all_docs(start="a\x00", end="a\x00")) == ["a\x00"]
        async with db.write() as txn:
            await txn.put_local(LocalDoc("x\x00y", 1, {"k": "\x00"}))
        assert await db.get_local("x\x00y") == LocalDoc("x\x00y", 1, {"k": "\x00"})
        assert await db.get_local("x") is None

    async def test_many_keys_in_one_read(self, db: DbStore) -> None:
        many = [f"doc{i:05}" for i in range(1234)]
        await put_ids(db, *many)
        keys = [*many, "missing", many[0]]
        assert len(await db.get_docs(keys)) == 1234
        assert len(await db.get_summaries(keys)) == 1234
        assert len(await db.get_revisions([(key, "1-r1") for key in keys])) == 1234
        async with db.write() as txn:
            assert len(await txn.get_docs(keys)) == 1234

    async def test_trees_round_trip_exactly(self, db: DbStore) -> None:
        # A stemmed root (pos 3), a deleted leaf, missing ancestors and a second root.
        tree, _ = merge(RevTree.empty(), [(3, "c"), (4, "d"), (5, "e")])
        tree, _ = merge(tree, [(4, "d"), (5, "f")], deleted=True)
        tree, _ = merge(tree, [(1, "z")])
        deep = linear_tree(1000, tag="x")
        await put(db, DocWrite("t", tree), DocWrite("deep", deep))
        docs = await db.get_docs(["t", "deep"])
        assert docs["t"].tree == tree
        assert docs["deep"].tree == deep
        assert docs["t"].leaves == [("5-e", False), ("1-z", False), ("5-f", True)]

    async def test_get_summaries(self, db: DbStore) -> None:
        await put(db, write_of("a", 2), DocWrite("b", conflicted_tree()), write_of("c", deleted=True))
        found = await db.get_summaries(["a", "b", "c", "nope"])
        assert found["a"] == DocSummary("a", 1, (("2-r2", False),))
        assert found["b"] == DocSummary("b", 2, (("2-c", False), ("2-b", False)))
        assert found["c"] == DocSummary("c", 3, (("1-r1", True),))
        assert found["c"].deleted
        assert set(found) == {"a", "b", "c"}

    async def test_get_revisions_for_present_and_absent_keys(self, db: DbStore) -> None:
        body = {
            "title": "héllo 😀",
            "n": 1.5,
            "big": 2**62,
            "list": [1, None, True, {"x": []}],
            "_attachments": {"a.txt": {"stub": True, "digest": "md5-x", "length": 3}},
        }
        await put(db, write_of("a", body=body), write_of("b", 2, deleted=True, body={}))
        keys = [("a", "1-r1"), ("b", "2-r2"), ("a", "9-nope"), ("nope", "1-r1"), ("b", "1-r1")]
        found = await db.get_revisions(keys)
        assert found == {
            ("a", "1-r1"): Revision("a", "1-r1", False, body),
            ("b", "2-r2"): Revision("b", "2-r2", True, {}),
        }
        assert await db.get_revisions([]) == {}

    async def test_revision_bodies_are_copied_in(self, db: DbStore) -> None:
        body: dict[str, Any] = {"k": [1]}
        await put(db, write_of("a", body=body))
        body["k"].append(2)
        assert (await db.get_revisions([("a", "1-r1")]))[("a", "1-r1")].body == {"k": [1]}

    async def test_drop_revs_removes_bodies(self, db: DbStore) -> None:
        await put(db, write_of("a", 1))
        second = write_of("a", 2, drop_revs=["1-r1"])
        await put(db, second)
        found = await db.get_revisions([("a", "1-r1"), ("a", "2-r2")])
        assert set(found) == {("a", "2-r2")}
        # Dropping a body that is not stored is fine.
        await put(db, write_of("a", 3, drop_revs=["1-r1", "7-zz"]))
        assert set(await db.get_revisions([("a", "2-r2"), ("a", "3-r3")])) == {("a", "2-r2"), ("a", "3-r3")}

    async def test_drop_revs_of_one_doc_leaves_others_alone(self, db: DbStore) -> None:
        await put(db, write_of("a"), write_of("b"))
        await put(db, DocWrite("a", linear_tree(1), drop_revs=["1-r1"]))
        assert set(await db.get_revisions([("a", "1-r1"), ("b", "1-r1")])) == {("b", "1-r1")}

    # -- _all_docs ----------------------------------------------------------------------

    async def test_all_docs_in_utf8_byte_order(self, db: DbStore) -> None:
        # UTF-8 byte order = code point order, unlike UTF-16 order (where the emoji,
        # a surrogate pair, would sort before U+FB01) and unlike ICU collation.
        doc_ids = ["é", "😀", "Z", "a", "ab", "\ufb01", "_design/x", "A", "0", "a\x00"]
        await put_ids(db, *doc_ids)
        expected = sorted(doc_ids, key=lambda i: i.encode("utf-8"))
        assert expected == ["0", "A", "Z", "_design/x", "a", "a\x00", "ab", "é", "\ufb01", "😀"]
        assert ids(await db.all_docs()) == expected
        assert ids(await db.all_docs(descending=True)) == expected[::-1]
        assert ids(await db.all_docs(start="b")) == ["é", "\ufb01", "😀"]
        assert ids(await db.all_docs(start="\uffff")) == ["😀"]
        assert ids(await db.all_docs(end="a\x00", inclusive_end=False)) == ["0", "A", "Z", "_design/x", "a"]

    async def test_all_docs_start_end_inclusive_end(self, db: DbStore) -> None:
        await put_ids(db, "a", "b", "c", "d", "e")
        assert ids(await db.all_docs(start="b", end="d")) == ["b", "c", "d"]
        assert ids(await db.all_docs(start="b", end="d", inclusive_end=False)) == ["b", "c"]
        assert ids(await db.all_docs(start="bb", end="dd")) == ["c", "d"]
        assert ids(await db.all_docs(start="c")) == ["c", "d", "e"]
        assert ids(await db.all_docs(end="b")) == ["a", "b"]
        assert ids(await db.all_docs(end="b", inclusive_end=False)) == ["a"]
        assert ids(await db.all_docs(start="d", end="b")) == []
        assert ids(await db.all_docs(start="c", end="c")) == ["c"]
        assert ids(await db.all_docs(start="c", end="c", inclusive_end=False)) == []

    async def test_all_docs_descending(self, db: DbStore) -> None:
        await put_ids(db, "a", "b", "c", "d", "e")
        assert ids(await db.all_docs(descending=True)) == ["e", "d", "c", "b", "a"]
        assert ids(await db.all_docs(descending=True, start="d", end="b")) == ["d", "c", "b"]
        assert ids(await db.all_docs(descending=True, start="d", end="b", inclusive_end=False)) == ["d", "c"]
        assert ids(await db.all_docs(descending=True, start="cc")) == ["c", "b", "a"]
        assert ids(await db.all_docs(descending=True, end="c")) == ["e", "d", "c"]
        assert ids(await db.all_docs(descending=True, end="c", inclusive_end=False)) == ["e", "d"]
        assert ids(await db.all_docs(descending=True, start="b", end="d")) == []

    async def test_all_docs_skip_and_limit(self, db: DbStore) -> None:
        await put_ids(db, "a", "b", "c", "d", "e")
        assert ids(await db.all_docs(skip=1, limit=2)) == ["b", "c"]
        assert ids(await db.all_docs(skip=3)) == ["d", "e"]
        assert ids(await db.all_docs(limit=0)) == []
        assert ids(await db.all_docs(skip=10)) == []
        assert ids(await db.all_docs(start="b", skip=1, limit=10)) == ["c", "d", "e"]
        assert ids(await db.all_docs(descending=True, skip=1, limit=2)) == ["d", "c"]
        assert ids(await db.all_docs(descending=True, start="d", end="b", skip=1)) == ["c", "b"]

    async def test_all_docs_excludes_docs_whose_winner_is_deleted(self, db: DbStore) -> None:
        await put(
            db,
            write_of("live"),
            write_of("gone", 2, deleted=True),
            DocWrite("conflict-with-tombstone", conflicted_tree(deleted_winner=True)),
            DocWrite("all-deleted", conflicted_tree(live_loser=False, deleted_winner=True)),
        )
        rows = await db.all_docs()
        assert ids(rows) == ["conflict-with-tombstone", "live"]
        assert rows[0].rev == "2-b"
        # A deleted doc also never counts towards skip.
        assert ids(await db.all_docs(skip=1)) == ["live"]
        # ... and is still readable by id.
        assert (await db.get_summaries(["gone"]))["gone"].deleted

    async def test_all_docs_summaries(self, db: DbStore) -> None:
        await put(db, write_of("a", 3), DocWrite("b", conflicted_tree()))
        assert await db.all_docs() == [
            DocSummary("a", 1, (("3-r3", False),)),
            DocSummary("b", 2, (("2-c", False), ("2-b", False))),
        ]

    # -- _local docs ----------------------------------------------------------------------

    async def test_local_docs_crud(self, db: DbStore) -> None:
        assert await db.get_local("cp") is None
        async with db.write() as txn:
            assert await txn.get_local("cp") is None
            await txn.put_local(LocalDoc("cp", 1, {"history": [{"seq": 1}], "é": "😀"}))
            assert await txn.get_local("cp") == LocalDoc("cp", 1, {"history": [{"seq": 1}], "é": "😀"})
        assert await db.get_local("cp") == LocalDoc("cp", 1, {"history": [{"seq": 1}], "é": "😀"})
        async with db.write() as txn:
            await txn.put_local(LocalDoc("cp", 2, {"x": 2}))
        assert await db.get_local("cp") == LocalDoc("cp", 2, {"x": 2})
        async with db.write() as txn:
            assert await txn.delete_local("cp") is True
            assert await txn.delete_local("cp") is False
            assert await txn.delete_local("never") is False
        assert await db.get_local("cp") is None

    async def test_local_docs_are_kept_apart(self, db: DbStore) -> None:
        async with db.write() as txn:
            await txn.put_local(LocalDoc("a", 1, {}))
            await txn.put_local(LocalDoc("b=x.y_z", 3, {"k": "v"}))
        info = await db.info()
        assert (info.update_seq, info.doc_count, info.doc_del_count) == (0, 0, 0)
        assert await db.changes(0, 10) == []
        assert await db.count_changes(0) == 0
        assert await db.all_docs() == []
        assert await db.get_docs(["a"]) == {}
        # A regular doc with the same id is a different document.
        assert await put_ids(db, "a") == [1]
        assert await db.get_local("a") == LocalDoc("a", 1, {})
        assert ids(await db.all_docs()) == ["a"]
        assert (await db.info()).doc_count == 1

    async def test_local_docs_belong_to_their_db(self, storage: Storage) -> None:
        one = await storage.create_db("one")
        two = await storage.create_db("two")
        async with one.write() as txn:
            await txn.put_local(LocalDoc("cp", 1, {"db": "one"}))
        assert await two.get_local("cp") is None

    # -- transactions ---------------------------------------------------------------------

    async def test_a_failed_transaction_leaves_nothing_behind(self, db: DbStore) -> None:
        await put_ids(db, "keep")
        async with db.write() as txn:
            await txn.put_local(LocalDoc("old", 1, {"v": 1}))
        before = await db.info()
        with pytest.raises(Boom):
            async with db.write() as txn:
                assert await txn.put_docs([write_of("new"), write_of("keep", 2, drop_revs=["1-r1"])]) == [
                    2,
                    3,
                ]
                await txn.put_local(LocalDoc("cp", 1, {}))
                await txn.put_local(LocalDoc("old", 2, {"v": 2}))
                assert await txn.delete_local("old") is True
                await txn.set_revs_limit(3)
                raise Boom
        after = await db.info()
        assert after.update_seq == before.update_seq == 1
        assert after.revs_limit == 1000
        assert (after.doc_count, after.doc_del_count) == (1, 0)
        assert await db.get_docs(["new"]) == {}
        assert (await db.get_docs(["keep"]))["keep"].tree == linear_tree(1)
        assert set(await db.get_revisions([("keep", "1-r1"), ("keep", "2-r2")])) == {("keep", "1-r1")}
        assert await db.get_local("cp") is None
        assert await db.get_local("old") == LocalDoc("old", 1, {"v": 1})
        assert ids(await db.changes(0, 10)) == ["keep"]
        # The rolled-back seqs were never handed out.
        assert await put_ids(db, "next") == [2]

    async def test_writes_inside_a_transaction_are_visible_to_it(self, db: DbStore) -> None:
        await put_ids(db, "a")
        async with db.write() as txn:
            await txn.put_docs([write_of("a", 2, drop_revs=["1-r1"]), write_of("b")])
            found = await txn.get_docs(["a", "b"])
            assert (found["a"].seq, found["b"].seq) == (2, 3)
            assert found["a"].tree == linear_tree(2)
            revisions = await txn.get_revisions([("a", "1-r1"), ("a", "2-r2"), ("b", "1-r1")])
            assert set(revisions) == {("a", "2-r2"), ("b", "1-r1")}

    async def test_reads_outside_a_transaction_see_only_committed_state(self, db: DbStore) -> None:
        await put_ids(db, "a")
        async with db.write() as txn:
            await txn.put_docs([write_of("a", 2, drop_revs=["1-r1"]), write_of("b")])
            await txn.put_local(LocalDoc("cp", 1, {}))
            await txn.set_revs_limit(10)
            # Reads never wait for the writer: bounded so a blocking backend fails, not hangs.
            info = await asyncio.wait_for(db.info(), timeout=10)
            assert (info.update_seq, info.doc_count, info.revs_limit) == (1, 1, 1000)
            assert (await db.get_docs(["a", "b"]))["a"].seq == 1
            assert set(await db.get_docs(["a", "b"])) == {"a"}
            assert set(await db.get_summaries(["a", "b"])) == {"a"}
            assert set(await db.get_revisions([("a", "1-r1"), ("b", "1-r1")])) == {("a", "1-r1")}
            assert ids(await db.changes(0, 10)) == ["a"]
            assert await db.count_changes(0) == 1
            assert ids(await db.all_docs()) == ["a"]
            assert await db.get_local("cp") is None
        info = await db.info()
        assert (info.update_seq, info.doc_count, info.revs_limit) == (3, 2, 10)
        assert ids(await db.changes(0, 10)) == ["a", "b"]

    async def test_writers_are_serialized(self, db: DbStore) -> None:
        """Concurrent read-modify-write transactions never lose an update."""

        async def bump() -> None:
            async with db.write() as txn:
                current = await txn.get_local("counter")
                count = 0 if current is None else current.rev
                await asyncio.sleep(0)  # let the other writers try to get in
                await txn.put_local(LocalDoc("counter", count + 1, {}))
                await txn.put_docs([write_of(f"d{count}")])

        await asyncio.gather(*(bump() for _ in range(10)))
        counter = await db.get_local("counter")
        assert counter is not None
        assert counter.rev == 10
        assert [row.seq for row in await db.changes(0, 100)] == list(range(1, 11))

    async def test_a_waiting_writer_sees_the_previous_commit(self, db: DbStore) -> None:
        first_in = asyncio.Event()
        release = asyncio.Event()

        async def first() -> list[int]:
            async with db.write() as txn:
                first_in.set()
                await release.wait()
                return await txn.put_docs([write_of("a")])

        async def second() -> list[int]:
            async with db.write() as txn:
                assert set(await txn.get_docs(["a"])) == {"a"}
                return await txn.put_docs([write_of("a", 2)])

        one = asyncio.create_task(first())
        await first_in.wait()
        two = asyncio.create_task(second())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not two.done()
        release.set()
        assert (await one, await two) == ([1], [2])

    # -- info and revs_limit --------------------------------------------------------------

    async def test_info_counts(self, db: DbStore) -> None:
        await put(
            db,
            write_of("live"),
            write_of("live2", 3),
            write_of("gone", 2, deleted=True),
            DocWrite("conflict-with-tombstone", conflicted_tree(deleted_winner=True)),
            DocWrite("all-deleted", conflicted_tree(live_loser=False, deleted_winner=True)),
        )
        info = await db.info()
        assert (info.doc_count, info.doc_del_count, info.update_seq) == (3, 2, 5)
        # Undelete one, delete another.
        await put(db, write_of("gone", 3, tag="s"), write_of("live", 2, deleted=True))
        info = await db.info()
        assert (info.doc_count, info.doc_del_count, info.update_seq) == (3, 2, 7)

    async def test_info_sizes_grow_with_bodies(self, db: DbStore) -> None:
        before = (await db.info()).sizes
        await put(db, write_of("a", body={"text": "x" * 1000}))
        after = (await db.info()).sizes
        assert after["external"] >= before["external"] + 1000
        assert after["active"] >= before["active"] + 1000

    async def test_instance_start_time_is_fixed(self, db: DbStore) -> None:
        first = (await db.info()).instance_start_time
        await put_ids(db, "a")
        assert (await db.info()).instance_start_time == first

    async def test_set_revs_limit(self, storage: Storage, db: DbStore) -> None:
        async with db.write() as txn:
            await txn.set_revs_limit(7)
        assert (await db.info()).revs_limit == 7
        other = await storage.get_db("db")
        assert other is not None
        assert (await other.info()).revs_limit == 7
        assert (await (await storage.create_db("db2")).info()).revs_limit == 1000

    # -- update_seqs --------------------------------------------------------------------

    async def test_update_seqs_reflects_writes(self, storage: Storage) -> None:
        assert await storage.update_seqs() == {}
        a = await storage.create_db("a")
        await storage.create_db("b")
        assert await storage.update_seqs() == {"a": 0, "b": 0}
        await put_ids(a, "x", "y")
        await put_ids(a, "x", length=2)
        assert await storage.update_seqs() == {"a": 3, "b": 0}
        async with a.write() as txn:
            await txn.put_local(LocalDoc("cp", 1, {}))  # _local docs take no seq
        await storage.delete_db("b")
        assert await storage.update_seqs() == {"a": 3}

    async def test_update_seqs_ignores_a_failed_transaction(self, storage: Storage, db: DbStore) -> None:
        await put_ids(db, "a")
        with pytest.raises(Boom):
            async with db.write() as txn:
                await txn.put_docs([write_of("b")])
                raise Boom
        assert await storage.update_seqs() == {"db": 1}

    # -- attachment blobs -------------------------------------------------------------------

    async def test_put_and_read_a_multi_chunk_blob(self, storage: Storage) -> None:
        data = bytes(range(256)) * (3 * 1024 * 1024 // 256) + b"tail"  # 3 MB and a bit
        info = await storage.put_blob(stream(data, [1, 7, 65_537, 300_001, 1_048_577, 2]))
        assert info == blob_info_of(data)
        assert await storage.blob_length(info.key) == len(data)
        assert await read_all(storage, info.key) == data

    async def test_blob_digests(self, storage: Storage) -> None:
        info = await storage.put_blob(stream(b"foo"))
        # CouchDB's digest form (replication-protocol.md 4.7), over the stored bytes.
        assert info == BlobInfo(
            "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
            3,
            "md5-rL0Y20zC+Fzt72VPzMSk2A==",
        )

    async def test_an_empty_blob(self, storage: Storage) -> None:
        info = await storage.put_blob(stream(b""))
        assert info == blob_info_of(b"")
        assert await storage.blob_length(info.key) == 0
        assert await read_all(storage, info.key) == b""

    async def test_read_blob_ranges(self, storage: Storage) -> None:
        data = bytes(i % 251 for i in range(200_000))
        key = (await storage.put_blob(stream(data, [70_000]))).key
        for start, end in [
            (0, None),
            (0, 1),
            (5, 10),
            (65_535, 65_537),
            (1, 199_999),
            (100_000, None),
            (199_999, None),
            (150_000, 10**9),  # end beyond the length: clipped
            (0, 200_000),
        ]:
            assert await read_all(storage, key, start, end) == data[start:end], (start, end)
        for start, end in [(7, 7), (10, 5), (200_000, None), (300_000, 400_000), (0, 0)]:
            assert await read_all(storage, key, start, end) == b"", (start, end)

    async def test_same_bytes_are_stored_once(self, storage: Storage) -> None:
        data = b"same bytes " * 10_000
        first = await storage.put_blob(stream(data, [1000]))
        second = await storage.put_blob(stream(data, [7, 99_999]))
        assert first == second == blob_info_of(data)
        assert await read_all(storage, first.key) == data
        other = await storage.put_blob(stream(data + b"!"))
        assert other.key != first.key
        assert await storage.collect_garbage(grace_s=0) == 2  # two blobs, not three

    async def test_a_blob_over_max_size_keeps_nothing(self, storage: Storage) -> None:
        data = b"x" * 100_001
        with pytest.raises(BlobTooLarge):
            await storage.put_blob(stream(data, [30_000]), max_size=100_000)
        assert await storage.blob_length(blob_info_of(data).key) is None
        assert await storage.collect_garbage(grace_s=0) == 0
        exact = await storage.put_blob(stream(data[:100_000], [30_000]), max_size=100_000)
        assert exact == blob_info_of(data[:100_000])

    async def test_a_failing_stream_keeps_nothing(self, storage: Storage) -> None:
        async def failing() -> AsyncIterator[bytes]:
            yield b"a" * 1_500_000
            yield b"b" * 1_500_000
            raise Boom

        with pytest.raises(Boom):
            await storage.put_blob(failing())
        assert await storage.blob_length(blob_info_of(b"a" * 1_500_000).key) is None
        assert await storage.collect_garbage(grace_s=0) == 0

    async def test_unknown_blobs(self, storage: Storage) -> None:
        key = blob_info_of(b"never stored").key
        assert await storage.blob_length(key) is None
        with pytest.raises(KeyError):
            await read_all(storage, key)
        with pytest.raises(KeyError):
            await read_all(storage, key, 1, 2)

    async def test_revisions_carry_their_blob_keys(self, db: DbStore) -> None:
        await put(db, blob_write_of("a", 1, ["k2", "k1"]), write_of("b"))
        found = await db.get_revisions([("a", "1-r1"), ("b", "1-r1")])
        assert found[("a", "1-r1")].blobs == ("k2", "k1")
        assert found[("b", "1-r1")].blobs == ()
        async with db.write() as txn:
            assert (await txn.get_revisions([("a", "1-r1")]))[("a", "1-r1")].blobs == ("k2", "k1")
            await txn.put_docs([blob_write_of("c", 1, ["k3"])])
            assert (await txn.get_revisions([("c", "1-r1")]))[("c", "1-r1")].blobs == ("k3",)

    async def test_collect_garbage_keeps_referenced_blobs(self, storage: Storage, db: DbStore) -> None:
        one, two, loose = [await storage.put_blob(stream(data)) for data in (b"one", b"two", b"loose")]
        await put(db, blob_write_of("a", 1, [one.key, two.key]))
        assert await storage.collect_garbage(grace_s=0) == 1
        assert await storage.blob_length(loose.key) is None
        assert await read_all(storage, one.key) == b"one"
        assert await read_all(storage, two.key) == b"two"
        # The next revision keeps `two` only and drops the body of the first.
        await put(db, blob_write_of("a", 2, [two.key], drop_revs=["1-r1"]))
        assert await storage.collect_garbage(grace_s=0) == 1
        assert await storage.blob_length(one.key) is None
        assert await read_all(storage, two.key) == b"two"
        assert await storage.collect_garbage(grace_s=0) == 0

    async def test_collect_garbage_spares_fresh_blobs(self, storage: Storage) -> None:
        fresh = await storage.put_blob(stream(b"in flight"))
        assert await storage.collect_garbage(grace_s=3600) == 0
        assert await storage.collect_garbage() == 0  # default grace: 600 s
        assert await storage.blob_length(fresh.key) == 9
        assert await storage.collect_garbage(grace_s=0) == 1
        assert await storage.blob_length(fresh.key) is None

    async def test_a_blob_is_kept_while_any_revision_references_it(self, storage: Storage) -> None:
        shared = await storage.put_blob(stream(b"shared"))
        one, two = await storage.create_db("one"), await storage.create_db("two")
        await put(one, blob_write_of("a", 1, [shared.key]), blob_write_of("b", 1, [shared.key]))
        await put(two, blob_write_of("a", 1, [shared.key]))
        await put(one, DocWrite("a", linear_tree(1), drop_revs=["1-r1"]))
        await storage.delete_db("two")
        assert await storage.collect_garbage(grace_s=0) == 0  # one/b still references it
        await put(one, write_of("b", 2, drop_revs=["1-r1"]))
        assert await storage.collect_garbage(grace_s=0) == 1

    async def test_deleting_a_db_releases_its_blobs(self, storage: Storage, db: DbStore) -> None:
        info = await storage.put_blob(stream(b"doomed"))
        await put(db, blob_write_of("a", 1, [info.key]))
        assert await storage.collect_garbage(grace_s=0) == 0
        await storage.delete_db("db")
        assert await storage.collect_garbage(grace_s=0) == 1

    async def test_a_rewritten_revision_replaces_its_blob_keys(self, storage: Storage, db: DbStore) -> None:
        old, new = await storage.put_blob(stream(b"old")), await storage.put_blob(stream(b"new"))
        await put(db, blob_write_of("a", 1, [old.key]))
        await put(db, blob_write_of("a", 1, [new.key]))
        assert (await db.get_revisions([("a", "1-r1")]))[("a", "1-r1")].blobs == (new.key,)
        assert await storage.collect_garbage(grace_s=0) == 1
        assert await storage.blob_length(old.key) is None
        assert await storage.blob_length(new.key) == 3

    async def test_a_rolled_back_revision_references_nothing(self, storage: Storage, db: DbStore) -> None:
        info = await storage.put_blob(stream(b"orphan"))
        with pytest.raises(Boom):
            async with db.write() as txn:
                await txn.put_docs([blob_write_of("a", 1, [info.key])])
                raise Boom
        assert await storage.collect_garbage(grace_s=0) == 1

    # -- durability -------------------------------------------------------------------------

    async def test_everything_survives_reopen(self, factory: StorageFactory, storage: Storage) -> None:
        db = await storage.create_db("db")
        await storage.create_db("empty")
        tree = conflicted_tree(deleted_winner=True)
        await put(db, write_of("a", 2, body={"é": ["😀", 1.25, None]}), DocWrite("c", tree))
        await put(db, write_of("b", deleted=True, body={"why": "gone"}))
        async with db.write() as txn:
            await txn.put_local(LocalDoc("cp", 4, {"history": [{"seq": 3}]}))
            await txn.set_revs_limit(42)
        info = await db.info()

        storage = await self.reopen(factory, storage)
        assert await storage.all_dbs() == ["db", "empty"]
        db = await storage.get_db("db")
        assert db is not None
        again = await db.info()
        assert (again.update_seq, again.doc_count, again.doc_del_count) == (3, 2, 1)
        assert (again.revs_limit, again.instance_start_time) == (42, info.instance_start_time)
        docs = await db.get_docs(["a", "b", "c"])
        assert docs == {
            "a": DocInfo("a", 1, linear_tree(2)),
            "b": DocInfo("b", 3, linear_tree(1, deleted=True)),
            "c": DocInfo("c", 2, tree),
        }
        assert await db.get_revisions([("a", "2-r2"), ("b", "1-r1")]) == {
            ("a", "2-r2"): Revision("a", "2-r2", False, {"é": ["😀", 1.25, None]}),
            ("b", "1-r1"): Revision("b", "1-r1", True, {"why": "gone"}),
        }
        assert await db.get_local("cp") == LocalDoc("cp", 4, {"history": [{"seq": 3}]})
        assert ids(await db.changes(0, 10)) == ["a", "c", "b"]
        assert ids(await db.all_docs()) == ["a", "c"]

    async def test_blobs_survive_reopen(self, factory: StorageFactory, storage: Storage) -> None:
        data = bytes(range(256)) * 5000
        kept = await storage.put_blob(stream(data, [100_000]))
        db = await storage.create_db("db")
        await put(db, blob_write_of("a", 1, [kept.key]), write_of("b", 3))
        storage = await self.reopen(factory, storage)
        assert await storage.update_seqs() == {"db": 2}
        assert await storage.blob_length(kept.key) == len(data)
        assert await read_all(storage, kept.key, 10, 300_000) == data[10:300_000]
        db = await storage.get_db("db")
        assert db is not None
        assert (await db.get_revisions([("a", "1-r1")]))[("a", "1-r1")].blobs == (kept.key,)
        assert await storage.collect_garbage(grace_s=0) == 0
        assert await storage.blob_length(kept.key) == len(data)

    async def test_deleted_db_stays_deleted_after_reopen(
        self, factory: StorageFactory, storage: Storage
    ) -> None:
        db = await storage.create_db("db")
        await put_ids(db, "a")
        await storage.delete_db("db")
        storage = await self.reopen(factory, storage)
        assert await storage.all_dbs() == []
        db = await storage.create_db("db")
        assert await db.get_docs(["a"]) == {}
