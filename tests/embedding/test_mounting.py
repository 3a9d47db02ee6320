"""couchpoint mounted under a prefix in a FastAPI or Starlette app, driven by
``httpx.ASGITransport`` (no lifespan: storage opens on first use)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

import couchpoint
from couchpoint.storage import MemoryStorage


def fastapi_host(prefix: str) -> tuple[FastAPI, Starlette]:
    couch = couchpoint.create_app(MemoryStorage(), couchpoint.Settings())
    host = FastAPI()

    @host.get("/hello")
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    host.mount(prefix, couch)
    return host, couch


def starlette_host(prefix: str) -> tuple[Starlette, Starlette]:
    couch = couchpoint.create_app(MemoryStorage(), couchpoint.Settings())

    async def hello(request: object) -> JSONResponse:
        return JSONResponse({"hello": "world"})

    return Starlette(routes=[Route("/hello", hello), Mount(prefix, app=couch)]), couch


@pytest.fixture(params=["fastapi:/sync", "fastapi:/api/v1/couch", "starlette:/sync", "starlette:/c_d-e"])
async def mounted(request: pytest.FixtureRequest) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    kind, prefix = request.param.split(":", 1)
    host, couch = (fastapi_host if kind == "fastapi" else starlette_host)(prefix)
    transport = httpx.ASGITransport(app=host)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://host.test", headers={"Accept": "application/json"}
    ) as client:
        yield client, prefix
    await couch.state.server.close()


async def test_the_couchdb_api_under_a_prefix(mounted: tuple[httpx.AsyncClient, str]) -> None:
    client, prefix = mounted
    assert (await client.get("/hello")).json() == {"hello": "world"}  # the host's own route
    assert (await client.get(f"{prefix}/")).json()["couchdb"] == "Welcome"
    assert (await client.put(f"{prefix}/db")).status_code == 201
    created = await client.put(f"{prefix}/db/a%2Fb", json={"x": 1})
    assert created.status_code == 201
    assert created.headers["Location"] == f"http://host.test{prefix}/db/a%2Fb"
    assert (await client.get(f"{prefix}/db/a%2Fb")).json()["_id"] == "a/b"
    assert (await client.put(f"{prefix}/db/_design/app", json={})).status_code == 201
    changes = (await client.get(f"{prefix}/db/_changes")).json()
    assert [row["id"] for row in changes["results"]] == ["a/b", "_design/app"]
    missing = await client.get(f"{prefix}/nope")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")


async def test_the_host_keeps_its_own_404s(mounted: tuple[httpx.AsyncClient, str]) -> None:
    client, _ = mounted
    assert (await client.get("/elsewhere")).status_code == 404
