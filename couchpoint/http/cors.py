"""CORS as CouchDB's ``chttpd_cors`` does it, for PouchDB in browsers (protocol reference
§11.3, BC-25).

PouchDB sends every request with ``credentials: 'include'`` and explicit ``Accept`` /
``Content-Type`` headers, so the browser preflights each URL and refuses ``*``.  For an
allowed ``Origin`` (the list, or any when it holds ``*``):

* a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) on any path, with or
  without credentials, is answered here with ``204`` and no body: the Origin echoed,
  ``Allow-Credentials: true`` (when enabled), the methods, the requested headers echoed
  (or CouchDB's default list), ``Max-Age: 600``, ``Vary: Origin``;
* every actual response (all statuses, streamed ones included: the headers are added to
  ``http.response.start``) gets the Origin echoed, ``Allow-Credentials``,
  ``Expose-Headers`` (CouchDB's list plus the response's own non-simple headers) and
  ``Vary: Origin``.

A request from an origin that is not allowed (or without ``Origin``) passes through
untouched: no CORS headers, and a preflight gets the router's CouchDB JSON answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

EXPOSE_HEADERS = (
    "content-type",
    "cache-control",
    "accept-ranges",
    "etag",
    "server",
    "x-couch-request-id",
    "x-couch-update-newrev",
    "x-couchdb-body-time",
    "content-range",
    "location",
)
"""CouchDB's ``COUCH_HEADERS`` plus what couchpoint sends on some responses."""

ALLOW_METHODS = ("GET", "PUT", "POST", "HEAD", "DELETE", "COPY", "OPTIONS")
DEFAULT_ALLOW_HEADERS = (
    "accept",
    "accept-language",
    "authorization",
    "content-length",
    "content-range",
    "content-type",
    "destination",
    "if-match",
    "if-none-match",
    "last-event-id",
    "origin",
    "range",
    "referer",
    "x-couch-full-commit",
    "x-couch-request-id",
    "x-csrf-token",
    "x-requested-with",
)
"""Sent when a preflight names no headers (CouchDB's ``SUPPORTED_HEADERS``, abridged)."""

MAX_AGE = 600

# Response headers a browser lets scripts read anyway, and ones never to list.
_SIMPLE = frozenset(
    {b"cache-control", b"content-language", b"content-length", b"content-type", b"expires", b"last-modified"}
)
_NEVER = frozenset({b"set-cookie", b"set-cookie2", b"vary", b"transfer-encoding", b"connection", b"date"})


class CouchCORS:
    """ASGI middleware: CORS for an allow-list of origins (``*`` = any), always echoing
    the Origin (never ``*``), with ``Allow-Credentials`` when ``credentials``."""

    def __init__(
        self,
        app: ASGIApp,
        origins: Iterable[str] = ("*",),
        *,
        credentials: bool = True,
        methods: Sequence[str] = ALLOW_METHODS,
        expose_headers: Sequence[str] = EXPOSE_HEADERS,
        max_age: int = MAX_AGE,
    ) -> None:
        self.app = app
        listed = {o.strip().rstrip("/").lower() for o in origins if o.strip()}
        self.any_origin = "*" in listed
        self.origins = frozenset(listed - {"*"})
        self.credentials = credentials
        self.methods = ", ".join(methods).encode()
        self.expose = [h.lower().encode() for h in expose_headers]
        self.max_age = str(max_age).encode()

    def allowed(self, origin: bytes) -> bool:
        """Whether ``origin`` (the request's ``Origin`` header) may read responses."""
        if not origin:
            return False
        return self.any_origin or origin.decode("latin-1").rstrip("/").lower() in self.origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = b""
        request_method = b""
        request_headers = b""
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                request_method = value
            elif name == b"access-control-request-headers":
                request_headers = value
        if not origin or not self.allowed(origin):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and request_method:
            await self._preflight(origin, request_headers, send)
            return
        await self.app(scope, receive, self._wrap(send, origin))

    def _common(self, origin: bytes, vary: bytes = b"") -> list[tuple[bytes, bytes]]:
        headers = [(b"access-control-allow-origin", origin)]
        if self.credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        headers.append((b"vary", vary + b", Origin" if vary else b"Origin"))
        return headers

    async def _preflight(self, origin: bytes, request_headers: bytes, send: Send) -> None:
        if request_headers.strip():
            allow_headers = b", ".join(h.strip().lower() for h in request_headers.split(b",") if h.strip())
        else:
            allow_headers = ", ".join(DEFAULT_ALLOW_HEADERS).encode()
        headers = self._common(origin) + [
            (b"access-control-allow-methods", self.methods),
            (b"access-control-allow-headers", allow_headers),
            (b"access-control-max-age", self.max_age),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _wrap(self, send: Send, origin: bytes) -> Send:
        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = []
                vary = b""
                expose = list(self.expose)
                for name, value in message.get("headers", []):
                    lower = name.lower()
                    if lower == b"vary":
                        vary = value
                    elif not lower.startswith(b"access-control-"):
                        headers.append((name, value))
                        if lower not in _SIMPLE and lower not in _NEVER and lower not in expose:
                            expose.append(lower)
                headers += self._common(origin, vary)
                headers.append((b"access-control-expose-headers", b", ".join(expose)))
                message = {**message, "headers": headers}
            await send(message)

        return send_with_cors
