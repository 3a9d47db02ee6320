"""Replay recorded replication traffic against an in-process couchpoint app.

A recording (``recordings/**.jsonl``, format in ``recordings/README.md``) holds every HTTP
exchange a real replicator (CouchDB 1.5/3.4, PouchDB 9) or a setup script had with a real
CouchDB database.  :func:`run_scenario` sends the same requests, in a causally valid order,
to a fresh couchpoint app through ``httpx.ASGITransport`` and compares each answer with the
recorded one after normalizing what legitimately differs between two servers: revision
ids made by the server, sequence values, generated ids, session cookies, dates, sizes,
boundaries.  Every normalization rule is listed (with the reason) in ``docs/replay.md``.

Run one scenario by hand::

    .venv/bin/python -m tests.replay.replay couchdb-3.4/c04
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.message
import gzip
import inspect
import json
import re
import sys
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
RECORDINGS_DIR = REPO_ROOT / "recordings"
BASE_URL = "http://127.0.0.1:5990"
FEED_TIMEOUT_MS = 100
"""``timeout`` given to every replayed longpoll/continuous ``_changes`` request."""
REQUEST_TIMEOUT_S = 30.0
"""A request that has not been answered after this long is reported as hanging."""
ADMINS = {"admin": "admin"}
ADMIN_BASIC = "Basic YWRtaW46YWRtaW4="

FEED_TYPES = frozenset({"longpoll", "continuous", "live", "eventsource"})
SEQ_KEYS = frozenset(
    {"seq", "last_seq", "update_seq", "since", "source_last_seq", "start_last_seq", "end_last_seq"}
    | {"recorded_seq", "through_seq"}
)
"""Keys whose values are sequences (in ``_changes``, db info and checkpoint documents)."""
ATTACHMENT_ENCODING_KEYS = frozenset({"encoding", "encoded_length"})
"""Attachment stub fields that describe CouchDB's storage compression, not the content."""
JSON_QUERY_PARAMS = frozenset(
    {"open_revs", "atts_since", "doc_ids", "keys", "key", "startkey", "endkey", "start_key", "end_key"}
)
FORWARDED_HEADERS = (
    "content-type",
    "accept",
    "if-none-match",
    "if-match",
    "range",
    "destination",
    "x-couch-full-commit",
    "authorization",
    "cookie",
)
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_LEADING_INT = re.compile(r"^(\d+)")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Missing:
    def __repr__(self) -> str:
        return "<absent>"


MISSING: Any = _Missing()
"""Marks a key or value that one side of a comparison does not have."""


# --------------------------------------------------------------------------------------
# Recordings
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """One recorded HTTP exchange (one line of a ``.jsonl`` recording)."""

    recording: str
    index: int
    method: str
    target: str
    req_headers: dict[str, str]
    req_body: Any
    req_kind: str
    status: int | None
    resp_headers: dict[str, str]
    resp_body: Any
    resp_kind: str
    incomplete: str | None
    meta: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.recording}#{self.index} {self.method} {self.target}"

    @property
    def raw_path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def raw_query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    def query(self, name: str) -> str | None:
        """The percent-decoded value of query parameter ``name`` (``None`` if absent)."""
        for key, value in split_query(self.raw_query):
            if unquote(key) == name:
                return unquote(value)
        return None

    @property
    def endpoint(self) -> Endpoint:
        return classify(self.raw_path)

    @property
    def is_feed(self) -> bool:
        """A longpoll/continuous ``_changes`` request: it waits for changes."""
        return self.endpoint.kind == "changes" and (self.query("feed") or "normal") in FEED_TYPES


def _body_kind(body: Any, meta: dict[str, Any] | None) -> str:
    if meta and isinstance(meta.get("kind"), str):
        return meta["kind"]
    if body is None:
        return "empty"
    if isinstance(body, dict) and set(body) == {"base64"}:
        return "binary"
    return "json"


def load_recording(name: str) -> list[Exchange]:
    """Load ``recordings/<name>.jsonl`` (``name`` like ``couchdb-3.4/c01``)."""
    path = RECORDINGS_DIR / f"{name}.jsonl"
    exchanges = []
    with path.open(encoding="utf-8") as lines:
        for index, line in enumerate(lines):
            if not line.strip():
                continue
            raw = json.loads(line)
            req, resp, meta = raw["request"], raw["response"], raw.get("meta", {})
            target = meta.get("request_target") or _target_from(req)
            incomplete = meta.get("response_incomplete") or (None if resp is not None else "no response")
            exchanges.append(
                Exchange(
                    recording=name,
                    index=meta.get("index", index),
                    method=req["method"],
                    target=target,
                    req_headers=dict(req.get("headers") or {}),
                    req_body=req.get("body"),
                    req_kind=_body_kind(req.get("body"), meta.get("request_body")),
                    status=resp["status"] if resp else None,
                    resp_headers=dict(resp.get("headers") or {}) if resp else {},
                    resp_body=resp.get("body") if resp else None,
                    resp_kind=_body_kind(resp.get("body"), meta.get("response_body")) if resp else "empty",
                    incomplete=incomplete,
                    meta=meta,
                )
            )
    return exchanges


def _target_from(req: dict[str, Any]) -> str:
    query = req.get("query") or {}
    if not query:
        return req["path"]
    pairs = []
    for key, value in query.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append(f"{quote(key, safe='')}={quote(item, safe='')}")
    return req["path"] + "?" + "&".join(pairs)


def split_query(raw_query: str) -> list[tuple[str, str]]:
    """Raw (still percent-encoded) ``(key, value)`` pairs of a query string."""
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        key, _, value = item.partition("=")
        pairs.append((key, value))
    return pairs


def replay_order(exchanges: Sequence[Exchange]) -> list[Exchange]:
    """The order to replay ``exchanges`` in, sequentially.

    Recordings list exchanges in completion order, which is a valid sequential order for
    everything but feeds that waited: a longpoll or continuous ``_changes`` that returned a
    change was often written *after* the request that made the change, yet its response
    finished first (PouchDB's ``_bulk_docs`` wakes its own longpoll).  A completed feed is
    therefore moved after every later exchange whose request started before the feed's
    response finished.  Those requests cannot depend on the feed's answer.
    """
    order = list(exchanges)
    for feed in [ex for ex in exchanges if ex.is_feed and not ex.incomplete]:
        finished = feed.meta.get("response_finished")
        if finished is None:
            continue
        pos = order.index(feed)
        last = pos
        for j in range(pos + 1, len(order)):
            started = order[j].meta.get("request_started")
            if started is not None and started < finished:
                last = j
        if last > pos:
            order.insert(last, order.pop(pos))
    return order


# --------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------

_DB_HANDLERS = {
    "_changes": "changes",
    "_all_docs": "all_docs",
    "_revs_diff": "revs_diff",
    "_bulk_docs": "bulk_docs",
    "_bulk_get": "bulk_get",
    "_ensure_full_commit": "ensure_full_commit",
    "_revs_limit": "revs_limit",
}


@dataclass(frozen=True)
class Endpoint:
    """What a request path addresses.

    ``kind`` is one of ``root``, ``session``, ``uuids``, ``server`` (another ``/_x``),
    ``db``, ``changes``, ``all_docs``, ``revs_diff``, ``bulk_docs``, ``bulk_get``,
    ``ensure_full_commit``, ``revs_limit``, ``db_handler`` (another ``/{db}/_x``),
    ``local``, ``doc`` (including design docs) or ``attachment``.
    """

    kind: str
    db: str | None = None
    doc: str | None = None
    att: str | None = None


def classify(raw_path: str) -> Endpoint:
    """Classify a percent-encoded request path (``/endpoint/ep%2Fnew%20doc`` is one doc)."""
    segs = raw_path.split("/")[1:]
    if segs and segs[-1] == "":
        segs = segs[:-1]
    if not segs:
        return Endpoint("root")
    first = unquote(segs[0])
    if first.startswith("_"):
        return Endpoint({"_session": "session", "_uuids": "uuids"}.get(first, "server"))
    if len(segs) == 1:
        return Endpoint("db", db=first)
    second = unquote(segs[1])
    rest = [unquote(s) for s in segs[2:]]
    if second == "_local" and rest:
        return Endpoint("local", db=first, doc="_local/" + "/".join(rest))
    if second.startswith("_local/"):
        return Endpoint("local", db=first, doc="/".join([second, *rest]))
    if second == "_design" and rest:
        doc, att = "_design/" + rest[0], "/".join(rest[1:])
    elif second.startswith("_design/"):
        doc, att = second, "/".join(rest)
    elif second.startswith("_"):
        return Endpoint(_DB_HANDLERS.get(second, "db_handler"), db=first)
    else:
        doc, att = second, "/".join(rest)
    return Endpoint("attachment" if att else "doc", db=first, doc=doc, att=att or None)


# --------------------------------------------------------------------------------------
# Bodies: content types, multipart, feeds
# --------------------------------------------------------------------------------------


def parse_content_type(value: str | None) -> tuple[str, dict[str, str]]:
    """``(media type, params)`` of a Content-Type header, lower-cased media type."""
    if not value:
        return "", {}
    msg = email.message.Message()
    msg["content-type"] = value
    params = {k.lower(): v for k, v in (msg.get_params() or [])[1:]}
    return msg.get_content_type(), params


def content_type_key(value: str | None) -> str:
    """A Content-Type reduced to what must match: media type and params except boundary."""
    media, params = parse_content_type(value)
    extra = sorted((k, v) for k, v in params.items() if k not in {"boundary", "charset"})
    return media + "".join(f'; {k}="{v}"' for k, v in extra)


@dataclass(frozen=True)
class Part:
    """One part of a multipart body: lower-cased headers and raw payload."""

    headers: dict[str, str]
    body: bytes


def parse_multipart(content_type: str, body: bytes) -> list[Part]:
    """Split a multipart body (any boundary, with or without preamble) into parts."""
    _, params = parse_content_type(content_type)
    boundary = params.get("boundary")
    if not boundary:
        raise ValueError(f"no boundary in {content_type!r}")
    chunks = body.split(b"--" + boundary.encode("latin-1"))
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(b"\r\n") if chunk.startswith(b"\r\n") else chunk.removeprefix(b"\n")
        chunk = chunk.removesuffix(b"\r\n") if chunk.endswith(b"\r\n") else chunk.removesuffix(b"\n")
        if chunk.startswith((b"\r\n", b"\n")):
            head, payload = b"", chunk.split(b"\n", 1)[1]
        elif b"\r\n\r\n" in chunk:
            head, payload = chunk.split(b"\r\n\r\n", 1)
        else:
            head, _, payload = chunk.partition(b"\n\n")
        headers = {}
        for line in head.decode("latin-1").splitlines():
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        parts.append(Part(headers, payload))
    return parts


def maybe_gunzip(data: bytes) -> bytes:
    """Decompress gzip data, leave anything else alone."""
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            return data
    return data


def decode_content(data: bytes, headers: dict[str, str]) -> bytes:
    """Undo a ``Content-Encoding`` (gzip/deflate) recorded on a response."""
    encoding = headers.get("content-encoding", "").lower()
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "deflate":
        try:
            return zlib.decompress(data)
        except zlib.error:
            return zlib.decompress(data, -zlib.MAX_WBITS)
    return data


@dataclass
class Feed:
    """A parsed ``_changes`` response: rows, ``last_seq`` and ``pending`` (or MISSING)."""

    rows: list[dict[str, Any]]
    last_seq: Any = MISSING
    pending: Any = MISSING


def parse_feed(body: Any, continuous: bool) -> Feed:
    """Parse a ``_changes`` body (already-parsed JSON, or bytes) into a :class:`Feed`.

    Continuous feeds are one JSON value per line; blank lines are heartbeats.
    Raises ``ValueError`` when the body is not a valid feed.
    """
    if continuous:
        text = body.decode("utf-8") if isinstance(body, bytes) else json.dumps(body)
        feed = Feed(rows=[])
        for line in text.split("\n"):
            if not line.strip():
                continue
            item = json.loads(line)
            if not isinstance(item, dict):
                raise ValueError(f"feed line is not an object: {line[:80]!r}")
            if "last_seq" in item and "id" not in item:
                feed.last_seq = item["last_seq"]
                feed.pending = item.get("pending", MISSING)
            else:
                feed.rows.append(item)
        return feed
    obj = json.loads(body) if isinstance(body, bytes) else body
    if not isinstance(obj, dict) or not isinstance(obj.get("results"), list):
        raise ValueError("not a _changes object with a results array")
    return Feed(
        rows=list(obj["results"]), last_seq=obj.get("last_seq", MISSING), pending=obj.get("pending", MISSING)
    )


def seq_number(seq: Any) -> int | None:
    """The integer a sequence orders by: an int, or the ``N`` of ``"N-…"``."""
    if isinstance(seq, bool):
        return None
    if isinstance(seq, int):
        return seq
    if isinstance(seq, str):
        match = _LEADING_INT.match(seq)
        return int(match.group(1)) if match else None
    return None


# --------------------------------------------------------------------------------------
# JSON comparison
# --------------------------------------------------------------------------------------


def json_path(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENT.match(key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def _same_scalar(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def diff_json(expected: Any, actual: Any, path: str = "$") -> Iterator[tuple[str, Any, Any]]:
    """Yield ``(json path, expected, actual)`` for every difference (strict, both ways)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key, value in expected.items():
            if key not in actual:
                yield json_path(path, key), value, MISSING
            else:
                yield from diff_json(value, actual[key], json_path(path, key))
        for key, value in actual.items():
            if key not in expected:
                yield json_path(path, key), MISSING, value
    elif isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            yield f"{path}.length", len(expected), len(actual)
        for i, (e, a) in enumerate(zip(expected, actual, strict=False)):
            yield from diff_json(e, a, json_path(path, i))
        for i in range(len(actual), len(expected)):
            yield json_path(path, i), expected[i], MISSING
        for i in range(len(expected), len(actual)):
            yield json_path(path, i), MISSING, actual[i]
    elif not _same_scalar(expected, actual):
        yield path, expected, actual


def strip_attachment_encoding(value: Any) -> Any:
    """Drop ``encoding``/``encoded_length`` from every ``_attachments`` entry."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "_attachments" and isinstance(item, dict):
                out[key] = {
                    name: (
                        {k: v for k, v in att.items() if k not in ATTACHMENT_ENCODING_KEYS}
                        if isinstance(att, dict)
                        else att
                    )
                    for name, att in item.items()
                }
            else:
                out[key] = strip_attachment_encoding(item)
        return out
    if isinstance(value, list):
        return [strip_attachment_encoding(item) for item in value]
    return value


def uuid_shape(value: Any) -> Any:
    """``"<32 hex>"`` for a 32-character lowercase hex string, the value itself otherwise."""
    return "<32 hex>" if isinstance(value, str) and _HEX32.match(value) else value


def string_shape(value: Any) -> Any:
    return "<string>" if isinstance(value, str) else value


DB_INFO_KEYS = ("db_name", "doc_count", "doc_del_count", "update_seq", "instance_start_time")


def normalize_body(kind: str, method: str, status: int, value: Any) -> Any:
    """The comparable form of a JSON response body for endpoint ``kind``.

    Applied to the actual body and to the (already translated) recorded one.
    """
    value = strip_attachment_encoding(value)
    if not isinstance(value, dict | list):
        return value
    if isinstance(value, dict) and "error" in value and status >= 400:
        return value
    if kind == "root" and isinstance(value, dict):
        return {"couchdb": value.get("couchdb", MISSING), "uuid": uuid_shape(value.get("uuid", MISSING))}
    if kind == "uuids" and isinstance(value, dict) and isinstance(value.get("uuids"), list):
        return {**value, "uuids": [uuid_shape(u) for u in value["uuids"]]}
    if kind == "db" and method in {"GET", "HEAD"} and isinstance(value, dict):
        out = {k: value.get(k, MISSING) for k in DB_INFO_KEYS}
        out["instance_start_time"] = string_shape(out["instance_start_time"])
        return out
    if kind == "ensure_full_commit" and isinstance(value, dict):
        return {**value, "instance_start_time": string_shape(value.get("instance_start_time", MISSING))}
    if kind == "session" and isinstance(value, dict) and isinstance(value.get("info"), dict):
        info = {k: v for k, v in value["info"].items() if k != "authentication_handlers"}
        return {**value, "info": info}
    if kind == "revs_diff" and isinstance(value, dict):
        return {
            doc: (
                {k: sorted(v) if isinstance(v, list) else v for k, v in entry.items()}
                if isinstance(entry, dict)
                else entry
            )
            for doc, entry in value.items()
        }
    if kind == "all_docs" and isinstance(value, dict) and isinstance(value.get("rows"), list):
        # keyed by row key (ids may be generated, so order is checked separately)
        rows = {_row_key(r): r for r in value["rows"]}
        return {**value, "rows": rows}
    if kind == "doc" and isinstance(value, list):
        return sorted(value, key=_open_revs_key)
    return value


def _row_key(row: Any) -> str:
    key = row.get("key") if isinstance(row, dict) else row
    return key if isinstance(key, str) else json.dumps(key)


def _open_revs_key(entry: Any) -> str:
    if isinstance(entry, dict):
        if isinstance(entry.get("ok"), dict):
            return str(entry["ok"].get("_rev"))
        return str(entry.get("missing"))
    return json.dumps(entry)


# --------------------------------------------------------------------------------------
# Value mapping: recorded -> actual
# --------------------------------------------------------------------------------------

_KIND_RANK = {"row": 0, "page": 1, "db": 2}


def _seq_key(seq: Any) -> tuple[str, Any] | None:
    if isinstance(seq, bool) or seq is None:
        return None
    if isinstance(seq, int):
        return ("i", seq)
    if isinstance(seq, str):
        return ("s", seq)
    return ("j", json.dumps(seq, sort_keys=True))


class Maps:
    """What the replay learned about recorded values and couchpoint's values for them.

    * revs made by the server: ``(actual doc id, recorded rev) -> actual rev`` and, for
      contexts without a doc id, ``(None, recorded rev) -> actual rev`` (latest wins);
    * generated doc ids: ``recorded -> actual``;
    * sequences: ``recorded -> (actual, kind)`` where ``kind`` says where it was learned:
      ``db`` (``update_seq``, ``last_seq`` of a complete feed, its last row), ``page``
      (``last_seq`` of a feed cut by ``limit``) or ``row`` (a row in the middle);
    * values that must stay constant (``instance_start_time``, the server ``uuid``).
    """

    def __init__(self) -> None:
        self.revs: dict[tuple[str | None, str], str] = {}
        self.ids: dict[str, str] = {}
        self.seqs: dict[tuple[str, Any], tuple[Any, str]] = {}
        self.constants: dict[tuple[str, Any], Any] = {}

    # -- learning -------------------------------------------------------------------

    def learn_rev(self, doc: str | None, recorded: str, actual: str) -> None:
        if doc is not None:
            self.revs[(doc, recorded)] = actual
        self.revs[(None, recorded)] = actual

    def learn_id(self, recorded: str, actual: str) -> None:
        self.ids[recorded] = actual

    def learn_seq(self, recorded: Any, actual: Any, kind: str) -> str | None:
        """Record ``recorded -> actual``; return a message if it contradicts a ``db`` pair."""
        key = _seq_key(recorded)
        if key is None or actual is MISSING:
            return None
        old = self.seqs.get(key)
        if old is not None and old[0] != actual:
            if old[1] == "db" and kind == "db":
                # keep the first value: later exchanges are judged against it
                return (
                    f"recorded sequence {recorded!r} stands for one database state, but couchpoint "
                    f"answered {old[0]!r} earlier and {actual!r} now"
                )
            if _KIND_RANK[kind] >= _KIND_RANK[old[1]]:  # latest wins, a state is never downgraded
                self.seqs[key] = (actual, kind)
        elif old is None or _KIND_RANK[kind] > _KIND_RANK[old[1]]:
            self.seqs[key] = (actual, kind)
        return None

    def learn_constant(self, name: str, recorded: Any, actual: Any) -> str | None:
        """Pin ``recorded -> actual`` for a value that must not change within a replay."""
        key = (name, json.dumps(recorded))
        if key in self.constants and self.constants[key] != actual:
            old = self.constants[key]
            return f"{name} must stay the same (recorded {recorded!r} again): was {old!r}, now {actual!r}"
        self.constants[key] = actual
        return None

    # -- translating ----------------------------------------------------------------

    def seq_kind(self, recorded: Any) -> str | None:
        if recorded in (None, "0", 0, "now"):
            return "db"
        found = self._seq_lookup(recorded)
        return found[1] if found else None

    def _seq_lookup(self, recorded: Any) -> tuple[Any, str] | None:
        key = _seq_key(recorded)
        if key is not None and key in self.seqs:
            return self.seqs[key]
        if isinstance(recorded, str) and recorded.isdigit() and ("i", int(recorded)) in self.seqs:
            return self.seqs[("i", int(recorded))]
        if isinstance(recorded, str) and len(recorded) > 1 and recorded[0] == recorded[-1] == '"':
            return self._seq_lookup(recorded[1:-1])
        return None

    def tr_seq(self, recorded: Any) -> Any:
        found = self._seq_lookup(recorded)
        return found[0] if found else recorded

    def known_seq(self, recorded: Any) -> Any:
        """The actual seq learned for ``recorded``, or MISSING."""
        found = self._seq_lookup(recorded)
        return found[0] if found else MISSING

    def tr_seq_param(self, recorded: str) -> str:
        """A ``since`` query value: the mapped seq as CouchDB clients send it."""
        if recorded in {"0", "now"}:
            return recorded
        found = self._seq_lookup(recorded)
        if found is None:
            return recorded
        actual = found[0]
        return actual if isinstance(actual, str) else json.dumps(actual)

    def tr_id(self, doc_id: str) -> str:
        return self.ids.get(doc_id, doc_id)

    def tr_rev(self, rev: str, doc: str | None) -> str:
        if (doc, rev) in self.revs:
            return self.revs[(doc, rev)]
        return self.revs.get((None, rev), rev)

    def tr_revisions(self, revisions: Any, doc: str | None) -> Any:
        if not isinstance(revisions, dict):
            return revisions
        start, ids = revisions.get("start"), revisions.get("ids")
        if not isinstance(start, int) or not isinstance(ids, list):
            return revisions
        mapped = []
        for i, revid in enumerate(ids):
            if not isinstance(revid, str):
                mapped.append(revid)
                continue
            actual = self.tr_rev(f"{start - i}-{revid}", doc)
            mapped.append(actual.split("-", 1)[1] if "-" in actual else revid)
        return {**revisions, "ids": mapped}

    def tr(self, value: Any, doc: str | None = None, seqs: bool = False) -> Any:
        """Translate recorded JSON into couchpoint's values (revs, ids, optionally seqs).

        ``doc`` is the (actual) doc id the value belongs to; an ``_id``/``id`` key inside
        an object switches the context for that object.
        """
        if isinstance(value, dict):
            own = value.get("_id", value.get("id"))
            if isinstance(own, str):
                doc = self.tr_id(own)
            out = {}
            for key, item in value.items():
                new_key = self.ids.get(key, key)
                if key == "_revisions":
                    out[new_key] = self.tr_revisions(item, doc)
                elif seqs and key in SEQ_KEYS:
                    out[new_key] = self.tr_seq(item)
                else:
                    out[new_key] = self.tr(item, doc, seqs)
            return out
        if isinstance(value, list):
            return [self.tr(item, doc, seqs) for item in value]
        if isinstance(value, str):
            if value in self.ids:
                return self.ids[value]
            return self.tr_rev(value, doc)
        return value

    def tr_by_doc(self, value: Any) -> Any:
        """Translate an object keyed by doc id (``_revs_diff`` requests and answers)."""
        if not isinstance(value, dict):
            return self.tr(value)
        return {self.tr_id(k): self.tr(v, self.tr_id(k)) for k, v in value.items()}


# --------------------------------------------------------------------------------------
# Mismatches
# --------------------------------------------------------------------------------------


def _short(value: Any, limit: int = 300) -> str:
    if value is MISSING:
        return "<absent>"
    if isinstance(value, bytes):
        text = repr(value[:limit])
        return text + (f"… ({len(value)} bytes)" if len(value) > limit else "")
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True)
class Mismatch:
    """One difference between a recorded and an actual answer."""

    recording: str
    index: int
    method: str
    target: str
    where: str
    expected: Any
    actual: Any
    note: str = ""

    def format(self) -> str:
        text = (
            f"{self.recording}#{self.index} {self.method} {self.target}\n"
            f"    {self.where}: expected {_short(self.expected)}, got {_short(self.actual)}"
        )
        return text + (f"\n    ({self.note})" if self.note else "")


class Check:
    """Collects the mismatches of one exchange (or discards them in setup mode)."""

    def __init__(self, ex: Exchange, report: bool, sink: list[Mismatch]) -> None:
        self.ex = ex
        self.report = report
        self.sink = sink
        self.seen: set[str] = set()

    def add(self, where: str, expected: Any, actual: Any, note: str = "") -> None:
        """Record one difference; only the first one per location (``where``) counts."""
        if self.report and where not in self.seen:
            self.seen.add(where)
            ex = self.ex
            self.sink.append(
                Mismatch(ex.recording, ex.index, ex.method, ex.target, where, expected, actual, note)
            )

    def eq(self, where: str, expected: Any, actual: Any, note: str = "") -> None:
        for path, e, a in diff_json(expected, actual, where):
            self.add(path, e, a, note)


def format_report(mismatches: Sequence[Mismatch], limit: int = 200) -> str:
    lines = [f"{len(mismatches)} mismatch(es):"]
    lines += [m.format() for m in mismatches[:limit]]
    if len(mismatches) > limit:
        lines.append(f"… and {len(mismatches) - limit} more")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# The replayer
# --------------------------------------------------------------------------------------


class Replayer:
    """Sends recorded requests to ``client`` and compares the answers.

    ``auth``: whether the app enforces the recorded credentials (admin/admin).  Without
    it, ``Authorization``/``Cookie`` headers are dropped and exchanges whose recorded
    answer is about authentication (``/_session``, 401, 403) are not compared.
    """

    def __init__(self, client: httpx.AsyncClient, *, auth: bool = True) -> None:
        self.client = client
        self.auth = auth
        self.maps = Maps()
        self.cookie: str | None = None
        self.mismatches: list[Mismatch] = []
        self.setup_problems: list[Mismatch] = []

    async def run(self, exchanges: Sequence[Exchange], *, compare: bool = True) -> None:
        for ex in replay_order(exchanges):
            await self.step(ex, compare=compare)

    # -- requests -------------------------------------------------------------------

    def translate_target(self, ex: Exchange) -> str:
        ep = ex.endpoint
        doc = self.maps.tr_id(ep.doc) if ep.doc else None
        segs = ex.raw_path.split("/")
        segs = [quote(self.maps.ids[unquote(s)], safe="") if unquote(s) in self.maps.ids else s for s in segs]
        path = "/".join(segs)
        pairs = []
        feed = ep.kind == "changes" and (ex.query("feed") or "normal") in FEED_TYPES
        for raw_key, raw_value in split_query(ex.raw_query):
            key, value = unquote(raw_key), unquote(raw_value)
            if feed and key in {"timeout", "heartbeat"}:
                continue
            new = value
            if key == "rev":
                new = self.maps.tr_rev(value, doc)
            elif key == "since" and ep.kind == "changes":
                new = self.maps.tr_seq_param(value)
            elif key in JSON_QUERY_PARAMS and value != "all":
                try:
                    parsed = json.loads(value)
                except ValueError:
                    parsed = MISSING
                if parsed is not MISSING:
                    translated = self.maps.tr(parsed, doc)
                    if translated != parsed:
                        new = json.dumps(translated, separators=(",", ":"), ensure_ascii=False)
            pairs.append(f"{raw_key}={raw_value}" if new == value else f"{raw_key}={quote(new, safe='')}")
        if feed:
            pairs.append(f"timeout={FEED_TIMEOUT_MS}")
        return path + ("?" + "&".join(pairs) if pairs else "")

    def request_body(self, ex: Exchange) -> bytes:
        if ex.req_kind == "empty" or ex.req_body is None:
            return b""
        if ex.req_kind != "json":
            return base64.b64decode(ex.req_body["base64"])
        ep = ex.endpoint
        if ep.kind == "revs_diff":
            body = self.maps.tr_by_doc(ex.req_body)
        else:
            doc = self.maps.tr_id(ep.doc) if ep.doc else None
            body = self.maps.tr(ex.req_body, doc, seqs=ep.kind == "local")
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def request_headers(self, ex: Exchange) -> dict[str, str]:
        ep = ex.endpoint
        doc = self.maps.tr_id(ep.doc) if ep.doc else None
        headers = {"accept-encoding": ex.req_headers.get("accept-encoding", "identity")}
        for name in FORWARDED_HEADERS:
            value = ex.req_headers.get(name)
            if value is None:
                continue
            if name in {"if-none-match", "if-match"}:
                value = ", ".join(self._tr_etag(v.strip(), doc) for v in value.split(","))
            elif name == "destination":
                value = self.maps.tr_id(value)
            elif name == "cookie":
                if not self.auth:
                    continue
                value = self._tr_cookie(value)
                if not value:
                    continue
            elif name == "authorization" and not self.auth:
                continue
            headers[name] = value
        return headers

    def _tr_etag(self, value: str, doc: str | None) -> str:
        if len(value) >= 2 and value[0] == value[-1] == '"':
            return '"' + self.maps.tr_rev(value[1:-1], doc) + '"'
        return value

    def _tr_cookie(self, value: str) -> str:
        cookies = []
        for item in value.split(";"):
            name, _, val = item.strip().partition("=")
            if name == "AuthSession":
                if self.cookie is None:
                    continue
                val = self.cookie
            cookies.append(f"{name}={val}")
        return "; ".join(cookies)

    def build_request(self, ex: Exchange) -> httpx.Request:
        return self.client.build_request(
            ex.method,
            BASE_URL + self.translate_target(ex),
            headers=self.request_headers(ex),
            content=self.request_body(ex),
        )

    # -- one exchange ---------------------------------------------------------------

    def _compared(self, ex: Exchange) -> bool:
        if self.auth:
            return True
        # TODO(auth): drop once create_app accepts admins; auth answers cannot match without it.
        return ex.endpoint.kind != "session" and ex.status not in {401, 403}

    async def step(self, ex: Exchange, *, compare: bool = True) -> None:
        sink = self.mismatches if compare else self.setup_problems
        chk = Check(ex, report=self._compared(ex), sink=sink)
        request = self.build_request(ex)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                response = await self.client.send(request)
        except TimeoutError:
            chk.add("response", f"an answer within {REQUEST_TIMEOUT_S:g} s", "no answer (request hangs)")
            return
        except Exception as exc:  # the app raised: report it as the actual answer
            chk.add("response", f"status {ex.status}", f"app raised {type(exc).__name__}: {exc}")
            return
        self._learn_cookie(response)
        if ex.status is None:
            return
        if response.status_code != ex.status:
            chk.add(
                "status", ex.status, response.status_code, f"actual body: {_short(response.content, 400)}"
            )
            return
        if not ex.incomplete:  # a cut-off recording is replayed for its side effects only
            self.compare_body(chk, ex, response)
        self.compare_headers(chk, ex, response)

    def compare_body(self, chk: Check, ex: Exchange, response: httpx.Response) -> None:
        if ex.method == "HEAD" or ex.status == 304 or ex.resp_kind == "empty":
            return
        ep = ex.endpoint
        is_feed = ep.kind == "changes" and ex.status == 200
        if ex.resp_kind == "json":
            try:
                actual = json.loads(response.content)
            except ValueError:
                chk.add("body", ex.resp_body, response.content, "body is not JSON")
                return
            if is_feed:
                self.compare_changes(chk, ex, parse_feed(ex.resp_body, False), response.content, False)
            else:
                self.compare_json(chk, ex, ex.resp_body, actual, response.status_code)
            return
        recorded = decode_content(base64.b64decode(ex.resp_body["base64"]), ex.resp_headers)
        media, _ = parse_content_type(ex.resp_headers.get("content-type"))
        if is_feed:
            self.compare_changes(chk, ex, parse_feed(recorded, True), response.content, True)
        elif media.startswith("multipart/"):
            self.compare_parts(
                chk,
                ex,
                "body",
                ex.resp_headers["content-type"],
                recorded,
                response.headers.get("content-type", ""),
                response.content,
            )
        elif recorded != response.content:
            chk.add("body", recorded, response.content, "raw bytes differ")

    def _learn_cookie(self, response: httpx.Response) -> None:
        for value in response.headers.get_list("set-cookie"):
            name, _, rest = value.partition("=")
            if name.strip() == "AuthSession":
                token = rest.split(";", 1)[0]
                if token:
                    self.cookie = token

    # -- headers --------------------------------------------------------------------

    def compare_headers(self, chk: Check, ex: Exchange, response: httpx.Response) -> None:
        exp, act = ex.resp_headers, response.headers
        ep = ex.endpoint
        if "content-type" in exp and ex.status != 304:
            exp_media, _ = parse_content_type(exp["content-type"])
            act_media, act_params = parse_content_type(act.get("content-type"))
            chk.eq("headers.content-type", exp_media, act_media or MISSING)
            if exp_media.startswith("multipart/") and act_media == exp_media and "boundary" not in act_params:
                chk.add("headers.content-type", exp["content-type"], act.get("content-type"), "no boundary")
        if "etag" in exp:
            self._compare_etag(chk, ex, ep, exp["etag"], act.get("etag"))
        if "location" in exp and ex.status is not None and ex.status < 300:
            exp_path = unquote(urlsplit(exp["location"]).path)
            act_loc = act.get("location")
            act_path = unquote(urlsplit(act_loc).path) if act_loc else MISSING
            if ep.doc:
                exp_path = exp_path.replace(ep.doc, self.maps.tr_id(ep.doc))
            chk.eq("headers.location(path)", exp_path, act_path)
        for name in ("content-range", "accept-ranges"):
            if name in exp and not (name == "accept-ranges" and exp[name] == "none"):
                chk.eq(f"headers.{name}", exp[name], act.get(name, MISSING))
        if "set-cookie" in exp and exp["set-cookie"].startswith("AuthSession="):
            exp_set = bool(exp["set-cookie"].split(";", 1)[0].split("=", 1)[1])
            cookies = [c for c in act.get_list("set-cookie") if c.startswith("AuthSession=")]
            act_set = bool(cookies[0].split(";", 1)[0].split("=", 1)[1]) if cookies else MISSING
            chk.eq("headers.set-cookie(AuthSession has a value)", exp_set, act_set)

    def _compare_etag(
        self, chk: Check, ex: Exchange, ep: Endpoint, expected: str, actual: str | None
    ) -> None:
        if actual is None:
            chk.add("headers.etag", expected, MISSING)
            return
        if ep.kind == "doc" and ex.status is not None and ex.status < 400:
            doc = self.maps.tr_id(ex.req_headers["destination"] if ex.method == "COPY" else ep.doc or "")
            chk.eq("headers.etag", self._tr_etag(expected, doc), actual)
        elif ep.kind == "attachment":
            chk.eq("headers.etag", expected, actual)
        elif not (len(actual) >= 2 and actual[0] == actual[-1] == '"'):
            chk.add("headers.etag", "a quoted opaque ETag", actual)

    # -- JSON bodies ----------------------------------------------------------------

    def compare_json(self, chk: Check, ex: Exchange, expected: Any, actual: Any, status: int) -> None:
        ep = ex.endpoint
        self.learn(chk, ex, expected, actual, status)
        if ep.kind == "revs_diff":
            translated = self.maps.tr_by_doc(expected)
        else:
            doc = self.maps.tr_id(ep.doc) if ep.doc else None
            translated = self.maps.tr(expected, doc, seqs=ep.kind in {"local", "db"})
        kind = ep.kind
        if kind == "all_docs" and (ex.query("keys") is not None or ex.req_kind == "json"):
            kind = "all_docs_keys"  # rows follow the requested keys: compared in order
        chk.eq(
            "$",
            normalize_body(kind, ex.method, status, translated),
            normalize_body(kind, ex.method, status, actual),
        )
        if kind == "all_docs" and isinstance(actual, dict) and isinstance(actual.get("rows"), list):
            keys = [r.get("key") for r in actual["rows"] if isinstance(r, dict)]
            if keys != sorted(keys, key=str):
                chk.add("$.rows[*].key", "rows sorted by key", keys)

    def learn(self, chk: Check, ex: Exchange, expected: Any, actual: Any, status: int) -> None:
        """Learn mappings from one recorded/actual answer pair (before comparing it)."""
        ep, maps = ex.endpoint, self.maps
        ok = ex.status is not None and ex.status < 300 and status < 300
        if not ok:
            return
        if ep.kind in {"doc", "attachment", "bulk_docs", "db"} and ex.method in {
            "PUT",
            "POST",
            "DELETE",
            "COPY",
        }:
            self._learn_writes(ex, expected, actual)
        if ep.kind == "db" and isinstance(expected, dict) and isinstance(actual, dict):
            if "update_seq" in expected and "update_seq" in actual:
                msg = maps.learn_seq(expected["update_seq"], actual["update_seq"], "db")
                if msg:
                    chk.add("$.update_seq", expected["update_seq"], actual["update_seq"], msg)
        if (
            ep.kind in {"db", "ensure_full_commit"}
            and isinstance(expected, dict)
            and isinstance(actual, dict)
        ):
            if "instance_start_time" in expected:
                msg = maps.learn_constant(
                    "instance_start_time", expected["instance_start_time"], actual.get("instance_start_time")
                )
                if msg:
                    chk.add(
                        "$.instance_start_time",
                        expected["instance_start_time"],
                        actual.get("instance_start_time"),
                        msg,
                    )
        if (
            ep.kind == "root"
            and isinstance(expected, dict)
            and isinstance(actual, dict)
            and "uuid" in expected
        ):
            msg = maps.learn_constant("server uuid", expected["uuid"], actual.get("uuid"))
            if msg:
                chk.add("$.uuid", expected["uuid"], actual.get("uuid"), msg)

    def _learn_writes(self, ex: Exchange, expected: Any, actual: Any) -> None:
        ep = ex.endpoint
        if isinstance(expected, dict) and isinstance(actual, dict):
            req = ex.req_body if ex.req_kind == "json" else None
            generated = ep.kind == "db" and not (isinstance(req, dict) and "_id" in req)
            pairs = [(expected, actual, generated)]
        elif isinstance(expected, list) and isinstance(actual, list):
            docs = ex.req_body.get("docs") if isinstance(ex.req_body, dict) else None
            docs = docs if isinstance(docs, list) else []
            pairs = []
            for i, (e, a) in enumerate(zip(expected, actual, strict=False)):
                req_doc = docs[i] if i < len(docs) else None
                pairs.append((e, a, isinstance(req_doc, dict) and "_id" not in req_doc))
        else:
            return
        for e, a, generated in pairs:
            if not (isinstance(e, dict) and isinstance(a, dict)):
                continue
            e_id, a_id = e.get("id"), a.get("id")
            if generated and isinstance(e_id, str) and isinstance(a_id, str) and e_id != a_id:
                self.maps.learn_id(e_id, a_id)
            e_rev, a_rev = e.get("rev"), a.get("rev")
            if isinstance(e_rev, str) and isinstance(a_rev, str) and not e_rev.startswith("0-"):
                doc = a_id if isinstance(a_id, str) else (self.maps.tr_id(ep.doc) if ep.doc else None)
                self.maps.learn_rev(doc, e_rev, a_rev)

    # -- multipart ------------------------------------------------------------------

    def compare_parts(
        self,
        chk: Check,
        ex: Exchange,
        where: str,
        exp_type: str,
        exp_body: bytes,
        act_type: str,
        act_body: bytes,
    ) -> None:
        try:
            exp_parts = parse_multipart(exp_type, exp_body)
        except ValueError as exc:
            chk.add(
                where, "a parsable recorded multipart body", str(exc), "harness could not parse the recording"
            )
            return
        try:
            act_parts = parse_multipart(act_type, act_body)
        except ValueError as exc:
            chk.add(where, f"a multipart body ({content_type_key(exp_type)})", act_body, str(exc))
            return
        chk.eq(f"{where}.parts.length", len(exp_parts), len(act_parts))
        ep = ex.endpoint
        doc = self.maps.tr_id(ep.doc) if ep.doc else None
        gzipped = b'"encoding":"gzip"' in exp_body or b'"encoding": "gzip"' in exp_body
        for i, (e, a) in enumerate(zip(exp_parts, act_parts, strict=False)):
            path = f"{where}.parts[{i}]"
            e_type, a_type = e.headers.get("content-type"), a.headers.get("content-type")
            if e_type is not None:
                chk.eq(
                    f"{path}.headers.content-type",
                    content_type_key(e_type),
                    content_type_key(a_type) or MISSING,
                )
            if "content-disposition" in e.headers:
                e_name = _disposition_filename(e.headers["content-disposition"])
                a_name = _disposition_filename(a.headers.get("content-disposition", ""))
                chk.eq(f"{path}.headers.content-disposition(filename)", e_name, a_name)
            e_media, _ = parse_content_type(e_type)
            if e_media.startswith("multipart/"):
                self.compare_parts(chk, ex, path, e_type or "", e.body, a_type or "", a.body)
            elif e_media == "application/json":
                try:
                    a_json = json.loads(a.body)
                except ValueError:
                    chk.add(f"{path}.body", "JSON", a.body)
                    continue
                e_json = self.maps.tr(json.loads(e.body), doc)
                chk.eq(f"{path}.body", strip_attachment_encoding(e_json), strip_attachment_encoding(a_json))
            else:
                e_data = decode_content(e.body, e.headers)
                a_data = decode_content(a.body, a.headers)
                if gzipped:
                    e_data, a_data = maybe_gunzip(e_data), maybe_gunzip(a_data)
                if e_data != a_data:
                    chk.add(f"{path}.body", e_data, a_data, "attachment bytes differ")

    # -- _changes -------------------------------------------------------------------

    def compare_changes(self, chk: Check, ex: Exchange, exp: Feed, act_body: bytes, continuous: bool) -> None:
        """Compare a ``_changes`` answer; see docs/replay.md, "Sequences and feeds"."""
        maps = self.maps
        try:
            act = parse_feed(act_body, continuous)
        except ValueError as exc:
            chk.add("body", "a _changes feed", act_body, f"not a valid feed: {exc}")
            return
        since = ex.query("since")
        limit_text = ex.query("limit")
        limit = int(limit_text) if limit_text and limit_text.isdigit() else None
        truncated = limit is not None and len(exp.rows) >= limit
        since_kind = maps.seq_kind(since)
        actual_since = MISSING if since in {None, "now"} else (0 if since == "0" else maps.known_seq(since))
        if since_kind is None:
            chk.add(
                "query.since",
                "a sequence seen earlier in the replay",
                since,
                "harness: no mapping for this recorded since; rows compared loosely",
            )
        int_mode = all(isinstance(r.get("seq"), int) for r in exp.rows) and not isinstance(exp.last_seq, str)

        # A feed replayed after the writes it saw live lists each doc once, at its latest
        # change: keep only the last recorded row per doc id.
        last_index = {r.get("id"): i for i, r in enumerate(exp.rows)}
        exp_raw = [r for i, r in enumerate(exp.rows) if last_index[r.get("id")] == i]
        exp_rows = [maps.tr({k: v for k, v in r.items() if k != "seq"}) for r in exp_raw]
        act_rows = [{k: v for k, v in r.items() if k != "seq"} for r in act.rows]
        act_by_id = {r.get("id"): r for r in act.rows}

        # Learn seqs.  A row in the middle stands for that doc's change: map it to the
        # actual seq of the same doc and revs.  The last row (and last_seq) stands for
        # "everything this feed returned" (PouchDB resumes from the last row's seq): map it
        # to the actual last_seq.  Only last_seq of a complete feed is a database state.
        end_kind = "page" if truncated else "db"
        for i, (raw, row) in enumerate(zip(exp_raw, exp_rows, strict=True)):
            if "seq" not in raw:
                continue
            if i == len(exp_raw) - 1 and act.last_seq is not MISSING and ex.query("filter") is None:
                maps.learn_seq(raw["seq"], act.last_seq, end_kind)
                continue
            match = act_by_id.get(row.get("id"))
            if match is not None and "seq" in match and match.get("changes") == row.get("changes"):
                maps.learn_seq(raw["seq"], match["seq"], "row")
        if exp.last_seq is not MISSING and act.last_seq is not MISSING:
            msg = maps.learn_seq(exp.last_seq, act.last_seq, end_kind)
            if msg:
                chk.add("$.last_seq", exp.last_seq, act.last_seq, msg)
        if exp.last_seq is not MISSING and act.last_seq is MISSING:
            chk.add("$.last_seq", exp.last_seq, MISSING, "the feed did not end with last_seq")

        # CouchDB counts `pending` of a filtered feed over the unfiltered changes.
        pending_comparable = exp.pending is not MISSING and ex.query("filter") is None
        if int_mode:
            chk.eq("$.results", exp_rows, act_rows)
        elif since_kind == "db" and not truncated:
            exp_by_id = {r.get("id"): r for r in exp_rows}
            act_ids = {r.get("id"): r for r in act_rows}
            for doc_id, row in exp_by_id.items():
                chk.eq(f"$.results[id={doc_id}]", row, act_ids.get(doc_id, MISSING))
            for doc_id, row in act_ids.items():
                if doc_id not in exp_by_id:
                    chk.add(f"$.results[id={doc_id}]", MISSING, row)
        else:
            # The recorded feed came from a sharded CouchDB (q=2): which rows a page or a
            # mid-feed `since` covers depends on shard interleaving, not on write order.
            if since_kind in {"db", "page"}:
                chk.eq("$.results.length", len(exp_rows), len(act_rows), "limit-cut page: row count")
            else:
                pending_comparable = False
            exp_by_id = {r.get("id"): r for r in exp_rows}
            for row in act_rows:
                if row.get("id") in exp_by_id:
                    chk.eq(f"$.results[id={row.get('id')}]", exp_by_id[row.get("id")], row)
        if pending_comparable:
            chk.eq("$.pending", exp.pending, act.pending)
        if int_mode and exp.last_seq is not MISSING:
            chk.eq("$.last_seq", maps.tr_seq(exp.last_seq), act.last_seq)
        self._check_feed_consistency(chk, act, None if actual_since is MISSING else actual_since, limit)

    def _check_feed_consistency(self, chk: Check, act: Feed, since: Any, limit: int | None) -> None:
        numbers = [seq_number(r.get("seq")) for r in act.rows]
        if any(n is None for n in numbers):
            chk.add("$.results[*].seq", "sequence values", [r.get("seq") for r in act.rows])
            return
        if any(b <= a for a, b in zip(numbers, numbers[1:], strict=False)):
            chk.add("$.results[*].seq", "strictly increasing", numbers)
        last = seq_number(act.last_seq) if act.last_seq is not MISSING else None
        if numbers and last is not None and last < numbers[-1]:
            chk.add("$.last_seq", f">= {numbers[-1]} (the last row's seq)", act.last_seq)
        since_number = seq_number(since) if since is not None else None
        if since_number is not None and numbers and numbers[0] <= since_number:
            chk.add("$.results[0].seq", f"> since ({since})", numbers[0])
        if limit is not None and len(numbers) > limit:
            chk.add("$.results.length", f"<= limit ({limit})", len(numbers))


def _disposition_filename(value: str) -> str | None:
    msg = email.message.Message()
    msg["content-disposition"] = value
    return msg.get_param("filename", header="content-disposition")  # type: ignore[return-value]


# --------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A test case: recordings replayed for state only (``setup``), then compared."""

    name: str
    compare: tuple[str, ...]
    setup: tuple[str, ...] = ()
    databases: tuple[str, ...] = ("endpoint",)
    seed: tuple[tuple[str, dict[str, Any]], ...] = field(default=())
    """``(db, doc)`` pairs written with ``new_edits=false`` before the replay."""
    admin_party: bool = False
    """Run the app without admins, as the CouchDB 1.x recordings were made."""


KAGENCY = "kagency/couchdb/"
KAGENCY_FILES = (
    "01_replicate_data_into",
    "02_replicate_data_from",
    "03_replicate_update_into",
    "04_replicate_update_from",
    "05_conflict",
    "06_conflict_sync",
    "07_replicate_file",
    "08_update_attachment",
)
C34 = "couchdb-3.4/"


def _kagency(n: int) -> Scenario:
    files = [KAGENCY + f for f in KAGENCY_FILES[:n]]
    return Scenario(
        KAGENCY + KAGENCY_FILES[n - 1],
        compare=(files[-1],),
        setup=tuple(files[:-1]),
        databases=("master",),
        admin_party=True,
    )


def _chain(names: Sequence[str], n: int) -> Scenario:
    files = [C34 + name for name in names[:n]]
    return Scenario(files[-1], compare=(files[-1],), setup=tuple(files[:-1]))


SCENARIOS: tuple[Scenario, ...] = (
    *(_kagency(n) for n in range(1, 9)),
    *(_chain(["c01", "c02", "c03", "c04"], n) for n in range(1, 5)),
    Scenario(C34 + "c06", compare=(C34 + "c06",)),
    Scenario(C34 + "c08", compare=(C34 + "c08",)),
    Scenario(C34 + "c09", compare=(C34 + "c09",)),
    Scenario(C34 + "c11", compare=(C34 + "c11",)),
    Scenario(C34 + "p01", compare=(C34 + "p01",)),
    Scenario(C34 + "p02", compare=(C34 + "p02",), setup=(C34 + "p01",)),
    Scenario(C34 + "p04", compare=(C34 + "p04",)),
    Scenario(C34 + "d01", compare=(C34 + "d01",)),
)
"""The recordings that must replay cleanly: the core issue's list plus the attachment
recordings (kagency 07/08, c06, p01)."""

ALL_SCENARIOS = {s.name: s for s in SCENARIOS}


# --------------------------------------------------------------------------------------
# Running a scenario
# --------------------------------------------------------------------------------------


def make_app(storage: Any, *, admin_party: bool = False) -> tuple[Any, bool]:
    """``(app, auth enabled)``: a couchpoint app on ``storage`` with admin/admin.

    ``admin_party``: no admins at all (everyone is admin), as in the CouchDB 1.x recordings.
    """
    import couchpoint

    create_app: Callable[..., Any] = couchpoint.create_app
    if admin_party:
        return create_app(storage=storage, admins={}), False
    params = inspect.signature(create_app).parameters
    kwargs: dict[str, Any] = {"storage": storage}
    takes_overrides = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if "admins" in params or takes_overrides:
        kwargs["admins"] = dict(ADMINS)
        return create_app(**kwargs), True
    if "settings" in params:
        from couchpoint.config import Settings

        if "admins" in {f.name for f in Settings.__dataclass_fields__.values()}:
            kwargs["settings"] = Settings(admins=dict(ADMINS))
            return create_app(**kwargs), True
    return create_app(**kwargs), False


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run the app's lifespan (startup/shutdown), which ASGITransport does not."""
    router = getattr(app, "router", None)
    context = getattr(router, "lifespan_context", None)
    if context is None:
        yield
        return
    async with context(app):
        yield


async def prepare(client: httpx.AsyncClient, scenario: Scenario, auth: bool) -> None:
    """Create the scenario's databases (and seed docs) as the recordings expect."""
    headers = {"authorization": ADMIN_BASIC} if auth else {}
    for db in scenario.databases:
        response = await client.put(f"/{db}", headers=headers)
        if response.status_code not in {201, 202}:
            raise RuntimeError(f"PUT /{db} answered {response.status_code}: {response.text}")
    for db, doc in scenario.seed:
        response = await client.post(
            f"/{db}/_bulk_docs", json={"docs": [doc], "new_edits": False}, headers=headers
        )
        if response.status_code != 201:
            raise RuntimeError(
                f"seeding {db}/{doc.get('_id')} answered {response.status_code}: {response.text}"
            )


async def run_scenario(scenario: Scenario, storage: Any) -> Replayer:
    """Replay ``scenario`` against a fresh app on ``storage``; return the replayer."""
    app, auth = make_app(storage, admin_party=scenario.admin_party)
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            await prepare(client, scenario, auth)
            replayer = Replayer(client, auth=auth or scenario.admin_party)
            for name in scenario.setup:
                await replayer.run(load_recording(name), compare=False)
            for name in scenario.compare:
                await replayer.run(load_recording(name), compare=True)
    return replayer


def main(argv: Sequence[str]) -> int:
    from couchpoint.storage import MemoryStorage

    names = list(argv) or list(s.name for s in SCENARIOS)
    failed = 0
    for name in names:
        scenario = ALL_SCENARIOS.get(name) or Scenario(name, compare=(name,))
        replayer = asyncio.run(run_scenario(scenario, MemoryStorage()))
        status = "ok" if not replayer.mismatches else f"{len(replayer.mismatches)} mismatch(es)"
        print(f"== {name}: {status}")
        if replayer.mismatches:
            failed += 1
            print(format_report(replayer.mismatches))
        if replayer.setup_problems:
            print(
                f"   (setup: {len(replayer.setup_problems)} difference(s) while replaying {scenario.setup})"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
