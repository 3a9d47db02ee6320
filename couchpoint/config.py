"""Server settings: one frozen dataclass, filled from keyword arguments or the environment.

Every field can be set with an environment variable ``COUCHPOINT_<FIELD>`` (upper case);
the CLI (:mod:`couchpoint.cli`) maps its options onto the same fields.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_PORT = 5984
"""CouchDB's port; both replicators treat it as the default."""


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def parse_admins(raw: str) -> dict[str, str]:
    """``name:password,name2:password2`` (env ``COUCHPOINT_ADMINS``) as a dict.

    The password part may be CouchDB's hashed form ``-pbkdf2:sha256-<key>,<salt>,<n>``,
    whose own two commas belong to it."""
    parts = raw.split(",")
    admins: dict[str, str] = {}
    i = 0
    while i < len(parts):
        item = parts[i].strip()
        i += 1
        name, sep, password = item.partition(":")
        if not sep or not name:
            continue
        if password.startswith("-pbkdf2"):
            password = ",".join([password, *(p.strip() for p in parts[i : i + 2])])
            i += 2
        admins[name] = password
    return admins


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Settings from a TOML file: top-level keys are :class:`Settings` field names, and
    an ``[admins]`` table maps names to passwords or ``-pbkdf2...`` hashes.

    Raises ``ValueError`` for unreadable TOML or an unknown key."""
    import tomllib

    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"config file {path}: {exc}") from exc
    known = {f.name for f in fields(Settings)} - {"extra"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        default = getattr(Settings, key, None)
        if key == "admins":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ValueError(f"config file {path}: [admins] maps names to password strings")
            values[key] = dict(value)
        elif key == "data_dir":
            values[key] = Path(value)
        elif isinstance(default, tuple):
            values[key] = tuple(value) if isinstance(value, list) else _split_list(str(value))
        else:
            values[key] = value
    return values


@dataclass(frozen=True)
class Settings:
    """couchpoint's configuration.

    ``host``/``port``: where ``couchpoint serve`` listens.  ``data_dir``: the folder that
    holds the SQLite file (``couchpoint.sqlite3``) and thus the server uuid.
    ``cors_origins``: allowed browser origins (``"*"`` = any; the Origin is always echoed,
    never ``*``, because PouchDB sends credentials).  ``cors_credentials``: send
    ``Access-Control-Allow-Credentials: true``.  ``max_request_size`` /
    ``max_document_size``: bytes, exceeded → 413 (CouchDB defaults 4 GiB / 8 MB; ours are
    256 MiB / 8 MB).  ``max_attachment_size``: bytes of one attachment (1 GiB, 413
    ``attachment_too_large``).  ``compressible_types``: attachment types stored
    gzip-encoded, as CouchDB's ``[attachments] compressible_types``.
    ``changes_timeout_ms``: the cap and default of ``_changes``
    ``timeout`` (CouchDB: 60000).  ``decode_plus_to_space``: treat a raw ``+`` in a path as
    a space (CouchDB's default) instead of keeping it (RFC 3986, our default).
    ``admins``: server admins as ``{name: password}`` (env ``COUCHPOINT_ADMINS`` as
    ``name:password,name2:password2``); none = "admin party" (everyone is admin).
    ``secret``: key for signing ``AuthSession`` cookies (random per start when empty).
    ``session_timeout_s``: cookie lifetime (CouchDB default 600 s).

    Security (docs/security.md): ``default_security``: the ``_security`` object stored on
    a new database, ``admin_only`` (CouchDB 3) or ``everyone`` (public).
    ``admin_only_all_dbs``: ``GET /_all_dbs`` needs a server admin.
    ``password_iterations``: PBKDF2-SHA256 iterations of new password hashes.
    ``lockout_threshold`` / ``lockout_window_s``: wrong passwords per user and client
    address before its logins answer 403 for the rest of the window (0: off).
    ``jwt_secret`` (HS256) / ``jwt_public_key`` (RS256, PEM text or a PEM file's path):
    accept ``Authorization: Bearer`` tokens; ``jwt_roles_claim`` (dotted path) holds the
    roles, ``jwt_required_claims`` are required besides ``exp`` and ``sub``.
    ``peruser``: create ``userdb-<hex of name>`` for every new ``_users`` user (CouchDB's
    ``couch_peruser``); ``peruser_delete_dbs``: delete it with the user.
    ``header_timeout_s``: time a client has to send a complete request head (closed
    after); ``body_timeout_s``: longest pause while sending a request body (408);
    ``keep_alive_timeout_s``: idle keep-alive connections are closed after it;
    ``max_header_size``: bytes of a request head (larger: 400).
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    data_dir: Path = Path("./couchpoint-data")
    cors_origins: tuple[str, ...] = ("*",)
    cors_credentials: bool = True
    max_request_size: int = 256 * 1024 * 1024
    max_document_size: int = 8_000_000
    max_attachment_size: int = 1024 * 1024 * 1024
    compressible_types: tuple[str, ...] = (
        "text/*",
        "application/javascript",
        "application/json",
        "application/xml",
    )
    changes_timeout_ms: int = 60_000
    decode_plus_to_space: bool = False
    log_level: str = "info"
    admins: Mapping[str, str] = field(default_factory=dict)
    secret: str = ""
    session_timeout_s: int = 600
    default_security: str = "admin_only"
    admin_only_all_dbs: bool = True
    password_iterations: int = 600_000
    lockout_threshold: int = 5
    lockout_window_s: int = 300
    jwt_secret: str = ""
    jwt_public_key: str = ""
    jwt_roles_claim: str = "_couchdb.roles"
    jwt_required_claims: tuple[str, ...] = ()
    peruser: bool = False
    peruser_delete_dbs: bool = False
    header_timeout_s: int = 10
    body_timeout_s: int = 60
    keep_alive_timeout_s: int = 5
    max_header_size: int = 65536
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file inside ``data_dir``."""
        return Path(self.data_dir) / "couchpoint.sqlite3"

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the given fields replaced (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from a TOML config file (``config_file=`` or ``COUCHPOINT_CONFIG``),
        then ``COUCHPOINT_*`` environment variables, then ``overrides``.

        Raises ``ValueError`` for a value that does not parse (e.g. a non-integer port).
        """
        env = os.environ if environ is None else environ
        config_file = overrides.pop("config_file", None) or env.get("COUCHPOINT_CONFIG")
        values: dict[str, Any] = load_config_file(config_file) if config_file else {}
        for f in fields(cls):
            raw = env.get(f"COUCHPOINT_{f.name.upper()}")
            if raw is None or f.name == "extra":
                continue
            default = getattr(cls, f.name, None)
            if isinstance(default, bool):
                values[f.name] = raw.strip().lower() in {"1", "true", "yes", "on"}
            elif isinstance(default, int):
                values[f.name] = int(raw)
            elif isinstance(default, tuple):
                values[f.name] = _split_list(raw)
            elif f.name == "admins":
                values[f.name] = parse_admins(raw)
            elif f.name == "data_dir":
                values[f.name] = Path(raw)
            else:
                values[f.name] = raw
        return cls(**values).with_overrides(**overrides)
