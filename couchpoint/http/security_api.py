"""``GET|PUT /{db}/_security`` (protocol reference §12.4).

Not a document: no revision, not replicated, last writer wins.  ``GET`` answers the
object in force (CouchDB 3's admin-only object for a database that never had one
stored); ``PUT`` (db admins only, checked by the router) stores a validated object and
answers ``{"ok": true}``.  The body is parsed refusing duplicate keys (CVE-2017-12635).
"""

from __future__ import annotations

from starlette.responses import Response

from couchpoint import errors, security
from couchpoint.http.common import Ctx, json_response, ok


async def security_object(ctx: Ctx, db: str) -> Response:
    database = await ctx.server.get_db(db)
    if ctx.method in ("GET", "HEAD"):
        return json_response(security.effective(await database.store.get_security()))
    if ctx.method != "PUT":
        raise errors.method_not_allowed("GET,HEAD,PUT")
    raw = await ctx.body()
    if not raw.strip():
        raise errors.BadRequest("Missing request body")
    value = security.validate_security_object(security.loads_strict(raw))
    limit = ctx.settings.max_document_size
    if limit and len(raw) > limit:
        raise errors.document_too_large("_security")
    async with database.store.write() as txn:
        await txn.put_security(value)
    return ok()
