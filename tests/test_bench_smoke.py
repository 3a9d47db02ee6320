"""Smoke test of the benchmark (``bench/run.py``): a small run completes and reports every
workload.  Timings are not checked (CI machines vary); the full run and its figures are
in ``docs/benchmarks.md``.

Runs couchpoint, plus pouchdb-server when ``bench/node_modules`` has it (``./scripts/test``
installs it with ``npm ci`` in ``bench/``).  W1/W2 need Node and PouchDB from
``bench/node_modules``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parent.parent / "bench"
DOCS = 2000
GROWTH = (1000, 2000)
TIMEOUT = 600


def _servers() -> list[str]:
    missing = [p for p in ("pouchdb", "pouchdb-adapter-memory") if not (BENCH / "node_modules" / p).is_dir()]
    if missing or shutil.which("node") is None:
        pytest.fail(
            f"W1/W2 need node and {', '.join(missing) or 'PouchDB'} in bench/node_modules: run "
            "./scripts/test (it runs `npm ci` in bench/), or `npm ci --prefix bench` by hand",
            pytrace=False,
        )
    servers = ["couchpoint"]
    if (BENCH / "node_modules" / "pouchdb-server" / "bin" / "pouchdb-server").is_file():
        servers.append("pouchdb-server")
    return servers


def test_small_bench_run_reports_every_workload(tmp_path: Path) -> None:
    servers = _servers()
    out = tmp_path / "bench.json"
    command = [
        sys.executable,
        str(BENCH / "run.py"),
        "--docs",
        str(DOCS),
        "--growth",
        ",".join(map(str, GROWTH)),
        "--servers",
        ",".join(servers),
        "--no-wait-quiet",
        "--work-dir",
        str(tmp_path / "work"),
        "--json",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    report = f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    assert done.returncode == 0, report
    result = json.loads(out.read_text())
    assert result["errors"] == [], report
    rows = {row["key"]: row for row in result["rows"]}

    expected = ["raw SQLite 2k"]
    for kind in ("W1 push", "W2 pull", "W3 ingest", "W4 _changes", "W4 _bulk_get", "W4 _revs_diff"):
        expected.append(f"{kind} 2k")
    expected.append("W4 _changes since=X (last 1k) 2k")
    growth = ("ingest (last 10k)", "_changes", "_bulk_get", "_revs_diff", "_changes since=X (last 1k)")
    for size in ("1k", "2k"):
        expected += [f"W5 {kind} @{size}" for kind in growth]
    assert sorted(rows) == sorted(expected), report

    assert rows["raw SQLite 2k"]["values"]["sqlite3"] > 0
    for key in expected[1:]:
        for server in servers:
            assert rows[key]["values"][server] > 0, (key, server, report)
            assert rows[key]["rss_mb"][server] > 0, (key, server, report)  # peak RSS sampled

    # The printed table has a line per workload and the targets are evaluated.
    for key in expected:
        assert f"| {key} |" in done.stdout, report
    assert result["targets"], report
    assert result["machine"]["nproc"] >= 1
    assert result["ran_1m"] is False
