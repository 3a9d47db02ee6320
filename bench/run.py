#!/usr/bin/env python3
"""couchpoint's benchmark: the same workloads against couchpoint, pouchdb-server 4.2.0
(in-memory) and, when ``COUCHDB_URL`` is set, Apache CouchDB, in one run.

    .venv/bin/python bench/run.py --docs 10000                  # W1-W5 + raw SQLite
    .venv/bin/python bench/run.py --docs 10000,100000 --growth-1m --json /tmp/bench.json

Workloads (docs of about 1 KB):

* W1 push: PouchDB 9 (Node, memory adapter) replicates N docs into an empty db.
* W2 pull: PouchDB replicates that db out into an empty memory db.
* W3 ingest: ``_bulk_docs`` ``new_edits=false``, batches of 500, 4 connections.
* W4 reads: ``_changes?since=0`` over N docs (rows/s); ``_bulk_get?revs=true&latest=true``
  100 docs/request (docs/s); ``_revs_diff`` 500 revs/request (revs/s); 4 connections
  for the last two; ``_changes?since=X`` for the last 1,000 changes (ms).
* W5 growth: one db grown to 10k, 100k (and with ``--growth-1m`` 1M) docs; at each size
  the ingest rate of the last 10,000 docs and the W4 reads (bulk_get/revs_diff on a
  random sample of 10,000/20,000 docs; each read the best of 3 runs).
* raw SQLite: ``sqlite3`` ``executemany``, 500 rows of ~1 KB per transaction, WAL,
  ``synchronous=FULL`` (the floor for W3).

Peak server RSS (``VmRSS`` sampled every 20 ms) is reported per workload.  Servers run
one after the other, never at the same time.  Exit status 1 if a workload failed.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as w
from servers import (
    NODE_MODULES,
    REPO,
    BenchError,
    Server,
    external_couchdb,
    pouchdb_server_installed,
    sampled,
    start_couchpoint,
    start_pouchdb_server,
    wait_quiet,
)

WORKLOADS = ("w1", "w2", "w3", "w4", "w5", "raw")
GROWTH_WINDOW = 10_000
TARGETS_DOC = "docs/benchmarks.md"


@dataclass
class Row:
    """One line of the table: a metric measured on some servers."""

    key: str
    unit: str
    values: dict[str, float] = field(default_factory=dict)
    rss: dict[str, float | None] = field(default_factory=dict)
    higher_is_better: bool = True


@dataclass
class Results:
    rows: dict[str, Row] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)

    def add(
        self, key: str, unit: str, server: str, value: float, rss: float | None, higher: bool = True
    ) -> None:
        row = self.rows.setdefault(key, Row(key, unit, higher_is_better=higher))
        row.values[server] = value
        row.rss[server] = rss

    def value(self, key: str, server: str) -> float | None:
        row = self.rows.get(key)
        return None if row is None else row.values.get(server)


def size_label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- one server ---------------------------------------------------------------------------


QUIET = {"wait": True}
"""``--no-wait-quiet`` turns this off."""


def settle(results: Results, server: Server, key: str) -> None:
    """Wait until other processes leave the cores alone (other test runs on a shared
    machine skew every figure); note the measurement if they did not within 30 s."""
    if not QUIET["wait"]:
        return
    busy = wait_quiet(max_wait=30.0)
    if busy >= 0.15:
        results.loaded.append(f"{server.name} {key}: started with {busy:.0%} of the cores busy")


def measure(
    results: Results,
    server: Server,
    key: str,
    unit: str,
    fn: Callable[[], w.Rate],
    higher: bool = True,
    repeat: int = 1,
) -> w.Rate:
    """Run ``fn`` ``repeat`` times (reads only: it must not change the db) and keep the
    fastest run, the one least disturbed by other processes."""
    settle(results, server, key)
    with sampled(server) as rss:
        rate = max((fn() for _ in range(repeat)), key=lambda r: r.per_s)
    results.add(key, unit, server.name, rate.per_s, rss.peak_mb, higher)
    peak = f", peak RSS {rss.peak_mb:.0f} MB" if rss.peak_mb is not None else ""
    log(f"  {server.name}: {key}: {rate.per_s:,.0f} {unit} ({rate.items:,} in {rate.seconds:.2f} s{peak})")
    return rate


def run_size(results: Results, server: Server, n: int, args: argparse.Namespace) -> None:
    label = size_label(n)
    todo = set(args.workloads)
    if {"w1", "w2"} & todo:
        db = f"bench-w1-{label.lower()}"
        w.delete_db(server, db)
        if "w1" in todo:
            measure(results, server, f"W1 push {label}", "docs/s", lambda: w.replicate(server, "push", db, n))
        else:  # W2 needs a db to pull: fill it without timing
            w.create_db(server, db)
            w.ingest(server, db, 0, n, batch=args.batch, concurrency=args.concurrency)
        if "w2" in todo:
            measure(results, server, f"W2 pull {label}", "docs/s", lambda: w.replicate(server, "pull", db, n))
        w.delete_db(server, db)
    if {"w3", "w4"} & todo:
        db = f"bench-w3-{label.lower()}"
        w.create_db(server, db)
        ingest = lambda: w.ingest(server, db, 0, n, batch=args.batch, concurrency=args.concurrency)  # noqa: E731
        if "w3" in todo:
            measure(results, server, f"W3 ingest {label}", "docs/s", ingest)
        else:
            ingest()
        if "w4" in todo:
            everyone = w.sample(n, n)
            measure(results, server, f"W4 _changes {label}", "rows/s", lambda: w.changes_all(server, db, n))
            measure(
                results,
                server,
                f"W4 _bulk_get {label}",
                "docs/s",
                lambda: w.bulk_get(server, db, everyone, concurrency=args.concurrency),
            )
            measure(
                results,
                server,
                f"W4 _revs_diff {label}",
                "revs/s",
                lambda: w.revs_diff(server, db, everyone, concurrency=args.concurrency),
            )
            since_row(results, server, db, f"W4 _changes since=X (last 1k) {label}")
        w.delete_db(server, db)


def since_row(results: Results, server: Server, db: str, key: str) -> None:
    settle(results, server, key)
    with sampled(server) as rss:
        ms, rows = w.changes_since_ms(server, db)
    results.add(key, "ms", server.name, ms, rss.peak_mb, higher=False)
    log(f"  {server.name}: {key}: {ms:.1f} ms ({rows} rows)")


def run_growth(results: Results, server: Server, sizes: list[int], args: argparse.Namespace) -> None:
    db = "bench-w5"
    w.create_db(server, db)
    done = 0
    for size in sizes:
        label = size_label(size)
        window = min(GROWTH_WINDOW, size - done)
        if size - window > done:
            log(f"  {server.name}: W5 growing {db} to {size - window:,} docs")
            with sampled(server):
                w.ingest(server, db, done, size - window, batch=args.batch, concurrency=args.concurrency)
        measure(
            results,
            server,
            f"W5 ingest (last 10k) @{label}",
            "docs/s",
            lambda size=size, window=window: w.ingest(
                server, db, size - window, size, batch=args.batch, concurrency=args.concurrency
            ),
        )
        done = size
        measure(
            results,
            server,
            f"W5 _changes @{label}",
            "rows/s",
            lambda size=size: w.changes_all(server, db, size),
            repeat=3,
        )
        some = w.sample(size, 10_000)
        more = w.sample(size, 20_000)
        measure(
            results,
            server,
            f"W5 _bulk_get @{label}",
            "docs/s",
            lambda some=some: w.bulk_get(server, db, some, concurrency=args.concurrency),
            repeat=3,
        )
        measure(
            results,
            server,
            f"W5 _revs_diff @{label}",
            "revs/s",
            lambda more=more: w.revs_diff(server, db, more, concurrency=args.concurrency),
            repeat=3,
        )
        since_row(results, server, db, f"W5 _changes since=X (last 1k) @{label}")
    w.delete_db(server, db)


def start(name: str, work_dir: Path) -> Server:
    if name == "couchpoint":
        return start_couchpoint(work_dir)
    if name == "pouchdb-server":
        return start_pouchdb_server(work_dir)
    if name == "couchdb":
        url = os.environ.get("COUCHDB_URL")
        if not url:
            raise BenchError("couchdb needs COUCHDB_URL (e.g. http://admin:secret@127.0.0.1:5984)")
        return external_couchdb(url)
    raise BenchError(f"unknown server {name!r}")


def run_server(results: Results, name: str, args: argparse.Namespace, work_dir: Path) -> None:
    log(f"starting {name}")
    server = start(name, work_dir)
    try:
        for n in args.docs:
            run_size(results, server, n, args)
        if "w5" in args.workloads and name in args.growth_servers:
            run_growth(results, server, args.growth, args)
        server.check_alive()
    finally:
        server.stop()


# -- report ---------------------------------------------------------------------------------


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def table(results: Results, servers: list[str]) -> list[str]:
    """Markdown table: one row per metric, value and peak RSS per server, the raw SQLite
    floor, and the couchpoint/other ratios (> 1: couchpoint is faster)."""
    others = [s for s in servers if s != "couchpoint"]
    raw = any("sqlite3" in row.values for row in results.rows.values())
    head = ["workload", "unit"]
    for s in servers:
        head += [s, f"{s} RSS MB"]
    if raw:
        head.append("raw SQLite")
    if "couchpoint" in servers:
        head += [f"couchpoint / {s}" for s in others]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for row in results.rows.values():
        cells = [row.key, row.unit]
        for s in servers:
            cells += [fmt(row.values.get(s), row.unit), fmt(row.rss.get(s))]
        if raw:
            cells.append(fmt(row.values.get("sqlite3"), row.unit))
        if "couchpoint" in servers:
            for s in others:
                mine, theirs = row.values.get("couchpoint"), row.values.get(s)
                if mine and theirs:
                    ratio = mine / theirs if row.higher_is_better else theirs / mine
                    cells.append(f"{ratio:.2f}x")
                else:
                    cells.append("-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def targets(results: Results, args: argparse.Namespace) -> list[tuple[bool, str]]:
    """The issue's targets for couchpoint, each ``(met, explanation)``."""
    out: list[tuple[bool, str]] = []
    cp = "couchpoint"
    for n in args.docs:
        label = size_label(n)
        for kind in ("W1 push", "W2 pull"):
            mine = results.value(f"{kind} {label}", cp)
            theirs = results.value(f"{kind} {label}", "pouchdb-server")
            if mine and theirs:
                out.append(
                    (
                        mine >= theirs,
                        f"{kind} {label}: couchpoint/pouchdb-server = {mine / theirs:.2f} (>= 1)",
                    )
                )
        w3 = results.value(f"W3 ingest {label}", cp)
        raw = results.value(f"raw SQLite {label}", "sqlite3")
        if w3:
            out.append((w3 >= 20_000, f"W3 ingest {label}: {w3:,.0f} docs/s (>= 20,000)"))
        if w3 and raw:
            out.append(
                (
                    w3 >= 0.3 * raw,
                    f"W3 ingest {label}: {w3 / raw:.0%} of raw SQLite {raw:,.0f} rows/s (>= 30%)",
                )
            )
        changes = results.value(f"W4 _changes {label}", cp)
        if changes:
            out.append((changes >= 50_000, f"W4 _changes {label}: {changes:,.0f} rows/s (>= 50,000)"))
        bulk = results.value(f"W4 _bulk_get {label}", cp)
        if bulk:
            out.append((bulk >= 10_000, f"W4 _bulk_get {label}: {bulk:,.0f} docs/s (>= 10,000)"))
    if "w5" in args.workloads and cp in args.growth_servers and len(args.growth) > 1:
        first = size_label(args.growth[0])
        for metric in ("ingest (last 10k)", "_changes", "_bulk_get", "_revs_diff"):
            base = results.value(f"W5 {metric} @{first}", cp)
            if not base:
                continue
            for size in args.growth[1:]:
                label = size_label(size)
                value = results.value(f"W5 {metric} @{label}", cp)
                if value:
                    ratio = base / value  # per-doc time relative to the first size
                    out.append(
                        (
                            0.7 <= ratio <= 1.3,
                            f"W5 {metric}: per-item time @{label} = {ratio:.2f}x @{first} (±30%)",
                        )
                    )
        base = results.value(f"W5 _changes since=X (last 1k) @{first}", cp)
        for size in args.growth[1:]:
            label = size_label(size)
            value = results.value(f"W5 _changes since=X (last 1k) @{label}", cp)
            if base and value:
                out.append(
                    (
                        value <= 1.3 * base,
                        f"W5 _changes since=X @{label}: {value:.1f} ms vs {base:.1f} ms @{first} (<= 1.3x)",
                    )
                )
    return out


def _version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "-"


def _npm_version(package: str) -> str:
    try:
        return json.loads((NODE_MODULES / package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "not installed"


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    cpu = "-"
    mem = "-"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "uvicorn": version("uvicorn"),
        "starlette": version("starlette"),
        "aiosqlite": version("aiosqlite"),
        "orjson": version("orjson"),
        "node": _version(["node", "--version"]) if shutil.which("node") else "-",
        "pouchdb": _npm_version("pouchdb"),
        "pouchdb-adapter-memory": _npm_version("pouchdb-adapter-memory"),
        "pouchdb-server": _npm_version("pouchdb-server"),
        **_couchpoint_source(),
        "loadavg at start": Path("/proc/loadavg").read_text().split()[:3]
        if Path("/proc/loadavg").exists()
        else "-",
    }


def _couchpoint_source() -> dict[str, str]:
    """Where the served couchpoint comes from (the child inherits PYTHONPATH), and its
    git commit, marked when its couchpoint/ differs from that commit."""
    src = _version(
        [sys.executable, "-c", "import couchpoint, os; print(os.path.dirname(couchpoint.__path__[0]))"]
    )
    commit = _version(["git", "-C", src or str(REPO), "rev-parse", "--short", "HEAD"]) or "-"
    dirty = _version(["git", "-C", src or str(REPO), "status", "--porcelain", "--", "couchpoint"])
    return {
        "couchpoint source": src,
        "couchpoint commit": commit + (" (+ uncommitted changes)" if dirty else ""),
    }


# -- main -----------------------------------------------------------------------------------


def int_list(text: str) -> list[int]:
    values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    default_servers = ["couchpoint"]
    if pouchdb_server_installed():
        default_servers.append("pouchdb-server")
    if os.environ.get("COUCHDB_URL"):
        default_servers.append("couchdb")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int_list, default=[10_000], help="N for W1-W4, e.g. 10000,100000")
    parser.add_argument(
        "--servers",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=default_servers,
        help=f"servers to run, in order (default: {','.join(default_servers)})",
    )
    parser.add_argument(
        "--workloads",
        type=lambda s: [x.strip().lower() for x in s.split(",") if x.strip()],
        default=list(WORKLOADS),
        help=f"subset of {','.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument(
        "--growth", type=int_list, default=[10_000, 100_000], help="W5 sizes (default 10000,100000)"
    )
    parser.add_argument("--growth-1m", action="store_true", help="add 1,000,000 docs to the W5 sizes")
    parser.add_argument(
        "--growth-servers",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=None,
        help="servers that run W5 (default: all of --servers)",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="client connections for W3/W4 (default 4)")
    parser.add_argument("--batch", type=int, default=500, help="docs per _bulk_docs in W3/W5 (default 500)")
    parser.add_argument(
        "--no-wait-quiet",
        dest="wait_quiet",
        action="store_false",
        help="do not wait (up to 30 s) for an idle machine before each measurement",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--work-dir", type=Path, help="where data and logs go (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    if args.growth_1m and 1_000_000 not in args.growth:
        args.growth.append(1_000_000)
    args.growth.sort()
    if args.growth_servers is None:
        args.growth_servers = list(args.servers)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    QUIET["wait"] = args.wait_quiet
    command = " ".join([Path(sys.executable).name, *sys.argv]) if argv is None else " ".join(argv)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="couchpoint-bench-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    results = Results()
    started = time.time()
    facts = machine()
    log(f"bench: servers {args.servers}, docs {args.docs}, workloads {args.workloads}, work dir {work_dir}")
    try:
        if "raw" in args.workloads:
            for n in args.docs:
                if args.wait_quiet:
                    wait_quiet(max_wait=30.0)
                rate = w.raw_sqlite(work_dir / "raw.sqlite3", n, args.batch)
                results.add(f"raw SQLite {size_label(n)}", "rows/s", "sqlite3", rate.per_s, None)
                log(f"  raw SQLite {size_label(n)}: {rate.per_s:,.0f} rows/s")
        for name in args.servers:
            try:
                run_server(results, name, args, work_dir)
            except Exception as exc:  # report, go on with the next server
                results.errors.append(f"{name}: {exc}")
                log(f"{name} FAILED: {exc}\n{traceback.format_exc()}")
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    lines = table(results, list(args.servers))
    checks = targets(results, args)
    print("\n".join(lines))
    print()
    for met, text in checks:
        print(f"{'MET   ' if met else 'MISSED'} {text}")
    for note in results.loaded:
        print(f"LOADED {note}")
    for error in results.errors:
        print(f"ERROR  {error}")
    elapsed = time.time() - started
    ran_1m = 1_000_000 in args.growth and "w5" in args.workloads
    print(f"\n{elapsed:.0f} s; 1M-doc growth run: {'yes' if ran_1m else 'no'}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": command,
                    "machine": facts,
                    "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "seconds": elapsed,
                    "ran_1m": ran_1m,
                    "rows": [
                        {"key": r.key, "unit": r.unit, "values": r.values, "rss_mb": r.rss}
                        for r in results.rows.values()
                    ],
                    "targets": [{"met": met, "text": text} for met, text in checks],
                    "errors": results.errors,
                    "loaded": results.loaded,
                    "table": lines,
                },
                indent=2,
            )
        )
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
