"""``GET|POST /{db}/_changes``: parameters, filters and streamed feeds (protocol
reference §6).  The feed bodies come from :mod:`couchpoint.changes`."""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import AsyncIterable
from typing import Any

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from couchpoint import changes as changes_feed
from couchpoint import errors
from couchpoint.database import Database
from couchpoint.http.common import Ctx


def _method(ctx: Ctx, *allowed: str) -> None:
    if ctx.method not in allowed:
        raise errors.method_not_allowed(",".join(allowed))


def _positive_ms(ctx: Ctx, name: str, reason_bad: str, reason_negative: str) -> int | None:
    raw = ctx.query.get(name)
    if raw is None:
        return None
    if name == "heartbeat" and raw == "true":
        return 60_000
    try:
        value = int(raw)
    except ValueError:
        raise errors.BadRequest(reason_bad) from None
    if value < 0 or (name == "heartbeat" and value == 0):
        raise errors.BadRequest(reason_negative)
    return value


async def _changes_query(ctx: Ctx, database: Database) -> changes_feed.ChangesQuery:
    feed = ctx.query.get("feed", "normal")
    if feed not in changes_feed.FEEDS:
        raise errors.BadRequest("Supported `feed` types: normal, continuous, live, longpoll, eventsource")
    since_raw = ctx.query.get("since")
    if since_raw is None:
        since_raw = ctx.query.get("last-event-id")
    if feed == "eventsource" and ctx.request.headers.get("last-event-id"):
        since_raw = ctx.request.headers["last-event-id"]
    since = changes_feed.parse_since(since_raw)
    limit_raw = ctx.query.get("limit")
    limit: int | None = None
    if limit_raw is not None:
        try:
            limit = int(limit_raw)
        except ValueError:
            raise errors.BadRequest("The limit value should be a non-negative integer") from None
        if limit < 0:
            raise errors.BadRequest("The limit value should be a non-negative integer")
    heartbeat = _positive_ms(
        ctx,
        "heartbeat",
        "Invalid heartbeat value. Expecting a positive integer value (in milliseconds).",
        "The heartbeat value should be a positive integer (in milliseconds).",
    )
    timeout = _positive_ms(
        ctx,
        "timeout",
        "The timeout value should be a non-negative integer",
        "The timeout value should be a non-negative integer",
    )
    cap = ctx.settings.changes_timeout_ms
    style = ctx.query.get("style", "main_only")
    if style not in ("main_only", "all_docs"):
        raise errors.BadRequest("Supported `style` values: main_only, all_docs")
    doc_ids: tuple[str, ...] | None = None
    selector = None
    design_only = False
    filter_name = ctx.query.get("filter")
    body: dict[str, Any] = {}
    if ctx.method == "POST":
        ctx.require_json_content_type()
        parsed = await ctx.json(required=False)
        if parsed is not None:
            if not isinstance(parsed, dict):
                raise errors.BadRequest("Request body must be a JSON object")
            body = parsed
    if filter_name == "_doc_ids":
        raw_ids = body.get("doc_ids") if "doc_ids" in body else ctx.json_param("doc_ids")
        if not isinstance(raw_ids, list) or not all(isinstance(i, str) for i in raw_ids):
            raise errors.BadRequest("`doc_ids` filter parameter is not a list of doc ids.")
        doc_ids = tuple(raw_ids)
    elif filter_name == "_selector":
        if "selector" not in body:
            raise errors.BadRequest("Selector must be specified in POST payload")
        from couchpoint.mango import Selector

        selector = Selector.compile(body["selector"]).matches
    elif filter_name == "_design":
        design_only = True
    elif filter_name == "_view":
        raise errors.BadRequest("JavaScript filters are not supported: `_view` needs a JavaScript engine.")
    elif filter_name:
        if filter_name.startswith("_"):
            raise errors.BadRequest("unknown builtin filter name")
        named = database.hooks.change_filter(database.name, filter_name)
        if named is None:
            if "/" not in filter_name:
                raise errors.BadRequest("`filter` parameter is not a valid filter name (ddoc/name)")
            raise errors.NotFound(f"missing filter function: {filter_name}")
        request = {"query": dict(ctx.query), "userCtx": dict(database.user)}
        selector = functools.partial(_named_filter, named, request)
    if database.restricts_reads:
        selector = _with_read_access(selector, database)
    return changes_feed.ChangesQuery(
        feed=changes_feed.FEEDS[feed],  # type: ignore[arg-type]
        since=since,
        limit=limit,
        descending=ctx.flag("descending"),
        style=style,  # type: ignore[arg-type]
        include_docs=ctx.flag("include_docs"),
        conflicts=ctx.flag("conflicts"),
        heartbeat_ms=heartbeat,
        timeout_ms=min(timeout if timeout is not None else cap, cap),
        doc_ids=doc_ids,
        selector=selector,
        design_only=design_only,
    )


def _named_filter(hook: Any, request: dict[str, Any], doc: dict[str, Any]) -> bool:
    return bool(hook(doc, request))


def _with_read_access(selector: Any, database: Database) -> Any:
    """Combine a row predicate with the ``read_access`` hooks (revisions the caller may
    not read are never emitted)."""

    def allowed(doc: dict[str, Any]) -> bool:
        return database.visible(doc) and (selector is None or bool(selector(doc)))

    return allowed


class FeedResponse(StreamingResponse):
    """A streaming response that stops its body generator as soon as the client goes.

    Starlette only listens for ``http.disconnect`` on older ASGI spec versions; a feed
    that waits silently for minutes must notice a vanished client at once to free what
    it holds.  The body runs in the request's own task; one small listener task waits
    for ``http.disconnect`` and cancels the body (the cancellation is absorbed here, so
    the server sees a normal end).  Plain asyncio rather than an anyio task group: an
    idle feed costs about 7 KB less (``docs/feeds.md``).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        state = _FeedState()
        listener = asyncio.get_running_loop().create_task(_cancel_on_disconnect(receive, task, state))
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            if not state.disconnected:
                raise
        except OSError:
            pass
        finally:
            state.done = True
            listener.cancel()
            if state.disconnected and task.cancelling():
                task.uncancel()  # our own cancellation (the feed may have absorbed it)


class _FeedState:
    __slots__ = ("disconnected", "done")

    def __init__(self) -> None:
        self.disconnected = False
        self.done = False


async def _cancel_on_disconnect(receive: Receive, task: asyncio.Task[object], state: _FeedState) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
    if not state.done:
        state.disconnected = True
        task.cancel()


async def changes(ctx: Ctx, db: str) -> Response:
    """``GET|POST /{db}/_changes`` (§6): every feed type, streamed."""
    _method(ctx, "GET", "HEAD", "POST")
    database = await ctx.database(db)
    query = await _changes_query(ctx, database)
    body: AsyncIterable[bytes] = changes_feed.feed(database, query)
    if query.feed == "eventsource":
        response = FeedResponse(body, media_type="text/event-stream")
        response.headers["Cache-Control"] = "no-cache"
    else:
        response = FeedResponse(body, media_type="application/json")
        response.headers["Cache-Control"] = "must-revalidate"
        if query.feed in ("normal", "longpoll"):
            # An opaque tag of the db state and the query (CouchDB sends one on feeds).
            state = f"{database.notifier.seq}:{ctx.request.url.query}".encode()
            response.headers["ETag"] = f'"{hashlib.md5(state, usedforsecurity=False).hexdigest()}"'
    return response
