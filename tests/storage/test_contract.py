"""Run the storage contract (``contract.py``) against both shipped backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from couchpoint.storage.memory import MemoryStorage
from couchpoint.storage.sqlite import SQLiteStorage

from .contract import StorageContract, StorageFactory


class TestMemoryStorage(StorageContract):
    @pytest.fixture
    def storage_factory(self) -> StorageFactory:
        return StorageFactory(MemoryStorage)


class TestSQLiteStorage(StorageContract):
    @pytest.fixture
    def storage_factory(self, tmp_path: Path) -> StorageFactory:
        path = tmp_path / "couchpoint.sqlite"
        return StorageFactory(lambda: SQLiteStorage(path), reopen=True)
