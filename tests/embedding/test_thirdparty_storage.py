"""A third-party-style backend (``thirdparty_storage.py``, written only against the
public protocol) passes the packaged contract suite, and couchpoint serves it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from couchpoint.testing.storage_contract import StorageContract, StorageFactory

from .thirdparty_storage import JournalStorage


class TestJournalStorage(StorageContract):
    @pytest.fixture
    def storage_factory(self, tmp_path: Path) -> StorageFactory:
        return StorageFactory(lambda: JournalStorage(tmp_path / "journal"), reopen=True)


class TestServedByCouchpoint:
    """The plugin's ``couchpoint_storage`` fixture, overridden: the same HTTP API over the
    third-party backend."""

    @pytest.fixture
    def couchpoint_storage(self, tmp_path: Path) -> JournalStorage:
        return JournalStorage(tmp_path / "journal")

    async def test_documents_attachments_and_changes(
        self, couchpoint_client: httpx.AsyncClient, couchpoint_db: str
    ) -> None:
        db = f"/{couchpoint_db}"
        first = (await couchpoint_client.put(f"{db}/a", json={"n": 1})).json()
        second = (await couchpoint_client.put(f"{db}/a", json={"n": 2, "_rev": first["rev"]})).json()
        att = await couchpoint_client.put(
            f"{db}/b/hello.txt", content=b"hello world", headers={"Content-Type": "text/plain"}
        )
        assert att.status_code == 201
        changes = (await couchpoint_client.get(f"{db}/_changes")).json()
        assert [(r["id"], r["seq"]) for r in changes["results"]] == [("a", 2), ("b", 3)]
        assert (await couchpoint_client.get(f"{db}/a")).json()["n"] == 2
        body = await couchpoint_client.get(f"{db}/b/hello.txt")
        assert body.content == b"hello world"
        revs_diff = await couchpoint_client.post(f"{db}/_revs_diff", json={"a": [first["rev"], "9-x"]})
        assert revs_diff.json() == {"a": {"missing": ["9-x"], "possible_ancestors": [second["rev"]]}}
