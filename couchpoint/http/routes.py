"""The URL table, on one screen (protocol reference §1.1).

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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.responses import Response

from couchpoint import errors
from couchpoint.auth import Authenticator
from couchpoint.document import DESIGN_PREFIX, LOCAL_PREFIX
from couchpoint.http import changes_api, db_api, doc_api, server_api
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
    "_security": db_api.security,
    "_design_docs": db_api.design_docs,
    "_local_docs": db_api.local_docs,
}

PUBLIC_SERVER_ENDPOINTS = {"_session", "_up", "_uuids"}


def _require_admin(ctx: Ctx, reason: str) -> None:
    if ctx.user.is_admin:
        return
    raise errors.Unauthorized(reason) if ctx.user.name is None else errors.Forbidden(reason)


async def dispatch(ctx: Ctx, auth: Authenticator) -> Response:
    """Route a request and return its response (errors are raised as CouchError)."""
    segments = ctx.segments
    if not segments:
        return await server_api.root(ctx)
    head = segments[0]
    if head.startswith("_") and len(segments) == 1 and head in server_api.ENDPOINTS:
        if head not in PUBLIC_SERVER_ENDPOINTS:
            _require_admin(ctx, "You are not a server admin.")
        return await server_api.ENDPOINTS[head](ctx, auth)
    _require_admin(ctx, "You are not authorized to access this db.")
    db = head
    if len(segments) == 1:
        return await db_api.database(ctx, db)
    second = segments[1]
    rest = segments[2:]
    if second == "_local":
        if not rest:
            raise errors.BadRequest("Invalid _local document id.")
        if len(rest) > 1:
            raise errors.BadRequest("_local documents do not accept attachments.")
        return await doc_api.local_doc(ctx, db, rest[0])
    if second.startswith(LOCAL_PREFIX):
        if rest:
            raise errors.BadRequest("_local documents do not accept attachments.")
        return await doc_api.local_doc(ctx, db, second[len(LOCAL_PREFIX) :])
    if second == "_design":
        if not rest:
            return await doc_api.document(ctx, db, DESIGN_PREFIX, [])
        return await doc_api.document(ctx, db, DESIGN_PREFIX + rest[0], rest[1:])
    handler = DB_ENDPOINTS.get(second)
    if handler is not None and not rest:
        return await handler(ctx, db)
    return await doc_api.document(ctx, db, second, rest)
