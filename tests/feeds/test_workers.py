"""``couchpoint serve --workers N``: N processes on one socket and one SQLite file; a
write through one worker reaches the ``_changes`` feeds held by the others within 1 s
(the per-process :class:`~couchpoint.notify.SeqWatcher`, ``docs/feeds.md``)."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from click.testing import CliRunner

from couchpoint import cli
from couchpoint.config import Settings

if TYPE_CHECKING:
    from tests.realserver import RealServer

WORKER_ENV = (
    "COUCHPOINT_HOST",
    "COUCHPOINT_PORT",
    "COUCHPOINT_DATA_DIR",
    "COUCHPOINT_LOG_LEVEL",
    "COUCHPOINT_SECRET",
)
DELIVERY = 1.0  # seconds from a write's acknowledgement to every feed (issue 4)


def test_serve_workers_runs_uvicorn_with_a_factory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (*WORKER_ENV, "COUCHPOINT_WORKERS", "COUCHPOINT_ADMINS"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(cli.uvicorn, "run", lambda *a, **k: calls.append((a, k)))
    result = CliRunner().invoke(
        cli.main, ["serve", "--workers", "3", "--port", "6100", "--data-dir", str(tmp_path / "d")]
    )
    assert result.exit_code == 0, result.output
    assert "3 workers" in result.output
    [(args, kwargs)] = calls
    assert args == ("couchpoint.cli:worker_app",)
    assert kwargs["factory"] is True and kwargs["workers"] == 3
    assert kwargs["http"] == "couchpoint.cli:NoDelayH11Protocol"
    assert (kwargs["host"], kwargs["port"]) == ("127.0.0.1", 6100)
    # what each worker reads back: the same settings, one shared cookie secret
    assert os.environ["COUCHPOINT_DATA_DIR"] == str((tmp_path / "d").resolve())
    assert len(os.environ["COUCHPOINT_SECRET"]) == 64
    settings = Settings.from_env()
    assert (settings.port, settings.data_dir) == (6100, (tmp_path / "d").resolve())
    assert settings.secret == os.environ["COUCHPOINT_SECRET"]
    app = cli.worker_app()
    assert app.state.settings.secret == settings.secret


def test_serve_workers_keeps_a_given_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COUCHPOINT_SECRET", "s3cret")
    for name in WORKER_ENV[:-1]:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setattr(cli.uvicorn, "run", lambda *a, **k: None)
    result = CliRunner().invoke(cli.main, ["serve", "--workers", "2", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert os.environ["COUCHPOINT_SECRET"] == "s3cret"


# -- the real thing: two worker processes --------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _worker_of(workers: list[int], server_port: int, client_port: int) -> int | None:
    """The worker process holding the server side of the connection from ``client_port``."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
            inode = fields[9]
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in workers:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    return pid
            except OSError:
                continue
    return None


async def _worker_for(server: RealServer, workers: list[int], writer: asyncio.StreamWriter) -> int:
    client_port = writer.get_extra_info("sockname")[1]
    deadline = time.monotonic() + 5
    while True:
        pid = _worker_of(workers, server.port, client_port)
        if pid is not None:
            return pid
        assert time.monotonic() < deadline, "no worker holds the connection"
        await asyncio.sleep(0.01)


class RawFeed:
    """A continuous feed on its own connection; records when each doc id arrives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, worker: int) -> None:
        self.reader, self.writer, self.worker = reader, writer, worker
        self.seen: dict[str, float] = {}
        self.task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        buffer = b""
        while True:
            data = await self.reader.read(65536)
            if not data:
                return
            now = time.monotonic()
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.startswith(b'{"seq"'):
                    self.seen.setdefault(orjson.loads(line)["id"], now)


async def _request(server: RealServer, raw: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(raw)
    return reader, writer


def _http(method: str, path: str, body: bytes = b"", *, keep_alive: bool = False) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
    if body:
        head += "Content-Type: application/json\r\n"
    if not keep_alive:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


@pytest.mark.slow
async def test_two_workers_feeds_see_writes_of_the_other_worker(tmp_path: Path) -> None:
    # imported here: tests/test_pouchdb.py loads tests.realserver as a plugin (assertion
    # rewriting), which warns when a test module imported it first
    from tests.realserver import ServerError, real_server

    try:
        with real_server(
            tmp_path / "data", log_path=tmp_path / "server.log", extra_args=["--workers", "2"]
        ) as server:
            await _scenario(server)
    except ServerError as exc:
        pytest.fail(str(exc), pytrace=False)


async def _scenario(server: RealServer) -> None:
    # The serve process's children: the 2 workers (and multiprocessing's helpers).
    deadline = time.monotonic() + 20
    workers: list[int] = []
    while len(workers) < 2:
        assert time.monotonic() < deadline, f"expected 2 worker processes, found {workers}"
        workers = _children(server.process.pid)
        await asyncio.sleep(0.05)
    reader, writer = await _request(server, _http("PUT", "/db"))
    assert (await reader.read()).startswith(b"HTTP/1.1 201")
    writer.close()

    # Feeds on separate connections until each worker holds at least 3 of them.
    feeds: list[RawFeed] = []
    per_worker: dict[int, int] = {}
    while len(per_worker) < 2 or min(per_worker.values()) < 3:
        assert len(feeds) < 60, f"connections are not spread over the workers: {per_worker}"
        reader, writer = await _request(
            server, _http("GET", "/db/_changes?feed=continuous&since=now&heartbeat=30000", keep_alive=True)
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert await asyncio.wait_for(reader.readexactly(6), 10) == b"1\r\n\n\r\n"  # first newline
        worker = await _worker_for(server, workers, writer)
        per_worker[worker] = per_worker.get(worker, 0) + 1
        feeds.append(RawFeed(reader, writer, worker))

    # Writes, each on a new connection, until each worker has served at least 3.
    acked: dict[str, tuple[float, int]] = {}
    served = dict.fromkeys(per_worker, 0)
    n = 0
    try:
        while min(served.values()) < 3:
            assert n < 60, f"writes are not spread over the workers: {served}"
            doc_id = f"w{n:02d}"
            n += 1
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            worker = await _worker_for(server, workers, writer)  # accepted: whose is it?
            writer.write(_http("PUT", f"/db/{doc_id}", b'{"n": 1}'))
            response = await asyncio.wait_for(reader.read(), 10)
            acked[doc_id] = (time.monotonic(), worker)
            writer.close()
            assert response.startswith(b"HTTP/1.1 201"), response
            served[worker] += 1
        for doc_id in acked:
            give_up = acked[doc_id][0] + DELIVERY + 4
            while not all(doc_id in f.seen for f in feeds) and time.monotonic() < give_up:
                await asyncio.sleep(0.02)
    finally:
        for feed in feeds:
            feed.task.cancel()
            feed.writer.close()

    late = []
    cross = 0
    for doc_id, (ack, worker) in acked.items():
        for feed in feeds:
            arrived = feed.seen.get(doc_id)
            if arrived is None or arrived - ack > DELIVERY:
                late.append((doc_id, feed.worker, None if arrived is None else round(arrived - ack, 3)))
            if feed.worker != worker:
                cross += 1
    assert not late, f"writes not seen by a feed within {DELIVERY} s (doc, feed's worker, delay): {late}"
    assert cross >= 2 * 3 * 3  # 3+ writes of each worker reached 3+ feeds of the other


def test_serve_sets_the_gc_thresholds_for_many_feeds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    before = gc.get_threshold()
    monkeypatch.setattr(cli.uvicorn, "run", lambda *a, **k: None)
    try:
        gc.set_threshold(700, 10, 10)
        result = CliRunner().invoke(cli.main, ["serve", "--data-dir", str(tmp_path)])
        assert result.exit_code == 0, result.output
        assert gc.get_threshold() == cli.GC_THRESHOLDS == (10_000, 20, 100)
        gc.set_threshold(700, 10, 10)
        cli.worker_app()
        assert gc.get_threshold() == cli.GC_THRESHOLDS
    finally:
        gc.set_threshold(*before)
