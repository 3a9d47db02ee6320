"""Admin party (no admin configured) is for this machine only, also when couchpoint is
embedded in another ASGI server bound to every interface: a request from another host
runs as anonymous (protocol reference §12.1; CouchDB 3 has no admin party at all)."""

from __future__ import annotations

import httpx

from couchpoint import create_app
from couchpoint.storage import MemoryStorage


async def test_admin_party_only_for_loopback_clients() -> None:
    app = create_app(storage=MemoryStorage())
    local = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 5000)), base_url="http://t"
    )
    remote = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("203.0.113.5", 5000)), base_url="http://t"
    )
    async with local, remote:
        assert (await local.put("/db")).status_code == 201
        denied = await remote.put("/evil")
        assert denied.status_code == 401
        assert denied.json()["error"] == "unauthorized"
        assert (await remote.get("/db")).status_code == 401
        session = (await remote.get("/_session")).json()
        assert session["userCtx"] == {"name": None, "roles": []}
        assert (await local.get("/_all_dbs")).json() == ["db"]
    await app.state.server.close()
