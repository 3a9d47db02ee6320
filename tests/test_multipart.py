"""couchpoint.multipart: the streaming multipart reader and writer (protocol reference
§7.5, §7.6; BC-07, BC-08).

Real traffic: every multipart body in ``recordings/`` (the CouchDB 3.4 replicator's
``multipart/related`` PUTs in c06, CouchDB's ``multipart/mixed`` ``open_revs`` and
``_bulk_get`` responses, the kagency CouchDB 1.x responses with nested
``multipart/related`` parts) is parsed under many chunkings and rebuilt byte for byte by
the writer.  Hypothesis checks writer -> reader round trips under arbitrary chunk splits
and that broken input only ever raises ``MultipartError``.
"""

from __future__ import annotations

import asyncio
import base64
import doctest
import gzip
import hashlib
import json
import re
import tracemalloc
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from couchpoint import errors
from couchpoint import multipart as mp
from couchpoint.multipart import (
    Attachment,
    ErrorPart,
    JsonPart,
    MultipartError,
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    RawPart,
    RelatedPart,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
# The repository's recordings; the shared copy (when present) adds older kagency versions.
RECORDING_DIRS = [REPO_ROOT / "recordings", REPO_ROOT.parent / "shared" / "recordings"]

# -- helpers -----------------------------------------------------------------------------


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


async def agen(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def collect(source: Any) -> bytes:
    return b"".join([chunk async for chunk in source])


async def parse_all(chunks: Any, boundary: str, **limits: int) -> list[tuple[list[tuple[str, str]], bytes]]:
    """Every part as (raw headers, body), reading each body through its stream."""
    out = []
    async for part in mp.iter_parts(agen(chunks), boundary, **limits):
        out.append((part.raw_headers, await collect(part.stream())))
    return out


async def parse_deep(chunks: Any, boundary: str) -> list[Any]:
    """Like parse_all, but nested multipart parts are parsed (streamed) recursively."""
    out: list[Any] = []
    async for part in mp.iter_parts(chunks, boundary):
        if part.content_type.startswith("multipart/"):
            inner = mp.parse_boundary(part.headers["content-type"])
            out.append((part.raw_headers, await parse_deep(part.stream(), inner)))
        else:
            out.append((part.raw_headers, await collect(part.stream())))
    return out


def recorded_multipart_bodies() -> list[tuple[str, str, str, bytes, dict[str, Any]]]:
    """(id, side, content-type, body, meta view) for every multipart body recorded."""
    found = []
    files: dict[str, Path] = {}
    for root in RECORDING_DIRS:
        if root.is_dir():
            for path in sorted(root.rglob("*.jsonl")):
                files.setdefault(str(path.relative_to(root)), path)
    for relative, path in sorted(files.items()):
        for line in path.read_text().splitlines():
            exchange = json.loads(line)
            for side in ("request", "response"):
                message = exchange.get(side)
                if not message:
                    continue
                content_type = message["headers"].get("content-type", "")
                if content_type.startswith("multipart/"):
                    body = base64.b64decode(message["body"]["base64"])
                    view = exchange["meta"][f"{side}_body"]["multipart"]
                    name = f"{relative}#{exchange['meta']['index']}:{side}"
                    found.append((name, side, content_type, body, view))
    return found


RECORDED = recorded_multipart_bodies()
C06_PUTS = [r for r in RECORDED if r[0].startswith("couchdb-3.4/c06") and r[1] == "request"]


def test_recordings_present() -> None:
    assert len(RECORDED) >= 17
    assert len(C06_PUTS) == 5


def test_module_doctests() -> None:
    assert doctest.testmod(mp).failed == 0


# -- parse_boundary / parse_content_type -------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        (
            'multipart/related; boundary="5c56beba46d4e384c8ae96515c547ea1"',
            "5c56beba46d4e384c8ae96515c547ea1",
        ),
        ("multipart/related; boundary=abc", "abc"),
        ("Multipart/Related;Boundary=abc;type=application/json", "abc"),
        (
            'multipart/mixed; boundary="--0f2889c9e07b73a61143bb6a045a39b4"',
            "--0f2889c9e07b73a61143bb6a045a39b4",
        ),
        ('multipart/related; type="application/json"; boundary="a b:c"', "a b:c"),
        ('multipart/related; type="a;b=c"; boundary="x:y"', "x:y"),
        ("multipart/related; boundary=abc ; charset=x", "abc"),
        (
            "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
            "----WebKitFormBoundary7MA4YWxkTrZu0gW",
        ),
    ],
)
def test_parse_boundary(content_type: str, boundary: str) -> None:
    assert mp.parse_boundary(content_type) == boundary


@pytest.mark.parametrize(
    "content_type",
    [
        "",
        "application/json",
        'application/json; boundary="abc"',
        "multipart/related",
        "multipart/related; type=application/json",
        'multipart/related; boundary=""',
        "multipart/related; boundary=",
        'multipart/related; boundary="abc',
        "multipart/related; boundary=" + "a" * 71,
        'multipart/related; boundary="a\\"b"',
        'multipart/related; boundary="abc "',
        "multipart/related; boundary=ab@c",
        "multipart/related; boundary=abc\r\nX: y",
        "multipart/related; boundary=äbc",
        "multipart/related; foo; boundary=abc",
    ],
)
def test_parse_boundary_rejects(content_type: str) -> None:
    with pytest.raises(MultipartError) as info:
        mp.parse_boundary(content_type)
    assert isinstance(info.value, errors.BadRequest)
    assert (info.value.status, info.value.error) == (400, "bad_request")
    assert info.value.reason


def test_parse_content_type() -> None:
    assert mp.parse_content_type('attachment; filename="a \\"b\\".txt"') == (
        "attachment",
        {"filename": 'a "b".txt'},
    )
    assert mp.parse_content_type("Text/Plain") == ("text/plain", {})
    assert mp.parse_content_type('application/json; error="true"') == ("application/json", {"error": "true"})


# -- real CouchDB traffic ----------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 7, 64, 1000, 65536, 10**9])
@pytest.mark.parametrize("recorded", C06_PUTS, ids=[r[0] for r in C06_PUTS])
async def test_c06_replicator_puts(recorded: tuple, size: int) -> None:
    """The CouchDB 3.4 replicator's multipart/related PUTs (§7.6): the JSON part first, then
    one part per ``follows`` attachment in JSON order, each exactly ``encoded_length``
    (gzip) or ``length`` bytes long, with the MD5 of its bytes as ``digest``."""
    _, _, content_type, body, _ = recorded
    boundary = mp.parse_boundary(content_type)
    parts = mp.iter_parts(agen(chunked(body, size)), boundary)
    first = await anext(parts)
    assert first.index == 0
    assert first.headers == {"content-type": "application/json"}
    assert first.content_type == "application/json"
    doc = json.loads(await mp.read_all(first, 1 << 20))
    follows = [(name, att) for name, att in doc["_attachments"].items() if att.get("follows")]
    assert follows
    seen = 0
    async for part in parts:
        name, att = follows[seen]
        seen += 1
        data = await collect(part)
        expected = att["encoded_length"] if "encoding" in att else att["length"]
        assert len(data) == expected == int(part.headers["content-length"])
        assert part.filename == name
        assert part.content_type == att["content_type"]
        assert part.headers.get("content-encoding") == att.get("encoding")
        assert att["digest"] == "md5-" + base64.b64encode(hashlib.md5(data).digest()).decode()
        if "encoding" in att:
            assert len(gzip.decompress(data)) == att["length"]
    assert seen == len(follows)


def _check_view(parts: list[Any], view: dict[str, Any]) -> None:
    """Compare parsed parts with the recording's own parsed view (meta.*_body.multipart)."""
    assert len(parts) == len(view["parts"])
    for (headers, body), expected in zip(parts, view["parts"], strict=True):
        assert {name.lower(): value for name, value in headers} == expected["headers"]
        if "multipart" in expected:
            _check_view(body, expected["multipart"])
            continue
        assert len(body) == expected["bytes"]
        if isinstance(expected["body"], dict) and set(expected["body"]) == {"base64"}:
            assert body == base64.b64decode(expected["body"]["base64"])
        else:
            assert json.loads(body) == expected["body"]


@pytest.mark.parametrize("size", [1, 3, 100, 10**9])
@pytest.mark.parametrize("recorded", RECORDED, ids=[r[0] for r in RECORDED])
async def test_every_recorded_multipart_body(recorded: tuple, size: int) -> None:
    """Every recorded multipart body (CouchDB 1.4-3.4, incl. the nested multipart/related
    parts of open_revs responses and _bulk_get's CRLF preamble/epilogue and '--' boundary)
    parses, nested parts streamed through their outer part, under any chunk size."""
    _, _, content_type, body, view = recorded
    parts = await parse_deep(agen(chunked(body, size)), mp.parse_boundary(content_type))
    _check_view(parts, view)


def _rebuild(parts: list[Any]) -> list[mp.MixedPart]:
    """Writer parts for parsed outer parts of a recorded multipart/mixed response."""
    out: list[mp.MixedPart] = []
    for headers, body in parts:
        hdrs = {name.lower(): value for name, value in headers}
        if hdrs["content-type"] == "application/json":
            out.append(JsonPart(body))
        elif hdrs["content-type"] == 'application/json; error="true"':
            out.append(ErrorPart(body))
        else:
            inner = mp.parse_boundary(hdrs["content-type"])
            (_, doc_json), *atts = body
            attachments = []
            for att_headers, data in atts:
                h = {name.lower(): value for name, value in att_headers}
                name = mp.parse_content_type(h["content-disposition"])[1]["filename"]
                length = int(h["content-length"])
                attachments.append(
                    Attachment(
                        name, h["content-type"], length, h.get("content-encoding"), agen(chunked(data, 100))
                    )
                )
            out.append(RelatedPart(doc_json, attachments, boundary=inner))
    return out


MIXED = [r for r in RECORDED if r[2].startswith("multipart/mixed")]


@pytest.mark.parametrize("recorded", MIXED, ids=[r[0] for r in MIXED])
async def test_writer_reproduces_recorded_mixed_responses(recorded: tuple) -> None:
    """§7.5 byte for byte: rebuilding CouchDB's own open_revs responses (JSON parts, nested
    multipart/related parts with gzip attachments) gives the recorded bytes exactly."""
    name, _, content_type, body, _ = recorded
    boundary = mp.parse_boundary(content_type)
    parts = _rebuild(await parse_deep(agen([body]), boundary))
    length = mp.content_length(parts, boundary)
    written = await collect(mp.mixed_body(parts, boundary))
    if body.startswith(b"\r\n"):
        # CouchDB's multipart _bulk_get writes a CRLF before the first delimiter and after
        # the last (preamble and epilogue); its open_revs responses have neither
        assert "d01" in name and body.endswith(b"--\r\n")
        body = body[2:-2]
    assert written == body
    assert length == len(body)


@pytest.mark.parametrize("recorded", C06_PUTS, ids=[r[0] for r in C06_PUTS])
async def test_writer_reproduces_c06_puts(recorded: tuple) -> None:
    """§7.6 byte for byte: related_body() rebuilds the replicator's PUT bodies exactly."""
    _, _, content_type, body, _ = recorded
    boundary = mp.parse_boundary(content_type)
    (_, doc_json), *atts = await parse_all([body], boundary)
    doc = json.loads(doc_json)
    follows = [(n, a) for n, a in doc["_attachments"].items() if a.get("follows")]
    attachments = [
        Attachment(n, a["content_type"], len(data), a.get("encoding"), agen(chunked(data, 4096)))
        for (n, a), (_, data) in zip(follows, atts, strict=True)
    ]
    assert mp.related_length(doc_json, attachments, boundary) == len(body)
    assert await collect(mp.related_body(doc_json, attachments, boundary)) == body


# -- writer ------------------------------------------------------------------------------


async def test_writer_layout_section_7_5() -> None:
    """The §7.5 example, byte for byte."""
    doc1 = b'{"_id":"Spaghetti","_rev":"1-917f"}'
    doc2 = b'{"_id":"Spaghetti","_rev":"7-474f","_attachments":{"recipe.txt":{"follows":true}}}'
    data = bytes(range(87))
    parts = [
        JsonPart(doc1),
        RelatedPart(
            doc2, [("recipe.txt", "text/plain", 87, None, agen([data[:50], data[50:]]))], boundary="INNER"
        ),
        ErrorPart(b'{"missing":"3-6bce"}'),
    ]
    expected = (
        b"--OUTER\r\nContent-Type: application/json\r\n\r\n" + doc1 + b"\r\n"
        b'--OUTER\r\nContent-Type: multipart/related; boundary="INNER"\r\n\r\n'
        b"--INNER\r\nContent-Type: application/json\r\n\r\n" + doc2 + b"\r\n"
        b'--INNER\r\nContent-Disposition: attachment; filename="recipe.txt"\r\n'
        b"Content-Type: text/plain\r\nContent-Length: 87\r\n\r\n" + data + b"\r\n"
        b"--INNER--\r\n"
        b'--OUTER\r\nContent-Type: application/json; error="true"\r\n\r\n{"missing":"3-6bce"}\r\n'
        b"--OUTER--"
    )
    assert mp.content_length(parts, "OUTER") == len(expected)
    chunks = [chunk async for chunk in mp.mixed_body(parts, "OUTER")]
    assert b"".join(chunks) == expected
    assert data[:50] in chunks and data[50:] in chunks  # attachment chunks pass through as they come


async def test_writer_related_gzip_and_bytes_bodies() -> None:
    """BC-07 layout: Content-Encoding after Content-Length; bodies may be plain bytes."""
    packed = gzip.compress(b"x" * 1000)
    body = await collect(
        mp.related_body(
            b"{}",
            [Attachment("t.txt", "text/plain", len(packed), "gzip", packed), ("e", "a/b", 0, None, b"")],
            "B",
        )
    )
    length = str(len(packed)).encode()
    assert body == b"".join(
        [
            b"--B\r\nContent-Type: application/json\r\n\r\n{}\r\n",
            b'--B\r\nContent-Disposition: attachment; filename="t.txt"\r\nContent-Type: text/plain\r\n',
            b"Content-Length: " + length + b"\r\nContent-Encoding: gzip\r\n\r\n" + packed + b"\r\n",
            b'--B\r\nContent-Disposition: attachment; filename="e"\r\nContent-Type: a/b\r\n',
            b"Content-Length: 0\r\n\r\n\r\n--B--",
        ]
    )


def test_small_writer_functions() -> None:
    assert mp.json_part("B", b"{}") == b"--B\r\nContent-Type: application/json\r\n\r\n{}\r\n"
    assert mp.error_part("B", b"{}") == b'--B\r\nContent-Type: application/json; error="true"\r\n\r\n{}\r\n'
    assert mp.end_delimiter("B") == b"--B--"
    assert mp.mixed_content_type("b1") == 'multipart/mixed; boundary="b1"'
    assert mp.related_content_type("b1") == 'multipart/related; boundary="b1"'
    assert mp.json_part("B", b"{}", [("X-Doc-Id", "d")]) == (
        b"--B\r\nContent-Type: application/json\r\nX-Doc-Id: d\r\n\r\n{}\r\n"
    )


def test_multipart_boundary() -> None:
    seen = {mp.multipart_boundary() for _ in range(100)}
    assert len(seen) == 100
    assert all(re.fullmatch(r"[0-9a-f]{32}", b) for b in seen)
    assert all(mp.parse_boundary(mp.mixed_content_type(b)) == b for b in seen)


@pytest.mark.parametrize(
    ("chunks", "message"),
    [([b"abc"], "body has 3 bytes, declared 4"), ([b"abcd", b"e"], "longer than the declared 4")],
)
async def test_writer_checks_attachment_length(chunks: list[bytes], message: str) -> None:
    """CDB reads exactly the declared bytes, so a wrong length must abort the stream."""
    body = mp.related_body(b"{}", [("a", "text/plain", 4, None, agen(chunks))], "B")
    with pytest.raises(ValueError, match=message):
        await collect(body)
    with pytest.raises(ValueError, match="declared 4 bytes, body has 3"):
        await collect(mp.related_body(b"{}", [("a", "text/plain", 4, None, b"abc")], "B"))


async def test_writer_rejects_bad_headers_and_boundaries() -> None:
    with pytest.raises(ValueError):
        await collect(mp.mixed_body([RawPart([("X", "a\r\nInjected: 1")], b"")], "B"))
    with pytest.raises(ValueError):
        await collect(mp.mixed_body([RawPart([("Bad Name", "a")], b"")], "B"))
    with pytest.raises(ValueError):
        await collect(mp.mixed_body([], "bad boundary "))
    with pytest.raises(TypeError):
        await collect(mp.mixed_body(["not a part"], "B"))  # type: ignore[list-item]


async def test_filename_quoting_round_trip() -> None:
    """Names with quotes/backslashes are quoted; control characters (which CouchDB would
    write raw, breaking the header) are percent-encoded.  Position stays authoritative."""
    names = ['a "quoted" \\ name.txt', "ünïcødé/dir name.json", "line\r\nbreak"]
    atts = [(n, "text/plain\r\n", 1, None, b"x") for n in names]
    body = await collect(mp.related_body(b"{}", atts, "B"))
    seen = []
    async for part in mp.iter_parts(agen([body]), "B"):
        seen.append((part.filename, part.headers.get("content-type")))
    assert seen[1:] == [
        (names[0], "text/plain"),
        (names[1], "text/plain"),
        ("line%0D%0Abreak", "text/plain"),
    ]


async def test_content_length_unknown_for_unsized_stream() -> None:
    parts = [RawPart([("Content-Type", "x/y")], agen([b"abc"]))]
    assert mp.content_length(parts, "B") is None
    sized = [RawPart([("Content-Type", "x/y")], agen([b"abc"]), length=3), JsonPart(b"{}")]
    assert mp.content_length(sized, "B") == len(await collect(mp.mixed_body(sized, "B")))


async def test_mixed_body_accepts_async_parts() -> None:
    async def parts() -> AsyncIterator[mp.MixedPart]:
        yield JsonPart(b"{}")
        yield ErrorPart(b'{"missing":"1-a"}')

    body = await collect(mp.mixed_body(parts(), "B"))
    assert body == mp.json_part("B", b"{}") + mp.error_part("B", b'{"missing":"1-a"}') + b"--B--"


# -- reader: behaviour -------------------------------------------------------------------


def body_of(*parts: tuple[bytes, bytes], boundary: bytes = b"B", close: bytes = b"--") -> bytes:
    """Hand-made body: parts as (header lines joined by CRLF, or b"", body)."""
    out = b"".join(
        b"--" + boundary + b"\r\n" + (head + b"\r\n" if head else b"") + b"\r\n" + data + b"\r\n"
        for head, data in parts
    )
    return out + b"--" + boundary + close


@pytest.mark.parametrize("size", [1, 2, 5, 10**9])
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # preamble: none, a CRLF (CouchDB's _bulk_get), text, a '--B' not followed by CRLF
        (b"--B\r\nA: 1\r\n\r\nx\r\n--B--", [([("A", "1")], b"x")]),
        (b"\r\n--B\r\nA: 1\r\n\r\nx\r\n--B--\r\n", [([("A", "1")], b"x")]),
        (b"This is a preamble.\r\n--B\r\nA: 1\r\n\r\nx\r\n--B--", [([("A", "1")], b"x")]),
        (b"pre --Bx --B- --B\r\nA: 1\r\n\r\nx\r\n--B--", [([("A", "1")], b"x")]),
        # epilogue ignored; close delimiter with or without CRLF
        (b"--B\r\n\r\nx\r\n--B--\r\nepilogue --B\r\n junk", [([], b"x")]),
        # parts without headers (CouchDB docs), empty bodies
        (b"--B\r\n\r\n\r\n--B\r\n\r\n\r\n--B--", [([], b""), ([], b"")]),
        (b"--B\r\n\r\n\r\nx\r\n--B--", [([], b"\r\nx")]),
        # transport padding after delimiters
        (b"--B \t \r\nA: 1\r\n\r\nx\r\n--B  \r\n\r\ny\r\n--B--", [([("A", "1")], b"x"), ([], b"y")]),
        # 'CRLF--B' followed by other bytes is data; so is '--B' at the start of a body
        (b"--B\r\n\r\na\r\n--Bx\r\n--B-y\r\n--B\rz\r\n--B--", [([], b"a\r\n--Bx\r\n--B-y\r\n--B\rz")]),
        (b"--B\r\n\r\n--B--\r\n--B--", [([], b"--B--")]),
        # header syntax: whitespace, case, repeated names, folding, UTF-8 and latin-1 values
        (
            b"--B\r\ncontent-TYPE :  a/b  \r\nX:\r\n\r\n\r\n--B--",
            [([("content-TYPE", "a/b"), ("X", "")], b"")],
        ),
        (b"--B\r\nA: 1\r\n  more\r\n\tstill\r\n\r\n\r\n--B--", [([("A", "1 more still")], b"")]),
        ("--B\r\nX: ünï\r\n\r\n\r\n--B--".encode(), [([("X", "ünï")], b"")]),
        (b"--B\r\nX: \xfc\r\n\r\n\r\n--B--", [([("X", "\xfc")], b"")]),
        # zero parts (CouchDB's open_revs answer for no revisions)
        (b"--B--", []),
        (b"\r\n \r\n--B--\r\n", []),
    ],
)
async def test_reader_cases(body: bytes, expected: list[Any], size: int) -> None:
    assert await parse_all(chunked(body, size), "B") == expected


async def test_duplicate_headers_last_wins() -> None:
    async for part in mp.iter_parts(agen([b"--B\r\nA: 1\r\na: 2\r\n\r\n\r\n--B--"]), "B"):
        assert part.headers == {"a": "2"}
        assert part.raw_headers == [("A", "1"), ("a", "2")]


async def test_boundary_starting_with_dashes() -> None:
    """CouchDB's _bulk_get boundary begins with '--' (delimiter '----...')."""
    b = "--0f2889c9e07b73a61143bb6a045a39b4"
    body = await collect(mp.mixed_body([JsonPart(b"{}"), ErrorPart(b"{}")], b))
    assert body.startswith(b"----0f28")
    assert [h for h, _ in await parse_all(chunked(body, 3), b)] == [
        [("Content-Type", "application/json")],
        [("Content-Type", 'application/json; error="true"')],
    ]


async def test_undrained_parts_are_skipped() -> None:
    """Moving on drains whatever the consumer left of a part (none, or some of it)."""
    body = body_of((b"", b"first" * 100), (b"", b"second" * 100), (b"", b"third"))
    for size in (1, 7, 10**9):
        bodies = []
        async for part in mp.iter_parts(agen(chunked(body, size)), "B"):
            if part.index == 0:
                continue  # not read at all
            if part.index == 1:
                async for _chunk in part.stream():
                    break  # read a little
                continue
            bodies.append(await part.read())
        assert bodies == [b"third"]


async def test_part_stream_misuse() -> None:
    parts = mp.iter_parts(agen([body_of((b"", b"a"), (b"", b"b"))]), "B")
    first = await anext(parts)
    assert await first.read() == b"a"
    with pytest.raises(RuntimeError):
        await first.read()
    second = await anext(parts)
    assert second.index == 1
    stale = mp.iter_parts(agen([body_of((b"", b"a"), (b"", b"b"))]), "B")
    p0 = await anext(stale)
    await anext(stale)
    with pytest.raises(RuntimeError):
        await p0.read()


async def test_read_all_limit() -> None:
    body = body_of((b"Content-Type: application/json", b'{"a":"' + b"x" * 100 + b'"}'), (b"", b"tail"))
    parts = mp.iter_parts(agen(chunked(body, 10)), "B")
    first = await anext(parts)
    with pytest.raises(errors.CouchError) as info:
        await mp.read_all(first, 50)
    assert (info.value.status, info.value.error) == (413, "too_large")
    second = await anext(parts)  # the rest of the oversized part is drained
    assert await mp.read_all(second, 4) == b"tail"
    parts2 = mp.iter_parts(agen([body]), "B")
    assert len(await mp.read_all(await anext(parts2), 108)) == 108


async def test_reader_is_lazy_and_drains_the_source() -> None:
    """The reader pulls chunks only as the consumer needs them (the JSON part is available
    before the attachment is received) and reads the source to its end after the last
    part (epilogue included)."""
    pulled = 0

    async def source() -> AsyncIterator[bytes]:
        nonlocal pulled
        chunks = [b"--B\r\nContent-Type: application/json\r\n\r\n{}\r\n--B\r\n\r\n"]
        chunks += [b"z" * 1000] * 100 + [b"\r\n--B--", b"\r\nepilogue", b"more"]
        for chunk in chunks:
            pulled += 1
            yield chunk

    parts = mp.iter_parts(source(), "B")
    first = await anext(parts)
    assert await first.read() == b"{}"
    assert pulled <= 2
    second = await anext(parts)
    sizes = []
    async for chunk in second.stream():
        sizes.append(len(chunk))
        assert pulled <= len(sizes) + 2
    assert sum(sizes) == 100_000 and max(sizes) <= 1000
    with pytest.raises(StopAsyncIteration):
        await anext(parts)
    assert pulled == 104


async def test_source_errors_propagate_unchanged() -> None:
    class Disconnect(Exception):
        pass

    async def source() -> AsyncIterator[bytes]:
        yield b"--B\r\n\r\nabc"
        raise Disconnect

    with pytest.raises(Disconnect):
        await parse_all_async(source())


async def parse_all_async(source: AsyncIterator[bytes]) -> None:
    async for part in mp.iter_parts(source, "B"):
        await part.read()


async def test_iter_parts_accepts_bytes_and_sync_iterables() -> None:
    body = body_of((b"", b"a"))
    for source in (body, [body[:3], body[3:]], iter(chunked(body, 1))):
        async for part in mp.iter_parts(source, "B"):
            assert await part.read() == b"a"


def test_sans_io_parser() -> None:
    parser = MultipartParser("B")
    events = []
    for byte in chunked(b"\r\n--B\r\nA: 1\r\n\r\nxy\r\n--B--", 1):
        events += parser.feed(byte)
    assert not parser.finished or events
    events += parser.close()
    data = b"".join(e.data for e in events if isinstance(e, PartData))
    assert [type(e) for e in events if not isinstance(e, PartData)] == [PartStart, PartEnd]
    assert events[0] == PartStart([("A", "1")]) and data == b"xy"
    assert parser.finished and parser.parts == 1
    assert parser.feed(b"epilogue") == []


def test_parser_stays_failed() -> None:
    parser = MultipartParser("B")
    with pytest.raises(MultipartError):
        parser.feed(b"--B\r\nno colon\r\n\r\n")
    with pytest.raises(MultipartError, match="without a colon"):
        parser.feed(b"more")
    with pytest.raises(MultipartError, match="without a colon"):
        parser.close()


# -- reader: malformed input -------------------------------------------------------------

VALID = body_of((b"Content-Type: application/json", b"{}"), (b"Content-Length: 3", b"abc"))

MALFORMED: list[tuple[str, bytes, dict[str, int], str]] = [
    ("empty body", b"", {}, "no opening boundary"),
    ("JSON instead of multipart", b'{"_id":"x"}', {}, "no opening boundary"),
    ("other boundary", VALID.replace(b"--B", b"--C"), {}, "no opening boundary"),
    ("LF line ends", VALID.replace(b"\r\n", b"\n"), {}, "no opening boundary"),
    ("opening delimiter only", b"--B", {}, "no opening boundary"),
    ("close delimiter after text", b"text\r\n--B--", {}, "no opening boundary"),
    ("ends after the delimiter line", b"--B\r\n", {}, "inside part headers"),
    ("truncated headers", b"--B\r\nContent-Type: appl", {}, "inside part headers"),
    ("truncated body", b"--B\r\n\r\n{}", {}, "before the closing boundary"),
    ("no close delimiter", b"--B\r\n\r\n{}\r\n--B\r\n\r\nabc\r\n", {}, "before the closing boundary"),
    ("truncated close delimiter", VALID[:-1], {}, "before the closing boundary"),
    ("delimiter then garbage at the end", b"--B\r\n\r\n{}\r\n--Bx", {}, "before the closing boundary"),
    (
        "header without colon",
        b"--B\r\nContent-Type application/json\r\n\r\n{}\r\n--B--",
        {},
        "without a colon",
    ),
    ("empty header name", b"--B\r\n: x\r\n\r\n{}\r\n--B--", {}, "header name"),
    ("space in header name", b"--B\r\nContent Type: x\r\n\r\n{}\r\n--B--", {}, "header name"),
    ("bare LF in headers", b"--B\r\nA: 1\nB: 2\r\n\r\n{}\r\n--B--", {}, "control character"),
    ("NUL in header value", b"--B\r\nA: 1\x00\r\n\r\n{}\r\n--B--", {}, "control character"),
    ("continuation without header", b"--B\r\n folded\r\n\r\n{}\r\n--B--", {}, "continuation"),
    ("headers too large", b"--B\r\nX: " + b"a" * 20000 + b"\r\n\r\n{}\r\n--B--", {}, "headers exceed"),
    ("unterminated huge headers", b"--B\r\nX: " + b"a" * 20000, {}, "headers exceed"),
    ("too many headers bytes (limit)", VALID, {"max_header_bytes": 20}, "headers exceed"),
    ("too many parts", VALID, {"max_parts": 1}, "more than 1 parts"),
    ("too much padding", b"--B" + b" " * 1000 + b"\r\n\r\n{}\r\n--B--", {}, "padding"),
    ("huge preamble", b"x" * 100_000 + VALID, {}, "No multipart boundary"),
]


@pytest.mark.parametrize("size", [1, 3, 10**9])
@pytest.mark.parametrize(
    ("body", "limits", "message"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
async def test_malformed_input(body: bytes, limits: dict[str, int], message: str, size: int) -> None:
    with pytest.raises(MultipartError) as info:
        await parse_all(chunked(body, size), "B", **limits)
    assert isinstance(info.value, errors.BadRequest)
    assert (info.value.status, info.value.error) == (400, "bad_request")
    assert message.lower() in info.value.reason.lower()


def test_invalid_boundary_argument() -> None:
    with pytest.raises(MultipartError):
        MultipartParser("")
    with pytest.raises(MultipartError):
        run(parse_all([VALID], "bad\r\nboundary"))


# -- Hypothesis: writer -> reader under any chunking --------------------------------------

BCHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'()+_,-./:=?"
TCHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

boundaries = st.one_of(
    st.text("0123456789abcdef", min_size=32, max_size=32),  # like multipart_boundary()
    st.text(BCHARS, min_size=1, max_size=70),
    st.tuples(st.text(BCHARS, min_size=1, max_size=10), st.text(BCHARS + " ", max_size=10)).map(
        lambda t: t[1] + t[0]
    ),
    st.sampled_from(["B", "-", "--", "--0f2889c9e07b73a61143bb6a045a39b4", "a-", "="]),
)
header_names = st.text(TCHARS, min_size=1, max_size=16)
header_values = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=30).map(
    lambda v: v.strip(" \t")
)
headers_lists = st.lists(st.tuples(header_names, header_values), max_size=5)


@st.composite
def tricky_bodies(draw: st.DrawFn, boundaries: list[str], enclosing: str | None = None) -> bytes:
    """Binary bodies full of near-delimiters: the boundary minus a character, '--B'
    without CRLF, lone CR/LF, '--', padding; never the exact delimiter CRLF--B.  For a
    part nested in a part of boundary ``enclosing``, the body may not start with
    '--<enclosing>' either (the CRLF ending its headers would complete the delimiter)."""
    near: list[bytes] = [b"\r\n", b"\r", b"\n", b"--", b"-", b"\r\n--", b" ", b"\t", b"\r\n\r\n"]
    for boundary in boundaries:
        b = boundary.encode()
        near += [b"\r\n--" + b[:-1], b"--" + b, b"--" + b + b"--", b"\r--" + b, b"\n--" + b + b"\r\n", b]
        near += [b"\r\n--" + b[1:], b"\r\n-" + b, b"\r\n--" + b[: len(b) // 2]]
    pieces = draw(st.lists(st.one_of(st.binary(max_size=40), st.sampled_from(near)), max_size=12))
    body = b"".join(pieces)
    for boundary in boundaries:
        delim = b"\r\n--" + boundary.encode()
        while delim in body:
            body = body.replace(delim, b"\r\n-" + boundary.encode())
    while enclosing is not None and body.startswith(b"--" + enclosing.encode()):
        body = body[1:]
    return body


def draw_chunks(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """Split ``data`` at Hypothesis-chosen places: 1-byte chunks, a fixed size, or cuts."""
    mode = draw(st.sampled_from(["bytes", "fixed", "cuts", "cuts", "whole"]))
    if mode == "bytes":
        return chunked(data, 1)
    if mode == "fixed":
        return chunked(data, draw(st.integers(1, 64)))
    if mode == "whole":
        return [data]
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=40)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]  # may hold empty chunks


PROPERTY = settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


@PROPERTY
@given(st.data())
def test_round_trip_any_split(data: st.DataObject) -> None:
    boundary = data.draw(boundaries, label="boundary")
    specs = data.draw(
        st.lists(st.tuples(headers_lists, tricky_bodies([boundary]), st.booleans()), max_size=5),
        label="parts",
    )
    parts = [
        RawPart(headers, agen(chunked(body, 7)), len(body)) if streamed else RawPart(headers, body)
        for headers, body, streamed in specs
    ]
    encoded = run(collect(mp.mixed_body(parts, boundary)))
    assert mp.content_length(parts, boundary) in (len(encoded), None)
    chunks = draw_chunks(data.draw, encoded)

    async def parse() -> list[tuple[list[tuple[str, str]], bytes]]:
        biggest = max(len(c) for c in chunks)
        out = []
        async for part in mp.iter_parts(agen(chunks), boundary):
            pieces = [piece async for piece in part.stream()]
            # bounded buffering: a body chunk is at most one source chunk plus the delimiter
            assert all(0 < len(p) <= biggest + len(boundary) + 4 for p in pieces)
            out.append((part.raw_headers, b"".join(pieces)))
        return out

    assert run(parse()) == [(list(headers), body) for headers, body, _ in specs]


names = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=20)
media_types = st.sampled_from(["text/plain", "application/octet-stream", "image/png", "application/json"])


@st.composite
def mixed_specs(draw: st.DrawFn, outer: str) -> list[mp.MixedPart]:
    parts: list[mp.MixedPart] = []
    for kind in draw(st.lists(st.sampled_from(["json", "error", "related"]), max_size=4)):
        doc = json.dumps({"_id": draw(names), "n": draw(st.integers())}).encode()
        if kind == "json":
            parts.append(JsonPart(doc))
        elif kind == "error":
            parts.append(ErrorPart(b'{"missing":"1-abc"}'))
        else:
            inner = draw(boundaries.filter(lambda b, outer=outer: not b.startswith(outer)))
            atts = []
            for _ in range(draw(st.integers(0, 3))):
                body = draw(tricky_bodies([outer, inner], enclosing=outer))
                encoding = draw(st.sampled_from([None, "gzip"]))
                atts.append(Attachment(draw(names), draw(media_types), len(body), encoding, body))
            parts.append(RelatedPart(doc, atts, boundary=inner))
    return parts


@PROPERTY
@given(st.data())
def test_nested_mixed_related_round_trip(data: st.DataObject) -> None:
    """multipart/mixed with nested multipart/related parts: parse the outer body, then
    each related part's stream with its own boundary, under any chunking."""
    outer = data.draw(boundaries, label="outer")
    parts = data.draw(mixed_specs(outer), label="parts")
    encoded = run(collect(mp.mixed_body(parts, outer)))
    assert mp.content_length(parts, outer) == len(encoded)
    chunks = draw_chunks(data.draw, encoded)

    async def check() -> None:
        seen = 0
        async for got in mp.iter_parts(agen(chunks), outer):
            want = parts[got.index]
            seen += 1
            if isinstance(want, JsonPart):
                assert got.raw_headers == [("Content-Type", "application/json")]
                assert await got.read() == want.body
            elif isinstance(want, ErrorPart):
                assert got.headers == {"content-type": 'application/json; error="true"'}
                assert await got.read() == want.body
            else:
                assert isinstance(want, RelatedPart)
                assert got.content_type == "multipart/related"
                inner = mp.parse_boundary(got.headers["content-type"])
                assert inner == want.boundary
                inner_parts = mp.iter_parts(got.stream(), inner)
                doc = await anext(inner_parts)
                assert doc.headers == {"content-type": "application/json"}
                assert await mp.read_all(doc, 1 << 20) == want.doc_json
                count = 0
                async for att_part in inner_parts:
                    att = want.attachments[count]
                    count += 1
                    assert att_part.filename == att.name
                    assert att_part.content_type == att.content_type
                    assert att_part.headers["content-length"] == str(att.length)
                    assert att_part.headers.get("content-encoding") == att.encoding
                    assert await att_part.read() == att.chunks
                assert count == len(want.attachments)
        assert seen == len(parts)

    run(check())


# -- Hypothesis: broken input raises MultipartError only ---------------------------------


async def consume(chunks: list[bytes], boundary: str, limits: dict[str, int]) -> None:
    """Read everything, descending into nested multipart parts."""
    async for part in mp.iter_parts(agen(chunks), boundary, **limits):
        if part.content_type.startswith("multipart/"):
            async for inner in mp.iter_parts(part.stream(), mp.parse_boundary(part.headers["content-type"])):
                await inner.read()
        elif part.index % 2:
            await part.read()
        # even parts are left for iter_parts to drain


@st.composite
def valid_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    outer = draw(boundaries)
    if draw(st.booleans()):
        parts = draw(mixed_specs(outer))
    else:
        parts = [
            RawPart(h, b)
            for h, b in draw(st.lists(st.tuples(headers_lists, tricky_bodies([outer])), max_size=4))
        ]
    return outer, run(collect(mp.mixed_body(parts, outer)))


@PROPERTY
@given(st.data())
def test_truncation_always_raises_multipart_error(data: st.DataObject) -> None:
    boundary, body = data.draw(valid_bodies())
    cut = data.draw(st.integers(0, len(body) - 1), label="cut")
    chunks = draw_chunks(data.draw, body[:cut])
    with pytest.raises(MultipartError):
        run(consume(chunks, boundary, {}))


@PROPERTY
@given(st.data())
def test_mutations_raise_only_multipart_error(data: st.DataObject) -> None:
    boundary, body = data.draw(valid_bodies())
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        op = data.draw(st.sampled_from(["delete", "insert", "replace", "truncate", "duplicate", "swap"]))
        i = data.draw(st.integers(0, len(body)))
        j = data.draw(st.integers(i, min(len(body), i + 50)))
        if op == "delete":
            body = body[:i] + body[j:]
        elif op == "insert":
            near = [b"\r\n", b"--", b"\r\n--" + boundary.encode(), b":", b" ", b"\n", b"\r"]
            body = body[:i] + data.draw(st.sampled_from(near) | st.binary(max_size=8)) + body[i:]
        elif op == "replace" and i < len(body):
            body = body[:i] + bytes([data.draw(st.integers(0, 255))]) + body[i + 1 :]
        elif op == "truncate":
            body = body[:i]
        elif op == "duplicate":
            body = body[:j] + body[i:j] + body[j:]
        elif op == "swap":
            body = body[i:] + body[:i]
    limits = data.draw(st.sampled_from([{}, {"max_parts": 2}, {"max_header_bytes": 40}]), label="limits")
    chunks = draw_chunks(data.draw, body)
    try:
        run(consume(chunks, boundary, limits))
    except MultipartError as exc:
        assert exc.status == 400 and exc.reason


# -- bounded memory ----------------------------------------------------------------------


@pytest.mark.slow
def test_200_mb_streams_in_bounded_memory() -> None:
    """A 200 MB attachment part streamed through the parser in 64 KiB chunks never makes
    the reader hold more than a couple of chunks (tracemalloc peak < 2 MB).  Every chunk
    ends with a near-delimiter so the partial-match path runs 3,200 times."""
    boundary = mp.multipart_boundary()
    size, chunk = 200 * 1024 * 1024, 64 * 1024
    tail = b"\r\n--" + boundary[:-1].encode()
    block = (hashlib.sha256(b"seed").digest() * (chunk // 32))[: chunk - len(tail)] + tail
    count = size // chunk
    expected = hashlib.md5()
    for _ in range(count):
        expected.update(block)

    async def source() -> AsyncIterator[bytes]:
        yield f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}\r\n".encode()
        yield b"Content-Type: application/octet-stream\r\n\r\n"
        for _ in range(count):
            yield block  # the same object each time: generated lazily, nothing retained
        yield f"\r\n--{boundary}--".encode()

    async def main() -> tuple[int, str]:
        got, total = hashlib.md5(), 0
        async for part in mp.iter_parts(source(), boundary):
            if part.index == 0:
                assert await mp.read_all(part, 100) == b"{}"
                continue
            async for piece in part.stream():
                got.update(piece)
                total += len(piece)
        return total, got.hexdigest()

    tracemalloc.start()
    try:
        total, digest = run(main())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size
    assert digest == expected.hexdigest()
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes"
