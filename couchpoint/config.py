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
        """Settings from ``COUCHPOINT_*`` environment variables, then ``overrides``.

        Raises ``ValueError`` for a value that does not parse (e.g. a non-integer port).
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
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
                values[f.name] = dict(item.split(":", 1) for item in _split_list(raw) if ":" in item)
            elif f.name == "data_dir":
                values[f.name] = Path(raw)
            else:
                values[f.name] = raw
        return cls(**values).with_overrides(**overrides)
