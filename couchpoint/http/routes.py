"""The URL table, on one screen (protocol reference §1.1), and who may use it (§12.4).

Segments are already percent-decoded one by one.  After ``/{db}``:

=========================================  ==============================================
``[]``                                     server root
``["_all_dbs" | "_uuids" | "_up" | "_session"]``  server endpoints
``[db]``                                   database
``[db, "_local", name]``                   ``_local/name`` (also ``_local%2Fname``)
``[db, "_design", name, att...]``          ``_design/name`` (also ``_design%2Fname``)
``[db, "_changes" | "_bulk_docs" | ...]``  database endpoints (:data:`DB_ENDPOINTS`)
``[db, docid, att...]``                    document, attachment name = rest joined by ``/``
=========================================  ==============================================

An unknown ``_xxx`` after the db is treated as a document id, as CouchDB does (GET → 404
``missing``, PUT → 400 ``illegal_docid``).

Every request is authenticated first (:meth:`Authenticator.authenticate`), then
authorized by :mod:`couchpoint.security` (the operation table; ``_users`` by
:mod:`couchpoint.users`) before any handler runs, so a refused request reads and writes
nothing.  Design documents written inside ``_bulk_docs``/``POST``/``COPY`` are refused
per document by the built-in ``validate_doc_update`` hooks installed on the server's
:class:`~couchpoint.hooks.Hooks` (:func:`install_builtin_hooks`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from couchpoint import errors, security, users
from couchpoint.auth import USER_PREFIX, USERS_DB, Authenticator, AuthResult, UserCtx, load_user
from couchpoint.document import DESIGN_PREFIX, LOCAL_PREFIX
from couchpoint.hooks import Hooks
from couchpoint.hooks import call as call_hook
from couchpoint.http import changes_api, db_api, demo, doc_api, security_api, server_api
from couchpoint.http.common import Ctx

Handler = Callable[[Ctx, str], Awaitable[Response]]

DB_ENDPOINTS: dict[str, Handler] = {
    "_changes": changes_api.changes,
    "_bulk_docs": db_api.bulk_docs,
    "_bulk_get": db_api.bulk_get,
    "_all_docs": db_api.all_docs,
    "_revs_diff": db_api.revs_diff,
    "_missing_revs": db_api.missing_revs,
    "_ensure_full_commit": db_api.ensure_full_commit,
    "_revs_limit": db_api.revs_limit,
    "_compact": db_api.compact,
    "_security": security_api.security_object,
    "_design_docs": db_api.design_docs,
    "_local_docs": db_api.local_docs,
}

PUBLIC_SERVER_ENDPOINTS = {"_session", "_up", "_uuids"}
SYSTEM_DBS = frozenset({"_users", "_replicator", "_global_changes"})


# -- built-in hooks ---------------------------------------------------------------------------


def install_builtin_hooks(hooks: Hooks) -> None:
    """Put couchpoint's own ``validate_doc_update`` rules in front of the app's hooks
    (idempotent): design documents need a db admin everywhere, ``_users`` documents follow
    :func:`couchpoint.users.users_validator`."""
    if getattr(hooks, "_couchpoint_builtins", False):
        return
    registry: dict[str | None, list[Any]] = {
        None: [security.design_doc_validator],
        USERS_DB: [users.users_validator],
    }
    current = hooks.validate_doc_update
    if callable(current):
        registry[None].append(current)
    elif isinstance(current, Mapping):
        for key, value in current.items():
            found = value if isinstance(value, list | tuple) else [value]
            registry.setdefault(None if key == "*" else key, []).extend(found)
    hooks.validate_doc_update = registry
    hooks._couchpoint_builtins = True  # type: ignore[attr-defined]


# -- dispatch -----------------------------------------------------------------------------------


async def dispatch(ctx: Ctx, auth: Authenticator) -> Response:
    """Authenticate, authorize, route; return the response (errors raise CouchError)."""
    custom = ctx.server.hooks.authenticate
    found = await call_hook(custom, ctx.request) if custom is not None else None
    if found is not None:
        result = AuthResult(_user_ctx(found))
    else:
        result = await auth.authenticate(ctx.request, ctx.server, ctx.settings)
    ctx.user = result.user
    response = await _route(ctx, auth)
    if result.refresh_cookie:
        response.headers.append("Set-Cookie", auth.set_cookie_header(result.refresh_cookie))
    return response


def _user_ctx(found: Any) -> UserCtx:
    """A user from the ``authenticate`` hook: a :class:`UserCtx` or ``{"name", "roles"}``."""
    if isinstance(found, UserCtx):
        return found
    if isinstance(found, Mapping):
        return UserCtx(found.get("name"), tuple(found.get("roles", ())), "hook")
    raise TypeError(f"authenticate hook returned {found!r}; expected a dict, UserCtx or None")


async def _route(ctx: Ctx, auth: Authenticator) -> Response:
    segments = ctx.segments
    if not segments:
        return await server_api.root(ctx)
    head = segments[0]
    if head == "_demo":  # the demo page (static files, public like CouchDB's /_utils)
        return await demo.demo(ctx)
    if head.startswith("_") and head not in SYSTEM_DBS:
        if len(segments) == 1 and head in PUBLIC_SERVER_ENDPOINTS:
            return await server_api.ENDPOINTS[head](ctx, auth)
        if head != "_all_dbs" or ctx.settings.admin_only_all_dbs:
            security.check(ctx.user, security.Access.SERVER_ADMIN, None)
        if len(segments) == 1 and head in server_api.ENDPOINTS:
            return await server_api.ENDPOINTS[head](ctx, auth)
    db = head
    rest = segments[1:]
    await _authorize_db(ctx, db, rest)
    written: list[str] = []
    if db == USERS_DB and ctx.method in ("PUT", "POST"):
        written = await _prepare_users_write(ctx, rest)
    response = await _db_route(ctx, db, rest)
    if db == USERS_DB and response.status_code < 300 and ctx.settings.peruser:
        await _after_users_write(ctx, rest, written)
    if len(segments) == 1 and ctx.method == "PUT" and response.status_code == 201:
        created = await ctx.server.get_db(db)
        async with created.store.write() as txn:
            await txn.put_security(security.default_security(ctx.settings.default_security))
    return response


async def _authorize_db(ctx: Ctx, db: str, rest: list[str]) -> None:
    """Raise unless the caller may make this request on ``db`` (nothing read or written
    yet).  Server admins skip the security object."""
    user = ctx.user
    access = security.db_access(ctx.method, rest)
    if security.is_server_admin(user) or access is security.Access.NOBODY:
        return
    if access is security.Access.SERVER_ADMIN:
        security.check(user, access, None)
    try:
        database = await ctx.server.get_db(db)
    except errors.CouchError as exc:
        if exc.status != 404:
            raise
        # A missing database looks admin-only to everyone but server admins (CouchDB
        # answers 404 here, telling anyone which databases exist).
        security.check(user, access, None)
        raise
    sec = security.effective(await database.store.get_security())
    if db == USERS_DB and not security.is_db_admin(user, sec):
        users.users_access(user, ctx.method, rest, sec)
        return
    security.check(user, access, sec)


async def _db_route(ctx: Ctx, db: str, rest: list[str]) -> Response:
    if not rest:
        return await db_api.database(ctx, db)
    second = rest[0]
    tail = rest[1:]
    if second == "_local":
        if not tail:
            raise errors.BadRequest("Invalid _local document id.")
        if len(tail) > 1:
            raise errors.BadRequest("_local documents do not accept attachments.")
        return await doc_api.local_doc(ctx, db, tail[0])
    if second.startswith(LOCAL_PREFIX):
        if tail:
            raise errors.BadRequest("_local documents do not accept attachments.")
        return await doc_api.local_doc(ctx, db, second[len(LOCAL_PREFIX) :])
    if second == "_design":
        if not tail:
            return await doc_api.document(ctx, db, DESIGN_PREFIX, [])
        return await doc_api.document(ctx, db, DESIGN_PREFIX + tail[0], tail[1:])
    handler = DB_ENDPOINTS.get(second)
    if handler is not None and not tail:
        return await handler(ctx, db)
    return await doc_api.document(ctx, db, second, tail)


# -- _users: hash passwords on the way in, per-user databases after ----------------------------


def _replay(body: bytes) -> Callable[[], Awaitable[Message]]:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


async def _prepare_users_write(ctx: Ctx, rest: list[str]) -> list[str]:
    """Parse a (JSON, whatever its content type) write to ``_users`` strictly (duplicate
    keys → 400), hash plain
    ``password`` fields, and hand the handler the rewritten body.  Returns the ids of
    the documents it writes."""
    content_type = ctx.request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type.startswith("multipart/"):
        return list(rest[:1])  # a plain password in it is refused by the users validator
    is_doc = len(rest) == 1 and not rest[0].startswith("_")
    if not (not rest or is_doc or rest == ["_bulk_docs"]):
        return []
    raw = await ctx.body()
    ctx.request = Request(ctx.request.scope, _replay(raw))
    if not raw.strip():
        return []
    value = security.loads_strict(raw)
    iterations = ctx.settings.password_iterations
    docs: list[Any] = []
    if rest == ["_bulk_docs"]:
        if isinstance(value, dict) and isinstance(value.get("docs"), list):
            docs = value["docs"] = [
                await users.hash_password_field(d, iterations) if isinstance(d, dict) else d
                for d in value["docs"]
            ]
    elif isinstance(value, dict):
        value = await users.hash_password_field(value, iterations)
        docs = [{**value, "_id": rest[0]} if rest else value]
    try:
        body = orjson.dumps(value)
    except TypeError:
        raise errors.BadRequest("invalid UTF-8 JSON") from None
    ctx.request = Request(ctx.request.scope, _replay(body))
    return [d["_id"] for d in docs if isinstance(d, dict) and isinstance(d.get("_id"), str)]


async def _after_users_write(ctx: Ctx, rest: list[str], written: list[str]) -> None:
    """Per-user databases (``peruser``) for the user docs a successful write touched:
    created for live users, deleted with deleted ones when ``peruser_delete_dbs``."""
    ids = written if ctx.method in ("PUT", "POST") else rest[:1] if len(rest) == 1 else []
    for doc_id in dict.fromkeys(ids):
        if not doc_id.startswith(USER_PREFIX):
            continue
        name = doc_id[len(USER_PREFIX) :]
        if await load_user(ctx.server, name) is not None:
            await users.ensure_userdb(ctx.server, name)
        elif ctx.settings.peruser_delete_dbs:
            await users.delete_userdb(ctx.server, name)
