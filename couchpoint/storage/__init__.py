"""Storage backends and the protocol they implement (see :mod:`couchpoint.storage.base`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from couchpoint.storage.base import (
    DbInfo,
    DbStore,
    DocInfo,
    DocSummary,
    DocWrite,
    LocalDoc,
    Revision,
    Storage,
    WriteTxn,
)
from couchpoint.storage.memory import MemoryStorage

if TYPE_CHECKING:
    from couchpoint.storage.sqlite import SQLiteStorage

__all__ = [
    "DbInfo",
    "DbStore",
    "DocInfo",
    "DocSummary",
    "DocWrite",
    "LocalDoc",
    "MemoryStorage",
    "Revision",
    "SQLiteStorage",
    "Storage",
    "WriteTxn",
]


def __getattr__(name: str) -> Any:
    # SQLiteStorage is imported lazily so that only code that uses it loads aiosqlite.
    if name == "SQLiteStorage":
        from couchpoint.storage.sqlite import SQLiteStorage

        return SQLiteStorage
    raise AttributeError(name)
