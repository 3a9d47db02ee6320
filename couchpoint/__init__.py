"""couchpoint: an async CouchDB-replication endpoint (ASGI) on a revision-tree store."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "create_app"]


def __getattr__(name: str) -> object:
    if name == "create_app":
        from couchpoint.http.app import create_app

        return create_app
    raise AttributeError(name)
