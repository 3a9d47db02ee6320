"""The ``couchpoint`` command: ``couchpoint serve`` runs the ASGI app under uvicorn.

Every ``serve`` option can also come from its ``COUCHPOINT_*`` environment variable; a
command-line option wins over the environment, which wins over the defaults in
:class:`couchpoint.config.Settings`.  Settings without an option of their own (CORS, size
limits, ...) are read from the environment by :meth:`Settings.from_env`.

``--workers N`` (N > 1) runs N uvicorn worker processes on one socket and one SQLite
file.  uvicorn starts each worker from an import string, so the settings travel through
the environment: ``serve`` writes the resolved options (and a cookie secret shared by
all workers) to ``COUCHPOINT_*`` variables, and each worker builds its app with
:func:`worker_app` from them.  Writes made through one worker wake the ``_changes``
feeds of the others through :class:`couchpoint.notify.SeqWatcher` (``docs/feeds.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import secrets
import socket
from pathlib import Path
from typing import Any

import click
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from couchpoint import __version__
from couchpoint.auth import is_local_client
from couchpoint.config import Settings
from couchpoint.http.limits import HeadTimeoutMixin

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def build_app(settings: Settings) -> Any:
    """The ASGI app for ``serve``: the default SQLite storage in ``settings.data_dir``."""
    from couchpoint.http import limits
    from couchpoint.http.app import create_app

    limits.configure(settings)
    app = create_app(settings=settings)
    app.add_middleware(limits.BodyTimeout, timeout_s=settings.body_timeout_s)
    return app


GC_THRESHOLDS = (10_000, 20, 100)
"""CPython's cyclic GC thresholds for a ``serve`` process (default: 700, 10, 10)."""


def tune_gc() -> None:
    """Set the GC of a server process for thousands of open feeds.

    Each open feed keeps about a hundred long-lived objects (connection, request, tasks).
    With CPython's default thresholds, waking 5,000 feeds allocates enough to trigger
    collections that scan all of them again and again, in the middle of the fan-out: p99
    about 600 ms instead of 230 ms (docs/benchmarks.md).  Rarer collections fix that."""
    gc.set_threshold(*GC_THRESHOLDS)


def worker_app() -> Any:
    """The app of one ``serve --workers N`` worker process: settings from ``COUCHPOINT_*``
    (written by ``serve``; uvicorn calls this factory in each worker)."""
    app = build_app(Settings.from_env())
    tune_gc()
    return app


class NoDelayH11Protocol(HeadTimeoutMixin, H11Protocol):
    """uvicorn's h11 protocol with ``TCP_NODELAY`` on every connection (and the request
    head timeout of :mod:`couchpoint.http.limits`).

    With ``--workers``, uvicorn binds the socket itself (``socket.socket(family)``, proto
    0), and asyncio sets ``TCP_NODELAY`` only on sockets whose proto is TCP: without it,
    Nagle holds a feed's small chunk (a row, a heartbeat) until the client ACKs the
    previous one, up to 40 ms later."""

    def connection_made(self, transport: asyncio.Transport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


def _worker_environment(settings: Settings) -> dict[str, str]:
    """What a worker needs from the parent: the options given on the command line, and one
    cookie secret for all (else each worker signs ``AuthSession`` cookies with its own
    random key, and a cookie made by one is refused by the others)."""
    return {
        "COUCHPOINT_HOST": settings.host,
        "COUCHPOINT_PORT": str(settings.port),
        "COUCHPOINT_DATA_DIR": str(Path(settings.data_dir).resolve()),
        "COUCHPOINT_LOG_LEVEL": settings.log_level,
        "COUCHPOINT_SECRET": settings.secret or secrets.token_hex(32),
        # hashed once here, so every worker checks the same salt (cookies carry it)
        "COUCHPOINT_ADMINS": ",".join(f"{name}:{value}" for name, value in settings.admins.items()),
    }


def _is_loopback(host: str) -> bool:
    return bool(host) and is_local_client(host)


def _hashed_admins(settings: Settings, extra: tuple[str, ...]) -> dict[str, str]:
    """Admins from the config file / environment plus ``--admin`` options, every password
    replaced by its salted hash (plain passwords are not kept)."""
    from couchpoint.auth import PasswordHash

    admins = dict(settings.admins)
    for item in extra:
        name, sep, password = item.partition(":")
        if not sep or not name:
            raise click.BadParameter("expected NAME:PASSWORD", param_hint="--admin")
        admins[name] = password
    hashed: dict[str, str] = {}
    for name, value in admins.items():
        try:
            found = PasswordHash.from_config(value)
        except ValueError as exc:
            raise click.UsageError(f"admin {name}: {exc}") from exc
        hashed[name] = (found or PasswordHash.create(value, settings.password_iterations)).to_config()
    return hashed


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="couchpoint", message="%(prog)s %(version)s")
def main() -> None:
    """couchpoint: a server that PouchDB and CouchDB 3.x replicate with."""


@main.command()
@click.option(
    "--host",
    envvar="COUCHPOINT_HOST",
    show_envvar=True,
    show_default=Settings.host,
    help="Interface to listen on.",
)
@click.option(
    "--port",
    envvar="COUCHPOINT_PORT",
    type=click.IntRange(0, 65535),
    show_envvar=True,
    show_default=str(Settings.port),
    help="TCP port to listen on.",
)
@click.option(
    "--data-dir",
    envvar="COUCHPOINT_DATA_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    show_envvar=True,
    show_default=str(Settings.data_dir),
    help="Folder for the SQLite file (created if missing).",
)
@click.option(
    "--log-level",
    envvar="COUCHPOINT_LOG_LEVEL",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    show_envvar=True,
    show_default=Settings.log_level,
    help="uvicorn's log level.",
)
@click.option(
    "--workers",
    envvar="COUCHPOINT_WORKERS",
    type=click.IntRange(1, 256),
    default=1,
    show_envvar=True,
    show_default=True,
    help="Worker processes sharing the port and the SQLite file.",
)
@click.option(
    "--admin",
    "admins",
    multiple=True,
    metavar="NAME:PASSWORD",
    help="A server admin (repeatable; added to COUCHPOINT_ADMINS and the config file's).",
)
@click.option(
    "--config",
    "config_file",
    envvar="COUCHPOINT_CONFIG",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    show_envvar=True,
    help="TOML file of settings (field names as keys, an [admins] table).",
)
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    log_level: str | None,
    workers: int,
    admins: tuple[str, ...] = (),
    config_file: Path | None = None,
) -> None:
    """Serve the CouchDB replication API over HTTP."""
    try:
        settings = Settings.from_env(
            host=host,
            port=port,
            data_dir=data_dir,
            log_level=log_level.lower() if log_level else None,
            config_file=config_file,
        )
    except ValueError as exc:
        raise click.UsageError(f"bad COUCHPOINT_* environment variable or config file: {exc}") from exc
    settings = settings.with_overrides(admins=_hashed_admins(settings, admins))
    if not settings.admins:
        if not _is_loopback(settings.host):
            raise click.UsageError(
                f"refusing to serve on {settings.host} without a server admin: anyone who can reach "
                "it could do anything. Add one with --admin NAME:PASSWORD (or COUCHPOINT_ADMINS, or "
                "the config file's [admins]), or listen on a loopback address such as 127.0.0.1."
            )
        click.echo(
            "couchpoint: no server admin configured: running as an admin party (every request "
            f"is a server admin), allowed only because {settings.host} is a loopback address. "
            "Add --admin NAME:PASSWORD before exposing it.",
            err=True,
        )
    try:
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.FileError(str(settings.data_dir), hint=str(exc)) from exc
    app: Any
    options: dict[str, Any] = {}
    if workers == 1:
        app = build_app(settings)
        tune_gc()
        options = {"http": NoDelayH11Protocol}
    else:
        os.environ.update(_worker_environment(settings))
        app = "couchpoint.cli:worker_app"
        if config_file is not None:
            os.environ["COUCHPOINT_CONFIG"] = str(Path(config_file).resolve())
        options = {"factory": True, "workers": workers, "http": "couchpoint.cli:NoDelayH11Protocol"}
    click.echo(
        f"couchpoint {__version__} serving {_url(settings.host, settings.port)}"
        f" (data file: {settings.sqlite_path.resolve()}"
        f"{f', {workers} workers' if workers > 1 else ''})",
        err=True,
    )
    uvicorn.run(
        app,
        **options,
        host=settings.host,
        port=settings.port,
        server_header=False,
        log_level=settings.log_level,
        timeout_keep_alive=settings.keep_alive_timeout_s,
        h11_max_incomplete_event_size=settings.max_header_size,
        lifespan="on",
        # Live feeds (PouchDB's heartbeat longpoll) never end by themselves: give open
        # connections a few seconds on SIGTERM, then close them (clients retry).
        timeout_graceful_shutdown=3,
    )


@main.command("hash-password")
@click.password_option("--password", prompt="Password", help="The password (prompted for if not given).")
@click.option("--iterations", type=click.IntRange(1), default=Settings.password_iterations, show_default=True)
def hash_password_command(password: str, iterations: int) -> None:
    """Print a salted PBKDF2-SHA256 hash for a server admin (COUCHPOINT_ADMINS, --admin
    or the config file accept it in place of the password)."""
    from couchpoint.auth import hash_password

    click.echo(hash_password(password, iterations))


@main.group()
def user() -> None:
    """Manage the users of the _users database."""


@user.command("add")
@click.argument("name")
@click.password_option("--password", prompt="Password", help="The password (prompted for if not given).")
@click.option("--role", "roles", multiple=True, help="A role (repeatable).")
@click.option(
    "--data-dir",
    envvar="COUCHPOINT_DATA_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    show_envvar=True,
    help="Folder of the SQLite file.",
)
@click.option(
    "--config",
    "config_file",
    envvar="COUCHPOINT_CONFIG",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML file of settings.",
)
def user_add(
    name: str, password: str, roles: tuple[str, ...], data_dir: Path | None, config_file: Path | None
) -> None:
    """Create the user NAME (or set their password and roles): the document
    org.couchdb.user:NAME in _users, with the password stored hashed."""
    import anyio

    from couchpoint import errors
    from couchpoint.database import Server
    from couchpoint.storage.sqlite import SQLiteStorage
    from couchpoint.users import add_user

    try:
        settings = Settings.from_env(data_dir=data_dir, config_file=config_file)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc

    async def run() -> str:
        server = Server(SQLiteStorage(settings.sqlite_path), settings)
        await server.start()
        try:
            return await add_user(
                server,
                name,
                password,
                roles,
                iterations=settings.password_iterations,
                policy=settings.default_security,
                peruser=settings.peruser,
            )
        finally:
            await server.close()

    try:
        rev = anyio.run(run)
    except errors.CouchError as exc:
        raise click.ClickException(f"{exc.error}: {exc.reason}") from exc
    click.echo(f"user {name} saved in {settings.sqlite_path} (rev {rev})")
