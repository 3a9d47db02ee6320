"""The ``couchpoint`` command: version, help, and how options, env vars and defaults combine.

uvicorn.run is replaced by a recorder, so no socket is opened.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from couchpoint import __version__, cli
from couchpoint.config import Settings

ENV_VARS = ("COUCHPOINT_HOST", "COUCHPOINT_PORT", "COUCHPOINT_DATA_DIR", "COUCHPOINT_LOG_LEVEL")
SECURITY_ENV_VARS = ("COUCHPOINT_ADMINS", "COUCHPOINT_CONFIG")


class Recorder:
    """Stands in for build_app and uvicorn.run; keeps what they were called with."""

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.app = object()
        self.run_args: tuple[Any, ...] = ()
        self.run_kwargs: dict[str, Any] = {}

    def build_app(self, settings: Settings) -> object:
        self.settings = settings
        return self.app

    def run(self, *args: Any, **kwargs: Any) -> None:
        self.run_args, self.run_kwargs = args, kwargs


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(cli, "build_app", rec.build_app)
    monkeypatch.setattr(cli.uvicorn, "run", rec.run)
    for name in (*ENV_VARS, *SECURITY_ENV_VARS):
        monkeypatch.delenv(name, raising=False)
    return rec


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli.main, list(args), env=env, catch_exceptions=False)


def test_version_prints_name_and_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output == f"couchpoint {__version__}\n"


def test_python_dash_m_runs_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "couchpoint", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout == f"couchpoint {__version__}\n"


def test_serve_help_lists_options_and_env_vars() -> None:
    result = invoke("serve", "--help")
    assert result.exit_code == 0
    for option in ("--host", "--port", "--data-dir", "--log-level"):
        assert option in result.output
    for name in ENV_VARS:
        assert name in result.output


def test_serve_defaults(recorder: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("serve")
    assert result.exit_code == 0, result.output
    assert recorder.run_args == (recorder.app,)
    assert recorder.run_kwargs == {
        "http": cli.NoDelayH11Protocol,
        "host": "127.0.0.1",
        "port": 5984,
        "server_header": False,
        "log_level": "info",
        "timeout_keep_alive": 5,
        "h11_max_incomplete_event_size": 65536,
        "lifespan": "on",
        "timeout_graceful_shutdown": 3,
    }
    assert recorder.settings is not None
    assert recorder.settings.data_dir == Path("couchpoint-data")
    assert (tmp_path / "couchpoint-data").is_dir()


def test_serve_options(recorder: Recorder, tmp_path: Path) -> None:
    data = tmp_path / "nested" / "data"
    result = invoke(
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "6001",
        "--data-dir",
        str(data),
        "--log-level",
        "DEBUG",
        "--admin",
        "admin:pw",
    )
    assert result.exit_code == 0, result.output
    assert recorder.run_kwargs["host"] == "0.0.0.0"
    assert recorder.run_kwargs["port"] == 6001
    assert recorder.run_kwargs["log_level"] == "debug"
    assert recorder.run_kwargs["server_header"] is False
    assert recorder.settings is not None
    assert recorder.settings.data_dir == data
    assert recorder.settings.sqlite_path == data / "couchpoint.sqlite3"
    assert data.is_dir()


def test_env_vars_fill_in_missing_options(recorder: Recorder, tmp_path: Path) -> None:
    env = {
        "COUCHPOINT_HOST": "127.0.0.2",
        "COUCHPOINT_PORT": "6002",
        "COUCHPOINT_DATA_DIR": str(tmp_path / "from-env"),
        "COUCHPOINT_LOG_LEVEL": "warning",
    }
    result = invoke("serve", env=env)
    assert result.exit_code == 0, result.output
    assert recorder.run_kwargs["host"] == "127.0.0.2"
    assert recorder.run_kwargs["port"] == 6002
    assert recorder.run_kwargs["log_level"] == "warning"
    assert recorder.settings is not None
    assert recorder.settings.data_dir == tmp_path / "from-env"


def test_options_win_over_env_vars(recorder: Recorder, tmp_path: Path) -> None:
    env = {"COUCHPOINT_HOST": "127.0.0.2", "COUCHPOINT_PORT": "6002", "COUCHPOINT_DATA_DIR": "/nonexistent"}
    result = invoke("serve", "--port", "6003", "--data-dir", str(tmp_path / "opt"), env=env)
    assert result.exit_code == 0, result.output
    assert recorder.run_kwargs["port"] == 6003
    assert recorder.run_kwargs["host"] == "127.0.0.2"  # no --host: the env var still counts
    assert recorder.settings is not None
    assert recorder.settings.data_dir == tmp_path / "opt"


def test_other_settings_come_from_the_environment(recorder: Recorder, tmp_path: Path) -> None:
    env = {"COUCHPOINT_MAX_DOCUMENT_SIZE": "1234", "COUCHPOINT_CORS_ORIGINS": "http://a.test, http://b.test"}
    result = invoke("serve", "--data-dir", str(tmp_path), env=env)
    assert result.exit_code == 0, result.output
    assert recorder.settings is not None
    assert recorder.settings.max_document_size == 1234
    assert recorder.settings.cors_origins == ("http://a.test", "http://b.test")


def test_startup_line_names_the_address_and_the_data_file(recorder: Recorder, tmp_path: Path) -> None:
    result = invoke("serve", "--port", "6004", "--data-dir", str(tmp_path))
    assert result.exit_code == 0
    assert "http://127.0.0.1:6004" in result.output
    assert str((tmp_path / "couchpoint.sqlite3").resolve()) in result.output


def test_ipv6_host_is_bracketed_in_the_startup_line(recorder: Recorder, tmp_path: Path) -> None:
    result = invoke("serve", "--host", "::1", "--data-dir", str(tmp_path))
    assert "http://[::1]:5984" in result.output


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--port", "http"], {}, "--port"),
        (["--port", "70000"], {}, "--port"),
        ([], {"COUCHPOINT_PORT": "abc"}, "COUCHPOINT_PORT"),
        (["--log-level", "loud"], {}, "--log-level"),
        ([], {"COUCHPOINT_MAX_REQUEST_SIZE": "big"}, "COUCHPOINT_"),
    ],
)
def test_bad_values_are_usage_errors(
    recorder: Recorder, tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    result = CliRunner().invoke(cli.main, ["serve", "--data-dir", str(tmp_path), *args], env=env)
    assert result.exit_code == 2
    assert message in result.output
    assert recorder.run_kwargs == {}


def test_data_dir_that_is_a_file_is_an_error(recorder: Recorder, tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("")
    result = CliRunner().invoke(cli.main, ["serve", "--data-dir", str(path / "sub")])
    assert result.exit_code != 0
    assert recorder.run_kwargs == {}


def test_every_setting_and_option_is_documented() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "running.md").read_text()
    for f in dataclasses.fields(Settings):
        if f.name != "extra":
            assert f"`COUCHPOINT_{f.name.upper()}`" in doc, f"docs/running.md lacks {f.name}"
    for param in cli.serve.params:
        for opt in param.opts:
            assert f"`{opt}`" in doc, f"docs/running.md lacks {opt}"


def test_build_app_returns_an_asgi_app(tmp_path: Path) -> None:
    app = cli.build_app(Settings(data_dir=tmp_path))
    assert callable(app)
