"""The pytest plugin works for a project that is not couchpoint: the standalone test file
runs in an empty folder (no conftest, no pytest configuration, so pytest-asyncio is in
its default *strict* mode), finding the fixtures through the ``pytest11`` entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

STANDALONE = Path(__file__).resolve().parents[1] / "test_plugin_standalone.py"


def test_the_fixtures_work_in_a_project_without_configuration(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(STANDALONE, project / "test_uses_couchpoint.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COUCHPOINT_"))}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=strict",
            "test_uses_couchpoint.py",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout, result.stdout
