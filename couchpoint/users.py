"""The ``_users`` database: CouchDB-compatible user documents (docs/security.md).

A user is the document ``org.couchdb.user:<name>``::

    {"_id": "org.couchdb.user:alice", "type": "user", "name": "alice", "roles": ["staff"],
     "password_scheme": "pbkdf2", "pbkdf2_prf": "sha256", "iterations": 600000,
     "salt": "<32 hex>", "derived_key": "<64 hex>"}

Written with a plain ``password`` field, the document is stored with the hash instead
(:func:`hash_password_field`, CouchDB's ``couch_users_db:before_doc_update``); the rules
of CouchDB's ``_design/_auth`` validation function are :func:`users_validator`.  Who may
reach which ``_users`` route is :func:`users_access` (route layer).  Per-user databases
(``couch_peruser``) are :func:`ensure_userdb` / :func:`userdb_name`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from couchpoint import errors, security
from couchpoint.auth import USER_PREFIX, USERS_DB, PasswordHash, UserCtx

if TYPE_CHECKING:
    from couchpoint.database import Server

__all__ = [
    "USERS_DB",
    "USER_PREFIX",
    "add_user",
    "ensure_userdb",
    "hash_password_field",
    "users_access",
    "users_validator",
    "userdb_name",
]


def userdb_name(name: str) -> str:
    """``userdb-`` + the hex of the UTF-8 name (CouchDB's ``couch_peruser``)."""
    return "userdb-" + name.encode("utf-8").hex()


async def hash_password_field(doc: dict[str, Any], iterations: int) -> dict[str, Any]:
    """The document to store for a written user doc: a string ``password`` replaced by
    ``password_scheme``/``pbkdf2_prf``/``iterations``/``salt``/``derived_key``.  A
    ``null`` or absent password leaves the doc as it is; any other type is 400."""
    if "password" not in doc or doc["password"] is None:
        return doc
    password = doc["password"]
    if not isinstance(password, str):
        raise errors.BadRequest("password must be a string")
    hashed = await anyio.to_thread.run_sync(PasswordHash.create, password, iterations)
    out = {k: v for k, v in doc.items() if k not in ("password", "password_sha")}
    out.update(hashed.to_user_fields())
    return out


# -- CouchDB's _design/_auth rules ----------------------------------------------------------


def _forbid(reason: str) -> errors.Forbidden:
    return errors.Forbidden(reason)


def users_validator(
    new_doc: dict[str, Any], old_doc: dict[str, Any] | None, user_ctx: dict[str, Any], sec: dict[str, Any]
) -> None:
    """A ``validate_doc_update`` hook for ``_users`` (CouchDB's ``_design/_auth``).

    Design documents are left to :func:`couchpoint.security.design_doc_validator`.  A
    plain ``password`` never reaches storage (the route layer hashes it; anything that
    still carries one is refused)."""
    doc_id = new_doc.get("_id", "")
    if isinstance(doc_id, str) and doc_id.startswith("_design/"):
        return
    view = security._UserView(user_ctx)
    is_admin = security.is_db_admin(view, sec or {})
    if new_doc.get("_deleted") is True:
        old_name = old_doc.get("name") if old_doc else None
        if is_admin or (view.name is not None and view.name == old_name):
            return
        raise _forbid("Only admins may delete other user docs.")
    if "password" in new_doc and new_doc["password"] is not None:
        raise _forbid("password must be stored hashed: write user docs as JSON")
    if new_doc.get("type") != "user":
        raise _forbid("doc.type must be user")
    name = new_doc.get("name")
    if not name or not isinstance(name, str):
        raise _forbid("doc.name is required")
    roles = new_doc.get("roles")
    if roles is None:
        raise _forbid("doc.roles must exist")
    if not isinstance(roles, list):
        raise _forbid("doc.roles must be an array")
    if not all(isinstance(r, str) for r in roles):
        raise _forbid("doc.roles can only contain strings")
    if doc_id != USER_PREFIX + name:
        raise _forbid("Doc ID must be of the form org.couchdb.user:name")
    if old_doc is not None and old_doc.get("name") != name:
        raise _forbid("Usernames can not be changed.")
    if new_doc.get("password_sha") is not None and not new_doc.get("salt"):
        raise _forbid("Users with password_sha must have a salt.")
    if new_doc.get("password_scheme") == "pbkdf2":
        iterations = new_doc.get("iterations")
        if not isinstance(iterations, int) or isinstance(iterations, bool):
            raise _forbid("iterations must be a number.")
        if not isinstance(new_doc.get("derived_key"), str):
            raise _forbid("derived_key must be a string.")
    if not is_admin:
        if old_doc is not None:
            if view.name != name:
                raise _forbid("You may only update your own user document.")
            old_roles = old_doc.get("roles") or []
            if not isinstance(old_roles, list) or sorted(map(str, old_roles)) != sorted(roles):
                raise _forbid("Only _admin may edit roles")
        elif roles:
            raise _forbid("Only _admin may set roles")
    for role in roles:
        if role != "_metrics" and role.startswith("_"):
            raise _forbid("No system roles (starting with underscore) in users db.")
    if name.startswith("_"):
        raise _forbid("Username may not start with underscore.")
    if ":" in name:
        raise _forbid("Character `:` is not allowed in usernames.")


# -- who reaches which _users route ----------------------------------------------------------

_ADMIN_ONLY_ENDPOINTS = frozenset(
    {"_all_docs", "_changes", "_bulk_docs", "_bulk_get", "_revs_diff", "_missing_revs", "_design_docs"}
)


def users_access(user: UserCtx, method: str, rest: Sequence[str], sec: Mapping[str, Any]) -> None:
    """Raise unless ``user`` (not a db admin of ``_users``) may make this request.

    * everyone who is a member (``_users`` is admin-only unless its ``_security``
      opens it): ``GET /_users``, ``GET /_users/_security``, and ``PUT`` of a new
      ``org.couchdb.user:*`` document (sign-up: no roles, validated);
    * an authenticated user, member or not: ``GET``/``HEAD``/``PUT``/``DELETE`` of their
      own document ``org.couchdb.user:<name>`` (no attachments);
    * everything else (``_all_docs``, ``_changes``, ``_bulk_docs``, other users'
      documents, design and ``_local`` documents, attachments): db admins only; other
      users' documents look missing (404) to members, as in CouchDB.
    """
    own = user.name is not None and list(rest) == [USER_PREFIX + user.name]
    if own and method in ("GET", "HEAD", "PUT", "DELETE"):
        return
    if not security.is_member(user, sec):
        raise security.deny(user)
    if not rest:
        if method in ("GET", "HEAD"):
            return
        raise security.deny(user, security.NOT_DB_ADMIN)
    head = rest[0]
    if head == "_security" and method in ("GET", "HEAD"):
        return
    if head in _ADMIN_ONLY_ENDPOINTS or head.startswith("_"):
        raise security.deny(user, security.NOT_DB_ADMIN)
    if len(rest) == 1 and head.startswith(USER_PREFIX):
        if method == "PUT" and user.name is None:
            return  # sign-up; an existing doc fails validation (not their own)
        if method in ("GET", "HEAD", "DELETE", "PUT", "COPY"):
            raise errors.missing()
    raise security.deny(user, security.NOT_DB_ADMIN)


# -- per-user databases ---------------------------------------------------------------------


async def ensure_userdb(server: Server, name: str) -> str:
    """Create ``userdb-<hex>`` if missing and make ``name`` an admin and member of it
    (CouchDB's ``couch_peruser``: others are kept).  Returns the db name."""
    db_name = userdb_name(name)
    try:
        await server.create_db(db_name)
    except errors.CouchError as exc:
        if exc.status != 412:
            raise
    store = await server.storage.get_db(db_name)
    if store is None:
        return db_name
    async with store.write() as txn:
        sec = copy.deepcopy(await store.get_security() or {"admins": {}, "members": {}})
        sec = security.validate_security_object(sec)
        for key in ("admins", "members"):
            section = sec.setdefault(key, {})
            section.setdefault("roles", [])
            names = section.setdefault("names", [])
            if name not in names:
                names.append(name)
        await txn.put_security(sec)
    return db_name


async def delete_userdb(server: Server, name: str) -> None:
    """Delete the user's database if it exists (``peruser_delete_dbs``)."""
    try:
        await server.delete_db(userdb_name(name))
    except errors.CouchError as exc:
        if exc.status != 404:
            raise


async def ensure_users_db(server: Server, policy: str) -> None:
    """Create ``_users`` with the ``default_security`` object if it does not exist."""
    try:
        await server.create_db(USERS_DB)
    except errors.CouchError as exc:
        if exc.status != 412:
            raise
        return
    store = await server.storage.get_db(USERS_DB)
    if store is not None:
        async with store.write() as txn:
            await txn.put_security(security.default_security(policy))


async def add_user(
    server: Server,
    name: str,
    password: str,
    roles: Sequence[str] = (),
    *,
    iterations: int,
    policy: str = "admin_only",
    peruser: bool = False,
) -> str:
    """Create or update the user ``name`` (``couchpoint user add``), as a server admin
    would through ``PUT /_users/org.couchdb.user:<name>``.  Returns the new rev."""
    from couchpoint.database import ReadOptions

    await ensure_users_db(server, policy)
    database = await server.get_db(USERS_DB)
    doc_id = USER_PREFIX + name
    current: dict[str, Any] = {}
    rev: str | None = None
    try:
        current, _ = await database.get_doc(doc_id, rev=None, options=ReadOptions())
        rev = current.get("_rev")
    except errors.CouchError as exc:
        if exc.status != 404:
            raise
    body = {k: v for k, v in current.items() if not k.startswith("_")}
    body.update({"_id": doc_id, "type": "user", "name": name, "roles": list(roles), "password": password})
    if rev:
        body["_rev"] = rev
    doc = await hash_password_field(body, iterations)
    users_validator(doc, current or None, {"name": None, "roles": ["_admin"]}, {})
    new_rev, _ = await database.put_doc(doc_id, doc, rev=rev, new_edits=True)
    if peruser:
        await ensure_userdb(server, name)
    return new_rev
