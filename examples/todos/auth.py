"""How the example tells couchpoint who is calling -- with what couchpoint offers today.

couchpoint authenticates server admins (``create_app(admins={name: password})``, Basic
auth or the ``AuthSession`` cookie) and, for now, lets only admins into databases.  So
the example registers each of its users as a couchpoint admin: couchpoint checks the
password, and the hooks get ``user_ctx = {"name": "alice", "roles": ["_admin"], ...}``.
The hooks in :mod:`examples.todos.rules` decide on the *name* only.

Because an admin could also do admin things (create or delete databases, write design
documents, change ``_security``), :class:`SyncGuard` sits in front of couchpoint and lets
through only what a replicating device needs; anything else is answered
``403 {"error": "forbidden"}`` as CouchDB would.  Once couchpoint lets an app supply the
user itself (a non-admin ``user_ctx``), the guard and the admin trick go away and the
rules stay the same.
"""

from __future__ import annotations

from urllib.parse import unquote

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

DB_ENDPOINTS = {
    "_changes": {"GET", "HEAD", "POST"},
    "_bulk_docs": {"POST"},
    "_bulk_get": {"POST"},
    "_all_docs": {"GET", "HEAD", "POST"},
    "_revs_diff": {"POST"},
    "_missing_revs": {"POST"},
    "_ensure_full_commit": {"POST"},
    "_local": {"GET", "HEAD", "PUT", "DELETE"},
}


def allowed(method: str, segments: list[str], db: str) -> bool:
    """Whether a device may make this request (``segments``: the decoded path)."""
    if not segments:
        return method in {"GET", "HEAD"}  # the welcome object
    if segments[0] != db:
        return False
    if len(segments) == 1:
        return method in {"GET", "HEAD"}  # db info; not PUT / DELETE
    second = segments[1]
    if second.startswith("_local/"):
        second = "_local"
    if second.startswith("_"):
        return method in DB_ENDPOINTS.get(second, set())
    return method in {"GET", "HEAD", "PUT", "DELETE"}  # documents and their attachments


class SyncGuard:
    """ASGI middleware: only the replication surface of database ``db`` gets through."""

    def __init__(self, app: ASGIApp, db: str) -> None:
        self.app = app
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":  # CORS preflights
            await self.app(scope, receive, send)
            return
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        root = scope.get("root_path", "").encode()
        if root and raw.startswith(root):
            raw = raw[len(root) :]
        segments = [unquote(part) for part in raw.split(b"?", 1)[0].decode("latin-1").split("/") if part]
        if allowed(scope["method"], segments, self.db):
            await self.app(scope, receive, send)
            return
        body = orjson.dumps({"error": "forbidden", "reason": "Devices may only replicate the todos."})
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
