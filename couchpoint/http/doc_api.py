"""Document endpoints: ``/{db}/{docid}``, ``_design/``, ``_local/`` (protocol reference
§4, §5.8, §7.4–§7.7, §8)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import orjson
from starlette.responses import Response, StreamingResponse

from couchpoint import errors
from couchpoint.database import Database, ReadOptions
from couchpoint.document import LOCAL_PREFIX, validate_docid
from couchpoint.http.common import Ctx, json_response
from couchpoint.http.db_api import READ_FLAGS

DOC_METHODS = "COPY,DELETE,GET,HEAD,POST,PUT"


def _rev_from(ctx: Ctx) -> str | None:
    """The rev named by ``?rev=`` or ``If-Match`` (400 when they differ)."""
    query_rev = ctx.query.get("rev")
    header = ctx.request.headers.get("if-match")
    header_rev = header.strip().strip('"') if header else None
    if query_rev and header_rev and query_rev != header_rev:
        raise errors.BadRequest("Document rev and etag have different values")
    return query_rev or header_rev


def _doc_url(ctx: Ctx, db: str, doc_id: str) -> str:
    safe = "/" if doc_id.startswith("_design/") else ""
    return f"{ctx.base_url()}/{quote(db, safe='')}/{quote(doc_id, safe=safe)}"


def _write_response(ctx: Ctx, db: str, doc_id: str, rev: str, deleted: bool) -> Response:
    response = json_response({"ok": True, "id": doc_id, "rev": rev}, 200 if deleted else 201)
    response.headers["ETag"] = f'"{rev}"'
    response.headers["Location"] = _doc_url(ctx, db, doc_id)
    return response


async def post_doc(ctx: Ctx, db: str) -> Response:
    """``POST /{db}``: create a doc (generated id when ``_id`` is absent)."""
    ctx.require_json_content_type()
    database = await ctx.server.get_db(db)
    body = await ctx.json()
    if not isinstance(body, dict):
        raise errors.BadRequest("Document must be a JSON object")
    doc_id = body.get("_id")
    if doc_id is None:
        doc_id = uuid.uuid4().hex
        body = {"_id": doc_id, **body}
    if isinstance(doc_id, str) and doc_id.startswith(LOCAL_PREFIX):
        rev = await database.put_local(doc_id[len(LOCAL_PREFIX) :], body, None)
        return json_response({"ok": True, "id": doc_id, "rev": rev}, 201)
    validate_docid(doc_id)
    rev, deleted = await database.put_doc(doc_id, body, rev=None, new_edits=True)
    return _write_response(ctx, db, doc_id, rev, deleted)


def _read_options(ctx: Ctx) -> ReadOptions:
    return ReadOptions.from_flags({name: ctx.flag(name) for name in READ_FLAGS})


def _accepts_multipart(ctx: Ctx) -> bool:
    """CouchDB's rule for ``open_revs``: multipart when ``Accept`` is missing or accepts
    ``multipart/mixed`` (also via ``multipart/*`` or ``*/*``) with q > 0."""
    header = ctx.request.headers.get("accept")
    if header is None:
        return True
    for item in header.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if q > 0 and media.lower() in ("multipart/mixed", "multipart/*", "*/*"):
            return True
    return False


async def _multipart_mixed(results: list[dict[str, Any]], boundary: str) -> AsyncIterator[bytes]:
    """``open_revs`` as ``multipart/mixed`` (§7.5): one JSON part per revision, and
    ``application/json; error="true"`` parts for missing revisions."""
    for result in results:
        if "ok" in result:
            head = b"Content-Type: application/json"
            body = orjson.dumps(result["ok"])
        else:
            head = b'Content-Type: application/json; error="true"'
            body = orjson.dumps(result)
        yield b"--" + boundary.encode() + b"\r\n" + head + b"\r\n\r\n" + body + b"\r\n"
    yield b"--" + boundary.encode() + b"--"


async def _get_doc(ctx: Ctx, database: Database, doc_id: str) -> Response:
    options = _read_options(ctx)
    if "open_revs" in ctx.query:
        raw = ctx.query["open_revs"]
        revs: list[str] | None
        if raw == "all":
            revs = None
        else:
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise errors.BadRequest("Invalid JSON in `open_revs` parameter") from None
            if not isinstance(parsed, list) or not all(isinstance(r, str) for r in parsed):
                raise errors.BadRequest("`open_revs` must be a JSON array of revisions")
            revs = parsed
        results = await database.open_revs(doc_id, revs, options)
        if _accepts_multipart(ctx):
            boundary = secrets.token_hex(16)
            return StreamingResponse(
                _multipart_mixed(results, boundary),
                media_type=f'multipart/mixed; boundary="{boundary}"',
            )
        return json_response(results)
    doc = await database.get_doc(doc_id, rev=ctx.query.get("rev"), options=options)
    response = json_response(doc)
    if not (options.conflicts or options.revs_info or options.deleted_conflicts or options.local_seq):
        etag = f'"{doc["_rev"]}"'
        response.headers["ETag"] = etag
        if ctx.request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
    return response


async def document(ctx: Ctx, db: str, doc_id: str, attachment: list[str]) -> Response:
    """``/{db}/{docid}[/{att...}]`` for every method."""
    if attachment:
        raise errors.not_implemented("Attachments are not supported yet.")
    database = await ctx.server.get_db(db)
    method = ctx.method
    if method in ("GET", "HEAD"):
        return await _get_doc(ctx, database, doc_id)
    if method == "PUT":
        validate_docid(doc_id)
        content_type = ctx.request.headers.get("content-type", "")
        if content_type.lower().startswith("multipart/related"):
            raise errors.not_implemented("multipart/related uploads are not supported yet.")
        body = await ctx.json()
        if not isinstance(body, dict):
            raise errors.BadRequest("Document must be a JSON object")
        new_edits = ctx.query.get("new_edits", "true") != "false"
        rev, deleted = await database.put_doc(doc_id, body, rev=_rev_from(ctx), new_edits=new_edits)
        return _write_response(ctx, db, doc_id, rev, deleted)
    if method == "DELETE":
        rev = await database.delete_doc(doc_id, _rev_from(ctx))
        response = json_response({"ok": True, "id": doc_id, "rev": rev}, 200)
        response.headers["ETag"] = f'"{rev}"'
        return response
    if method == "COPY":
        return await _copy(ctx, db, database, doc_id)
    raise errors.method_not_allowed(DOC_METHODS)


async def _copy(ctx: Ctx, db: str, database: Database, doc_id: str) -> Response:
    """``COPY /{db}/{docid}`` with ``Destination: id[?rev=R]``."""
    destination = ctx.request.headers.get("destination")
    if not destination:
        raise errors.BadRequest("Destination header is mandatory for COPY.")
    target, _, query = destination.partition("?")
    target_rev = query[4:] if query.startswith("rev=") else None
    from urllib.parse import unquote

    target_id = validate_docid(unquote(target))
    source = await database.get_doc(doc_id, rev=ctx.query.get("rev"), options=ReadOptions())
    body = {k: v for k, v in source.items() if k not in ("_id", "_rev")}
    rev, deleted = await database.put_doc(target_id, body, rev=target_rev, new_edits=True)
    return _write_response(ctx, db, target_id, rev, deleted)


async def local_doc(ctx: Ctx, db: str, name: str) -> Response:
    """``/{db}/_local/{name}`` (§8.1): CouchDB 3 semantics, last writer wins."""
    database = await ctx.server.get_db(db)
    doc_id = LOCAL_PREFIX + name
    if ctx.method in ("GET", "HEAD"):
        doc = await database.get_local(name)
        return json_response(doc, headers={"ETag": f'"{doc["_rev"]}"'})
    if ctx.method == "PUT":
        body = await ctx.json()
        if not isinstance(body, dict):
            raise errors.BadRequest("Document must be a JSON object")
        rev = await database.put_local(name, body, ctx.query.get("rev"))
        response = json_response({"ok": True, "id": doc_id, "rev": rev}, 200 if rev == "0-0" else 201)
        response.headers["ETag"] = f'"{rev}"'
        if rev != "0-0":
            location = f"{quote(db, safe='')}/_local/{quote(name, safe='')}"
            response.headers["Location"] = f"{ctx.base_url()}/{location}"
        return response
    if ctx.method == "DELETE":
        await database.delete_local(name)
        response = json_response({"ok": True, "id": doc_id, "rev": "0-0"}, 200)
        response.headers["ETag"] = '"0-0"'
        return response
    raise errors.method_not_allowed("DELETE,GET,HEAD,PUT")
