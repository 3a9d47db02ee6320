"""Replay the recorded replication traffic (recordings/) against couchpoint.

One test per recording: the recordings it builds on are replayed first for their side
effects only, then the recording itself is replayed and every answer compared with the
recorded one (normalization rules: docs/replay.md).  A failure lists every differing
exchange: recording, exchange index, method and path, JSON path, expected and actual.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.replay.replay import SCENARIOS, Scenario, format_report, run_scenario


def _memory(tmp_path: Path) -> Any:
    from couchpoint.storage import MemoryStorage

    return MemoryStorage()


def _sqlite(tmp_path: Path) -> Any:
    from couchpoint.storage import SQLiteStorage

    return SQLiteStorage(tmp_path / "db.sqlite3")


BACKENDS = {"memory": _memory, "sqlite": _sqlite}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_replay(scenario: Scenario, backend: str, tmp_path: Path) -> None:
    replayer = await run_scenario(scenario, BACKENDS[backend](tmp_path))
    assert not replayer.mismatches, format_report(replayer.mismatches)
