"""``couchpoint serve`` safe defaults and admins, ``couchpoint user add``,
``couchpoint hash-password`` (issue 5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner

from couchpoint import cli
from couchpoint.auth import PasswordHash
from couchpoint.config import Settings

CLEAN_ENV = {k: None for k in os.environ if k.startswith("COUCHPOINT_")}


class Recorder:
    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.kwargs: dict[str, Any] = {}

    def build_app(self, settings: Settings) -> object:
        self.settings = settings
        return object()

    def run(self, app: Any, **kwargs: Any) -> None:
        self.kwargs = kwargs


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(cli, "build_app", rec.build_app)
    monkeypatch.setattr(cli.uvicorn, "run", rec.run)
    return rec


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Any:
    return CliRunner().invoke(cli.main, list(args), env={**CLEAN_ENV, **(env or {})})


def test_non_loopback_without_admin_fails_with_a_clear_message(tmp_path: Path) -> None:
    """The real command, in a child process: exit status 2 and the reason on stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUCHPOINT_")}
    done = subprocess.run(
        [sys.executable, "-m", "couchpoint", "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "refusing to serve on 0.0.0.0 without a server admin" in done.stderr
    assert "--admin NAME:PASSWORD" in done.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "example.org"])
def test_any_non_loopback_host_is_refused(recorder: Recorder, tmp_path: Path, host: str) -> None:
    result = invoke("serve", "--host", host, "--data-dir", str(tmp_path))
    assert result.exit_code == 2 and "without a server admin" in result.output
    assert recorder.kwargs == {}


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_admin_party_on_loopback_is_announced(recorder: Recorder, tmp_path: Path, host: str) -> None:
    result = invoke("serve", "--host", host, "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "admin party" in result.output and recorder.kwargs["host"] == host


def test_admins_from_options_env_and_file_are_kept_hashed(recorder: Recorder, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[admins]\nfromfile = "f-pw"\n')
    hashed_env = PasswordHash.create("e-pw", 1000).to_config()
    result = invoke(
        "serve",
        "--host",
        "0.0.0.0",
        "--data-dir",
        str(tmp_path),
        "--admin",
        "one:p:w@1",
        "--admin",
        "two:pw2",
        "--config",
        str(config),
        env={"COUCHPOINT_ADMINS": f"fromenv:{hashed_env}", "COUCHPOINT_PASSWORD_ITERATIONS": "1000"},
    )
    assert result.exit_code == 0, result.output
    assert "admin party" not in result.output
    assert recorder.settings is not None
    admins = recorder.settings.admins
    assert set(admins) == {"one", "two", "fromenv"}  # the environment wins over the file
    assert admins["fromenv"] == hashed_env
    for name, password in (("one", "p:w@1"), ("two", "pw2")):
        assert password not in admins[name]
        parsed = PasswordHash.from_config(admins[name])
        assert parsed is not None and parsed.verify(password)


def test_bad_admin_option_is_a_usage_error(recorder: Recorder, tmp_path: Path) -> None:
    result = invoke("serve", "--data-dir", str(tmp_path), "--admin", "no-colon")
    assert result.exit_code == 2 and "NAME:PASSWORD" in result.output


def test_hash_password_prints_a_usable_hash() -> None:
    result = invoke("hash-password", "--password", "s3cret", "--iterations", "1000")
    assert result.exit_code == 0, result.output
    parsed = PasswordHash.from_config(result.output.strip())
    assert parsed is not None and parsed.verify("s3cret")


def test_user_add_creates_a_user_who_can_log_in(tmp_path: Path) -> None:
    env = {"COUCHPOINT_PASSWORD_ITERATIONS": "1000", "COUCHPOINT_PERUSER": "true"}
    args = ["user", "add", "carol", "--password", "pw", "--role", "staff", "--data-dir", str(tmp_path)]
    result = invoke(*args, env=env)
    assert result.exit_code == 0, result.output
    assert "user carol saved" in result.output
    result = invoke("user", "add", "carol", "--password", "pw2", "--data-dir", str(tmp_path), env=env)
    assert result.exit_code == 0, result.output

    async def check() -> None:
        from couchpoint.auth import load_user
        from couchpoint.database import Server
        from couchpoint.storage.sqlite import SQLiteStorage

        settings = Settings(data_dir=tmp_path)
        server = Server(SQLiteStorage(settings.sqlite_path), settings)
        await server.start()
        try:
            account = await load_user(server, "carol")
            assert account is not None and account.password.verify("pw2") and account.roles == ()
            assert "userdb-" + b"carol".hex() in await server.all_dbs()
        finally:
            await server.close()

    anyio.run(check)
