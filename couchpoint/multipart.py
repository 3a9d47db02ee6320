"""Streaming MIME multipart reader and writer, in CouchDB's layout (protocol reference
§7.5, §7.6).  Framework-free: bytes in, bytes out.

Reading (``multipart/related`` request bodies, ``multipart/mixed`` responses)::

    boundary = parse_boundary(request.headers["content-type"])
    async for part in iter_parts(request.stream(), boundary):
        if part.index == 0:
            doc = orjson.loads(await read_all(part, MAX_DOC_BYTES))
        else:
            await storage.put_blob(part.stream())    # streamed, never buffered whole

:class:`MultipartParser` is the sans-IO core (``feed()`` / ``close()`` return events);
:func:`iter_parts` wraps it around an async iterator of chunks.  Only bounded buffers are
kept: the unprocessed tail of the current chunk (at most one chunk plus the delimiter
length, or one header block up to ``max_header_bytes``).  Parts come in order; a part's
body must be streamed before the next part is produced, and moving on drains whatever
the consumer left.  After the closing delimiter the epilogue is read and discarded, so
the source is always consumed to its end when iteration completes.

Parsing rules (RFC 2046 §5.1.1, made CouchDB-compatible): anything before the first
``--B`` is skipped (CouchDB's ``_bulk_get`` starts with a CRLF); a delimiter is
``CRLF--B`` followed by optional space/tab padding and CRLF, or by ``--`` for the close
delimiter (with or without a trailing CRLF); ``CRLF--B`` followed by anything else is part
data.  A body may have no parts (``--B--``, as CouchDB sends for an empty result), but
only when nothing other than blank lines precedes that close delimiter.  Header lines are
``Name: value`` separated by CRLF; a part may have no headers.  Every malformed input
raises :class:`MultipartError` (400 ``bad_request``).

Writing (§7.5 byte for byte)::

    boundary = multipart_boundary()
    parts = [JsonPart(doc_json), ErrorPart(b'{"missing":"3-abc"}'),
             RelatedPart(doc_json, [Attachment("a.txt", "text/plain", 87, None, chunks)])]
    StreamingResponse(mixed_body(parts, boundary), media_type=mixed_content_type(boundary))

The body ends with the close delimiter and no trailing CRLF, as CouchDB sends it.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from couchpoint import errors

__all__ = [
    "MAX_BOUNDARY_LENGTH",
    "MAX_HEADER_BYTES",
    "MAX_PADDING",
    "MAX_PARTS",
    "MAX_PREAMBLE_BYTES",
    "Attachment",
    "ErrorPart",
    "JsonPart",
    "MultipartError",
    "MultipartParser",
    "Part",
    "PartData",
    "PartEnd",
    "PartStart",
    "RawPart",
    "RelatedPart",
    "content_length",
    "end_delimiter",
    "error_part",
    "iter_parts",
    "json_part",
    "mixed_body",
    "mixed_content_type",
    "multipart_boundary",
    "parse_boundary",
    "parse_content_type",
    "read_all",
    "related_body",
    "related_content_type",
    "related_length",
]

# -- limits -------------------------------------------------------------------------------

MAX_HEADER_BYTES = 16 * 1024
"""Default limit on one part's header block (the bytes between its delimiter line and
the blank line)."""

MAX_PARTS = 10_000
"""Default limit on the number of parts in one body."""

MAX_PREAMBLE_BYTES = 64 * 1024
"""Bytes skipped before the first delimiter at most (real preambles are empty or a CRLF)."""

MAX_BOUNDARY_LENGTH = 70
"""RFC 2046 §5.1.1: a boundary is 1 to 70 characters."""

MAX_PADDING = 256
"""Space/tab "transport padding" accepted after a delimiter before its CRLF."""

_BCHARS = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'()+_,-./:=? ")
_TCHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_CTL = frozenset(range(0x20)) - {0x09} | {0x7F}

ChunkSource = bytes | AsyncIterable[bytes] | Iterable[bytes]
"""A body: bytes, or an (async) iterable of byte chunks."""

Headers = Sequence[tuple[str, str]]


class MultipartError(errors.BadRequest):
    """A malformed multipart body or ``Content-Type`` (400 ``bad_request``)."""


# -- Content-Type parameters -------------------------------------------------------------


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split a ``Content-Type``-like header into the lower-cased first token and its
    parameters (names lower-cased, quoted values unquoted)::

        >>> parse_content_type('multipart/related; boundary="abc"; Type=x')
        ('multipart/related', {'boundary': 'abc', 'type': 'x'})

    Also works for ``Content-Disposition`` (``attachment; filename="a.txt"``).  Raises
    :class:`MultipartError` on an unterminated quoted string or a parameter without ``=``.
    """
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t;":
            i += 1
        if i >= n:
            break
        eq = rest.find("=", i)
        semi = rest.find(";", i)
        if eq < 0 or (0 <= semi < eq):
            raise MultipartError(f"Invalid parameter in header value {value!r}")
        name = rest[i:eq].strip(" \t").lower()
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise MultipartError(f"Unterminated quoted string in header value {value!r}")
                c = rest[i]
                if c == "\\" and i + 1 < n:
                    chars.append(rest[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    chars.append(c)
                    i += 1
            param = "".join(chars)
            # anything between the closing quote and the next ';' is ignored
            semi = rest.find(";", i)
            i = n if semi < 0 else semi
        else:
            semi = rest.find(";", i)
            end = n if semi < 0 else semi
            param = rest[i:end].strip(" \t")
            i = end
        if name:
            params.setdefault(name, param)
    return head.strip(" \t").lower(), params


def _boundary_problem(boundary: str) -> str | None:
    """Why ``boundary`` is not a valid RFC 2046 boundary, or ``None``."""
    if not boundary:
        return "Multipart boundary is empty"
    if len(boundary) > MAX_BOUNDARY_LENGTH:
        return f"Multipart boundary is longer than {MAX_BOUNDARY_LENGTH} characters"
    if not boundary.isascii() or not _BCHARS.issuperset(boundary.encode("ascii")) or boundary.endswith(" "):
        return f"Invalid character in multipart boundary {boundary!r}"
    return None


def parse_boundary(content_type: str) -> str:
    """The boundary of a ``multipart/*`` ``Content-Type`` (quoted or not)::

        >>> parse_boundary('multipart/related; boundary="5c56be"')
        '5c56be'

    Raises :class:`MultipartError` when the type is not ``multipart/*`` or the boundary
    is missing or invalid (RFC 2046: 1-70 of ``0-9A-Za-z'()+_,-./:=?`` and space, not
    ending in a space).
    """
    media_type, params = parse_content_type(content_type)
    if not media_type.startswith("multipart/"):
        raise MultipartError(f"Content-Type {content_type!r} is not multipart")
    boundary = params.get("boundary")
    if boundary is None:
        raise MultipartError(f"Content-Type {content_type!r} has no boundary parameter")
    problem = _boundary_problem(boundary)
    if problem:
        raise MultipartError(problem)
    return boundary


# -- sans-IO parser ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartStart:
    """A part begins; ``headers`` as received, in order (names as sent)."""

    headers: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class PartData:
    """A piece of the current part's body (never empty)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnd:
    """The current part's body is complete."""


_PART_END = PartEnd()
Event = PartStart | PartData | PartEnd

_PREAMBLE, _HEADERS, _BODY, _EPILOGUE, _FAILED = range(5)
_NEED_MORE, _NOT_DELIMITER, _NEXT_PART, _CLOSE = range(4)


def _decode_header(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _parse_header_block(block: bytes) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for line in block.split(b"\r\n"):
        if _CTL.intersection(line):
            raise MultipartError(f"Invalid control character in part header line {line[:80]!r}")
        if line[:1] in (b" ", b"\t"):  # obsolete line folding (RFC 5322 §3.2.2)
            if not headers:
                raise MultipartError(f"Part header continuation line without a header: {line[:80]!r}")
            name, value = headers[-1]
            more = _decode_header(line).strip(" \t")
            headers[-1] = (name, f"{value} {more}".strip(" \t"))
            continue
        name, colon, value = line.partition(b":")
        if not colon:
            raise MultipartError(f"Part header line without a colon: {line[:80]!r}")
        name = name.strip(b" \t")
        if not name or not _TCHARS.issuperset(name):
            raise MultipartError(f"Invalid part header name {name[:80]!r}")
        headers.append((name.decode("ascii"), _decode_header(value).strip(" \t")))
    return headers


class MultipartParser:
    """Sans-IO multipart parser: :meth:`feed` bytes, get :class:`PartStart`,
    :class:`PartData` and :class:`PartEnd` events; :meth:`close` at end of input.

    >>> p = MultipartParser("B")
    >>> p.feed(b"--B\\r\\nContent-Type: text/plain\\r\\n\\r\\nhi\\r\\n--B--")
    [PartStart(headers=[('Content-Type', 'text/plain')]), PartData(data=b'hi'), PartEnd()]
    >>> p.close(), p.finished
    ([], True)

    Any malformed input raises :class:`MultipartError`; the parser then stays failed.
    """

    def __init__(
        self,
        boundary: str,
        *,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_parts: int = MAX_PARTS,
    ) -> None:
        problem = _boundary_problem(boundary)
        if problem:
            raise MultipartError(problem)
        self.boundary = boundary
        self.max_header_bytes = max_header_bytes
        self.max_parts = max_parts
        self._dash = b"--" + boundary.encode("ascii")  # the opening delimiter
        self._delim = b"\r\n" + self._dash  # every later delimiter (RFC: the CRLF belongs to it)
        self._buf = b""
        self._state = _PREAMBLE
        self._skipped = 0  # preamble bytes discarded so far
        self._blank = True  # ... and all of them were CR, LF, space or tab
        self._error = ""
        self.parts = 0
        """Parts started so far."""

    @property
    def finished(self) -> bool:
        """True once the close delimiter has been seen."""
        return self._state == _EPILOGUE

    def _fail(self, reason: str) -> MultipartError:
        self._state = _FAILED
        self._error = reason
        self._buf = b""
        return MultipartError(reason)

    def _skip(self, buf: bytes, start: int, end: int) -> None:
        """Discard ``buf[start:end]`` as preamble (at most ``MAX_PREAMBLE_BYTES`` in all)."""
        if end > start:
            self._skipped += end - start
            if self._blank and buf[start:end].strip(b" \t\r\n"):
                self._blank = False
            if self._skipped > MAX_PREAMBLE_BYTES:
                raise self._fail(
                    f"No multipart boundary '--{self.boundary}' in the first {MAX_PREAMBLE_BYTES} bytes"
                )

    def _after_delimiter(self, buf: bytes, j: int) -> tuple[int, int]:
        """Classify what follows a delimiter ending at ``buf[j]``: ``(kind, next_pos)``."""
        n = len(buf)
        if n - j < 2:
            if j < n and buf[j] not in b"-\r \t":
                return _NOT_DELIMITER, j
            return _NEED_MORE, j
        two = buf[j : j + 2]
        if two == b"--":
            return _CLOSE, j + 2
        if two == b"\r\n":
            return _NEXT_PART, j + 2
        k = j
        while k < n and buf[k] in b" \t":
            k += 1
        if k - j > MAX_PADDING:
            raise self._fail(f"More than {MAX_PADDING} bytes of padding after a multipart boundary")
        if k == j:
            return _NOT_DELIMITER, j
        if n - k < 2:
            if k < n and buf[k] != 0x0D:
                return _NOT_DELIMITER, j
            return _NEED_MORE, j
        if buf[k : k + 2] == b"\r\n":
            return _NEXT_PART, k + 2
        return _NOT_DELIMITER, j

    def feed(self, data: bytes) -> list[Event]:
        """Parse the next chunk of input and return the events it completes."""
        if self._state == _FAILED:
            raise MultipartError(self._error)
        if self._state == _EPILOGUE or not data:
            return []
        buf = self._buf + data if self._buf else bytes(data)
        events: list[Event] = []
        pos = 0
        n = len(buf)
        state = self._state
        while True:
            if state == _BODY:
                delim = self._delim
                i = buf.find(delim, pos)
                if i < 0:
                    # Emit all but a possible partial delimiter at the tail.  The boundary
                    # holds no CR, so only the last CR of the tail can start one.
                    end = n
                    k = buf.rfind(b"\r", max(pos, n - len(delim) + 1))
                    if k >= 0 and delim.startswith(buf[k:]):
                        end = k
                    if end > pos:
                        events.append(PartData(buf[pos:end]))
                    pos = end
                    break
                kind, nxt = self._after_delimiter(buf, i + len(delim))
                if kind == _NEED_MORE:
                    if i > pos:
                        events.append(PartData(buf[pos:i]))
                    pos = i
                    break
                if kind == _NOT_DELIMITER:  # "CRLF--B" followed by other bytes is data
                    end = i + len(delim)
                    events.append(PartData(buf[pos:end]))
                    pos = end
                    continue
                if i > pos:
                    events.append(PartData(buf[pos:i]))
                events.append(_PART_END)
                pos = nxt
                state = _EPILOGUE if kind == _CLOSE else _HEADERS
                if state == _EPILOGUE:
                    pos = n
                    break
            elif state == _HEADERS:
                if buf.startswith(b"\r\n", pos):
                    headers: list[tuple[str, str]] = []
                    body_start = pos + 2
                else:
                    k = buf.find(b"\r\n\r\n", pos)
                    if k < 0 or k - pos > self.max_header_bytes:
                        if k >= 0 or n - pos > self.max_header_bytes + 3:
                            raise self._fail(f"Multipart part headers exceed {self.max_header_bytes} bytes")
                        break
                    try:
                        headers = _parse_header_block(buf[pos:k])
                    except MultipartError as exc:
                        raise self._fail(exc.reason) from None
                    body_start = k + 4
                self.parts += 1
                if self.parts > self.max_parts:
                    raise self._fail(f"Multipart body has more than {self.max_parts} parts")
                events.append(PartStart(headers))
                pos = body_start
                state = _BODY
            elif state == _PREAMBLE:
                dash = self._dash
                i = buf.find(dash, pos)
                if i < 0:
                    keep = max(pos, n - len(dash) + 1)
                    self._skip(buf, pos, keep)
                    pos = keep
                    break
                self._skip(buf, pos, i)
                pos = i
                kind, nxt = self._after_delimiter(buf, i + len(dash))
                if kind == _NEED_MORE:
                    break
                if kind == _CLOSE and not self._blank:
                    kind = _NOT_DELIMITER  # "--B--" closes a part-less body only after blank lines
                if kind == _NOT_DELIMITER:
                    self._skip(buf, i, i + 1)
                    pos = i + 1
                    continue
                pos = nxt
                if kind == _CLOSE:
                    state = _EPILOGUE
                    pos = n
                    break
                state = _HEADERS
            else:  # _EPILOGUE
                pos = n
                break
        self._state = state
        self._buf = buf[pos:] if pos < n else b""
        return events

    def close(self) -> list[Event]:
        """Signal end of input.  Raises :class:`MultipartError` unless the close delimiter
        was seen (anything after it is epilogue and ignored)."""
        if self._state == _EPILOGUE:
            return []
        if self._state == _FAILED:
            raise MultipartError(self._error)
        if self._state == _PREAMBLE:
            reason = f"Multipart body has no opening boundary '--{self.boundary}'"
        elif self._state == _HEADERS:
            reason = "Multipart body ends inside part headers"
        else:
            reason = f"Multipart body ends before the closing boundary '--{self.boundary}--'"
        raise self._fail(reason)


# -- async reader ------------------------------------------------------------------------


async def _achunks(source: ChunkSource) -> AsyncIterator[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        yield bytes(source)
    elif isinstance(source, AsyncIterable):
        async for chunk in source:
            yield chunk
    else:
        for chunk in source:
            yield chunk


class _Reader:
    """Pulls chunks from the source on demand and hands out parser events."""

    def __init__(self, chunks: ChunkSource, parser: MultipartParser) -> None:
        self._source = _achunks(chunks)
        self._parser = parser
        self._events: deque[Event] = deque()
        self._eof = False
        self._failed: MultipartError | None = None
        self.current: Part | None = None

    async def next_event(self) -> Event | None:
        """The next event, or ``None`` after the source ended and the body was complete.

        Once the body proved malformed, every later call raises the same
        :class:`MultipartError` (so a consumer draining after an error sees the cause,
        not a confusing end of stream)."""
        if self._failed is not None:
            raise self._failed
        try:
            while not self._events:
                if self._eof:
                    return None
                try:
                    chunk = await self._source.__anext__()
                except StopAsyncIteration:
                    self._eof = True
                    self._events.extend(self._parser.close())
                    continue
                if chunk:
                    self._events.extend(self._parser.feed(chunk))
        except MultipartError as err:
            self._failed = err
            raise
        return self._events.popleft()

    async def body_chunk(self, part: Part) -> bytes | None:
        """Next body chunk of ``part`` (the current part), ``None`` at its end."""
        if self.current is not part:
            raise RuntimeError("multipart part read after iteration moved past it")
        event = await self.next_event()
        if isinstance(event, PartData):
            return event.data
        if isinstance(event, PartEnd):
            part._done = True
            return None
        raise AssertionError(f"unexpected multipart event {event!r}")  # pragma: no cover


class Part:
    """One part of a multipart body being read.

    ``headers`` maps lower-cased names to values (a repeated name: the last one wins);
    ``raw_headers`` keeps them as received.  The body is read once, as an async iterator
    of chunks: ``async for chunk in part.stream()`` (or ``async for chunk in part``), or
    with :meth:`read` / :func:`read_all`.
    """

    __slots__ = ("_done", "_reader", "_started", "headers", "index", "raw_headers")

    def __init__(self, reader: _Reader, index: int, raw_headers: list[tuple[str, str]]) -> None:
        self._reader = reader
        self._started = False
        self._done = False
        self.index = index
        """0-based position of the part in the body."""
        self.raw_headers = raw_headers
        self.headers = {name.lower(): value for name, value in raw_headers}

    def __repr__(self) -> str:
        return f"Part(index={self.index}, headers={self.headers!r})"

    @property
    def content_type(self) -> str:
        """The media type, lower-cased, without parameters (``""`` when absent)."""
        value = self.headers.get("content-type")
        return parse_content_type(value)[0] if value else ""

    @property
    def filename(self) -> str | None:
        """``filename`` of ``Content-Disposition``, if any (informational: CouchDB matches
        attachment parts by position)."""
        value = self.headers.get("content-disposition")
        if value is None:
            return None
        try:
            return parse_content_type(value)[1].get("filename")
        except MultipartError:
            return None

    async def stream(self) -> AsyncIterator[bytes]:
        """The body as non-empty chunks, each at most one source chunk plus the delimiter
        length long.  One use only.

        Raises :class:`MultipartError` if the body turns out to be malformed.
        """
        if self._started:
            raise RuntimeError("multipart part body can be streamed only once")
        self._started = True
        while (chunk := await self._reader.body_chunk(self)) is not None:
            yield chunk

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.stream()

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body; ``errors.too_large()`` (413) past ``limit`` bytes."""
        buf = bytearray()
        async for chunk in self.stream():
            if limit is not None and len(buf) + len(chunk) > limit:
                raise errors.too_large()
            buf += chunk
        return bytes(buf)

    async def drain(self) -> int:
        """Skip the rest of the body (whether or not streaming started); returns the number
        of bytes skipped."""
        skipped = 0
        while not self._done and (chunk := await self._reader.body_chunk(self)) is not None:
            skipped += len(chunk)
        self._started = True
        return skipped


async def iter_parts(
    chunks: ChunkSource,
    boundary: str,
    *,
    max_header_bytes: int = MAX_HEADER_BYTES,
    max_parts: int = MAX_PARTS,
) -> AsyncIterator[Part]:
    """The parts of a multipart body read from ``chunks``, in order::

        async for part in iter_parts(request.stream(), parse_boundary(content_type)):
            data = await read_all(part, 1 << 20)

    Each part must be streamed before the next is produced; advancing drains it.  After
    the last part the epilogue is read to the end of ``chunks``.  Raises
    :class:`MultipartError` for malformed input (also from a part's stream); errors raised
    by ``chunks`` itself (a client disconnect) propagate unchanged.  A nested multipart
    part is read with ``iter_parts(part.stream(), parse_boundary(part.headers[...]))``.
    """
    parser = MultipartParser(boundary, max_header_bytes=max_header_bytes, max_parts=max_parts)
    reader = _Reader(chunks, parser)
    index = 0
    while True:
        if reader.current is not None:
            await reader.current.drain()
        event = await reader.next_event()
        if event is None:
            return
        if not isinstance(event, PartStart):  # pragma: no cover
            raise AssertionError(f"unexpected multipart event {event!r}")
        part = Part(reader, index, event.headers)
        reader.current = part
        index += 1
        yield part


async def read_all(part: Part, limit: int) -> bytes:
    """The whole body of ``part`` (e.g. the JSON document part); raises
    ``errors.too_large()`` (413 ``too_large``) once it exceeds ``limit`` bytes."""
    return await part.read(limit)


# -- writer ------------------------------------------------------------------------------


def multipart_boundary() -> str:
    """A fresh boundary: 32 random hex characters, as CouchDB makes them."""
    return secrets.token_hex(16)


def mixed_content_type(boundary: str) -> str:
    """``multipart/mixed; boundary="<boundary>"``."""
    return f'multipart/mixed; boundary="{boundary}"'


def related_content_type(boundary: str) -> str:
    """``multipart/related; boundary="<boundary>"``."""
    return f'multipart/related; boundary="{boundary}"'


class Attachment(NamedTuple):
    """One ``follows`` attachment part.  ``length`` is the number of bytes ``chunks``
    yields (the JSON's ``encoded_length`` when ``encoding`` is set, else ``length``);
    ``encoding`` (``"gzip"``) adds ``Content-Encoding``.  A plain 5-tuple works too."""

    name: str
    content_type: str
    length: int
    encoding: str | None
    chunks: ChunkSource


@dataclass(frozen=True, slots=True)
class JsonPart:
    """A document part: exactly ``Content-Type: application/json`` (plus ``headers``)."""

    body: bytes
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class ErrorPart:
    """An error part (``{"missing": rev}`` ...): ``Content-Type: application/json;
    error="true"`` (plus ``headers``)."""

    body: bytes
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class RelatedPart:
    """A document with attachment bodies: a nested ``multipart/related`` part whose first
    inner part is ``doc_json``, followed by one part per attachment, in order.  ``headers``
    go after the part's ``Content-Type`` (``X-Doc-Id``/``X-Rev-Id`` for ``_bulk_get``)."""

    doc_json: bytes
    attachments: Sequence[AttachmentLike]
    boundary: str = field(default_factory=multipart_boundary)
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class RawPart:
    """Any part: ``headers`` as given, then ``body``.  ``length``, when given, is checked
    while writing; :func:`content_length` needs it for a streamed body."""

    headers: Headers
    body: ChunkSource
    length: int | None = None


MixedPart = JsonPart | ErrorPart | RelatedPart | RawPart
AttachmentLike = Attachment | tuple[str, str, int, str | None, ChunkSource]


@dataclass(frozen=True, slots=True)
class _Stream:
    """A body segment whose bytes come from ``chunks``; ``length`` checked when known."""

    label: str
    length: int | None
    chunks: AsyncIterable[bytes] | Iterable[bytes]


_Segment = bytes | _Stream


def _header_lines(headers: Iterable[tuple[str, str]]) -> bytes:
    out = bytearray()
    for name, value in headers:
        raw_name = name.encode("ascii", "replace")
        if not raw_name or not _TCHARS.issuperset(raw_name):
            raise ValueError(f"invalid multipart header name {name!r}")
        raw_value = value.encode("utf-8")
        if b"\r" in raw_value or b"\n" in raw_value or b"\0" in raw_value:
            raise ValueError(f"invalid multipart header value {value!r}")
        out += raw_name + b": " + raw_value + b"\r\n"
    return bytes(out)


def _quote_filename(name: str) -> str:
    """``name`` as the inside of a quoted string: ``\\`` and ``"`` escaped, control
    characters percent-encoded (CouchDB writes the name raw; the filename is informational)."""
    out = []
    for c in name:
        if c in '\\"':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"%{ord(c):02X}")
        else:
            out.append(c)
    return "".join(out)


def _clean(value: str) -> str:
    return "".join(c for c in value if c not in "\r\n\0")


def _writer_boundary(boundary: str) -> bytes:
    problem = _boundary_problem(boundary)
    if problem:
        raise ValueError(problem)
    return boundary.encode("ascii")


def _body_segment(label: str, body: ChunkSource, length: int | None) -> _Segment:
    if isinstance(body, bytes | bytearray | memoryview):
        data = bytes(body)
        if length is not None and len(data) != length:
            raise ValueError(f"{label}: declared {length} bytes, body has {len(data)}")
        return data
    return _Stream(label, length, body)


def _related_segments(
    doc_json: bytes, attachments: Iterable[Attachment | tuple], boundary: str
) -> Iterator[_Segment]:
    """§7.6 layout: JSON part, one part per attachment, close delimiter (no CRLF after)."""
    b = _writer_boundary(boundary)
    yield b"--" + b + b"\r\nContent-Type: application/json\r\n\r\n" + bytes(doc_json) + b"\r\n"
    for att in attachments:
        name, content_type, length, encoding, chunks = att
        headers = [
            ("Content-Disposition", f'attachment; filename="{_quote_filename(name)}"'),
            ("Content-Type", _clean(content_type)),
            ("Content-Length", str(int(length))),
        ]
        if encoding:
            headers.append(("Content-Encoding", _clean(encoding)))
        yield b"--" + b + b"\r\n" + _header_lines(headers) + b"\r\n"
        yield _body_segment(f"attachment {name!r}", chunks, int(length))
        yield b"\r\n"
    yield b"--" + b + b"--"


def _mixed_part_segments(part: MixedPart, boundary: bytes) -> Iterator[_Segment]:
    """One outer part of a ``multipart/mixed`` body, ending with its CRLF."""
    delim = b"--" + boundary + b"\r\n"
    if isinstance(part, JsonPart | ErrorPart):
        content_type = "application/json" if isinstance(part, JsonPart) else 'application/json; error="true"'
        head = _header_lines([("Content-Type", content_type), *part.headers])
        yield delim + head + b"\r\n" + bytes(part.body) + b"\r\n"
    elif isinstance(part, RelatedPart):
        head = _header_lines([("Content-Type", related_content_type(part.boundary)), *part.headers])
        yield delim + head + b"\r\n"
        yield from _related_segments(part.doc_json, part.attachments, part.boundary)
        yield b"\r\n"
    elif isinstance(part, RawPart):
        yield delim + _header_lines(part.headers) + b"\r\n"
        yield _body_segment("multipart part", part.body, part.length)
        yield b"\r\n"
    else:
        raise TypeError(f"not a multipart part: {part!r}")


async def _checked_chunks(stream: _Stream) -> AsyncIterator[bytes]:
    sent = 0
    async for chunk in _achunks(stream.chunks):
        if not chunk:
            continue
        sent += len(chunk)
        if stream.length is not None and sent > stream.length:
            raise ValueError(f"{stream.label}: body is longer than the declared {stream.length} bytes")
        yield bytes(chunk)
    if stream.length is not None and sent != stream.length:
        raise ValueError(f"{stream.label}: body has {sent} bytes, declared {stream.length}")


async def _write(segments: Iterable[_Segment]) -> AsyncIterator[bytes]:
    """Stream segments, joining consecutive framing/bytes segments into one chunk."""
    pending: list[bytes] = []
    for segment in segments:
        if isinstance(segment, bytes):
            pending.append(segment)
            continue
        if pending:
            yield b"".join(pending)
            pending.clear()
        async for chunk in _checked_chunks(segment):
            yield chunk
    if pending:
        yield b"".join(pending)


def _length(segments: Iterable[_Segment]) -> int | None:
    total = 0
    for segment in segments:
        if isinstance(segment, bytes):
            total += len(segment)
        elif segment.length is None:
            return None
        else:
            total += segment.length
    return total


def json_part(boundary: str, body: bytes, headers: Headers = ()) -> bytes:
    """The bytes of one ``application/json`` part of a ``multipart/mixed`` body
    (delimiter line through the CRLF after ``body``)."""
    return b"".join(_mixed_part_segments(JsonPart(body, headers), _writer_boundary(boundary)))


def error_part(boundary: str, body: bytes, headers: Headers = ()) -> bytes:
    """The bytes of one ``application/json; error="true"`` part."""
    return b"".join(_mixed_part_segments(ErrorPart(body, headers), _writer_boundary(boundary)))


def end_delimiter(boundary: str) -> bytes:
    """``--<boundary>--``: the close delimiter (CouchDB sends no CRLF after it)."""
    return b"--" + _writer_boundary(boundary) + b"--"


async def mixed_body(
    parts: AsyncIterable[MixedPart] | Iterable[MixedPart], boundary: str
) -> AsyncIterator[bytes]:
    """A ``multipart/mixed`` body (§7.5), one outer part per item of ``parts``, then the
    close delimiter.  Framing is joined with small bodies into one chunk per part;
    attachment chunks are passed through as they come.  Raises ``ValueError`` if a
    streamed body does not have its declared length."""
    b = _writer_boundary(boundary)
    async for part in _aparts(parts):
        async for chunk in _write(_mixed_part_segments(part, b)):
            yield chunk
    yield b"--" + b + b"--"


async def _aparts(parts: AsyncIterable[MixedPart] | Iterable[MixedPart]) -> AsyncIterator[MixedPart]:
    if isinstance(parts, AsyncIterable):
        async for part in parts:
            yield part
    else:
        for part in parts:
            yield part


async def related_body(
    doc_json: bytes,
    attachments: Iterable[AttachmentLike],
    boundary: str,
) -> AsyncIterator[bytes]:
    """A single-document ``multipart/related`` body (§7.6): the JSON part, then one part per
    attachment in the given order, then ``--B--``.  Used for ``GET doc?attachments=true``
    with ``Accept: multipart/related`` and for outbound ``PUT ?new_edits=false``."""
    async for chunk in _write(_related_segments(doc_json, attachments, boundary)):
        yield chunk


def content_length(parts: Iterable[MixedPart], boundary: str) -> int | None:
    """Length in bytes of ``mixed_body(parts, boundary)``, or ``None`` if a streamed
    :class:`RawPart` has no declared length.  Does not consume any body."""
    b = _writer_boundary(boundary)
    total = len(b) + 4
    for part in parts:
        size = _length(_mixed_part_segments(part, b))
        if size is None:
            return None
        total += size
    return total


def related_length(
    doc_json: bytes,
    attachments: Iterable[AttachmentLike],
    boundary: str,
) -> int:
    """Length in bytes of ``related_body(doc_json, attachments, boundary)`` (for a
    ``Content-Length`` request header).  Does not consume any body."""
    size = _length(_related_segments(doc_json, attachments, boundary))
    assert size is not None
    return size
