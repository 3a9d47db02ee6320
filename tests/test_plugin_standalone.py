"""The pytest plugin's fixtures, used as a project that only *talks* to CouchDB would.

This file imports nothing from couchpoint: ``couchpoint_client`` & co. come from the
``pytest11`` entry point that installing couchpoint registers.  It also runs unchanged
outside this repository, in pytest-asyncio's strict mode
(``tests/embedding/test_plugin_outside.py`` copies it into an empty folder and runs it).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

pytestmark = pytest.mark.asyncio


async def test_create_a_database_write_and_read_changes(couchpoint_client: httpx.AsyncClient) -> None:
    assert (await couchpoint_client.get("/")).json()["couchdb"] == "Welcome"
    assert (await couchpoint_client.put("/notes")).status_code == 201

    created = await couchpoint_client.put("/notes/n1", json={"text": "hello"})
    assert created.status_code == 201
    rev = created.json()["rev"]
    bulk = await couchpoint_client.post("/notes/_bulk_docs", json={"docs": [{"_id": "n2", "text": "two"}]})
    assert bulk.status_code == 201

    changes = (await couchpoint_client.get("/notes/_changes", params={"include_docs": "true"})).json()
    assert [row["id"] for row in changes["results"]] == ["n1", "n2"]
    assert changes["results"][0]["changes"] == [{"rev": rev}]
    assert changes["results"][0]["doc"]["text"] == "hello"
    assert changes["last_seq"] == 2

    doc = (await couchpoint_client.get("/notes/n1")).json()
    assert (doc["_id"], doc["_rev"], doc["text"]) == ("n1", rev, "hello")


async def test_couchpoint_db_is_created_for_the_test(
    couchpoint_client: httpx.AsyncClient, couchpoint_db: str
) -> None:
    info = (await couchpoint_client.get(f"/{couchpoint_db}")).json()
    assert (info["db_name"], info["doc_count"]) == (couchpoint_db, 0)


async def test_each_test_gets_a_fresh_server(couchpoint_client: httpx.AsyncClient) -> None:
    # The first test created "notes"; this one starts from nothing.
    assert (await couchpoint_client.get("/_all_dbs")).json() == []


async def test_a_longpoll_feed_wakes_on_a_concurrent_write(
    couchpoint_client: httpx.AsyncClient, couchpoint_db: str
) -> None:
    url = f"/{couchpoint_db}/_changes"
    poll = asyncio.create_task(couchpoint_client.get(url, params={"feed": "longpoll", "since": "now"}))
    # Write until the feed answers (it may start listening after the first write).
    deadline = asyncio.get_running_loop().time() + 10
    n = 0
    while not poll.done():
        assert asyncio.get_running_loop().time() < deadline, "the longpoll feed never answered"
        await couchpoint_client.put(f"/{couchpoint_db}/doc{n}", json={})
        n += 1
        await asyncio.wait({poll}, timeout=0.05)
    results = (await poll).json()["results"]
    assert results
    assert results[0]["id"].startswith("doc")


class TestWithAnAdmin:
    """Overriding ``couchpoint_options`` configures the app (here for this class only)."""

    @pytest.fixture
    def couchpoint_options(self) -> dict[str, object]:
        return {"admins": {"admin": "secret"}}

    async def test_options_override_configures_the_app(self, couchpoint_client: httpx.AsyncClient) -> None:
        denied = await couchpoint_client.put("/private")
        assert denied.status_code == 401
        assert denied.json()["error"] == "unauthorized"
        allowed = await couchpoint_client.put("/private", auth=("admin", "secret"))
        assert allowed.status_code == 201
