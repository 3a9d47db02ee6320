"""Document endpoints: ``/{db}/{docid}``, ``_design/``, ``_local/`` (protocol reference
§4, §5.8, §7.4–§7.7, §8)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import orjson
from starlette.responses import Response, StreamingResponse

from couchpoint import errors
from couchpoint.attachments import PreparedAttachment, read_stored, store_stream, stored_length
from couchpoint.database import Database, ReadOptions, Rendered
from couchpoint.document import LOCAL_PREFIX, validate_docid
from couchpoint.http import attachment_api
from couchpoint.http.common import Ctx, json_response
from couchpoint.http.db_api import READ_FLAGS
from couchpoint.multipart import (
    Attachment,
    ErrorPart,
    JsonPart,
    MixedPart,
    MultipartError,
    Part,
    RelatedPart,
    iter_parts,
    mixed_body,
    mixed_content_type,
    multipart_boundary,
    parse_boundary,
    read_all,
    related_body,
    related_content_type,
)
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
    database = await ctx.database(db)
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


def _attachment_parts(database: Database, follows: list[tuple[str, dict[str, Any]]]) -> list[Attachment]:
    """Attachment parts streaming each stored body (gzip bytes when stored gzip)."""
    return [
        Attachment(
            name,
            str(meta.get("content_type", "application/octet-stream")),
            stored_length(meta),
            meta.get("encoding"),
            read_stored(database.storage, meta),
        )
        for name, meta in follows
    ]


def _rendered_part(
    database: Database, rendered: Rendered, headers: tuple[tuple[str, str], ...] = ()
) -> MixedPart:
    doc, follows = rendered
    if not follows:
        return JsonPart(orjson.dumps(doc))
    return RelatedPart(orjson.dumps(doc), _attachment_parts(database, follows), headers=headers)


def _open_revs_parts(database: Database, results: list[Rendered | str]) -> Iterator[MixedPart]:
    """``open_revs`` as ``multipart/mixed`` parts (§7.5): a JSON part per revision without
    attachment bodies, a nested ``multipart/related`` part per revision with them, and
    ``application/json; error="true"`` parts for missing revisions."""
    for result in results:
        if isinstance(result, str):
            yield ErrorPart(orjson.dumps({"missing": result}))
        else:
            yield _rendered_part(database, result)


def _bulk_get_parts(database: Database, results: list[dict[str, Any]]) -> Iterator[MixedPart]:
    for result in results:
        for entry in result["docs"]:
            if "error" in entry:
                yield ErrorPart(orjson.dumps({k: v for k, v in entry["error"].items() if k != "id"}))
                continue
            doc, _ = entry["ok"]
            headers = (("X-Doc-Id", quote(doc["_id"])), ("X-Rev-Id", doc["_rev"]))
            yield _rendered_part(database, entry["ok"], headers)


def bulk_get_multipart(database: Database, results: list[dict[str, Any]]) -> Response:
    """``_bulk_get`` as ``multipart/mixed`` (§7.3 multipart variant), with a boundary
    starting with ``--`` as CouchDB's."""
    boundary = "--" + multipart_boundary()
    return StreamingResponse(
        mixed_body(_bulk_get_parts(database, results), boundary), media_type=mixed_content_type(boundary)
    )


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
                mixed_body(_open_revs_parts(database, results), boundary),
                media_type=mixed_content_type(boundary),
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
            related_body(orjson.dumps(doc), _attachment_parts(database, follows), boundary),
            media_type=related_content_type(boundary),
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
    database = await ctx.database(db)
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
            body = await _multipart_doc(ctx, database, content_type)
        else:
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


async def _multipart_doc(ctx: Ctx, database: Database, content_type: str) -> dict[str, Any]:
    """Read a ``multipart/related`` document upload (§7.6): the JSON part first, then one
    part per ``follows`` attachment in ``_attachments`` order, each streamed into storage
    as sent (gzip parts stay gzip) and checked against its ``digest`` and length.  The
    rest of the body is drained before an error is reported."""
    parts = iter_parts(attachment_api.bounded_body(ctx), parse_boundary(content_type))
    try:
        first = await anext(parts, None)
        if first is None:
            raise errors.BadRequest("Missing JSON part in multipart/related body")
        if first.content_type and first.content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise errors.bad_content_type()
        try:
            doc = orjson.loads(await read_all(first, ctx.settings.max_document_size))
        except orjson.JSONDecodeError:
            raise errors.BadRequest("invalid UTF-8 JSON") from None
        if not isinstance(doc, dict):
            raise errors.BadRequest("Document must be a JSON object")
        atts = doc.get("_attachments")
        if isinstance(atts, dict):
            prepared = dict(atts)
            for name, entry in atts.items():
                if isinstance(entry, dict) and entry.get("follows") is True:
                    part = await anext(parts, None)
                    if part is None:
                        raise errors.BadRequest(f"Missing attachment part for {name}")
                    prepared[name] = await _store_part(ctx, database, name, entry, part)
            doc["_attachments"] = prepared
        return doc
    finally:
        with contextlib.suppress(MultipartError):
            async for _ in parts:  # drain, so an error reaches a client still sending
                pass


async def _store_part(
    ctx: Ctx, database: Database, name: str, entry: dict[str, Any], part: Part
) -> PreparedAttachment:
    encoding = entry.get("encoding")
    meta = await store_stream(
        database.storage,
        part.stream(),
        str(entry.get("content_type") or "application/octet-stream"),
        content_encoding="gzip" if encoding == "gzip" else None,
        compressible_types=(),
        max_size=ctx.settings.max_attachment_size,
        name=name,
    )
    expected = entry.get("encoded_length") if encoding == "gzip" else entry.get("length")
    received = stored_length(meta)
    if isinstance(expected, int) and expected != received:
        raise errors.BadRequest(f"Attachment {name} has {received} bytes, expected {expected}")
    digest = entry.get("digest")
    if isinstance(digest, str) and digest.startswith("md5-") and digest != meta["digest"]:
        raise errors.CouchError("Possible message corruption.", status=400, error="content_md5_mismatch")
    revpos = entry.get("revpos")
    return PreparedAttachment(meta, revpos if isinstance(revpos, int) and revpos > 0 else None)


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
    if "_attachments" in body:
        # The copy is a new doc: its attachments are the source's stored bodies, not stubs.
        stored = await database.stored_attachments(doc_id, source["_rev"])
        body["_attachments"] = {
            name: PreparedAttachment(meta, meta.get("revpos")) for name, meta in stored.items()
        }
    rev, deleted = await database.put_doc(target_id, body, rev=target_rev, new_edits=True)
    return _write_response(ctx, db, target_id, rev, deleted)


async def local_doc(ctx: Ctx, db: str, name: str) -> Response:
    """``/{db}/_local/{name}`` (§8.1): CouchDB 3 semantics, last writer wins."""
    database = await ctx.database(db)
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
