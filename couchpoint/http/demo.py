"""``GET /_demo/``: the demo page, an offline-first todo list on PouchDB that live-syncs
with this server (``docs/demo.md``).

Static files from ``couchpoint/static/demo`` (PouchDB's browser build is vendored there,
so the page works without any other server or network).  Like CouchDB's ``/_utils``, it
sits under a reserved ``/_`` name (no database can be called ``_demo``) and needs no
login: the page itself asks for one when the server has admins.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources

from starlette.responses import Response

from couchpoint import errors
from couchpoint.http.common import Ctx

FILES = {
    "": ("index.html", "text/html; charset=utf-8", "no-cache"),
    "index.html": ("index.html", "text/html; charset=utf-8", "no-cache"),
    "app.js": ("app.js", "text/javascript; charset=utf-8", "no-cache"),
    "pouchdb-9.0.0.min.js": ("pouchdb-9.0.0.min.js", "text/javascript; charset=utf-8", "max-age=86400"),
}


@cache
def _read(name: str) -> tuple[bytes, str]:
    data = resources.files("couchpoint").joinpath("static", "demo", name).read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


async def demo(ctx: Ctx) -> Response:
    """Serve a file of the demo; ``/_demo`` redirects to ``/_demo/`` (relative URLs)."""
    if ctx.method not in ("GET", "HEAD"):
        raise errors.method_not_allowed("GET,HEAD")
    rest = "/".join(ctx.segments[1:])
    if not rest and not ctx.request.url.path.endswith("/"):
        return Response(status_code=301, headers={"Location": "_demo/"})
    entry = FILES.get(rest)
    if entry is None:
        raise errors.NotFound("missing")
    name, media_type, cache_control = entry
    data, etag = _read(name)
    headers = {"ETag": etag, "Cache-Control": cache_control}
    if ctx.request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    headers["Content-Length"] = str(len(data))
    return Response(b"" if ctx.method == "HEAD" else data, media_type=media_type, headers=headers)
