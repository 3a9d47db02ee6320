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
from couchpoint.attachments import read_stored, stored_length
from couchpoint.database import Database, ReadOptions, Rendered
from couchpoint.document import LOCAL_PREFIX, validate_docid
from couchpoint.http import attachment_api
from couchpoint.http.common import Ctx, json_response
from couchpoint.http.db_api import READ_FLAGS
from couchpoint.revs import RevKey, parse_rev

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
    flags = {name: ctx.flag(name) for name in (*READ_FLAGS, "attachments", "att_encoding_info")}
    return ReadOptions.from_flags(flags, _atts_since(ctx))


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


def _part(headers: list[str], body: bytes, boundary: bytes) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers).encode()
    return b"--" + boundary + b"\r\n" + head + b"\r\n" + body + b"\r\n"


async def _related(
    database: Database, doc: dict[str, Any], follows: list[tuple[str, dict[str, Any]]], boundary: bytes
) -> AsyncIterator[bytes]:
    """A ``multipart/related`` body: the JSON doc, then each following attachment's
    stored bytes, in the order of the doc's ``_attachments`` (§7.5, §7.6)."""
    yield _part(["Content-Type: application/json"], orjson.dumps(doc), boundary)
    for name, meta in follows:
        headers = [
            f'Content-Disposition: attachment; filename="{_quote_filename(name)}"',
            f"Content-Type: {meta.get('content_type', 'application/octet-stream')}",
            f"Content-Length: {stored_length(meta)}",
        ]
        if meta.get("encoding"):
            headers.append(f"Content-Encoding: {meta['encoding']}")
        yield b"--" + boundary + b"\r\n" + "".join(f"{h}\r\n" for h in headers).encode() + b"\r\n"
        async for chunk in read_stored(database.storage, meta):
            yield chunk
        yield b"\r\n"
    yield b"--" + boundary + b"--"


def _quote_filename(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"')


async def _multipart_mixed(
    database: Database, results: list[Rendered | str], boundary: bytes
) -> AsyncIterator[bytes]:
    """``open_revs`` as ``multipart/mixed`` (§7.5): a JSON part per revision without
    attachment bodies, a nested ``multipart/related`` part per revision with them, and
    ``application/json; error="true"`` parts for missing revisions."""
    for result in results:
        if isinstance(result, str):
            yield _part(
                ['Content-Type: application/json; error="true"'], orjson.dumps({"missing": result}), boundary
            )
            continue
        doc, follows = result
        if not follows:
            yield _part(["Content-Type: application/json"], orjson.dumps(doc), boundary)
            continue
        inner = multipart_boundary().encode()
        yield b"--" + boundary + b'\r\nContent-Type: multipart/related; boundary="' + inner + b'"\r\n\r\n'
        async for chunk in _related(database, doc, follows, inner):
            yield chunk
        yield b"\r\n"
    yield b"--" + boundary + b"--"


async def _bulk_get_parts(
    database: Database, results: list[dict[str, Any]], boundary: bytes
) -> AsyncIterator[bytes]:
    delimiter = b"\r\n--" + boundary + b"\r\n"
    for result in results:
        for entry in result["docs"]:
            if "error" in entry:
                error = {k: v for k, v in entry["error"].items() if k != "id"}
                yield (
                    delimiter + b'Content-Type: application/json; error="true"\r\n\r\n' + orjson.dumps(error)
                )
                continue
            doc, follows = entry["ok"]
            if not follows:
                yield delimiter + b"Content-Type: application/json\r\n\r\n" + orjson.dumps(doc)
                continue
            inner = multipart_boundary().encode()
            yield (
                delimiter
                + b'Content-Type: multipart/related; boundary="'
                + inner
                + b'"\r\nX-Doc-Id: '
                + quote(doc["_id"]).encode()
                + b"\r\nX-Rev-Id: "
                + doc["_rev"].encode()
                + b"\r\n\r\n"
            )
            async for chunk in _related(database, doc, follows, inner):
                yield chunk
    yield b"\r\n--" + boundary + b"--"


def bulk_get_multipart(database: Database, results: list[dict[str, Any]]) -> Response:
    """``_bulk_get`` as ``multipart/mixed`` (§7.3 multipart variant): CouchDB's layout,
    with a boundary starting with ``--``."""
    boundary = "--" + multipart_boundary()
    return StreamingResponse(
        _bulk_get_parts(database, results, boundary.encode()),
        media_type=f'multipart/mixed; boundary="{boundary}"',
    )


def multipart_boundary() -> str:
    """32 random hex characters, as CouchDB uses."""
    return secrets.token_hex(16)


def _atts_since(ctx: Ctx) -> list[RevKey] | None:
    value = ctx.json_param("atts_since")
    if value is None:
        return None
    if not isinstance(value, list):
        raise errors.BadRequest("`atts_since` must be a JSON array of revisions")
    return [parse_rev(rev) for rev in value]


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
        multipart = _accepts_multipart(ctx)
        results = await database.open_revs(doc_id, revs, options, multipart=multipart)
        if multipart:
            boundary = multipart_boundary()
            return StreamingResponse(
                _multipart_mixed(database, results, boundary.encode()),
                media_type=f'multipart/mixed; boundary="{boundary}"',
            )
        return json_response([{"missing": r} if isinstance(r, str) else {"ok": r[0]} for r in results])
    related = options.attachments and _accepts(ctx, "multipart/related")
    doc, follows = await database.get_doc(
        doc_id, rev=ctx.query.get("rev"), options=options, multipart=related
    )
    etag = f'"{doc["_rev"]}"'
    if related and follows:
        boundary = multipart_boundary()
        response: Response = StreamingResponse(
            _related(database, doc, follows, boundary.encode()),
            media_type=f'multipart/related; boundary="{boundary}"',
        )
        response.headers["ETag"] = etag
        return response
    response = json_response(doc)
    if not (options.conflicts or options.revs_info or options.deleted_conflicts or options.local_seq):
        response.headers["ETag"] = etag
        if ctx.request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
    return response


def _accepts(ctx: Ctx, media: str) -> bool:
    header = ctx.request.headers.get("accept", "")
    return any(item.split(";", 1)[0].strip().lower() == media for item in header.split(","))


async def document(ctx: Ctx, db: str, doc_id: str, attachment: list[str]) -> Response:
    """``/{db}/{docid}[/{att...}]`` for every method."""
    database = await ctx.server.get_db(db)
    method = ctx.method
    if attachment:
        name = "/".join(attachment)
        if method in ("GET", "HEAD"):
            return await attachment_api.get(ctx, database, doc_id, name)
        if method == "PUT":
            return await attachment_api.put(ctx, database, db, doc_id, name)
        if method == "DELETE":
            return await attachment_api.delete(ctx, database, doc_id, name)
        raise errors.method_not_allowed("DELETE,GET,HEAD,PUT")
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
    source, _ = await database.get_doc(doc_id, rev=ctx.query.get("rev"), options=ReadOptions())
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
