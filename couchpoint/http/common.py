"""Request context and helpers shared by the HTTP handlers.

Query booleans follow CouchDB: only the literal ``true`` enables a flag.  JSON bodies
are parsed with orjson; every failure becomes a CouchDB error (never a 500).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import Response

from couchpoint import __version__, errors
from couchpoint.auth import UserCtx
from couchpoint.config import Settings
from couchpoint.database import Database, Server

SERVER_HEADER = f"couchpoint/{__version__}"


@dataclass
class Ctx:
    """Everything a handler needs: the request, the server, the caller and the settings.

    ``segments``: the decoded path segments after the app's mount point.
    """

    request: Request
    server: Server
    settings: Settings
    user: UserCtx
    segments: list[str]
    response_headers: dict[str, str] = field(default_factory=dict)

    async def database(self, name: str) -> Database:
        """The database ``name`` as seen by the caller (404 if it does not exist)."""
        db = await self.server.get_db(name)
        return db.for_user(self.user.to_json())

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def query(self) -> Mapping[str, str]:
        return self.request.query_params

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean query parameter: ``true`` → True, ``false`` → False, absent → default."""
        value = self.query.get(name)
        if value is None:
            return default
        return value == "true"

    def int_param(self, name: str, default: int | None, *, reason: str | None = None) -> int | None:
        """A non-negative integer query parameter; 400 ``query_parse_error`` otherwise."""
        value = self.query.get(name)
        if value is None:
            return default
        if value.isdigit() and value.isascii():
            return int(value)
        raise errors.CouchError(
            reason or f'Invalid value for integer: "{value}"', status=400, error="query_parse_error"
        )

    def json_param(self, name: str) -> Any:
        """A JSON-encoded query parameter (``open_revs``, ``keys``, ``startkey`` ...)."""
        value = self.query.get(name)
        if value is None:
            return None
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            raise errors.BadRequest(f"Invalid JSON in `{name}` parameter") from None

    def require_json_content_type(self) -> None:
        """415 unless the media type is ``application/json`` (parameters allowed)."""
        content_type = self.request.headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise errors.bad_content_type()

    async def body(self) -> bytes:
        """The whole request body (bounded by ``max_request_size`` → 413)."""
        limit = self.settings.max_request_size
        declared = self.request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise errors.too_large()
        chunks: list[bytes] = []
        size = 0
        async for chunk in self.request.stream():
            size += len(chunk)
            if size > limit:
                raise errors.too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    async def json(self, *, required: bool = True) -> Any:
        """The request body as JSON.  400 "invalid UTF-8 JSON" / "Missing request body"."""
        raw = await self.body()
        if not raw.strip():
            if required:
                raise errors.BadRequest("Missing request body")
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise errors.BadRequest("invalid UTF-8 JSON") from None

    async def json_object(self) -> dict[str, Any]:
        """The body as a JSON object; 400 "Request body must be a JSON object"."""
        value = await self.json()
        if not isinstance(value, dict):
            raise errors.BadRequest("Request body must be a JSON object")
        return value

    def base_url(self) -> str:
        """Absolute URL of the app's root (for ``Location`` headers)."""
        url = self.request.url
        root = quote(self.request.scope.get("root_path", ""), safe="/")
        return f"{url.scheme}://{url.netloc}{root}"


def dumps(value: Any) -> bytes:
    """Compact JSON followed by a newline, as CouchDB writes it."""
    return orjson.dumps(value) + b"\n"


def json_response(value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response with CouchDB's headers."""
    response = Response(dumps(value), status_code=status, media_type="application/json")
    response.headers["Cache-Control"] = "must-revalidate"
    if headers:
        for key, val in headers.items():
            response.headers[key] = val
    return response


def error_response(err: errors.CouchError) -> Response:
    return json_response(err.to_json(), err.status, err.headers)


def ok(status: int = 200, **fields: Any) -> Response:
    return json_response({"ok": True, **fields}, status)
