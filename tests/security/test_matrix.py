"""The access matrix (issue 5 acceptance; docs/security.md "Access matrix").

Six callers × the operations of §12.4 on a database whose ``_security`` object names
one member by name, one member role and one db admin by name, with CouchDB 3's status
codes and reasons.  Every refused write is checked to have changed nothing.
"""

from __future__ import annotations

import httpx
import pytest

from .conftest import ADMIN_AUTH, add_user, basic, error_of

SECURITY = {
    "admins": {"names": ["dbadmin"], "roles": ["bosses"]},
    "members": {"names": ["mname"], "roles": ["staff"]},
}
USERS = {
    "mname": ("pw-mname", []),
    "mrole": ("pw-mrole", ["staff"]),
    "outsider": ("pw-outsider", ["other"]),
    "dbadmin": ("pw-dbadmin", []),
    "rboss": ("pw-rboss", ["bosses"]),
}
CALLERS = ["anonymous", "mname", "mrole", "outsider", "dbadmin", "rboss", "admin"]

UNAUTH = (401, "unauthorized", "You are not authorized to access this db.")
FORBID = (403, "forbidden", "You are not allowed to access this db.")
NO_DBA_ANON = (401, "unauthorized", "You are not a db or server admin.")
NO_DBA = (403, "forbidden", "You are not a db or server admin.")
NO_SA = (401, "unauthorized", "You are not a server admin.")

# caller -> operation -> expected status (int) or (status, error, reason)
EXPECTED: dict[str, dict[str, object]] = {
    "anonymous": {
        "read": UNAUTH, "write": UNAUTH, "ddoc": UNAUTH, "sec_read": UNAUTH, "sec_write": UNAUTH,
        "local": UNAUTH, "changes": UNAUTH, "create_db": NO_SA, "delete_db": NO_SA, "all_dbs": NO_SA,
    },
    "mname": {
        "read": 200, "write": 201, "ddoc": NO_DBA, "sec_read": 200, "sec_write": NO_DBA,
        "local": 201, "changes": 200, "create_db": NO_SA, "delete_db": NO_SA, "all_dbs": NO_SA,
    },
    "mrole": {
        "read": 200, "write": 201, "ddoc": NO_DBA, "sec_read": 200, "sec_write": NO_DBA,
        "local": 201, "changes": 200, "create_db": NO_SA, "delete_db": NO_SA, "all_dbs": NO_SA,
    },
    "outsider": {
        "read": FORBID, "write": FORBID, "ddoc": FORBID, "sec_read": FORBID, "sec_write": FORBID,
        "local": FORBID, "changes": FORBID, "create_db": NO_SA, "delete_db": NO_SA, "all_dbs": NO_SA,
    },
    "dbadmin": {
        "read": 200, "write": 201, "ddoc": 201, "sec_read": 200, "sec_write": 200,
        "local": 201, "changes": 200, "create_db": NO_SA, "delete_db": NO_SA, "all_dbs": NO_SA,
    },
    "rboss": {
        "read": 200, "write": 201, "ddoc": 201, "sec_read": 200, "sec_write": 200,
        "local": 201, "changes": 200, "create_db": NO_SA, "delete_db": NO_SA, "all_dbs": NO_SA,
    },
    "admin": {
        "read": 200, "write": 201, "ddoc": 201, "sec_read": 200, "sec_write": 200,
        "local": 201, "changes": 200, "create_db": 201, "delete_db": 200, "all_dbs": 200,
    },
}  # fmt: skip


def headers_for(caller: str) -> dict[str, str]:
    if caller == "anonymous":
        return {}
    if caller == "admin":
        return ADMIN_AUTH
    return basic(caller, USERS[caller][0])


async def setup(client: httpx.AsyncClient) -> None:
    for name, (password, roles) in USERS.items():
        await add_user(client, name, password, roles)
    assert (await client.put("/matrix", headers=ADMIN_AUTH)).status_code == 201
    assert (await client.put("/matrix/_security", json=SECURITY, headers=ADMIN_AUTH)).status_code == 200
    assert (await client.put("/matrix/doc", json={"v": 1}, headers=ADMIN_AUTH)).status_code == 201


async def state(client: httpx.AsyncClient) -> tuple[object, ...]:
    """What a refused request must not change (read as the server admin)."""
    dbs = (await client.get("/_all_dbs", headers=ADMIN_AUTH)).json()
    info = (await client.get("/matrix", headers=ADMIN_AUTH)).json()
    sec = (await client.get("/matrix/_security", headers=ADMIN_AUTH)).json()
    local = (await client.get("/matrix/_local/cp", headers=ADMIN_AUTH)).status_code
    return dbs, info["update_seq"], info["doc_count"], sec, local


async def run(client: httpx.AsyncClient, caller: str, op: str) -> httpx.Response:
    h = headers_for(caller)
    if op == "read":
        return await client.get("/matrix/doc", headers=h)
    if op == "write":
        return await client.put(f"/matrix/new-{caller}", json={"by": caller}, headers=h)
    if op == "ddoc":
        return await client.put(f"/matrix/_design/d-{caller}", json={"views": {}}, headers=h)
    if op == "sec_read":
        return await client.get("/matrix/_security", headers=h)
    if op == "sec_write":
        return await client.put("/matrix/_security", json=SECURITY, headers=h)
    if op == "local":
        return await client.put("/matrix/_local/cp", json={"by": caller}, headers=h)
    if op == "changes":
        return await client.get("/matrix/_changes", headers=h)
    if op == "create_db":
        return await client.put(f"/created-{caller}", headers=h)
    if op == "delete_db":
        assert (await client.put(f"/victim-{caller}", headers=ADMIN_AUTH)).status_code == 201
        return await client.delete(f"/victim-{caller}", headers=h)
    if op == "all_dbs":
        return await client.get("/_all_dbs", headers=h)
    raise AssertionError(op)


OPS = list(EXPECTED["admin"])


@pytest.mark.parametrize("caller", CALLERS)
async def test_access_matrix(client: httpx.AsyncClient, caller: str) -> None:
    await setup(client)
    problems = []
    for op in OPS:
        expected = EXPECTED[caller][op]
        before = await state(client) if op != "delete_db" else None
        response = await run(client, caller, op)
        if isinstance(expected, tuple):
            actual: object = error_of(response)
            if before is not None:
                after = await state(client)
                if after != before:
                    problems.append(f"{op}: refused but changed {before} -> {after}")
        else:
            actual = response.status_code
        if actual != expected:
            problems.append(f"{op}: expected {expected}, got {actual} {response.text[:120]}")
    assert not problems, f"{caller}:\n" + "\n".join(problems)


async def test_bulk_docs_design_docs_are_refused_per_document(client: httpx.AsyncClient) -> None:
    """§12.4: inside ``_bulk_docs`` a member's design docs fail one by one (``forbidden``;
    ``unauthorized`` for anonymous on a public db), the other docs are written -- for
    interactive and for replicated (``new_edits=false``) writes."""
    await setup(client)
    docs = [{"_id": "plain-1"}, {"_id": "_design/nope", "views": {}}]
    response = await client.post(
        "/matrix/_bulk_docs", json={"docs": docs}, headers=basic("mname", "pw-mname")
    )
    assert response.status_code == 201
    results = response.json()
    assert results[0]["ok"] is True
    assert results[1] == {
        "id": "_design/nope",
        "error": "forbidden",
        "reason": "You are not a db or server admin.",
    }
    replicated = [
        {"_id": "plain-2", "_rev": "1-" + "a" * 32},
        {"_id": "_design/repl", "_rev": "1-" + "b" * 32, "views": {}},
    ]
    response = await client.post(
        "/matrix/_bulk_docs",
        json={"docs": replicated, "new_edits": False},
        headers=basic("mname", "pw-mname"),
    )
    assert response.status_code == 201
    assert response.json() == [
        {
            "id": "_design/repl",
            "rev": "1-" + "b" * 32,
            "error": "forbidden",
            "reason": "You are not a db or server admin.",
        }
    ]
    assert (await client.get("/matrix/_design/repl", headers=ADMIN_AUTH)).status_code == 404
    assert (await client.get("/matrix/plain-2", headers=ADMIN_AUTH)).status_code == 200
    # a public database: anonymous may write docs, not design docs
    await client.put("/open", headers=ADMIN_AUTH)
    await client.put(
        "/open/_security", json={"admins": {"names": ["dbadmin"]}, "members": {}}, headers=ADMIN_AUTH
    )
    response = await client.post("/open/_bulk_docs", json={"docs": docs})
    assert response.json()[1]["error"] == "unauthorized"
    assert response.json()[0]["ok"] is True
    assert error_of(await client.post("/open", json={"_id": "_design/x"})) == NO_DBA_ANON


async def test_new_database_is_admin_only_until_security_opens_it(client: httpx.AsyncClient) -> None:
    """CouchDB 3: a new database carries ``{"members":{"roles":["_admin"]},
    "admins":{"roles":["_admin"]}}``; an object with empty members opens it to all."""
    await add_user(client, "bob", "pw")
    assert (await client.put("/fresh", headers=ADMIN_AUTH)).status_code == 201
    sec = (await client.get("/fresh/_security", headers=ADMIN_AUTH)).json()
    assert sec == {"members": {"roles": ["_admin"]}, "admins": {"roles": ["_admin"]}}
    assert error_of(await client.get("/fresh")) == UNAUTH
    assert error_of(await client.get("/fresh", headers=basic("bob", "pw"))) == FORBID
    assert (await client.put("/fresh/_security", json={}, headers=ADMIN_AUTH)).status_code == 200
    assert (await client.get("/fresh")).status_code == 200
    assert (await client.put("/fresh/d", json={})).status_code == 201
    # a missing database looks like an admin-only one (no existence leak; CouchDB: 404)
    assert error_of(await client.get("/nope")) == UNAUTH
    assert error_of(await client.get("/nope/_changes", headers=basic("bob", "pw"))) == FORBID
    assert error_of(await client.get("/nope", headers=ADMIN_AUTH))[0] == 404


async def test_default_security_everyone(make_app) -> None:  # type: ignore[no-untyped-def]
    """``default_security = everyone``: new databases are public (CouchDB 2's default)."""
    from .conftest import client_for

    app = await make_app(default_security="everyone")
    async with client_for(app) as client:
        assert (await client.put("/pub", headers=ADMIN_AUTH)).status_code == 201
        assert (await client.get("/pub/_security")).json() == {}
        assert (await client.put("/pub/d", json={})).status_code == 201
        assert error_of(await client.put("/other")) == NO_SA


async def test_compact_and_revs_limit_need_a_db_admin(client: httpx.AsyncClient) -> None:
    await setup(client)
    member = basic("mname", "pw-mname")
    json_ct = {"Content-Type": "application/json", **member}
    assert error_of(await client.post("/matrix/_compact", headers=json_ct)) == (
        401,
        "unauthorized",
        "You are not a server or db admin.",
    )
    assert error_of(await client.put("/matrix/_revs_limit", content=b"5", headers=member)) == NO_DBA
    assert (await client.get("/matrix/_revs_limit", headers=member)).json() == 1000
    dba = {"Content-Type": "application/json", **basic("dbadmin", "pw-dbadmin")}
    assert (await client.post("/matrix/_compact", headers=dba)).status_code == 202
    assert (await client.put("/matrix/_revs_limit", content=b"5", headers=dba)).status_code == 200


async def test_admin_only_all_dbs_can_be_turned_off(make_app) -> None:  # type: ignore[no-untyped-def]
    from .conftest import client_for

    app = await make_app(admin_only_all_dbs=False)
    async with client_for(app) as client:
        assert (await client.get("/_all_dbs")).status_code == 200


async def test_security_object_is_validated_and_strict(client: httpx.AsyncClient) -> None:
    """PUT ``_security``: names/roles must be lists of strings; duplicate keys are refused
    (CVE-2017-12635 class); refused bodies change nothing."""
    await setup(client)
    bad = [
        b'{"admins": {"names": "dbadmin"}}',
        b'{"members": {"roles": [1]}}',
        b'{"members": []}',
        b"[]",
        b'{"members": {"names": ["mname"]}, "members": {"names": []}}',
        b'{"members": {"names": ["x"], "names": []}}',
        b"{nope",
    ]
    for body in bad:
        response = await client.put(
            "/matrix/_security", content=body, headers={"Content-Type": "application/json", **ADMIN_AUTH}
        )
        assert response.status_code == 400, (body, response.text)
        assert (await client.get("/matrix/_security", headers=ADMIN_AUTH)).json() == SECURITY
