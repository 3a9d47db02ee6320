"""The ASGI application: ``create_app(storage=..., **settings)``.

Layout (protocol reference §1): requests are routed on ``scope["raw_path"]`` split on
``/`` with each segment percent-decoded on its own (so ``%2F`` stays inside a doc id and
``/db``, ``/db/`` and ``/db//`` are one resource; no trailing-slash redirects).  Every
error is CouchDB's JSON ``{"error", "reason"}`` with CouchDB's status, including 404,
405 and unexpected failures (500).  CORS is :class:`couchpoint.http.cors.CouchCORS`
(CouchDB's rules: the Origin echoed, never ``*``, so PouchDB's credentialed requests
work; 204 preflights on any path without authentication).

The app works driven directly by ``httpx.ASGITransport`` (no lifespan events): storage
is opened on first use.  Mounted under a prefix in another Starlette/FastAPI app, it
routes on the part of ``raw_path`` after ``root_path``.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from starlette.applications import Starlette
from starlette.datastructures import URLPath
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from couchpoint import errors
from couchpoint.auth import ANONYMOUS, Authenticator
from couchpoint.config import Settings
from couchpoint.database import Server
from couchpoint.hooks import Hooks
from couchpoint.http.common import SERVER_HEADER, Ctx, error_response
from couchpoint.http.cors import CouchCORS
from couchpoint.http.routes import dispatch, install_builtin_hooks
from couchpoint.storage.base import Storage

log = logging.getLogger("couchpoint")

_PERCENT_OK = re.compile(rb"%[0-9A-Fa-f]{2}")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")


def split_path(raw_path: bytes, *, decode_plus_to_space: bool = False) -> list[str]:
    """Split a raw (still percent-encoded) path into decoded segments.

    Empty segments are dropped.  A ``%`` not followed by two hex digits is ``400
    bad_request "invalid_url_encoding"``; a segment that is not UTF-8 after decoding is
    ``400 illegal_docid "Document id must be valid UTF-8"``.  A raw ``+`` is kept unless
    ``decode_plus_to_space`` (CouchDB's default) is set.
    """
    segments: list[str] = []
    for part in raw_path.split(b"/"):
        if not part:
            continue
        if part.count(b"%") != len(_PERCENT_OK.findall(part)):
            raise errors.BadRequest("invalid_url_encoding")
        if decode_plus_to_space:
            part = part.replace(b"+", b" ")
        try:
            segments.append(unquote_to_bytes(part).decode("utf-8"))
        except UnicodeDecodeError:
            raise errors.illegal_docid("Document id must be valid UTF-8") from None
    return segments


def _relative_raw_path(scope: Scope) -> bytes:
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    raw = raw.split(b"?", 1)[0]
    root = scope.get("root_path", "")
    if root:
        for candidate in (root.encode("utf-8"), quote(root).encode("ascii")):
            if raw.startswith(candidate):
                return raw[len(candidate) :]
    return raw


class CouchRouter:
    """The CouchDB API as a plain ASGI app: authenticates, routes, renders errors."""

    def __init__(self, server: Server, settings: Settings, auth: Authenticator) -> None:
        self.server = server
        self.settings = settings
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        started = time.monotonic()
        request = Request(scope, receive)
        request_id = request.headers.get("x-couch-request-id", "")
        if not _REQUEST_ID.match(request_id):
            request_id = secrets.token_hex(5)
        response: Response
        try:
            segments = split_path(
                _relative_raw_path(scope), decode_plus_to_space=self.settings.decode_plus_to_space
            )
            ctx = Ctx(request, self.server, self.settings, ANONYMOUS, segments)  # dispatch authenticates
            ctx.response_headers["X-Couch-Request-ID"] = request_id
            response = await dispatch(ctx, self.auth)
        except errors.CouchError as err:
            response = error_response(err)
        except ClientDisconnect:
            return  # the client went away mid-request: nobody to answer, nothing to log
        except Exception as exc:  # every failure must be CouchDB JSON
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            response = error_response(
                errors.CouchError(f"{type(exc).__name__}", status=500, error="unknown_error")
            )
        response.headers["Server"] = SERVER_HEADER
        response.headers["X-Couch-Request-ID"] = request_id
        response.headers.setdefault("X-CouchDB-Body-Time", str(int((time.monotonic() - started) * 1000)))
        await response(scope, receive, send)


class _CatchAll(BaseRoute):
    """A route that takes every HTTP request (the CouchDB router does its own routing on
    ``raw_path``; Starlette's path patterns would reject ids containing a newline)."""

    def __init__(self, app: CouchRouter) -> None:
        self.app = app

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        return (Match.FULL, {}) if scope["type"] == "http" else (Match.NONE, {})

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def create_app(
    storage: Storage | None = None,
    settings: Settings | None = None,
    *,
    hooks: Hooks | None = None,
    validate_doc_update: Any = None,
    filters: Any = None,
    read_access: Any = None,
    authenticate: Any = None,
    **overrides: Any,
) -> Starlette:
    """Build couchpoint's ASGI app.

    ``storage``: any :class:`~couchpoint.storage.base.Storage`; default
    ``SQLiteStorage(settings.sqlite_path)``.  ``settings``: a :class:`Settings`, else
    ``Settings.from_env()``; keyword ``overrides`` replace individual fields (e.g.
    ``admins={"admin": "pw"}``, ``cors_origins=("https://app.example",)``).

    Hooks (:mod:`couchpoint.hooks`): ``hooks=Hooks(...)``, or the shortcuts
    ``validate_doc_update=``, ``filters=``, ``read_access=`` and ``authenticate=``.

    The returned Starlette app opens storage at start-up (or on the first request when no
    lifespan runs) and closes it at shutdown.  ``app.state.server`` is the
    :class:`~couchpoint.database.Server`.
    """
    settings = (settings or Settings.from_env()).with_overrides(**overrides)
    hooks = hooks or Hooks()
    if validate_doc_update is not None:
        hooks.validate_doc_update = validate_doc_update
    if filters is not None:
        hooks.filters = filters
    if read_access is not None:
        hooks.read_access = read_access
    if authenticate is not None:
        hooks.authenticate = authenticate
    install_builtin_hooks(hooks)
    if storage is None:
        from couchpoint.storage.sqlite import SQLiteStorage

        storage = SQLiteStorage(settings.sqlite_path)
    server = Server(storage, settings, hooks)
    auth = Authenticator(settings.admins, settings.secret, settings.session_timeout_s)
    router = CouchRouter(server, settings, auth)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await server.start()
        try:
            yield
        finally:
            await server.close()

    app = Starlette(
        lifespan=lifespan,
        middleware=[
            Middleware(CouchCORS, origins=settings.cors_origins, credentials=settings.cors_credentials)
        ],
    )
    app.router.routes.append(_CatchAll(router))
    app.state.server = server
    app.state.settings = settings
    return app
