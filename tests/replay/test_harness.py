"""Tests of the replay harness itself, without couchpoint.

The end-to-end tests play the recorded answers back from a fake ASGI server that
changes what a different (correct) server would change: server-made revs, sequence
format, generated ids.  The harness must see no difference there, and must pinpoint a
single deliberately wrong field.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote

import httpx
import pytest

from tests.replay.replay import (
    BASE_URL,
    FEED_TIMEOUT_MS,
    MISSING,
    SCENARIOS,
    Exchange,
    Maps,
    Replayer,
    classify,
    content_type_key,
    diff_json,
    load_recording,
    normalize_body,
    parse_feed,
    parse_multipart,
    replay_order,
    seq_number,
)

# --------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind", "doc", "att"),
    [
        ("/", "root", None, None),
        ("/_session", "session", None, None),
        ("/_uuids", "uuids", None, None),
        ("/master/", "db", None, None),
        ("/endpoint", "db", None, None),
        ("/endpoint/_changes", "changes", None, None),
        ("/endpoint/_bulk_get", "bulk_get", None, None),
        ("/endpoint/_nonexistent_handler", "db_handler", None, None),
        ("/endpoint/ep%2Fnew%20doc", "doc", "ep/new doc", None),
        ("/endpoint/100%25%20sure", "doc", "100% sure", None),
        ("/endpoint/_design/app", "doc", "_design/app", None),
        ("/endpoint/_design%2Fapp", "doc", "_design/app", None),
        ("/endpoint/_local/A4PfFqRX1q4mxwEd6pobsA%3D%3D", "local", "_local/A4PfFqRX1q4mxwEd6pobsA==", None),
        ("/endpoint/_local%2Fcheck-1", "local", "_local/check-1", None),
        ("/endpoint/api-3/data/bin%20file.bin", "attachment", "api-3", "data/bin file.bin"),
        ("/endpoint/att%2Fsmall%20text/x.txt", "attachment", "att/small text", "x.txt"),
    ],
)
def test_classify(path: str, kind: str, doc: str | None, att: str | None) -> None:
    ep = classify(path)
    assert (ep.kind, ep.doc, ep.att) == (kind, doc, att)


def test_every_recorded_path_is_classified() -> None:
    kinds = set()
    for scenario in SCENARIOS:
        for name in scenario.compare:
            kinds |= {ex.endpoint.kind for ex in load_recording(name)}
    assert "server" not in kinds
    assert {"root", "session", "db", "changes", "doc", "local", "bulk_get", "attachment"} <= kinds


def test_parse_multipart_bulk_get_with_preamble_and_dash_boundary() -> None:
    d01 = load_recording("couchdb-3.4/d01")
    ex = d01[26]
    parts = parse_multipart(ex.resp_headers["content-type"], base64.b64decode(ex.resp_body["base64"]))
    assert [p.headers["content-type"] for p in parts] == [
        "application/json",
        'application/json; error="true"',
    ]
    assert json.loads(parts[0].body)["_rev"] == "1-7a7e4b29f3af401e69b6f86e4c26b727"
    assert json.loads(parts[1].body) == {
        "rev": "1-55555555555555555555555555555555",
        "error": "not_found",
        "reason": "missing",
    }


def test_parse_multipart_nested_related() -> None:
    body = (
        b'--outer\r\nContent-Type: multipart/related; boundary="inner"\r\n\r\n'
        b'--inner\r\nContent-Type: application/json\r\n\r\n{"_id":"a"}\r\n'
        b'--inner\r\nContent-Disposition: attachment; filename="x y.txt"\r\n\r\n\x00\x01bin\r\n--inner--'
        b"\r\n--outer--"
    )
    (outer,) = parse_multipart('multipart/mixed; boundary="outer"', body)
    inner = parse_multipart(outer.headers["content-type"], outer.body)
    assert json.loads(inner[0].body) == {"_id": "a"}
    assert inner[1].body == b"\x00\x01bin"
    assert inner[1].headers["content-disposition"] == 'attachment; filename="x y.txt"'


def test_content_type_key_keeps_error_param_and_drops_boundary() -> None:
    assert content_type_key('application/json; error="true"') == 'application/json; error="true"'
    assert content_type_key('multipart/mixed; boundary="abc"') == "multipart/mixed"
    assert content_type_key("application/json; charset=utf-8") == "application/json"


def test_parse_feed_continuous_with_heartbeats() -> None:
    body = b'\n{"seq":1,"id":"a","changes":[{"rev":"1-x"}]}\n\n{"last_seq":1,"pending":0}\n\n'
    feed = parse_feed(body, continuous=True)
    assert feed.rows == [{"seq": 1, "id": "a", "changes": [{"rev": "1-x"}]}]
    assert (feed.last_seq, feed.pending) == (1, 0)
    normal = parse_feed(b'{"results":[\n\n],\n"last_seq":"7-abc"}\n\n', continuous=False)
    assert (normal.rows, normal.last_seq, normal.pending) == ([], "7-abc", MISSING)


def test_seq_number() -> None:
    assert [seq_number(5), seq_number("20-g1AAA"), seq_number("now"), seq_number(True)] == [5, 20, None, None]


def test_diff_json_paths() -> None:
    diffs = list(
        diff_json({"a": {"b": [1, 2]}, "x y": 1, "gone": 0}, {"a": {"b": [1, 3]}, "x y": True, "new": 1})
    )
    assert diffs == [
        ("$.a.b[1]", 2, 3),
        ('$["x y"]', 1, True),
        ("$.gone", 0, MISSING),
        ("$.new", MISSING, 1),
    ]
    assert list(diff_json([1], [1, 2])) == [("$.length", 1, 2), ("$[1]", MISSING, 2)]


def test_normalize_db_info_and_root() -> None:
    info = {
        "db_name": "endpoint",
        "update_seq": 3,
        "doc_count": 2,
        "doc_del_count": 0,
        "instance_start_time": "1796007570",
        "sizes": {"file": 1},
        "purge_seq": 0,
    }
    assert normalize_body("db", "GET", 200, info) == {
        "db_name": "endpoint",
        "doc_count": 2,
        "doc_del_count": 0,
        "update_seq": 3,
        "instance_start_time": "<string>",
    }
    root = {
        "couchdb": "Welcome",
        "version": "3.4.3",
        "uuid": "5b1a04c61b898d39fb9b5323782a0aa8",
        "vendor": {},
    }
    assert normalize_body("root", "GET", 200, root) == {"couchdb": "Welcome", "uuid": "<32 hex>"}
    error = {"error": "not_found", "reason": "missing"}
    assert normalize_body("db", "GET", 404, error) == error


def test_normalize_drops_attachment_encoding_only() -> None:
    doc = {
        "_attachments": {"a.txt": {"digest": "md5-x", "length": 5, "encoding": "gzip", "encoded_length": 9}}
    }
    assert normalize_body("doc", "GET", 200, doc) == {
        "_attachments": {"a.txt": {"digest": "md5-x", "length": 5}}
    }


def test_maps_translate_revs_by_doc_and_revisions() -> None:
    maps = Maps()
    maps.learn_rev("doc-1", "1-aaaa", "1-1111")
    maps.learn_rev("doc-2", "1-aaaa", "1-2222")
    maps.learn_rev("doc-2", "2-bbbb", "2-3333")
    doc = {"_id": "doc-2", "_rev": "2-bbbb", "_revisions": {"start": 2, "ids": ["bbbb", "aaaa"]}}
    assert maps.tr(doc) == {
        "_id": "doc-2",
        "_rev": "2-3333",
        "_revisions": {"start": 2, "ids": ["3333", "2222"]},
    }
    assert maps.tr({"_rev": "1-aaaa"}, doc="doc-1") == {"_rev": "1-1111"}
    assert maps.tr_by_doc({"doc-1": ["1-aaaa"], "doc-2": ["1-aaaa"]}) == {
        "doc-1": ["1-1111"],
        "doc-2": ["1-2222"],
    }
    assert maps.tr("1-cccc") == "1-cccc"


def test_maps_seq_consistency_and_kinds() -> None:
    maps = Maps()
    assert maps.learn_seq("5-abc", 5, "db") is None
    assert maps.learn_seq("5-row", 5, "row") is None
    assert maps.learn_seq(7, 7, "page") is None
    assert maps.learn_seq("5-abc", 5, "db") is None
    assert "5-abc" in (maps.learn_seq("5-abc", 6, "db") or "")
    assert maps.learn_seq("5-row", 9, "row") is None  # a row seq is re-learned, never a contradiction
    assert (maps.seq_kind("5-row"), maps.seq_kind("7"), maps.seq_kind("0"), maps.seq_kind("x")) == (
        "row",
        "page",
        "db",
        None,
    )
    assert (maps.tr_seq_param("7"), maps.tr_seq_param('"7"'), maps.tr_seq_param("now")) == ("7", "7", "now")
    assert maps.learn_seq("5-abc", 9, "row") is None  # a database state is not downgraded
    assert maps.tr({"source_last_seq": "5-abc", "n": 7}, seqs=True) == {"source_last_seq": 5, "n": 7}
    assert maps.tr({"source_last_seq": "5-abc"}) == {"source_last_seq": "5-abc"}


def test_replay_order_moves_a_longpoll_after_the_write_that_woke_it() -> None:
    p04 = load_recording("couchdb-3.4/p04")
    order = [ex.index for ex in replay_order(p04)]
    assert order.index(80) < order.index(79)
    assert order.index(82) < order.index(79) < order.index(83)
    assert sorted(order) == list(range(len(p04)))
    c08 = load_recording("couchdb-3.4/c08")
    assert [ex.index for ex in replay_order(c08)] == list(range(len(c08)))


# --------------------------------------------------------------------------------------
# End to end, against a playback server
# --------------------------------------------------------------------------------------

_SEQ = re.compile(rb'"(\d+)-g1[A-Za-z0-9_-]+"')


class PlaybackApp:
    """An ASGI app that answers each request with the next recorded answer, rewritten."""

    def __init__(self, exchanges: Sequence[Exchange], rewrite: Callable[[bytes], bytes]) -> None:
        self.queue = list(exchanges)
        self.rewrite = rewrite
        self.received: list[tuple[str, str, dict[str, str], bytes]] = []
        self.override: dict[tuple[str, int], Callable[[bytes], bytes]] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        target = scope["raw_path"].decode() + (
            "?" + scope["query_string"].decode() if scope["query_string"] else ""
        )
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.received.append((scope["method"], target, headers, body))
        ex = self.queue.pop(0)
        if ex.resp_kind == "binary":
            payload = base64.b64decode(ex.resp_body["base64"])
        elif ex.resp_kind == "json":
            payload = json.dumps(ex.resp_body, separators=(",", ":"), ensure_ascii=False).encode()
        else:
            payload = b""
        payload = self.override.get((ex.recording, ex.index), lambda b: b)(self.rewrite(payload))
        skip = {"content-length", "transfer-encoding"}
        out = [(k.encode(), self.rewrite(v.encode())) for k, v in ex.resp_headers.items() if k not in skip]
        await send({"type": "http.response.start", "status": ex.status or 200, "headers": out})
        await send({"type": "http.response.body", "body": payload})


def _rev_rewriter(revs: Sequence[str]) -> Callable[[bytes], bytes]:
    """Replace the hash of each server-made rev by its reverse, and opaque seqs by N."""
    hashes = {r.split("-", 1)[1].encode(): r.split("-", 1)[1][::-1].encode() for r in revs}

    def rewrite(data: bytes) -> bytes:
        for old, new in hashes.items():
            data = data.replace(old, new)
        return _SEQ.sub(rb"\1", data)

    return rewrite


async def _play(names: Sequence[str], rewrite: Callable[[bytes], bytes], override=None):
    recordings = [load_recording(n) for n in names]
    app = PlaybackApp([ex for rec in recordings for ex in replay_order(rec)], rewrite)
    app.override.update(override or {})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as client:
        replayer = Replayer(client, auth=True)
        for i, rec in enumerate(recordings):
            await replayer.run(rec, compare=i == len(recordings) - 1)
    assert app.queue == []
    return replayer, app


C04_SERVER_REVS = (
    "4-227fb2db3fb502400234856ee11b0245",
    "2-c96f7a19b64e88ff1c7f5c5fe21d9e71",
    "1-d14e54d513d2b4a7d1adfa7757f3fd98",
    "1-73b135f630932236cf3279a8d998f09d",
)
CHAIN = ["couchdb-3.4/c01", "couchdb-3.4/c02", "couchdb-3.4/c03", "couchdb-3.4/c04"]


async def test_playback_with_other_revs_and_integer_seqs_matches() -> None:
    replayer, app = await _play(CHAIN, _rev_rewriter(C04_SERVER_REVS))
    assert replayer.mismatches == []
    c04 = app.received[-20:]
    # the incremental pull resumes from c02's checkpoint, mapped to the integer seq
    changes = next(r for r in c04 if "/_changes" in r[1])
    assert dict(parse_qsl(changes[1].split("?", 1)[1]))["since"] == "20"
    # the replicator's request for the endpoint-made rev 4 uses the server's rev
    bulk_get = json.loads(next(r for r in c04 if "_bulk_get" in r[1])[3])
    assert bulk_get["docs"][0] == {
        "rev": "4-" + "227fb2db3fb502400234856ee11b0245"[::-1],
        "id": "doc-02",
        "atts_since": ["3-9514da57724eef3972a42742d3b5a297"],
    }
    checkpoint = json.loads(app.received[-1][3])
    assert checkpoint["source_last_seq"] == 32 and checkpoint["_rev"] == "0-1"
    assert app.received[-1][2]["cookie"].startswith("AuthSession=YWRtaW46NkIwQ0U2QTE6")


async def test_playback_reports_one_wrong_field_with_its_path() -> None:
    def wrong_title(body: bytes) -> bytes:
        return body.replace(b"Document 2, edited on the endpoint", b"Document 2, edited wrongly")

    replayer, _ = await _play(CHAIN, _rev_rewriter(C04_SERVER_REVS), {("couchdb-3.4/c04", 12): wrong_title})
    assert [(m.index, m.where, m.expected, m.actual) for m in replayer.mismatches] == [
        (
            12,
            "$.results[0].docs[0].ok.title",
            "Document 2, edited on the endpoint",
            "Document 2, edited wrongly",
        )
    ]
    assert "couchdb-3.4/c04#12 POST /endpoint/_bulk_get" in replayer.mismatches[0].format()


async def test_playback_reports_a_changed_seq_state() -> None:
    def bump(body: bytes) -> bytes:
        return body.replace(b'"update_seq":32', b'"update_seq":33')

    replayer, _ = await _play(CHAIN, _rev_rewriter(C04_SERVER_REVS), {("couchdb-3.4/c04", 10): bump})
    assert [(m.index, m.where, m.actual) for m in replayer.mismatches] == [(10, "$.update_seq", 33)]


async def test_playback_continuous_feed_with_timeout_rewrite() -> None:
    revs = [
        "1-c154a5bb462649bcf7d33db8558f2734",
        "1-f4bc473c92ab40d55e6a5a316e78a10a",
        "1-a7f28296843a6bc1a47dfa012d9e5bf5",
        "2-9359f7d8ef708ad28ccf0c51081913a1",
    ]
    replayer, app = await _play(["couchdb-3.4/c08"], _rev_rewriter(revs))
    assert replayer.mismatches == []
    feeds = [unquote(r[1]) for r in app.received if "feed=continuous" in r[1]]
    assert len(feeds) == 4
    assert all(f.endswith(f"&timeout={FEED_TIMEOUT_MS}") and "10000" not in f for f in feeds)
    assert "since=8&" in feeds[1]


async def test_playback_d01_generated_ids_and_conditional_requests() -> None:
    server_revs = [
        "1-7a7e4b29f3af401e69b6f86e4c26b727",
        "2-2014e619e4193d4c9ef249c65d7a0ce0",
        "1-50afccfbae1abe3a8d07823b088620d0",
        "1-60d6e05604fc55fb0428e93b687611c4",
        "1-2301b7e348a4423f8e077f486490848c",
        "3-71e46c517928d1f7a6d9475908a0927b",
    ]
    revs = _rev_rewriter(server_revs)

    def rewrite(data: bytes) -> bytes:
        return revs(data).replace(b"9c3a8dd924b79b05ed608a24ba003197", b"0" * 32)

    replayer, app = await _play(["couchdb-3.4/d01"], rewrite)
    assert replayer.mismatches == []
    if_none_match = app.received[29][2]["if-none-match"]
    assert if_none_match == '"1-' + "7a7e4b29f3af401e69b6f86e4c26b727"[::-1] + '"'
    heartbeat_feeds = [r[1] for r in app.received if "since=now" in r[1] and "feed=" in r[1]]
    assert all("heartbeat" not in t and t.endswith(f"timeout={FEED_TIMEOUT_MS}") for t in heartbeat_feeds)


async def test_playback_detects_a_gzip_attachment_difference() -> None:
    exchanges = load_recording("couchdb-3.4/p02")
    assert exchanges[6].resp_headers["content-encoding"] == "gzip"
    plain = gzip.decompress(base64.b64decode(exchanges[6].resp_body["base64"]))

    def other_text(body: bytes) -> bytes:
        return gzip.compress(plain.replace(b"note", b"NOTE")) if body[:2] == b"\x1f\x8b" else body

    replayer, _ = await _play(
        ["couchdb-3.4/p01", "couchdb-3.4/p02"], lambda b: b, {("couchdb-3.4/p02", 6): other_text}
    )
    assert [(m.index, m.where, m.expected) for m in replayer.mismatches] == [(6, "body", plain)]
