"""Attachments: how their bodies are stored, described and served.

CouchDB docs *Attachments* and the protocol reference §4.7, §9:

* A stored attachment is described in the revision body's ``_attachments`` by
  ``content_type``, ``revpos`` (depth of the revision that last wrote it), ``digest``
  (``md5-<base64>`` of the **stored** bytes), ``length`` (identity bytes) and, when stored
  compressed, ``encoding: "gzip"`` and ``encoded_length``.  couchpoint adds ``blob``, the
  storage key (SHA-256 of the stored bytes), which is never sent to clients.
* Types matching ``compressible_types`` (default ``text/*``, JavaScript, JSON, XML) are
  stored gzip-encoded at level 8, as CouchDB does.  Python's zlib then produces the very
  bytes CouchDB produces, so digests agree with CouchDB peers.  Bodies are served decoded
  unless the client accepts gzip.
* Bodies travel as streams: uploads are hashed (and compressed) chunk by chunk into
  :meth:`Storage.put_blob`; downloads are streamed (and decompressed) from
  :meth:`Storage.read_blob`.  Only inline base64 ``data`` (which is in the JSON anyway) is
  handled in memory.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Any

import anyio

from couchpoint import errors
from couchpoint.storage.base import BlobTooLarge, Storage

DEFAULT_COMPRESSIBLE_TYPES = ("text/*", "application/javascript", "application/json", "application/xml")
COMPRESSION_LEVEL = 8
"""CouchDB's ``[attachments] compression_level`` default."""
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_GZIP_WBITS = 31  # zlib: gzip wrapper, 32 KiB window
_CHUNK = 64 * 1024
_OFFLOAD = 32 * 1024
"""Chunks at least this large are (de)compressed in a worker thread."""
_PUBLIC_FIELDS = ("content_type", "revpos", "digest", "length")


class PreparedAttachment:
    """An attachment whose body is already stored as a blob, waiting for the revision
    that references it.  Only couchpoint creates these (a client's JSON cannot), so an
    ``_attachments`` entry of this type is trusted.

    ``meta``: ``content_type``, ``digest``, ``length``, ``blob`` and, when compressed,
    ``encoding``/``encoded_length``.  ``revpos``: the revpos a replicated write sent
    (interactive writes use the new revision's depth instead).
    """

    __slots__ = ("meta", "revpos")

    def __init__(self, meta: dict[str, Any], revpos: int | None = None) -> None:
        self.meta = meta
        self.revpos = revpos

    def __repr__(self) -> str:
        return f"PreparedAttachment({self.meta!r}, revpos={self.revpos!r})"


def validate_name(name: object) -> str:
    """Attachment names are strings not starting with ``_`` (400 bad_request)."""
    if not isinstance(name, str) or not name:
        raise errors.BadRequest("Attachment name must be a non-empty string")
    if name.startswith("_"):
        raise errors.BadRequest(f"Attachment name '{name}' starts with prohibited character '_'")
    return name


def is_compressible(content_type: str, patterns: Sequence[str] = DEFAULT_COMPRESSIBLE_TYPES) -> bool:
    """Whether ``content_type`` (parameters ignored) matches a compressible pattern."""
    media = content_type.split(";", 1)[0].strip().lower()
    return any(fnmatch.fnmatchcase(media, p.strip().lower()) for p in patterns)


def stub(meta: dict[str, Any], *, encoding_info: bool = False) -> dict[str, Any]:
    """The stub a client sees for a stored attachment (``stub: true``)."""
    out = {k: meta[k] for k in _PUBLIC_FIELDS if k in meta}
    if encoding_info and meta.get("encoding"):
        out["encoding"] = meta["encoding"]
        out["encoded_length"] = meta["encoded_length"]
    out["stub"] = True
    return out


def stored_length(meta: dict[str, Any]) -> int:
    """Bytes of the stored blob (encoded length when compressed)."""
    return int(meta.get("encoded_length", meta.get("length", 0)))


async def _iterate(data: bytes) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), _CHUNK):
        yield data[offset : offset + _CHUNK]


async def store_stream(
    storage: Storage,
    chunks: AsyncIterable[bytes],
    content_type: str,
    *,
    content_encoding: str | None = None,
    compressible_types: Sequence[str] = DEFAULT_COMPRESSIBLE_TYPES,
    max_size: int | None = None,
    name: str = "",
) -> dict[str, Any]:
    """Store an attachment body streamed from ``chunks`` and return its metadata.

    ``content_encoding="gzip"``: the chunks are already gzip and are stored as they are
    (the identity length is counted by decompressing on the fly).  Otherwise compressible
    types are gzip-encoded while streaming.  ``max_size`` bounds the identity length →
    ``413 attachment_too_large``.  Raises ``415`` for other encodings and ``400`` for
    corrupt gzip.
    """
    if content_encoding not in (None, "", "identity", "gzip"):
        raise errors.bad_content_type("Only gzip and identity content-encodings are supported")
    counter = {"length": 0}
    too_large = errors.CouchError(name or "attachment", status=413, error="attachment_too_large")

    async def identity_counted() -> AsyncIterator[bytes]:
        async for chunk in chunks:
            counter["length"] += len(chunk)
            if max_size is not None and counter["length"] > max_size:
                raise too_large
            yield chunk

    async def gzip_counted() -> AsyncIterator[bytes]:
        inflater = zlib.decompressobj(_GZIP_WBITS)
        async for chunk in chunks:
            try:
                counter["length"] += len(inflater.decompress(chunk))
            except zlib.error:
                raise errors.BadRequest("Attachment body is not valid gzip") from None
            if max_size is not None and counter["length"] > max_size:
                raise too_large
            yield chunk

    async def compressed() -> AsyncIterator[bytes]:
        deflater = zlib.compressobj(COMPRESSION_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
        async for chunk in identity_counted():
            # zlib releases the GIL: compress big chunks off the event loop.
            if len(chunk) >= _OFFLOAD:
                out = await anyio.to_thread.run_sync(deflater.compress, chunk)
            else:
                out = deflater.compress(chunk)
            if out:
                yield out
        yield deflater.flush()

    content_type = content_type or DEFAULT_CONTENT_TYPE
    if content_encoding == "gzip":
        source, encoding = gzip_counted(), "gzip"
    elif is_compressible(content_type, compressible_types):
        source, encoding = compressed(), "gzip"
    else:
        source, encoding = identity_counted(), None
    try:
        blob = await storage.put_blob(source)
    except BlobTooLarge:
        raise too_large from None
    meta: dict[str, Any] = {
        "content_type": content_type,
        "digest": blob.md5,
        "length": counter["length"],
        "blob": blob.key,
    }
    if encoding:
        meta["encoding"] = encoding
        meta["encoded_length"] = blob.length
    return meta


async def store_inline(
    storage: Storage,
    entry: dict[str, Any],
    *,
    compressible_types: Sequence[str] = DEFAULT_COMPRESSIBLE_TYPES,
    max_size: int | None = None,
    name: str = "",
) -> PreparedAttachment:
    """Store an inline ``{"data": <base64>, "content_type": ...}`` attachment.

    The digest is recomputed over the stored bytes (CouchDB does the same; a sent digest
    of inline data is never trusted).  400 for invalid base64.
    """
    data = entry.get("data")
    if not isinstance(data, str):
        raise errors.BadRequest("Attachment data must be a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise errors.BadRequest("Invalid attachment data: not base64") from None
    content_type = entry.get("content_type")
    meta = await store_stream(
        storage,
        _iterate(raw),
        content_type if isinstance(content_type, str) else DEFAULT_CONTENT_TYPE,
        compressible_types=compressible_types,
        max_size=max_size,
        name=name,
    )
    revpos = entry.get("revpos")
    return PreparedAttachment(meta, revpos if isinstance(revpos, int) and revpos > 0 else None)


async def read_stored(
    storage: Storage, meta: dict[str, Any], start: int = 0, end: int | None = None
) -> AsyncIterator[bytes]:
    """The stored bytes (gzip when ``encoding`` is set) of an attachment, streamed."""
    async for chunk in storage.read_blob(meta["blob"], start, end):
        yield chunk


async def read_decoded(storage: Storage, meta: dict[str, Any]) -> AsyncIterator[bytes]:
    """The identity bytes of an attachment, streamed (gunzipped on the fly if needed)."""
    if meta.get("encoding") != "gzip":
        async for chunk in storage.read_blob(meta["blob"]):
            yield chunk
        return
    inflater = zlib.decompressobj(_GZIP_WBITS)
    async for chunk in storage.read_blob(meta["blob"]):
        if len(chunk) >= _OFFLOAD:
            out = await anyio.to_thread.run_sync(inflater.decompress, chunk)
        else:
            out = inflater.decompress(chunk)
        if out:
            yield out
    tail = inflater.flush()
    if tail:
        yield tail


async def decoded_bytes(storage: Storage, meta: dict[str, Any]) -> bytes:
    """The whole identity body (for inline ``data`` in JSON responses)."""
    return b"".join([chunk async for chunk in read_decoded(storage, meta)])
