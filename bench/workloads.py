"""The workloads of ``bench/run.py`` (W1–W5 and raw SQLite), each against one server.

Every workload prepares its request bodies before the clock starts, and counts a
request only once the server answered it in full with the expected status.  Docs are
about 1 KB of JSON (:func:`make_doc`; ``bench/replicate.js`` builds the same ones).
"""

from __future__ import annotations

import hashlib
import random
import shutil
import sqlite3
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from servers import BENCH_DIR, BenchError, Client, Server

Request = tuple[str, str, bytes | None]
Check = Callable[[int, bytes], int]
"""Validates one response (status, body) and returns how many items it counts for."""


@dataclass
class Rate:
    """``items`` done in ``seconds``; ``per_s`` the rate."""

    items: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("inf")


# -- documents ----------------------------------------------------------------------------


def _hex(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def doc_id(i: int, prefix: str = "doc") -> str:
    return f"{prefix}-{i:08d}"


def rev_of(i: int, prefix: str = "doc") -> str:
    return "1-" + _hex(f"rev{prefix}{i}")


def make_doc(i: int, prefix: str = "doc") -> dict[str, Any]:
    """About 1,000 bytes of JSON: an id, a type, a number and 29 copies of an md5."""
    h = _hex(f"{prefix}{i}")
    return {"_id": doc_id(i, prefix), "type": "bench", "n": i, "text": " ".join([h] * 29)}


def replicated_doc(i: int, prefix: str = "doc") -> dict[str, Any]:
    """:func:`make_doc` as a replicator sends it with ``new_edits=false``."""
    doc = make_doc(i, prefix)
    rev = rev_of(i, prefix)
    doc["_rev"] = rev
    doc["_revisions"] = {"start": 1, "ids": [rev[2:]]}
    return doc


# -- plumbing -------------------------------------------------------------------------------


def db_path(db: str, endpoint: str = "", query: str = "") -> str:
    path = "/" + quote(db, safe="")
    if endpoint:
        path += "/" + endpoint
    return path + (f"?{query}" if query else "")


def create_db(server: Server, db: str) -> None:
    client = server.client()
    try:
        status, data = client.request("DELETE", db_path(db))
        status, data = client.request("PUT", db_path(db))
        if status not in (201, 202):
            raise BenchError(f"{server.name}: PUT /{db} answered {status}: {data[:200]!r}")
    finally:
        client.close()


def delete_db(server: Server, db: str) -> None:
    client = server.client()
    try:
        client.request("DELETE", db_path(db))
    finally:
        client.close()


def db_info(server: Server, db: str) -> dict[str, Any]:
    client = server.client()
    try:
        info = client.json("GET", db_path(db))
    finally:
        client.close()
    assert isinstance(info, dict)
    return info


def run_parallel(server: Server, requests: Sequence[Request], check: Check, concurrency: int) -> Rate:
    """Send ``requests`` over ``concurrency`` keep-alive connections (threads taking the
    next request from a shared index); returns items counted by ``check`` per second
    of wall time from the first send to the last full response."""
    lock = threading.Lock()
    position = iter(range(len(requests)))
    counted = [0] * concurrency
    failures: list[BaseException] = []
    clients = [server.client() for _ in range(concurrency)]

    def worker(n: int) -> None:
        client = clients[n]
        try:
            while not failures:
                with lock:
                    index = next(position, None)
                if index is None:
                    return
                method, path, body = requests[index]
                status, data = client.request(method, path, body)
                counted[n] += check(status, data)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for client in clients:
        client.close()
    if failures:
        server.check_alive()
        raise BenchError(f"{server.name}: {failures[0]!r}") from failures[0]
    return Rate(sum(counted), elapsed)


# -- W1 / W2: PouchDB replication -----------------------------------------------------------


def replicate(server: Server, mode: str, db: str, docs: int, timeout: float = 3600) -> Rate:
    """``node bench/replicate.js push|pull``: PouchDB 9 (memory adapter) replicating
    ``docs`` docs to or from ``db`` (time measured inside Node, without building the
    source db)."""
    url = server.url
    if server.auth:  # PouchDB takes credentials from the URL
        import base64

        user, _, password = base64.b64decode(server.auth.split(" ", 1)[1]).decode().partition(":")
        scheme, rest = url.split("://", 1)
        url = f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{rest}"
    node = shutil.which("node")
    if node is None:
        raise BenchError("node is not on PATH (W1/W2 need Node.js 18+)")
    command = [node, str(BENCH_DIR / "replicate.js"), mode, "--url", url, "--db", db, "--docs", str(docs)]
    done = subprocess.run(command, capture_output=True, timeout=timeout, cwd=BENCH_DIR, check=False)
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    try:
        result = orjson.loads(lines[-1])
    except (IndexError, orjson.JSONDecodeError):
        result = {"ok": False, "error": done.stderr.decode(errors="replace")[-2000:]}
    if not result.get("ok"):
        server.check_alive()
        raise BenchError(f"{server.name}: replicate.js {mode} failed: {result.get('error')}")
    return Rate(int(result["docs"]), float(result["seconds"]))


# -- W3: ingest ------------------------------------------------------------------------------


def _check_bulk_docs(docs_per_request: int) -> Check:
    def check(status: int, data: bytes) -> int:
        if status != 201:
            raise BenchError(f"_bulk_docs answered {status}: {data[:300]!r}")
        results = orjson.loads(data)
        failed = [r for r in results if isinstance(r, dict) and "error" in r]
        if failed:
            raise BenchError(f"_bulk_docs rejected {len(failed)} docs: {failed[:3]!r}")
        return docs_per_request

    return check


def ingest(server: Server, db: str, start: int, stop: int, *, batch: int = 500, concurrency: int = 4) -> Rate:
    """W3: docs ``start..stop-1`` as ``_bulk_docs`` ``new_edits=false`` batches of
    ``batch`` over ``concurrency`` connections; docs/s until the last batch is answered
    (couchpoint answers after the commit, synchronous=FULL: durable)."""
    requests: list[Request] = []
    sizes: list[int] = []
    for first in range(start, stop, batch):
        docs = [replicated_doc(i) for i in range(first, min(stop, first + batch))]
        body = orjson.dumps({"docs": docs, "new_edits": False})
        requests.append(("POST", db_path(db, "_bulk_docs"), body))
        sizes.append(len(docs))
    if len(set(sizes)) > 1:  # a short last batch: count it right
        rate = Rate(0, 0.0)
        for size in sorted(set(sizes)):
            part = [r for r, s in zip(requests, sizes, strict=True) if s == size]
            done = run_parallel(server, part, _check_bulk_docs(size), concurrency)
            rate = Rate(rate.items + done.items, rate.seconds + done.seconds)
        return rate
    return run_parallel(server, requests, _check_bulk_docs(batch), concurrency)


# -- W4: read paths --------------------------------------------------------------------------


def changes_all(server: Server, db: str, expected: int) -> Rate:
    """``GET /db/_changes?since=0`` (normal feed) over the whole db, read in full; rows/s."""
    client = server.client()
    try:
        started = time.perf_counter()
        status, data = client.request("GET", db_path(db, "_changes", "since=0"))
        elapsed = time.perf_counter() - started
    finally:
        client.close()
    if status != 200:
        raise BenchError(f"{server.name}: _changes answered {status}: {data[:300]!r}")
    rows = len(orjson.loads(data)["results"])
    if rows != expected:
        raise BenchError(f"{server.name}: _changes since=0 returned {rows} rows, expected {expected}")
    return Rate(rows, elapsed)


def changes_since_ms(server: Server, db: str, tail: int = 1000, repeats: int = 7) -> tuple[float, int]:
    """Median wall time (ms) of ``_changes?since=X`` where ``X`` leaves the last
    ``tail`` changes; returns ``(ms, rows)``."""
    info = db_info(server, db)
    seq = info["update_seq"]
    client = server.client()
    try:
        if isinstance(seq, int):
            since: str = str(max(0, seq - tail))
        else:  # CouchDB: opaque seqs; the seq just before the last `tail` changes
            data = client.json("GET", db_path(db, "_changes", f"descending=true&limit={tail + 1}"))
            assert isinstance(data, dict)
            since = quote(str(data["results"][-1]["seq"]), safe="")
        times = []
        rows = 0
        for _ in range(repeats):
            started = time.perf_counter()
            status, body = client.request("GET", db_path(db, "_changes", f"since={since}"))
            times.append(time.perf_counter() - started)
            if status != 200:
                raise BenchError(f"{server.name}: _changes?since={since} answered {status}")
            rows = len(orjson.loads(body)["results"])
    finally:
        client.close()
    return statistics.median(times) * 1000, rows


def bulk_get(
    server: Server, db: str, indexes: Sequence[int], *, per_request: int = 100, concurrency: int = 4
) -> Rate:
    """``POST /db/_bulk_get?revs=true&latest=true`` (as replicators ask) for the docs
    ``indexes``, ``per_request`` per request; docs/s."""
    requests: list[Request] = []
    for first in range(0, len(indexes), per_request):
        chunk = indexes[first : first + per_request]
        body = orjson.dumps({"docs": [{"id": doc_id(i), "rev": rev_of(i)} for i in chunk]})
        requests.append(("POST", db_path(db, "_bulk_get", "revs=true&latest=true"), body))

    def check(status: int, data: bytes) -> int:
        if status != 200:
            raise BenchError(f"_bulk_get answered {status}: {data[:300]!r}")
        results = orjson.loads(data)["results"]
        ok = sum(1 for r in results for d in r["docs"] if "ok" in d)
        if ok != len(results):
            raise BenchError(f"_bulk_get: {len(results) - ok} of {len(results)} docs missing")
        return ok

    return run_parallel(server, requests, check, concurrency)


def revs_diff(
    server: Server, db: str, indexes: Sequence[int], *, per_request: int = 500, concurrency: int = 4
) -> Rate:
    """``POST /db/_revs_diff`` with ``per_request`` revs per request: for every doc its
    stored rev and, for one doc in ten, also a rev the server lacks; revs/s."""
    requests: list[Request] = []
    counts: list[int] = []
    for first in range(0, len(indexes), per_request):
        chunk = indexes[first : first + per_request]
        query: dict[str, list[str]] = {}
        n = 0
        for i in chunk:
            revs = [rev_of(i)]
            if i % 10 == 0:
                revs.append("2-" + _hex(f"missing{i}"))
            query[doc_id(i)] = revs
            n += len(revs)
        requests.append(("POST", db_path(db, "_revs_diff"), orjson.dumps(query)))
        counts.append(n)
    expected_missing = sum(1 for i in indexes if i % 10 == 0)
    lock = threading.Lock()
    missing = [0]

    def check(status: int, data: bytes) -> int:
        if status != 200:
            raise BenchError(f"_revs_diff answered {status}: {data[:300]!r}")
        found = sum(len(v["missing"]) for v in orjson.loads(data).values())
        with lock:
            missing[0] += found
        return 0

    rate = run_parallel(server, requests, check, concurrency)
    if missing[0] != expected_missing:
        raise BenchError(
            f"{server.name}: _revs_diff reported {missing[0]} missing, expected {expected_missing}"
        )
    return Rate(sum(counts), rate.seconds)


def sample(size: int, count: int, seed: int = 42) -> list[int]:
    """``count`` distinct doc indexes below ``size`` (all of them if fewer), shuffled."""
    rng = random.Random(seed)
    if count >= size:
        out = list(range(size))
        rng.shuffle(out)
        return out
    return rng.sample(range(size), count)


# -- raw SQLite ------------------------------------------------------------------------------


def raw_sqlite(path: Path, rows: int, batch: int = 500) -> Rate:
    """The floor for W3: ``sqlite3`` ``executemany`` of ``(id, rev, ~1 KB JSON)`` rows
    into a table keyed by id, one transaction per ``batch`` rows, WAL,
    ``synchronous=FULL``; rows/s (encoding not timed)."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE docs (id TEXT PRIMARY KEY, rev TEXT NOT NULL, body TEXT NOT NULL)")
        batches = []
        for first in range(0, rows, batch):
            batches.append(
                [
                    (doc_id(i, "raw"), rev_of(i, "raw"), orjson.dumps(make_doc(i, "raw")).decode())
                    for i in range(first, min(rows, first + batch))
                ]
            )
        started = time.perf_counter()
        for chunk in batches:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO docs (id, rev, body) VALUES (?, ?, ?)", chunk)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    return Rate(rows, elapsed)


__all__ = [
    "Client",
    "Rate",
    "bulk_get",
    "changes_all",
    "changes_since_ms",
    "create_db",
    "db_info",
    "delete_db",
    "ingest",
    "make_doc",
    "raw_sqlite",
    "replicate",
    "replicated_doc",
    "revs_diff",
    "run_parallel",
    "sample",
]
