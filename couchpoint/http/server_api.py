"""Server-level endpoints: ``/``, ``/_all_dbs``, ``/_uuids``, ``/_up``, ``/_session``
(protocol reference §3.1–§3.3, §12.3)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from urllib.parse import parse_qsl

import orjson
from starlette.responses import Response

from couchpoint import __version__, errors
from couchpoint.auth import BAD_CREDENTIALS, COOKIE_NAME, Authenticator
from couchpoint.http.common import Ctx, json_response

COUCHDB_VERSION = "3.4.3"
"""The CouchDB version couchpoint advertises in ``GET /`` (the protocol it follows)."""


def _method(ctx: Ctx, *allowed: str) -> None:
    if ctx.method not in allowed:
        raise errors.method_not_allowed(",".join(allowed))


async def root(ctx: Ctx) -> Response:
    """``GET /``: welcome object with a ``uuid`` stable for the data directory."""
    _method(ctx, "GET", "HEAD")
    await ctx.server.start()
    return json_response(
        {
            "couchdb": "Welcome",
            "version": COUCHDB_VERSION,
            "git_sha": "couchpoint",
            "uuid": ctx.server.uuid,
            "features": ["couchpoint"],
            "vendor": {"name": "couchpoint", "version": __version__},
        }
    )


async def all_dbs(ctx: Ctx, auth: Authenticator) -> Response:
    """``GET /_all_dbs``: names sorted ascending; ``descending``, ``limit``, ``skip``."""
    _method(ctx, "GET", "HEAD")
    names = await ctx.server.all_dbs()
    if ctx.flag("descending"):
        names.reverse()
    skip = ctx.int_param("skip", 0) or 0
    limit = ctx.int_param("limit", None)
    names = names[skip:] if limit is None else names[skip : skip + limit]
    return json_response(names)


async def uuids(ctx: Ctx, auth: Authenticator) -> Response:
    """``GET /_uuids?count=N`` (1 ≤ N ≤ 1000)."""
    _method(ctx, "GET", "HEAD")
    raw = ctx.query.get("count", "1")
    if not (raw.isdigit() and raw.isascii()) or int(raw) < 1:
        raise errors.BadRequest("count must be a positive integer")
    count = int(raw)
    if count > 1000:
        raise errors.BadRequest("count parameter too large")
    response = json_response({"uuids": [uuid.uuid4().hex for _ in range(count)]})
    response.headers["ETag"] = f'"{uuid.uuid4().hex}"'
    response.headers["Cache-Control"] = "must-revalidate, no-cache"
    response.headers["Pragma"] = "no-cache"
    response.headers["Expires"] = "Fri, 01 Jan 1990 00:00:00 GMT"
    return response


async def up(ctx: Ctx, auth: Authenticator) -> Response:
    """``GET /_up``: ``{"status": "ok"}`` once storage is open."""
    _method(ctx, "GET", "HEAD")
    await ctx.server.start()
    return json_response({"status": "ok", "seeds": {}})


async def session(ctx: Ctx, auth: Authenticator) -> Response:
    """``GET/POST/DELETE /_session`` (§12.3).

    POST takes form or JSON ``name``/``password`` (also ``username``), checks them against
    the server admins and ``_users`` (with the lockout), and answers 200 with an
    ``AuthSession`` cookie, or 401 with a clearing cookie.  GET reports the caller's
    ``userCtx`` (``?basic=true`` while anonymous: 401).  DELETE clears the cookie.
    """
    if ctx.method in ("GET", "HEAD"):
        handlers = ["cookie", "default"]
        if ctx.settings.jwt_secret or ctx.settings.jwt_public_key:
            handlers.insert(0, "jwt")
        info: dict[str, object] = {"authentication_handlers": handlers}
        if ctx.user.authenticated:
            info["authenticated"] = ctx.user.authenticated
        if ctx.flag("basic") and ctx.user.name is None and not ctx.user.is_admin:
            raise errors.Unauthorized("Authentication required.")
        return json_response({"ok": True, "userCtx": ctx.user.to_json(), "info": info})
    if ctx.method == "DELETE":
        response = json_response({"ok": True})
        response.headers["Set-Cookie"] = _clearing_cookie()
        return response
    _method(ctx, "GET", "HEAD", "POST", "DELETE")
    content_type = ctx.request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    raw = await ctx.body()
    if content_type == "application/x-www-form-urlencoded":
        form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    elif content_type == "application/json":
        try:
            parsed = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            raise errors.BadRequest("invalid UTF-8 JSON") from None
        if not isinstance(parsed, dict):
            raise errors.BadRequest("Request body must be a JSON object")
        form = {k: v for k, v in parsed.items() if isinstance(v, str)}
    else:
        raise errors.bad_content_type(
            "Content-Type must be 'application/x-www-form-urlencoded' or 'application/json'"
        )
    name = form.get("name", form.get("username", ""))
    password = form.get("password", "")
    peer = ctx.request.client.host if ctx.request.client else None
    user = await auth.login(ctx.server, name, password, peer, ctx.settings) if name else None
    if user is None:
        response = json_response({"error": "unauthorized", "reason": BAD_CREDENTIALS}, 401)
        response.headers["Set-Cookie"] = _clearing_cookie()
        return response
    response = json_response({"ok": True, "name": user.name, "roles": list(user.roles)})
    response.headers["Set-Cookie"] = auth.set_cookie_header(await auth.cookie_for(ctx.server, name))
    return response


def _clearing_cookie() -> str:
    expires = formatdate(timeval=None, usegmt=True)
    return f"{COOKIE_NAME}=; Version=1; Expires={expires}; Max-Age=0; Path=/; HttpOnly"


ENDPOINTS: dict[str, Callable[[Ctx, Authenticator], Awaitable[Response]]] = {
    "_all_dbs": all_dbs,
    "_uuids": uuids,
    "_up": up,
    "_session": session,
}
