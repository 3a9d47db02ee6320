"""couchpoint: an async CouchDB-replication endpoint (ASGI) on a revision-tree store.

The public API, importable from here (each name is loaded on first use, so ``import
couchpoint`` stays light):

* :func:`create_app` -- the ASGI app (:mod:`couchpoint.http.app`);
* :class:`Settings` -- its configuration (:mod:`couchpoint.config`);
* :class:`Hooks` -- Python hooks replacing CouchDB's JavaScript design functions
  (:mod:`couchpoint.hooks`);
* :class:`CouchError`, :class:`Forbidden`, :class:`Unauthorized` -- errors a hook raises
  (:mod:`couchpoint.errors`).

Storage backends live in :mod:`couchpoint.storage` (``MemoryStorage``, ``SQLiteStorage``
and the protocol), test helpers in :mod:`couchpoint.testing`.  See ``docs/embedding.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "CouchError",
    "Forbidden",
    "Hooks",
    "Settings",
    "Unauthorized",
    "__version__",
    "create_app",
]

_LAZY = {
    "create_app": ("couchpoint.http.app", "create_app"),
    "Settings": ("couchpoint.config", "Settings"),
    "Hooks": ("couchpoint.hooks", "Hooks"),
    "CouchError": ("couchpoint.errors", "CouchError"),
    "Forbidden": ("couchpoint.errors", "Forbidden"),
    "Unauthorized": ("couchpoint.errors", "Unauthorized"),
}

if TYPE_CHECKING:
    from couchpoint.config import Settings
    from couchpoint.errors import CouchError, Forbidden, Unauthorized
    from couchpoint.hooks import Hooks
    from couchpoint.http.app import create_app


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'couchpoint' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
