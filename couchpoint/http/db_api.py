"""Database-level endpoints (protocol reference §3.5–§3.12, §6, §7.1–§7.3, §7.8)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from couchpoint import errors
from couchpoint.database import ReadOptions
from couchpoint.document import DESIGN_PREFIX
from couchpoint.http.common import Ctx, json_response, ok

READ_FLAGS = ("revs", "revs_info", "conflicts", "deleted_conflicts", "local_seq", "meta", "latest")


def _method(ctx: Ctx, *allowed: str) -> None:
    if ctx.method not in allowed:
        raise errors.method_not_allowed(",".join(allowed))


async def database(ctx: Ctx, db: str) -> Response:
    """``GET|HEAD|PUT|DELETE|POST /{db}``."""
    if ctx.method in ("GET", "HEAD"):
        database = await ctx.database(db)
        return json_response(await database.info())
    if ctx.method == "PUT":
        await ctx.server.create_db(db)
        response = ok(201)
        response.headers["Location"] = f"{ctx.base_url()}/{_quote(db)}"
        return response
    if ctx.method == "DELETE":
        if "rev" in ctx.query:
            raise errors.BadRequest(
                "You tried to DELETE a database with a ?rev= parameter. "
                "Did you mean to DELETE a document instead?"
            )
        await ctx.server.delete_db(db)
        return ok(200)
    if ctx.method == "POST":
        from couchpoint.http.doc_api import post_doc

        return await post_doc(ctx, db)
    raise errors.method_not_allowed("DELETE,GET,HEAD,POST,PUT")


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


async def bulk_docs(ctx: Ctx, db: str) -> Response:
    """``POST /{db}/_bulk_docs``: always 201 with per-doc results (§7.2)."""
    _method(ctx, "POST")
    ctx.require_json_content_type()
    database = await ctx.database(db)
    body = await ctx.json_object()
    if "docs" not in body:
        raise errors.BadRequest("POST body must include `docs` parameter.")
    new_edits = body.get("new_edits", True)
    if not isinstance(new_edits, bool):
        raise errors.BadRequest("`new_edits` parameter must be a boolean.")
    if body.get("all_or_nothing") is True:
        raise errors.BadRequest("`all_or_nothing` is not supported.")
    results = await database.bulk_docs(body["docs"], new_edits)
    return json_response(results, 201)


def _read_options(ctx: Ctx, body: dict[str, Any] | None = None) -> ReadOptions:
    names = (*READ_FLAGS, "attachments", "att_encoding_info")
    flags = {name: ctx.flag(name) for name in names}
    if body:
        for name in names:
            if body.get(name) is True:
                flags[name] = True
    return ReadOptions.from_flags(flags)


async def bulk_get(ctx: Ctx, db: str) -> Response:
    """``POST /{db}/_bulk_get``: exactly ``{"results": [...]}`` in request order (§7.3)."""
    _method(ctx, "POST")
    for param in ("open_revs", "rev", "atts_since", "new_edits", "w"):
        if param in ctx.query:
            raise errors.BadRequest(f'"{param}" query parameter is not acceptable')
    ctx.require_json_content_type()
    database = await ctx.database(db)
    body = await ctx.json_object()
    if "docs" not in body or not isinstance(body["docs"], list):
        raise errors.BadRequest("Missing JSON list of 'docs'.")
    accept = [
        item.split(";", 1)[0].strip().lower() for item in ctx.request.headers.get("accept", "").split(",")
    ]
    multipart = not {"application/json", "application/*", "*/*"} & set(accept) and bool(
        {"multipart/mixed", "multipart/related"} & set(accept)
    )
    results = await database.bulk_get(body["docs"], _read_options(ctx, body), multipart=multipart)
    if multipart:
        from couchpoint.http.doc_api import bulk_get_multipart

        return bulk_get_multipart(database, results)
    return json_response({"results": results})


async def revs_diff(ctx: Ctx, db: str) -> Response:
    """``POST /{db}/_revs_diff`` (§7.1)."""
    _method(ctx, "POST")
    ctx.require_json_content_type()
    database = await ctx.database(db)
    return json_response(await database.revs_diff(await ctx.json_object()))


async def missing_revs(ctx: Ctx, db: str) -> Response:
    """``POST /{db}/_missing_revs``: ``{"missing_revs": {id: [revs]}}``."""
    _method(ctx, "POST")
    ctx.require_json_content_type()
    database = await ctx.database(db)
    diff = await database.revs_diff(await ctx.json_object())
    return json_response({"missing_revs": {k: v["missing"] for k, v in diff.items()}})


async def ensure_full_commit(ctx: Ctx, db: str) -> Response:
    """``POST /{db}/_ensure_full_commit``: 201 with the db's ``instance_start_time``.

    Every write is durable when its response is sent, so this only reports."""
    _method(ctx, "POST")
    ctx.require_json_content_type()
    database = await ctx.database(db)
    await ctx.body()
    return json_response({"ok": True, "instance_start_time": await database.instance_start_time()}, 201)


async def revs_limit(ctx: Ctx, db: str) -> Response:
    """``GET|PUT /{db}/_revs_limit``: a bare JSON integer."""
    database = await ctx.database(db)
    if ctx.method in ("GET", "HEAD"):
        return json_response(database.revs_limit)
    _method(ctx, "GET", "HEAD", "PUT")
    await database.set_revs_limit(await ctx.json())
    return ok()


async def compact(ctx: Ctx, db: str) -> Response:
    """``POST /{db}/_compact``: 202.  Rule: revision bodies are kept until stemming drops
    them (so stub resolution and ``?rev=`` reads keep working); compaction deletes the
    attachment blobs no stored revision references any more (after a grace period that
    spares uploads in flight; see docs/rules.md)."""
    _method(ctx, "POST")
    ctx.require_json_content_type()
    await ctx.database(db)
    await ctx.server.storage.collect_garbage()
    return ok(202)


def _parse_key(ctx: Ctx, *names: str) -> str | None:
    for name in names:
        if name in ctx.query:
            value = ctx.json_param(name)
            if not isinstance(value, str):
                raise errors.CouchError(
                    f"Invalid `{name}` value: document ids are strings", status=400, error="query_parse_error"
                )
            return value
    return None


async def all_docs(ctx: Ctx, db: str, *, design_only: bool = False) -> Response:
    """``GET|POST /{db}/_all_docs`` (§7.8)."""
    _method(ctx, "GET", "HEAD", "POST")
    database = await ctx.database(db)
    keys: list[Any] | None = None
    if ctx.method == "POST":
        ctx.require_json_content_type()
        body = await ctx.json_object()
        if "keys" in body:
            if not isinstance(body["keys"], list):
                raise errors.BadRequest("`keys` body member must be an array.")
            keys = body["keys"]
    if "keys" in ctx.query:
        value = ctx.json_param("keys")
        if not isinstance(value, list):
            raise errors.BadRequest("`keys` parameter must be an array.")
        keys = value
    if "key" in ctx.query:
        keys = [ctx.json_param("key")]
    start = _parse_key(ctx, "startkey", "start_key")
    end = _parse_key(ctx, "endkey", "end_key")
    descending = ctx.flag("descending")
    if design_only:
        start = start or (DESIGN_PREFIX if not descending else DESIGN_PREFIX + "\uffff")
        end = end or (DESIGN_PREFIX + "\uffff" if not descending else DESIGN_PREFIX)
    total, rows = await database.all_docs(
        keys=keys,
        start=start,
        end=end,
        inclusive_end=ctx.flag("inclusive_end", True),
        descending=descending,
        skip=ctx.int_param("skip", 0) or 0,
        limit=ctx.int_param("limit", None),
        include_docs=ctx.flag("include_docs"),
        conflicts=ctx.flag("conflicts"),
    )
    result: dict[str, Any] = {
        "total_rows": total,
        "offset": None if keys is not None else ctx.int_param("skip", 0),
    }
    if ctx.flag("update_seq"):
        result["update_seq"] = (await database.store.info()).update_seq
    result["rows"] = rows
    return json_response(result)


async def design_docs(ctx: Ctx, db: str) -> Response:
    """``GET /{db}/_design_docs``: ``_all_docs`` restricted to design documents."""
    return await all_docs(ctx, db, design_only=True)


async def local_docs(ctx: Ctx, db: str) -> Response:
    """``GET /{db}/_local_docs``: not offered; CouchDB 2.2+ optional endpoint."""
    raise errors.not_implemented()
