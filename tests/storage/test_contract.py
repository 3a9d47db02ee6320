"""Run the packaged storage contract (:mod:`couchpoint.testing.storage_contract`) against
both shipped backends, as a third party would against theirs."""

from __future__ import annotations

from pathlib import Path

import pytest

from couchpoint.storage.memory import MemoryStorage
from couchpoint.storage.sqlite import SQLiteStorage
from couchpoint.testing.storage_contract import StorageContract, StorageFactory


class TestMemoryStorage(StorageContract):
    @pytest.fixture
    def storage_factory(self) -> StorageFactory:
        return StorageFactory(MemoryStorage)


class TestSQLiteStorage(StorageContract):
    @pytest.fixture
    def storage_factory(self, tmp_path: Path) -> StorageFactory:
        path = tmp_path / "couchpoint.sqlite"
        return StorageFactory(lambda: SQLiteStorage(path), reopen=True)
