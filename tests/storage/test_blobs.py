"""SQLiteStorage's attachment blobs beyond the contract: the files on disk, streaming in
bounded memory, cleanup of temp files on failure and cancellation, the garbage
collector's races, and the schema migration that added ``revision_blobs``."""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import os
import random
import resource
import sqlite3
import sys
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import couchpoint.storage.sqlite as sqlite_module
from couchpoint.storage.base import BlobTooLarge, DocWrite, Revision
from couchpoint.storage.sqlite import SQLiteStorage

from .contract import blob_write_of, linear_tree, put, read_all, stream, write_of

MiB = 1024 * 1024


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "couchpoint.sqlite"


@pytest.fixture
async def storage(path: Path) -> AsyncIterator[SQLiteStorage]:
    async with SQLiteStorage(path) as storage:
        yield storage


def temp_files(storage: SQLiteStorage) -> list[str]:
    root = storage.attachments_dir
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".tmp-")) if root.is_dir() else []


def blob_files(storage: SQLiteStorage) -> list[str]:
    root = storage.attachments_dir
    return sorted(p.name for p in root.glob("*/*")) if root.is_dir() else []


def age(path: Path, seconds: float) -> None:
    """Set ``path``'s mtime ``seconds`` into the past."""
    then = time.time() - seconds
    os.utime(path, (then, then))


class Boom(Exception):
    pass


# -- the files ------------------------------------------------------------------------------


async def test_blob_files_live_beside_the_sqlite_file(storage: SQLiteStorage, tmp_path: Path) -> None:
    assert storage.attachments_dir == tmp_path / "couchpoint-attachments"
    data = b"hello blob"
    info = await storage.put_blob(stream(data))
    file = tmp_path / "couchpoint-attachments" / info.key[:2] / info.key
    assert info.key == hashlib.sha256(data).hexdigest()
    assert file.read_bytes() == data
    assert blob_files(storage) == [info.key]
    assert temp_files(storage) == []


async def test_no_directory_until_the_first_blob(storage: SQLiteStorage) -> None:
    assert not storage.attachments_dir.exists()
    assert await storage.collect_garbage(grace_s=0) == 0
    assert await storage.blob_length("0" * 64) is None


async def test_read_blob_streams_64_kib_chunks(storage: SQLiteStorage) -> None:
    data = os.urandom(200_000)
    key = (await storage.put_blob(stream(data, [MiB]))).key
    sizes = [len(chunk) async for chunk in storage.read_blob(key)]
    assert sizes == [65_536, 65_536, 65_536, 200_000 - 3 * 65_536]
    sizes = [len(chunk) async for chunk in storage.read_blob(key, 1000, 140_000)]
    assert sizes == [65_536, 65_536, 139_000 - 2 * 65_536]


async def test_keys_that_are_not_sha256_hex_are_unknown(storage: SQLiteStorage, tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"not a blob")
    for key in ["../../secret", "..", "", "A" * 64, "0" * 63, "g" * 64, "0" * 65]:
        assert await storage.blob_length(key) is None, key
        with pytest.raises(KeyError):
            await read_all(storage, key)


async def test_a_reader_keeps_its_file_when_collected_midway(storage: SQLiteStorage) -> None:
    data = os.urandom(300_000)
    key = (await storage.put_blob(stream(data))).key
    chunks = storage.read_blob(key)
    first = await chunks.__anext__()
    assert await storage.collect_garbage(grace_s=0) == 1
    rest = [chunk async for chunk in chunks]
    assert first + b"".join(rest) == data


async def test_a_reader_closed_early_releases_its_file(storage: SQLiteStorage) -> None:
    key = (await storage.put_blob(stream(os.urandom(300_000)))).key
    before = len(os.listdir("/proc/self/fd")) if sys.platform == "linux" else 0
    chunks = storage.read_blob(key)
    await chunks.__anext__()
    await chunks.aclose()  # type: ignore[attr-defined]
    if sys.platform == "linux":
        assert len(os.listdir("/proc/self/fd")) == before


async def test_blobs_survive_close_and_reopen(path: Path) -> None:
    data = os.urandom(3 * MiB + 17)
    storage = SQLiteStorage(path)
    async with storage:
        info = await storage.put_blob(stream(data, [100_003]))
        db = await storage.create_db("db")
        await put(db, blob_write_of("a", 1, [info.key]))
    async with storage:  # the same object
        assert await read_all(storage, info.key) == data
    async with SQLiteStorage(path) as other:
        assert await other.blob_length(info.key) == len(data)
        assert await other.collect_garbage(grace_s=0) == 0
        assert await read_all(other, info.key, 5, 6) == data[5:6]


async def test_blob_methods_need_an_open_storage(path: Path) -> None:
    storage = SQLiteStorage(path)
    with pytest.raises(RuntimeError, match="not open"):
        await storage.put_blob(stream(b"x"))
    with pytest.raises(RuntimeError, match="not open"):
        await storage.blob_length("0" * 64)
    with pytest.raises(RuntimeError, match="not open"):
        await read_all(storage, "0" * 64)
    with pytest.raises(RuntimeError, match="not open"):
        await storage.collect_garbage()
    with pytest.raises(RuntimeError, match="not open"):
        await storage.update_seqs()


# -- bounded memory and thread hops ---------------------------------------------------------


async def generated(total: int, seed: int = 7) -> AsyncIterator[bytes]:
    """``total`` pseudo-random bytes in uneven chunks (about 1 MiB), made on the fly."""
    rng = random.Random(seed)
    sent = 0
    while sent < total:
        size = min(total - sent, MiB + rng.randrange(-50_000, 50_000))
        yield rng.randbytes(size)
        sent += size


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux: KiB


async def test_a_64_mb_blob_streams_in_bounded_memory(storage: SQLiteStorage) -> None:
    total = 64 * MiB
    expected = hashlib.sha256()
    async for chunk in generated(total):
        expected.update(chunk)

    rss_before = peak_rss_bytes()
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        info = await storage.put_blob(generated(total))
        assert info.key == expected.hexdigest()
        assert info.length == total
        assert await storage.blob_length(info.key) == total
        got = hashlib.sha256()
        length = 0
        async for chunk in storage.read_blob(info.key):
            got.update(chunk)
            length += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = peak_rss_bytes() - rss_before
    assert got.hexdigest() == info.key
    assert length == total
    assert peak - baseline < 16 * MiB, f"Python allocations peaked {(peak - baseline) / MiB:.1f} MiB higher"
    assert rss_growth < 16 * MiB, f"peak RSS grew {rss_growth / MiB:.1f} MiB"


async def test_tiny_chunks_are_batched_into_few_thread_hops(
    storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops = 0
    run_sync = anyio.to_thread.run_sync

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal hops
        hops += 1
        return await run_sync(*args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    data = os.urandom(3 * MiB)
    info = await storage.put_blob(stream(data, [100]))  # 31,458 chunks
    assert hops <= 6  # create, 3 writes of 1 MiB, finish
    monkeypatch.undo()
    assert await read_all(storage, info.key) == data


# -- failures leave nothing -----------------------------------------------------------------


async def test_a_stream_failing_midway_removes_its_temp_file(storage: SQLiteStorage) -> None:
    seen: list[list[str]] = []

    async def failing() -> AsyncIterator[bytes]:
        yield os.urandom(3 * MiB)  # written: the temp file holds it
        seen.append(temp_files(storage))
        yield b"more"
        raise Boom

    with pytest.raises(Boom):
        await storage.put_blob(failing())
    assert len(seen[0]) == 1
    assert (storage.attachments_dir / seen[0][0]).exists() is False
    assert temp_files(storage) == []
    assert blob_files(storage) == []


async def test_too_large_removes_its_temp_file(storage: SQLiteStorage) -> None:
    with pytest.raises(BlobTooLarge):
        await storage.put_blob(generated(5 * MiB), max_size=3 * MiB)
    assert temp_files(storage) == []
    assert blob_files(storage) == []


async def test_a_cancelled_put_removes_its_temp_file(storage: SQLiteStorage) -> None:
    started = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield os.urandom(2 * MiB)
        started.set()
        await asyncio.Event().wait()
        yield b"never"

    task = asyncio.create_task(storage.put_blob(stalled()))
    await started.wait()
    assert len(temp_files(storage)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert temp_files(storage) == []
    assert blob_files(storage) == []


async def test_a_put_cancelled_by_an_anyio_scope_removes_its_temp_file(storage: SQLiteStorage) -> None:
    """anyio (Starlette) cancellation is level-triggered: every await in the cleanup would
    be cancelled again unless shielded."""
    seen: list[list[str]] = []

    async def stalled() -> AsyncIterator[bytes]:
        yield os.urandom(2 * MiB)
        seen.append(temp_files(storage))
        await anyio.sleep_forever()
        yield b"never"

    with anyio.move_on_after(0.2) as scope:
        await storage.put_blob(stalled())
    assert scope.cancelled_caught
    assert len(seen[0]) == 1
    assert temp_files(storage) == []
    assert blob_files(storage) == []


class SlowFile:
    """A temp file whose first ``write`` takes 0.3 s (in the worker thread), logging
    when writes end and when the file is closed."""

    def __init__(self, file: Any, events: list[str]) -> None:
        self._file = file
        self._events = events

    def write(self, data: bytes) -> int:
        if "write" not in self._events:
            self._events.append("write")
            time.sleep(0.3)
        written = self._file.write(data)
        self._events.append("written")
        return written

    def close(self) -> None:
        self._events.append("close")
        self._file.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


async def test_cancelled_during_a_write_waits_for_the_abandoned_thread(
    storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancellation does not stop a worker thread: the cleanup must wait for it rather
    than close the file under a running write."""
    events: list[str] = []
    monkeypatch.setattr(
        sqlite_module, "open", lambda *args: SlowFile(builtins.open(*args), events), raising=False
    )
    task = asyncio.create_task(storage.put_blob(stream(os.urandom(2 * MiB), [MiB])))
    while "write" not in events:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events == ["write", "written", "close"]
    await asyncio.sleep(0.1)
    assert temp_files(storage) == []
    assert blob_files(storage) == []


async def test_cancelled_while_creating_the_temp_file(
    storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A temp file created by an abandoned thread after the cleanup ran would leak."""
    opening = threading.Event()

    def slow_open(*args: Any) -> Any:
        opening.set()
        time.sleep(0.3)
        return builtins.open(*args)

    monkeypatch.setattr(sqlite_module, "open", slow_open, raising=False)
    task = asyncio.create_task(storage.put_blob(stream(b"x")))
    while not opening.is_set():
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.4)  # the abandoned thread has finished by now
    assert temp_files(storage) == []
    assert blob_files(storage) == []


async def test_a_put_racing_its_temp_file_away_fails_cleanly(storage: SQLiteStorage) -> None:
    async def vanishing() -> AsyncIterator[bytes]:
        yield b"x" * (2 * MiB)
        for name in temp_files(storage):
            (storage.attachments_dir / name).unlink()
        yield b"y"

    with pytest.raises(FileNotFoundError):
        await storage.put_blob(vanishing())
    assert temp_files(storage) == []
    assert blob_files(storage) == []


# -- garbage collection ---------------------------------------------------------------------


async def test_storing_known_bytes_again_refreshes_the_blob(storage: SQLiteStorage) -> None:
    info = await storage.put_blob(stream(b"again"))
    file = storage.attachments_dir / info.key[:2] / info.key
    age(file, 7200)
    assert await storage.put_blob(stream(b"again")) == info
    assert temp_files(storage) == []
    assert await storage.collect_garbage(grace_s=3600) == 0  # fresh again: spared
    age(file, 7200)
    assert await storage.collect_garbage(grace_s=3600) == 1


async def test_collect_garbage_honours_grace_by_mtime(storage: SQLiteStorage) -> None:
    old = await storage.put_blob(stream(b"old"))
    new = await storage.put_blob(stream(b"new"))
    age(storage.attachments_dir / old.key[:2] / old.key, 700)
    assert await storage.collect_garbage() == 1  # default 600 s
    assert blob_files(storage) == [new.key]


async def test_collect_garbage_removes_stale_temp_files_only(storage: SQLiteStorage) -> None:
    await storage.put_blob(stream(b"x"))  # creates the directory
    crashed = storage.attachments_dir / ".tmp-crashed"
    crashed.write_bytes(b"partial")
    assert await storage.collect_garbage(grace_s=3600) == 0
    assert crashed.exists()
    unrelated = storage.attachments_dir / "README"
    unrelated.write_bytes(b"kept")
    assert await storage.collect_garbage(grace_s=0) == 1  # the blob; temp files are not counted
    assert not crashed.exists()
    assert unrelated.exists()


async def test_collect_garbage_spares_temp_files_being_written(storage: SQLiteStorage) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"a" * (2 * MiB)
        started.set()
        await release.wait()
        yield b"b"

    task = asyncio.create_task(storage.put_blob(slow()))
    await started.wait()
    (name,) = temp_files(storage)
    age(storage.attachments_dir / name, 7200)
    assert await storage.collect_garbage(grace_s=0) == 0
    assert temp_files(storage) == [name]
    release.set()
    info = await task
    assert await storage.blob_length(info.key) == 2 * MiB + 1


async def test_a_blob_refreshed_while_being_collected_is_put_back(storage: SQLiteStorage) -> None:
    """The collector moves a candidate aside, then re-checks its mtime: a put_blob of the
    same bytes that refreshed it meanwhile keeps it."""
    info = await storage.put_blob(stream(b"raced"))
    file = storage.attachments_dir / info.key[:2] / info.key
    cutoff = time.time() - 60
    # The candidate was old when listed, but is fresh by now.
    assert sqlite_module._remove_blobs(storage.attachments_dir, [info.key], cutoff) == 0
    assert file.read_bytes() == b"raced"
    assert temp_files(storage) == []
    age(file, 120)
    assert sqlite_module._remove_blobs(storage.attachments_dir, [info.key], cutoff) == 1
    assert not file.exists()
    assert temp_files(storage) == []
    # Gone meanwhile (another collector): skipped.
    assert sqlite_module._remove_blobs(storage.attachments_dir, [info.key], cutoff) == 0


async def test_collect_garbage_checks_references_in_batches(
    storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "_IDS_PER_QUERY", 3)
    infos = [await storage.put_blob(stream(b"blob %d" % i)) for i in range(10)]
    db = await storage.create_db("db")
    await put(db, blob_write_of("a", 1, [info.key for info in infos[::2]]))
    assert await storage.collect_garbage(grace_s=0) == 5
    assert blob_files(storage) == sorted(info.key for info in infos[::2])


async def test_a_second_storage_sees_the_references(path: Path, storage: SQLiteStorage) -> None:
    info = await storage.put_blob(stream(b"shared"))
    db = await storage.create_db("db")
    await put(db, blob_write_of("a", 1, [info.key]))
    async with SQLiteStorage(path) as other:
        assert await other.collect_garbage(grace_s=0) == 0
        assert await other.update_seqs() == {"db": 1}
        await put(db, write_of("b"))
        assert await other.update_seqs() == {"db": 2}
    assert await read_all(storage, info.key) == b"shared"


# -- the revision_blobs table -----------------------------------------------------------------


async def test_revision_blobs_rows(storage: SQLiteStorage, path: Path) -> None:
    db = await storage.create_db("db")
    keep = await storage.create_db("keep")
    await put(db, blob_write_of("a", 1, ["k2", "k1", "k2"]), write_of("b"))
    await put(keep, blob_write_of("a", 1, ["k9"]))
    revision = (await db.get_revisions([("a", "1-r1")]))[("a", "1-r1")]
    assert revision.blobs == ("k2", "k1", "k2")  # order and repeats kept
    raw = sqlite3.connect(path)
    try:
        rows = raw.execute("SELECT doc_id, rev, blob_key FROM revision_blobs ORDER BY rowid").fetchall()
        assert rows == [("a", "1-r1", "k2"), ("a", "1-r1", "k1"), ("a", "1-r1", "k2"), ("a", "1-r1", "k9")]
        # A rev in drop_revs and in revisions is kept, with its new blobs.
        await put(db, DocWrite("a", linear_tree(1), [Revision("a", "1-r1", False, {}, ("k3",))], ["1-r1"]))
        assert (await db.get_revisions([("a", "1-r1")]))[("a", "1-r1")].blobs == ("k3",)
        await put(db, DocWrite("a", linear_tree(2), drop_revs=["1-r1"]))
        assert raw.execute("SELECT blob_key FROM revision_blobs").fetchall() == [("k9",)]
        await put(db, blob_write_of("c", 1, ["k4"]))
        await storage.delete_db("db")
        assert raw.execute("SELECT blob_key FROM revision_blobs").fetchall() == [("k9",)]
    finally:
        raw.close()


async def test_a_version_1_file_is_migrated(path: Path) -> None:
    async with SQLiteStorage(path) as storage:
        db = await storage.create_db("db")
        await put(db, write_of("a"))
        uuid = await storage.server_uuid()
    raw = sqlite3.connect(path, isolation_level=None)
    try:  # make it what couchpoint with schema version 1 wrote
        raw.execute("DROP TABLE revision_blobs")
        raw.execute("PRAGMA user_version = 1")
    finally:
        raw.close()
    async with SQLiteStorage(path) as storage:
        assert await storage.server_uuid() == uuid
        db = await storage.get_db("db")
        assert db is not None
        assert (await db.get_revisions([("a", "1-r1")]))[("a", "1-r1")].blobs == ()
        info = await storage.put_blob(stream(b"new"))
        await put(db, blob_write_of("b", 1, [info.key]))
        assert await storage.collect_garbage(grace_s=0) == 0
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone() == (2,)
        indexes = {name for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"revision_blobs_by_rev", "revision_blobs_by_key"} <= indexes
    finally:
        raw.close()


async def test_a_newer_schema_is_refused(path: Path) -> None:
    async with SQLiteStorage(path):
        pass
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA user_version = 3")
    raw.close()
    with pytest.raises(RuntimeError, match="schema version 3"):
        await SQLiteStorage(path).open()
