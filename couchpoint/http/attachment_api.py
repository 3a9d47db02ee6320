"""``/{db}/{docid}/{att}``: attachment bodies, streamed both ways (protocol reference §9).

* GET/HEAD stream the stored blob: gzip-stored bodies are sent as they are when the client
  accepts gzip (``Content-Encoding: gzip``), decoded on the fly otherwise; identity bodies
  honour a single ``Range`` (206 / 416).  ``ETag`` is the digest without ``md5-``.
* PUT streams the request body into storage (gzip-encoding compressible types on the
  way) and then writes a new revision that carries the doc's other attachments over.
* DELETE writes a new revision without the attachment.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from starlette.responses import Response, StreamingResponse

from couchpoint import errors
from couchpoint.attachments import PreparedAttachment, read_decoded, read_stored, store_stream, validate_name
from couchpoint.database import Database, ReadOptions
from couchpoint.document import validate_docid
from couchpoint.http.common import Ctx, json_response

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _rev(ctx: Ctx) -> str | None:
    """The rev from ``?rev=`` or ``If-Match`` (CouchDB ``extract_header_rev``: 400 when
    both are given and differ)."""
    query_rev = ctx.query.get("rev")
    header = ctx.request.headers.get("if-match")
    header_rev = header.strip().strip('"') if header else None
    if query_rev and header_rev and query_rev != header_rev:
        raise errors.BadRequest("Document rev and etag have different values")
    return query_rev or header_rev


def _etag(meta: dict[str, Any]) -> str:
    digest = str(meta.get("digest", ""))
    return f'"{digest[4:] if digest.startswith("md5-") else digest}"'


def _accepts_gzip(ctx: Ctx) -> bool:
    for item in ctx.request.headers.get("accept-encoding", "").split(","):
        coding, *params = (p.strip() for p in item.split(";"))
        if coding.lower() in ("gzip", "*") and not any(
            p.replace(" ", "") in ("q=0", "q=0.0") for p in params
        ):
            return True
    return False


def _parse_range(header: str, length: int) -> tuple[int, int] | None:
    """``(start, end_inclusive)`` for a single satisfiable range, ``None`` for "send the
    whole body"; raises 416 for an unsatisfiable one (CouchDB ``parse_ranges``)."""
    match = _RANGE.match(header.strip())
    if not match:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        size = int(last)
        if size == 0:
            raise _unsatisfiable()
        return max(0, length - size), length - 1
    start = int(first)
    end = int(last) if last else length - 1
    if start == 0 and not last:
        return None
    if start >= length or end < start:
        raise _unsatisfiable()
    return start, min(end, length - 1)


def _unsatisfiable() -> errors.CouchError:
    return errors.CouchError(
        "Requested range not satisfiable", status=416, error="requested_range_not_satisfiable"
    )


async def get(ctx: Ctx, database: Database, doc_id: str, name: str) -> Response:
    """``GET|HEAD /{db}/{docid}/{att}[?rev=]``."""
    meta = await database.attachment(doc_id, name, _rev(ctx))
    etag = _etag(meta)
    headers = {
        "ETag": etag,
        "Cache-Control": "must-revalidate",
        "Content-Security-Policy": "sandbox",
    }
    if ctx.request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    media_type = str(meta.get("content_type", "application/octet-stream"))
    gzipped = meta.get("encoding") == "gzip"
    head = ctx.method == "HEAD"
    status = 200
    body: AsyncIterator[bytes] | None = None
    if gzipped:
        headers["Accept-Ranges"] = "none"
        if _accepts_gzip(ctx):
            headers["Content-Encoding"] = "gzip"
            headers["Content-Length"] = str(meta["encoded_length"])
            body = None if head else read_stored(database.storage, meta)
        else:
            headers["Content-Length"] = str(meta.get("length", 0))
            body = None if head else read_decoded(database.storage, meta)
    else:
        length = int(meta.get("length", 0))
        headers["Accept-Ranges"] = "bytes"
        span = _parse_range(ctx.request.headers["range"], length) if "range" in ctx.request.headers else None
        if span is None:
            headers["Content-Length"] = str(length)
            body = None if head else read_stored(database.storage, meta)
        else:
            start, end = span
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{length}"
            headers["Content-Length"] = str(end - start + 1)
            body = None if head else read_stored(database.storage, meta, start, end + 1)
    # The stored type exactly (Starlette's media_type would append "; charset=utf-8"
    # to text/* types, which CouchDB does not).
    headers["Content-Type"] = media_type
    if body is None:
        return Response(status_code=status, headers=headers)
    return StreamingResponse(body, status_code=status, headers=headers)


async def bounded_body(ctx: Ctx) -> AsyncIterator[bytes]:
    """The request body as a stream, 413 ``too_large`` past ``max_request_size``."""
    limit = ctx.settings.max_request_size
    size = 0
    async for chunk in ctx.request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.too_large()
        yield chunk


async def _current_body(database: Database, doc_id: str, rev: str | None) -> dict[str, Any]:
    """The body an attachment edit builds on: the doc at ``rev`` (409 if it is not
    there), or an empty new doc when no rev is given."""
    if rev is None:
        return {}
    try:
        doc, _ = await database.get_doc(doc_id, rev=rev, options=ReadOptions())
    except errors.NotFound:
        raise errors.Conflict() from None
    return {k: v for k, v in doc.items() if k not in ("_id", "_rev")}


def _location(ctx: Ctx, db: str, doc_id: str, name: str) -> str:
    return f"{ctx.base_url()}/{quote(db, safe='')}/{quote(doc_id, safe='/')}/{quote(name, safe='/')}"


async def put(ctx: Ctx, database: Database, db: str, doc_id: str, name: str) -> Response:
    """``PUT /{db}/{docid}/{att}[?rev=]``: 201 ``{"ok", "id", "rev"}``."""
    validate_docid(doc_id)
    validate_name(name)
    rev = _rev(ctx)
    meta = await store_stream(
        database.storage,
        bounded_body(ctx),
        ctx.request.headers.get("content-type", "application/octet-stream"),
        content_encoding=ctx.request.headers.get("content-encoding"),
        compressible_types=ctx.settings.compressible_types,
        max_size=ctx.settings.max_attachment_size,
        name=name,
    )
    body = await _current_body(database, doc_id, rev)
    atts = dict(body.get("_attachments") or {})
    atts[name] = PreparedAttachment(meta)
    body["_attachments"] = atts
    new_rev, _ = await database.put_doc(doc_id, body, rev=rev, new_edits=True)
    response = json_response({"ok": True, "id": doc_id, "rev": new_rev}, 201)
    response.headers["Location"] = _location(ctx, db, doc_id, name)
    response.headers["ETag"] = f'"{new_rev}"'
    return response


async def delete(ctx: Ctx, database: Database, doc_id: str, name: str) -> Response:
    """``DELETE /{db}/{docid}/{att}?rev=``: 200 with the new rev."""
    rev = _rev(ctx)
    if rev is None:
        # CouchDB: 404 when the doc does not exist (or is deleted), else 409.
        await database.get_doc(doc_id, rev=None, options=ReadOptions())
        raise errors.Conflict()
    body = await _current_body(database, doc_id, rev)
    atts = dict(body.get("_attachments") or {})
    if name not in atts:
        raise errors.NotFound("Document is missing attachment")
    del atts[name]
    if atts:
        body["_attachments"] = atts
    else:  # CouchDB omits an empty _attachments object
        body.pop("_attachments", None)
    new_rev, _ = await database.put_doc(doc_id, body, rev=rev, new_edits=True)
    response = json_response({"ok": True, "id": doc_id, "rev": new_rev}, 200)
    response.headers["ETag"] = f'"{new_rev}"'
    return response
