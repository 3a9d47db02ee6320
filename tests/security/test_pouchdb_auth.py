"""PouchDB 9 against ``couchpoint serve --admin ...`` (issue 5 acceptance).

A member of a members-only database syncs with Basic credentials and with a cookie
session from ``POST /_session``; without credentials PouchDB gets 401 and nothing is
written.  The server's state is read back with httpx as the admin.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.realserver import RealServer, ServerError, real_server
from tests.test_pouchdb import run_scenario

pytestmark = pytest.mark.pouchdb

ADMIN = ("admin", "admin:secret")
USER = ("alice", "p@ss:w0rd")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RealServer]:
    try:
        with real_server(
            tmp_path / "data", log_path=tmp_path / "server.log", extra_args=["--admin", ":".join(ADMIN)]
        ) as srv:
            yield srv
    except ServerError as exc:
        pytest.fail(str(exc), pytrace=False)


def setup(server: RealServer, db: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url, auth=ADMIN, timeout=30)
    client.put("/_users")
    doc = {"name": USER[0], "password": USER[1], "roles": [], "type": "user"}
    response = client.put(f"/_users/org.couchdb.user:{USER[0]}", json=doc)
    assert response.status_code in (201, 409), response.text
    assert client.put(f"/{db}").status_code == 201
    security = {"admins": {"names": [], "roles": []}, "members": {"names": [USER[0]], "roles": []}}
    assert client.put(f"/{db}/_security", json=security).status_code == 200
    return client


@pytest.mark.parametrize("mode", ["basic", "cookie"])
def test_pouchdb_syncs_with_credentials(server: RealServer, mode: str) -> None:
    db = f"shared-{mode}"
    admin = setup(server, db)
    result = run_scenario(server, "auth", db, "--mode", mode, "--user", USER[0], "--password", USER[1])
    if mode == "cookie":
        assert result["userCtx"] == {"name": USER[0], "roles": []}
    info = admin.get(f"/{db}").json()
    assert info["doc_count"] == 40
    assert admin.get(f"/{db}/_design/app").status_code == 404  # denied: not a db admin
    assert admin.get(f"/{db}/doc-001").json()["edited"] == "on the server"


def test_pouchdb_without_credentials_gets_401_and_writes_nothing(server: RealServer) -> None:
    db = "shared-none"
    admin = setup(server, db)
    result = run_scenario(server, "auth", db, "--mode", "none")
    assert result["denied"] == {"push": 401, "pull": 401}
    info = admin.get(f"/{db}").json()
    assert (info["doc_count"], info["update_seq"]) == (0, 0)
    assert admin.get(f"/{db}/_local_docs").status_code in (200, 501)
