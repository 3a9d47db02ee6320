"""The ``_users`` database: hashed passwords, CouchDB's ``_auth`` rules, own-document
access, sign-up, duplicate keys (CVE-2017-12635 class), per-user databases."""

from __future__ import annotations

import copy

import httpx
from starlette.applications import Starlette

from couchpoint.auth import PasswordHash
from couchpoint.hooks import Hooks

from .conftest import ADMIN_AUTH, MakeApp, add_user, basic, client_for, error_of

JSON = {"Content-Type": "application/json"}


async def raw_doc(client: httpx.AsyncClient, name: str) -> dict[str, object]:
    response = await client.get(f"/_users/org.couchdb.user:{name}", headers=ADMIN_AUTH)
    assert response.status_code == 200, response.text
    doc: dict[str, object] = response.json()
    return doc


async def test_password_is_stored_hashed(client: httpx.AsyncClient) -> None:
    await add_user(client, "alice", "secret", ["staff"])
    doc = await raw_doc(client, "alice")
    assert "password" not in doc
    assert doc["password_scheme"] == "pbkdf2" and doc["pbkdf2_prf"] == "sha256"
    assert doc["iterations"] == 1000 and isinstance(doc["salt"], str) and len(doc["salt"]) == 32
    hashed = PasswordHash.from_user_doc(doc)
    assert hashed is not None and hashed.verify("secret")
    # bulk writes by the admin are hashed too
    docs = [{"_id": "org.couchdb.user:bulk", "name": "bulk", "type": "user", "roles": [], "password": "b"}]
    response = await client.post("/_users/_bulk_docs", json={"docs": docs}, headers=ADMIN_AUTH)
    assert response.status_code == 201 and response.json()[0]["ok"] is True
    assert "password" not in await raw_doc(client, "bulk")
    assert (await client.get("/_session", headers=basic("bulk", "b"))).json()["userCtx"]["name"] == "bulk"
    # curl -d without a JSON content type: the body is still read as JSON and hashed
    body = b'{"name": "plain", "type": "user", "roles": [], "password": "p"}'
    response = await client.put(
        "/_users/org.couchdb.user:plain", content=body, headers={"Content-Type": "text/plain", **ADMIN_AUTH}
    )
    assert response.status_code == 201 and "password" not in await raw_doc(client, "plain")


async def test_couchdb_auth_rules(client: httpx.AsyncClient) -> None:
    """``_design/_auth``: type, name, roles, id form, no system roles or names."""
    await client.put("/_users", headers=ADMIN_AUTH)
    cases = [
        ({"name": "x", "roles": [], "type": "person"}, "x", "doc.type must be user"),
        ({"roles": [], "type": "user"}, "x", "doc.name is required"),
        ({"name": "x", "type": "user"}, "x", "doc.roles must exist"),
        ({"name": "x", "roles": "a", "type": "user"}, "x", "doc.roles must be an array"),
        ({"name": "x", "roles": [1], "type": "user"}, "x", "doc.roles can only contain strings"),
        ({"name": "y", "roles": [], "type": "user"}, "x", "Doc ID must be of the form org.couchdb.user:name"),
        ({"name": "x", "roles": ["_admin"], "type": "user"}, "x",
         "No system roles (starting with underscore) in users db."),
        ({"name": "_x", "roles": [], "type": "user"}, "_x", "Username may not start with underscore."),
    ]  # fmt: skip
    for doc, name, reason in cases:
        response = await client.put(f"/_users/org.couchdb.user:{name}", json=doc, headers=ADMIN_AUTH)
        assert error_of(response) == (403, "forbidden", reason), doc
    assert (await client.get("/_users/_all_docs", headers=ADMIN_AUTH)).json()["rows"] == []


async def test_users_change_only_their_own_doc_and_not_their_roles(client: httpx.AsyncClient) -> None:
    rev = await add_user(client, "bob", "pw", ["reader"])
    await add_user(client, "eve", "pw2")
    bob, eve = basic("bob", "pw"), basic("eve", "pw2")
    own = await client.get("/_users/org.couchdb.user:bob", headers=bob)
    assert own.status_code == 200 and own.json()["name"] == "bob"
    # roles are the admin's business
    doc = {"_rev": rev, "name": "bob", "type": "user", "roles": ["reader", "boss"]}
    response = await client.put("/_users/org.couchdb.user:bob", json=doc, headers=bob)
    assert error_of(response) == (403, "forbidden", "Only _admin may edit roles")
    # other users' documents: not reachable (the db is admin-only by default)
    assert error_of(await client.get("/_users/org.couchdb.user:bob", headers=eve))[0] == 403
    doc = {"_rev": rev, "name": "bob", "type": "user", "roles": [], "password": "hijack"}
    response = await client.put("/_users/org.couchdb.user:bob", json=doc, headers=eve)
    assert error_of(response)[0] == 403
    assert error_of(await client.get("/_users/_all_docs", headers=bob))[0] == 403
    assert error_of(await client.get("/_users/_changes", headers=bob))[0] == 403
    assert error_of(await client.get("/_users/org.couchdb.user:bob"))[0] == 401
    assert (await client.get("/_session", headers=bob)).json()["userCtx"]["roles"] == ["reader"]
    # the admin may grant roles (a PUT replaces the doc: the hash must be kept or reset)
    doc = {"_rev": rev, "name": "bob", "type": "user", "roles": ["reader", "boss"], "password": "pw"}
    response = await client.put("/_users/org.couchdb.user:bob", json=doc, headers=ADMIN_AUTH)
    assert response.status_code == 201
    assert (await client.get("/_session", headers=bob)).json()["userCtx"]["roles"] == ["reader", "boss"]


async def test_signup_when_users_db_is_opened(client: httpx.AsyncClient) -> None:
    """With ``_users`` members emptied (public), anonymous may sign up -- without roles --
    and members see other users' docs as missing (CouchDB's rules)."""
    await add_user(client, "bob", "pw")
    sec = {"admins": {"roles": ["_admin"]}, "members": {}}
    assert (await client.put("/_users/_security", json=sec, headers=ADMIN_AUTH)).status_code == 200
    doc = {"name": "newbie", "type": "user", "roles": [], "password": "np"}
    response = await client.put("/_users/org.couchdb.user:newbie", json=doc)
    assert response.status_code == 201, response.text
    doc = {"name": "sneaky", "type": "user", "roles": ["boss"], "password": "np"}
    response = await client.put("/_users/org.couchdb.user:sneaky", json=doc)
    assert error_of(response) == (403, "forbidden", "Only _admin may set roles")
    assert error_of(await client.get("/_users/org.couchdb.user:bob", headers=basic("newbie", "np")))[0] == 404
    assert error_of(await client.get("/_users/_all_docs", headers=basic("newbie", "np")))[0] == 403


async def test_duplicate_keys_in_user_docs_are_rejected(client: httpx.AsyncClient) -> None:
    """CVE-2017-12635: ``{"roles": ["_admin"], "roles": []}`` parsed differently by two
    parsers granted admin.  Bodies with a repeated key are 400 in ``_users``."""
    await client.put("/_users/_security", json={"members": {}}, headers=ADMIN_AUTH)
    await client.put("/_users", headers=ADMIN_AUTH)
    await client.put("/_users/_security", json={"members": {}}, headers=ADMIN_AUTH)
    body = b'{"type":"user","name":"oops","roles":["_admin"],"roles":[],"password":"x"}'
    response = await client.put("/_users/org.couchdb.user:oops", content=body, headers=JSON)
    assert error_of(response)[:2] == (400, "bad_request")
    nested = b'{"docs":[{"_id":"org.couchdb.user:o","name":"o","name":"p","type":"user","roles":[]}]}'
    response = await client.post("/_users/_bulk_docs", content=nested, headers={**JSON, **ADMIN_AUTH})
    assert error_of(response)[:2] == (400, "bad_request")
    assert (await client.get("/_users/_all_docs", headers=ADMIN_AUTH)).json()["rows"] == []


async def test_peruser_databases(make_app: MakeApp) -> None:
    app: Starlette = await make_app(peruser=True, peruser_delete_dbs=True)
    async with client_for(app) as client:
        rev = await add_user(client, "zoë", "pw")
        db = "userdb-" + "zoë".encode().hex()
        sec = (await client.get(f"/{db}/_security", headers=ADMIN_AUTH)).json()
        assert sec["members"]["names"] == ["zoë"] and sec["admins"]["names"] == ["zoë"]
        me = basic("zoë", "pw")
        assert (await client.put(f"/{db}/note", json={"x": 1}, headers=me)).status_code == 201
        assert (await client.put(f"/{db}/_design/mine", json={}, headers=me)).status_code == 201
        await add_user(client, "other", "pw")
        assert error_of(await client.get(f"/{db}", headers=basic("other", "pw")))[0] == 403
        response = await client.delete(f"/_users/org.couchdb.user:zoë?rev={rev}", headers=ADMIN_AUTH)
        assert response.status_code == 200
        assert (await client.get(f"/{db}", headers=ADMIN_AUTH)).status_code == 404


async def test_user_doc_without_hash_cannot_log_in_and_admin_role_is_never_taken(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    """Defence in depth: ``_admin`` in a stored user doc (replicated in with
    ``new_edits=false``... which the rules refuse anyway) never makes a server admin."""
    await client.put("/_users", headers=ADMIN_AUTH)
    hashed = PasswordHash.create("pw", 1000).to_user_fields()
    doc = {
        "_id": "org.couchdb.user:mallory",
        "name": "mallory",
        "type": "user",
        "roles": ["_admin"],
        **hashed,
    }
    server = app.state.server
    database = copy.copy(await server.get_db("_users"))
    database.hooks = Hooks()  # straight to storage, past every rule
    await database.put_doc("org.couchdb.user:mallory", doc, rev=None, new_edits=True)
    session = (await client.get("/_session", headers=basic("mallory", "pw"))).json()
    assert session["userCtx"] == {"name": "mallory", "roles": []}
