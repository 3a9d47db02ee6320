"""``bench/feeds.py`` still runs: a small version of the live-feed benchmark (50
listeners, 5 writes, couchpoint only).  It checks that the run completes and reports
every figure; the timings themselves are not asserted (CI machines vary)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "feeds.py"


@pytest.mark.slow
def test_feeds_benchmark_smoke(tmp_path: Path) -> None:
    report = tmp_path / "feeds.json"
    command = [sys.executable, str(BENCH), "--listeners", "50", "--writes", "5", "--servers", "couchpoint"]
    command += ["--interval", "0.05", "--wait-quiet", "0", "--json", str(report)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| couchpoint | continuous | 50 |" in done.stdout
    data = json.loads(report.read_text())
    assert data["machine"]["cores"] >= 1 and data["machine"]["couchpoint"]
    assert [(r["server"], r["kind"]) for r in data["results"]] == [
        ("couchpoint", "continuous"),
        ("couchpoint", "longpoll"),
    ]
    for result in data["results"]:
        assert result["error"] is None
        assert (result["listeners"], result["opened"], result["writes"]) == (50, 50, 5)
        assert (result["missed"], result["duplicates"], result["dropped_connections"]) == (0, 0, 0)
        assert 0 <= result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
        assert len(result["per_write_p99_ms"]) == 5
        assert result["rss_idle_kb"] > result["rss_before_kb"] > 0
