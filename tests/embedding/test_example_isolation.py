"""The example app: a user never receives another user's documents, through any route.

Bob owns several todos -- plain, with an attachment, deleted, conflicted, and one made
by the app itself through SQL -- whose titles and attachment carry the marker
``BOBSECRET``.  Alice then reads through every route a CouchDB client can use; no answer may
contain Bob's ids, titles, revisions or attachment bytes.  Each case also checks that
Alice does get her own todo where the route lists documents, so a broken route cannot
pass by answering nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from .conftest import ALICE
from .conftest import BOB as BOB_AUTH

DB = "/sync/todos"
MARK = "BOBSECRET"
"""In every title and attachment of Bob's (never in a request of Alice's)."""
BOB = "bobdoc"
"""The prefix of Bob's doc ids."""
ALICE_ID = "alice-1"


@dataclass
class World:
    client: httpx.AsyncClient
    app: FastAPI
    bob_ids: list[str] = field(default_factory=list)
    bob_revs: list[str] = field(default_factory=list)

    @property
    def secrets(self) -> list[str]:
        return [MARK, *self.bob_ids, *self.bob_revs]

    def check(self, response: httpx.Response) -> str:
        """The response's text, after checking it holds none of Bob's secrets -- except
        those Alice sent herself (an id she asks for, a rev she names, echoed back)."""
        sent = str(response.request.url) + response.request.content.decode("utf-8", "replace")
        text = response.content.decode("utf-8", "replace")
        for secret in self.secrets:
            if secret not in sent:
                assert secret not in text, f"Bob's {secret!r} leaked to Alice:\n{text[:2000]}"
        return text

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        response = await self.client.get(url, auth=ALICE, **kwargs)
        self.check(response)
        return response

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        response = await self.client.post(url, auth=ALICE, **kwargs)
        self.check(response)
        return response


async def _bob_writes(client: httpx.AsyncClient, world: World) -> None:
    async def put(doc_id: str, body: dict[str, Any]) -> str:
        response = await client.put(f"{DB}/{doc_id}", json=body, auth=BOB_AUTH)
        assert response.status_code in (200, 201), response.text
        rev: str = response.json()["rev"]
        world.bob_revs.append(rev)
        return rev

    todo = {"owner": "bob", "title": f"{MARK} groceries"}
    await put(f"{BOB}-plain", todo)
    rev = await put(f"{BOB}-att", todo)
    att = await client.put(
        f"{DB}/{BOB}-att/secret.txt",
        params={"rev": rev},
        content=f"{MARK} attachment bytes".encode(),
        headers={"Content-Type": "text/plain"},
        auth=BOB_AUTH,
    )
    assert att.status_code == 201, att.text
    world.bob_revs.append(att.json()["rev"])
    rev = await put(f"{BOB}-deleted", todo)
    await put(f"{BOB}-deleted", {"_rev": rev, "_deleted": True, "owner": "bob"})
    await put(f"{BOB}-conflict", todo)
    branch = {
        "_id": f"{BOB}-conflict",
        "_rev": "1-" + "b" * 32,
        "owner": "bob",
        "title": f"{MARK} other branch",
    }
    pushed = await client.post(f"{DB}/_bulk_docs", json={"docs": [branch], "new_edits": False}, auth=BOB_AUTH)
    assert pushed.json() == [], pushed.text
    world.bob_revs.append(branch["_rev"])
    made = await client.post("/api/todos", json={"title": f"{MARK} from the app"}, auth=BOB_AUTH)
    assert made.status_code == 201
    world.bob_ids += [
        f"{BOB}-plain",
        f"{BOB}-att",
        f"{BOB}-deleted",
        f"{BOB}-conflict",
        made.json()["id"],
    ]
    # Bob's app-made todo is in the feed (the app edit became a revision).
    feed = (await client.get(f"{DB}/_changes", auth=BOB_AUTH)).json()
    assert {row["id"] for row in feed["results"]} == set(world.bob_ids)
    world.bob_revs += [r["rev"] for row in feed["results"] for r in row["changes"]]


@pytest.fixture
async def world(client: httpx.AsyncClient, todo_app: FastAPI) -> World:
    world = World(client, todo_app)
    await _bob_writes(client, world)
    mine = await client.put(f"{DB}/{ALICE_ID}", json={"owner": "alice", "title": "alice's todo"}, auth=ALICE)
    assert mine.status_code == 201
    return world


def _ids(rows: list[dict[str, Any]]) -> set[str]:
    return {row.get("id") or row.get("key") for row in rows}


# -- the routes ------------------------------------------------------------------------------


async def doc_get(w: World) -> None:
    for doc_id in w.bob_ids:
        for params in ({}, {"revs": "true", "revs_info": "true", "conflicts": "true", "meta": "true"}):
            response = await w.get(f"{DB}/{doc_id}", params=params)
            assert response.status_code == 404
    assert (await w.get(f"{DB}/{ALICE_ID}")).status_code == 200


async def doc_get_by_rev(w: World) -> None:
    for doc_id in w.bob_ids:
        for rev in w.bob_revs:
            assert (await w.get(f"{DB}/{doc_id}", params={"rev": rev})).status_code == 404


async def open_revs_json(w: World) -> None:
    for doc_id in w.bob_ids:
        assert (await w.get(f"{DB}/{doc_id}", params={"open_revs": "all"})).status_code == 404
        listed = await w.get(f"{DB}/{doc_id}", params={"open_revs": json.dumps(w.bob_revs), "revs": "true"})
        assert all("ok" not in entry for entry in listed.json())
    assert (await w.get(f"{DB}/{ALICE_ID}", params={"open_revs": "all"})).json()[0]["ok"]["_id"] == ALICE_ID


async def open_revs_multipart(w: World) -> None:
    mixed = {"Accept": "multipart/mixed"}
    for doc_id in w.bob_ids:
        for revs in ("all", json.dumps(w.bob_revs)):
            response = await w.get(
                f"{DB}/{doc_id}",
                params={"open_revs": revs, "revs": "true", "attachments": "true", "latest": "true"},
                headers=mixed,
            )
            assert response.status_code in (200, 404)
    own = await w.get(f"{DB}/{ALICE_ID}", params={"open_revs": "all"}, headers=mixed)
    assert ALICE_ID in own.text


async def bulk_get_json(w: World) -> None:
    docs = [{"id": i} for i in w.bob_ids] + [{"id": i, "rev": r} for i in w.bob_ids for r in w.bob_revs]
    response = await w.post(
        f"{DB}/_bulk_get", params={"revs": "true"}, json={"docs": [*docs, {"id": ALICE_ID}]}
    )
    results = response.json()["results"]
    assert all("ok" not in entry for result in results[:-1] for entry in result["docs"])
    assert results[-1]["docs"][0]["ok"]["_id"] == ALICE_ID


async def bulk_get_multipart(w: World) -> None:
    docs = [{"id": i} for i in w.bob_ids] + [{"id": ALICE_ID}]
    response = await w.post(
        f"{DB}/_bulk_get",
        params={"revs": "true", "attachments": "true"},
        json={"docs": docs},
        headers={"Accept": "multipart/related"},
    )
    assert response.status_code == 200
    assert ALICE_ID in response.text


async def all_docs(w: World) -> None:
    for params in (
        {},
        {"include_docs": "true"},
        {"include_docs": "true", "conflicts": "true", "descending": "true"},
        {"startkey": json.dumps(BOB), "endkey": json.dumps(BOB + "\ufff0")},
        {"skip": "1", "limit": "10"},
    ):
        rows = (await w.get(f"{DB}/_all_docs", params=params)).json()["rows"]
        if "startkey" not in params and "skip" not in params:
            assert _ids(rows) == {ALICE_ID}


async def all_docs_keys(w: World) -> None:
    await _all_docs_keys(w, [i for i in w.bob_ids if i != f"{BOB}-deleted"])


async def all_docs_keys_deleted(w: World) -> None:
    await _all_docs_keys(w, [f"{BOB}-deleted"])


async def _all_docs_keys(w: World, bob_keys: list[str]) -> None:
    keys = [*bob_keys, ALICE_ID]
    for params in ({}, {"include_docs": "true"}, {"include_docs": "true", "conflicts": "true"}):
        got = await w.get(f"{DB}/_all_docs", params={**params, "keys": json.dumps(keys)})
        posted = await w.post(f"{DB}/_all_docs", params=params, json={"keys": keys})
        for response in (got, posted):
            rows = response.json()["rows"]
            assert all(row.get("error") == "not_found" for row in rows[:-1]), rows
            assert rows[-1]["id"] == ALICE_ID


async def changes_normal(w: World) -> None:
    for params in (
        {},
        {"include_docs": "true"},
        {"style": "all_docs"},
        {"style": "all_docs", "include_docs": "true", "conflicts": "true"},
        {"descending": "true"},
        {"since": "0", "limit": "2"},
    ):
        rows = (await w.get(f"{DB}/_changes", params=params)).json()["results"]
        assert ALICE_ID in _ids(rows)


async def changes_filtered(w: World) -> None:
    doc_ids = await w.post(
        f"{DB}/_changes", params={"filter": "_doc_ids", "include_docs": "true"}, json={"doc_ids": w.bob_ids}
    )
    assert doc_ids.json()["results"] == []
    selector = await w.post(
        f"{DB}/_changes",
        params={"filter": "_selector", "include_docs": "true", "style": "all_docs"},
        json={"selector": {"owner": {"$exists": True}}},
    )
    assert _ids(selector.json()["results"]) == {ALICE_ID}


async def changes_longpoll(w: World) -> None:
    for params in ({"since": "0"}, {"since": "0", "include_docs": "true", "style": "all_docs"}):
        rows = (await w.get(f"{DB}/_changes", params={"feed": "longpoll", **params})).json()["results"]
        assert _ids(rows) == {ALICE_ID}


async def changes_continuous(w: World) -> None:
    for params in ({}, {"include_docs": "true", "style": "all_docs", "conflicts": "true"}):
        text = (
            await w.get(
                f"{DB}/_changes", params={"feed": "continuous", "since": "0", "timeout": "50", **params}
            )
        ).text
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        assert {row["id"] for row in rows if "id" in row} == {ALICE_ID}


async def _live(w: World, feed: str) -> str:
    """A feed waiting from ``now`` while Bob writes (new doc, new revision, app edit),
    then Alice writes: only Alice's change may arrive."""
    params = {"feed": feed, "since": "now", "include_docs": "true", "style": "all_docs", "limit": "1"}
    database = await w.app.state.sync.state.server.get_db("todos")  # loaded before the feed
    waiting = asyncio.create_task(w.client.get(f"{DB}/_changes", params=params, auth=ALICE))
    await _until_a_feed_waits(database)
    bob = {"owner": "bob", "title": f"{MARK} live"}
    for n in range(3):
        made = await w.client.put(f"{DB}/{BOB}-live{n}", json=bob, auth=BOB_AUTH)
        w.bob_revs.append(made.json()["rev"])
    await w.client.post("/api/todos", json={"title": f"{MARK} live app"}, auth=BOB_AUTH)
    await w.client.put(f"{DB}/alice-live", json={"owner": "alice", "title": "mine"}, auth=ALICE)
    response = await asyncio.wait_for(waiting, timeout=30)
    return w.check(response)


async def _until_a_feed_waits(database: Any) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while not database.notifier.waiting:
        assert asyncio.get_running_loop().time() < deadline, "the feed never started waiting"
        await asyncio.sleep(0.01)


async def changes_longpoll_live(w: World) -> None:
    rows = json.loads(await _live(w, "longpoll"))["results"]
    assert _ids(rows) == {"alice-live"}


async def changes_continuous_live(w: World) -> None:
    # limit=1: the feed ends with its first row, which must be Alice's.
    text = await _live(w, "continuous")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert {row["id"] for row in rows if "id" in row} == {"alice-live"}


async def attachments(w: World) -> None:
    url = f"{DB}/{BOB}-att/secret.txt"
    assert (await w.get(url)).status_code == 404
    head = await w.client.head(url, auth=ALICE)
    assert head.status_code == 404
    for rev in w.bob_revs:
        assert (await w.get(url, params={"rev": rev})).status_code == 404
    assert (await w.get(url, headers={"Range": "bytes=0-3"})).status_code == 404


async def app_api(w: World) -> None:
    todos = (await w.get("/api/todos")).json()
    assert [t["id"] for t in todos] == [ALICE_ID]


ROUTES: dict[str, Callable[[World], Awaitable[None]]] = {
    fn.__name__: fn
    for fn in (
        doc_get,
        doc_get_by_rev,
        open_revs_json,
        open_revs_multipart,
        bulk_get_json,
        bulk_get_multipart,
        all_docs,
        all_docs_keys,
        all_docs_keys_deleted,
        changes_normal,
        changes_filtered,
        changes_longpoll,
        changes_continuous,
        changes_longpoll_live,
        changes_continuous_live,
        attachments,
        app_api,
    )
}


@pytest.mark.parametrize("route", list(ROUTES))
async def test_alice_never_receives_bobs_documents(world: World, route: str) -> None:
    await ROUTES[route](world)


async def test_bob_sees_his_own(world: World) -> None:
    rows = (await world.client.get(f"{DB}/_all_docs", auth=BOB_AUTH)).json()["rows"]
    assert _ids(rows) == set(world.bob_ids) - {f"{BOB}-deleted"}
    att = await world.client.get(f"{DB}/{BOB}-att/secret.txt", auth=BOB_AUTH)
    assert att.content == f"{MARK} attachment bytes".encode()
