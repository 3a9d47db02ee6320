"""The hooks (couchpoint.hooks) through HTTP: validate_doc_update (sync and async,
server-wide and per database), named _changes filters with query parameters, and
per-document read access.  The plugin's fixtures give the app; ``couchpoint_options``
carries the hooks."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from couchpoint import Forbidden, Hooks, Unauthorized

ADMIN = ("admin", "pw")


def no_drafts(new_doc: dict[str, Any], old_doc: dict[str, Any] | None, user_ctx: Any, security: Any) -> None:
    if new_doc.get("draft"):
        raise Forbidden("drafts stay local")


async def needs_author(
    new_doc: dict[str, Any], old_doc: dict[str, Any] | None, user_ctx: Any, security: Any
) -> None:
    await asyncio.sleep(0)  # a real async validator would look something up
    if not new_doc.get("_deleted") and "author" not in new_doc:
        raise Unauthorized("say who you are")


class TestValidateDocUpdate:
    @pytest.fixture
    def couchpoint_options(self) -> dict[str, Any]:
        return {"validate_doc_update": {"*": [no_drafts, needs_author]}}

    async def test_a_put_is_rejected_with_couchdbs_status_and_shape(
        self, couchpoint_client: httpx.AsyncClient, couchpoint_db: str
    ) -> None:
        url = f"/{couchpoint_db}/d"
        forbidden = await couchpoint_client.put(url, json={"draft": True, "author": "x"})
        assert (forbidden.status_code, forbidden.json()) == (
            403,
            {"error": "forbidden", "reason": "drafts stay local"},
        )
        unauthorized = await couchpoint_client.put(url, json={})
        assert (unauthorized.status_code, unauthorized.json()) == (
            401,
            {"error": "unauthorized", "reason": "say who you are"},
        )
        assert (await couchpoint_client.put(url, json={"author": "x"})).status_code == 201
        assert (await couchpoint_client.get(f"/{couchpoint_db}")).json()["update_seq"] == 1

    async def test_bulk_docs_reports_each_rejected_doc(
        self, couchpoint_client: httpx.AsyncClient, couchpoint_db: str
    ) -> None:
        docs = [{"_id": "a", "author": "x"}, {"_id": "b", "draft": True, "author": "x"}, {"_id": "c"}]
        response = await couchpoint_client.post(f"/{couchpoint_db}/_bulk_docs", json={"docs": docs})
        assert response.status_code == 201
        a, b, c = response.json()
        assert a["ok"] is True
        assert b == {"id": "b", "error": "forbidden", "reason": "drafts stay local"}
        assert c == {"id": "c", "error": "unauthorized", "reason": "say who you are"}

    async def test_replicated_writes_are_validated_too(
        self, couchpoint_client: httpx.AsyncClient, couchpoint_db: str
    ) -> None:
        doc = {"_id": "r", "_rev": "1-" + "a" * 32, "draft": True, "author": "x"}
        response = await couchpoint_client.post(
            f"/{couchpoint_db}/_bulk_docs", json={"docs": [doc], "new_edits": False}
        )
        assert response.json() == [
            {"id": "r", "rev": doc["_rev"], "error": "forbidden", "reason": "drafts stay local"}
        ]

    async def test_local_docs_are_not_validated(
        self, couchpoint_client: httpx.AsyncClient, couchpoint_db: str
    ) -> None:
        assert (
            await couchpoint_client.put(f"/{couchpoint_db}/_local/cp", json={"draft": True})
        ).status_code == 201


class TestValidatorArguments:
    seen: list[tuple[Any, ...]] = []

    @pytest.fixture
    def couchpoint_options(self) -> dict[str, Any]:
        self.seen.clear()

        def record(*args: Any) -> None:
            self.seen.append(args)

        return {"validate_doc_update": record, "admins": {"admin": "pw"}}

    async def test_new_old_user_and_security(
        self, couchpoint_client: httpx.AsyncClient, couchpoint_db: str
    ) -> None:
        first = (await couchpoint_client.put(f"/{couchpoint_db}/d", json={"n": 1}, auth=ADMIN)).json()
        await couchpoint_client.put(f"/{couchpoint_db}/d", json={"n": 2, "_rev": first["rev"]}, auth=ADMIN)
        (new1, old1, user1, security1), (new2, old2, _, _) = self.seen
        assert new1 == {"_id": "d", "_rev": first["rev"], "n": 1}
        assert old1 is None
        assert user1 == {"name": "admin", "roles": ["_admin"], "db": couchpoint_db}
        assert isinstance(security1, dict)
        assert old2 == new1
        assert new2["n"] == 2 and new2["_rev"].startswith("2-")


class TestPerDatabaseValidators:
    @pytest.fixture
    def couchpoint_options(self) -> dict[str, Any]:
        # Hooks(...) form: "strict" gets its own validator on top of the server-wide one.
        def strict(new_doc: dict[str, Any], *_: Any) -> None:
            if "title" not in new_doc:
                raise Forbidden("strict needs a title")

        return {"hooks": Hooks(validate_doc_update={"*": no_drafts, "strict": strict})}

    async def test_db_specific_and_server_wide(self, couchpoint_client: httpx.AsyncClient) -> None:
        for db in ("strict", "loose"):
            assert (await couchpoint_client.put(f"/{db}")).status_code == 201
        assert (await couchpoint_client.put("/loose/a", json={})).status_code == 201
        assert (await couchpoint_client.put("/strict/a", json={})).json()["reason"] == "strict needs a title"
        for db in ("strict", "loose"):
            drafted = await couchpoint_client.put(f"/{db}/b", json={"title": "t", "draft": True})
            assert drafted.json()["reason"] == "drafts stay local"


def by_type(doc: dict[str, Any], req: dict[str, Any]) -> bool:
    return doc.get("type") == req["query"].get("type")


class TestNamedFilters:
    @pytest.fixture
    def couchpoint_options(self) -> dict[str, Any]:
        return {
            "filters": {
                "app/by_type": by_type,
                "notes": {"app/by_type": lambda doc, req: doc.get("kind") == req["query"].get("type")},
                "app/whoami": lambda doc, req: req["userCtx"]["roles"] == ["_admin"],
            }
        }

    async def _changes(self, client: httpx.AsyncClient, db: str, **params: str) -> list[str]:
        response = await client.get(f"/{db}/_changes", params=params)
        assert response.status_code == 200, response.text
        return [row["id"] for row in response.json()["results"]]

    async def test_query_params_reach_the_filter(
        self, couchpoint_client: httpx.AsyncClient, couchpoint_db: str
    ) -> None:
        docs = [{"_id": "t1", "type": "task"}, {"_id": "n1", "type": "note"}, {"_id": "t2", "type": "task"}]
        await couchpoint_client.post(f"/{couchpoint_db}/_bulk_docs", json={"docs": docs})
        assert await self._changes(couchpoint_client, couchpoint_db, filter="app/by_type", type="task") == [
            "t1",
            "t2",
        ]
        assert await self._changes(couchpoint_client, couchpoint_db, filter="app/by_type", type="note") == [
            "n1"
        ]
        assert await self._changes(couchpoint_client, couchpoint_db, filter="app/whoami") == [
            "t1",
            "n1",
            "t2",
        ]
        longpoll = await self._changes(
            couchpoint_client, couchpoint_db, filter="app/by_type", type="note", feed="longpoll", since="0"
        )
        assert longpoll == ["n1"]

    async def test_a_db_specific_filter_wins(self, couchpoint_client: httpx.AsyncClient) -> None:
        await couchpoint_client.put("/notes")
        await couchpoint_client.post(
            "/notes/_bulk_docs", json={"docs": [{"_id": "x", "kind": "a", "type": "b"}]}
        )
        assert await self._changes(couchpoint_client, "notes", filter="app/by_type", type="a") == ["x"]
        assert await self._changes(couchpoint_client, "notes", filter="app/by_type", type="b") == []

    async def test_unknown_filters(self, couchpoint_client: httpx.AsyncClient, couchpoint_db: str) -> None:
        missing = await couchpoint_client.get(f"/{couchpoint_db}/_changes", params={"filter": "app/nope"})
        assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
        bad = await couchpoint_client.get(f"/{couchpoint_db}/_changes", params={"filter": "nameonly"})
        assert bad.status_code == 400


def public_only(doc: dict[str, Any], user_ctx: dict[str, Any]) -> bool:
    return doc.get("public") is True or doc.get("owner") == user_ctx.get("name")


class TestReadAccess:
    @pytest.fixture
    def couchpoint_options(self) -> dict[str, Any]:
        return {"read_access": {"shared": public_only}, "admins": {"admin": "pw", "eve": "pw"}}

    @pytest.fixture
    async def shared(self, couchpoint_client: httpx.AsyncClient) -> str:
        await couchpoint_client.put("/shared", auth=ADMIN)
        await couchpoint_client.put("/other", auth=ADMIN)
        docs = [
            {"_id": "pub", "public": True},
            {"_id": "mine", "owner": "admin"},
            {"_id": "hidden", "owner": "someone"},
        ]
        for db in ("shared", "other"):
            await couchpoint_client.post(f"/{db}/_bulk_docs", json={"docs": docs}, auth=ADMIN)
        return "shared"

    async def test_hidden_docs_look_missing_everywhere(
        self, couchpoint_client: httpx.AsyncClient, shared: str
    ) -> None:
        eve = ("eve", "pw")
        get = await couchpoint_client.get(f"/{shared}/hidden", auth=eve)
        assert (get.status_code, get.json()["error"]) == (404, "not_found")
        assert (
            await couchpoint_client.get(f"/{shared}/hidden", params={"open_revs": "all"}, auth=eve)
        ).status_code == 404
        all_docs = (await couchpoint_client.get(f"/{shared}/_all_docs", auth=eve)).json()
        assert ([r["id"] for r in all_docs["rows"]], all_docs["total_rows"]) == (["pub"], 1)
        changes = (
            await couchpoint_client.get(f"/{shared}/_changes", params={"include_docs": "true"}, auth=eve)
        ).json()
        assert [r["id"] for r in changes["results"]] == ["pub"]
        bulk = (
            await couchpoint_client.post(f"/{shared}/_bulk_get", json={"docs": [{"id": "hidden"}]}, auth=eve)
        ).json()
        assert bulk["results"][0]["docs"][0]["error"]["error"] == "not_found"
        # The owner sees their own; other databases are not restricted.
        mine = (await couchpoint_client.get(f"/{shared}/_all_docs", auth=ADMIN)).json()
        assert [r["id"] for r in mine["rows"]] == ["mine", "pub"]
        other = (await couchpoint_client.get("/other/_all_docs", auth=eve)).json()
        assert len(other["rows"]) == 3

    async def test_a_filter_and_read_access_combine(
        self, couchpoint_client: httpx.AsyncClient, shared: str
    ) -> None:
        response = await couchpoint_client.post(
            f"/{shared}/_changes",
            params={"filter": "_selector"},
            json={"selector": {"_id": {"$gt": ""}}},
            auth=("eve", "pw"),
        )
        assert [r["id"] for r in response.json()["results"]] == ["pub"]


async def test_authenticate_hook_runs_requests_as_the_app_user() -> None:
    """``create_app(authenticate=...)``: the embedding app decides who the caller is; its
    user reaches the validate and read-access hooks, ``None`` falls back to couchpoint's
    own authentication (here: anonymous → 401 on an admin-only db)."""
    import httpx

    from couchpoint import Forbidden, create_app
    from couchpoint.storage import MemoryStorage

    seen: list[dict] = []

    def authenticate(request):  # type: ignore[no-untyped-def]
        key = request.headers.get("x-api-key")
        return {"name": key, "roles": ["_admin"] if key == "boss" else []} if key else None

    def validate(new_doc, old_doc, user_ctx, security):  # type: ignore[no-untyped-def]
        seen.append(user_ctx)
        if new_doc.get("owner") != user_ctx["name"]:
            raise Forbidden("owner must be you")

    app = create_app(storage=MemoryStorage(), admins={"admin": "pw"}, authenticate=authenticate,
                     validate_doc_update=validate)  # fmt: skip
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.put("/db", headers={"x-api-key": "boss"})).status_code == 201
        ok = await client.put("/db/a", json={"owner": "boss"}, headers={"x-api-key": "boss"})
        assert ok.status_code == 201
        denied = await client.put("/db/b", json={"owner": "eve"}, headers={"x-api-key": "boss"})
        assert denied.status_code == 403
        assert denied.json() == {"error": "forbidden", "reason": "owner must be you"}
        anonymous = await client.get("/db/a")
        assert anonymous.status_code == 401
    assert [u["name"] for u in seen] == ["boss", "boss"]
    await app.state.server.close()
