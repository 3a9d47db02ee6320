"""Bad input gets CouchDB's error JSON and status, never a 500, and leaves stored data
unchanged (issue acceptance criterion).

Each listed case snapshots the database (``GET /db``, ``_all_docs?include_docs=true``,
``_changes?style=all_docs``, ``_all_dbs``, a ``_local`` doc) before and after the bad
request and asserts the exact ``{"error","reason"}``.  A Hypothesis test then throws
random bytes and JSON at the write and read routes with the same checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from . import (
    ILLEGAL_DB_NAME,
    JSON,
    NEW_EDITS_FALSE_NEEDS_REV,
    RESERVED_ID,
    body_of,
    put,
    replicate,
    revisions,
    snapshot,
)

REV1 = "1-" + "a" * 32
"""``doc-1``'s rev in the seeded db (written with ``new_edits=false``)."""


async def seed(client: httpx.AsyncClient) -> None:
    """``db`` with a plain doc, a conflicted doc, a deleted doc, a design doc and a
    ``_local`` checkpoint."""
    assert (await client.put("/db")).status_code == 201
    await replicate(
        client,
        "db",
        {"_id": "doc-1", "_rev": REV1, "v": 1},
        {"_id": "doc-2", "_rev": "2-b", "v": "b", "_revisions": revisions("2-b", "1-a")},
        {"_id": "doc-2", "_rev": "2-c", "v": "c", "_revisions": revisions("2-c", "1-a")},
        {"_id": "gone", "_rev": "2-t", "_deleted": True, "_revisions": revisions("2-t", "1-g")},
    )
    await put(client, "/db/_design/app", {"views": {}})
    await put(client, "/db/_local/cp", {"last_seq": 5})


@pytest.fixture
async def seeded(client: httpx.AsyncClient) -> str:
    await seed(client)
    return "db"


@dataclass(frozen=True)
class Bad:
    """One bad request and CouchDB's answer (``reason=None``: only the token is pinned)."""

    source: str
    method: str
    target: str
    status: int
    error: str
    reason: str | None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))

    def __str__(self) -> str:
        return f"{self.source}: {self.method} {self.target}"


def j(value: Any) -> bytes:
    return json.dumps(value).encode()


NO_CT: dict[str, str] = {}
TEXT = {"Content-Type": "text/plain"}
INVALID_JSON = "invalid UTF-8 JSON"
NOT_OBJECT = "Document must be a JSON object"
BODY_NOT_OBJECT = "Request body must be a JSON object"
INVALID_REV = "Invalid rev format"
CONFLICT = "Document update conflict."
BAD_CT = "Content-Type must be application/json"

BAD_INPUTS = [
    # malformed JSON (d01[11-12]) and bodies of the wrong shape (d01[13])
    Bad("d01[11]", "PUT", "/db/doc-bad-json", 400, "bad_request", INVALID_JSON, b'{"v": 1,'),
    Bad(
        "d01[11] existing doc",
        "PUT",
        "/db/doc-1",
        400,
        "bad_request",
        INVALID_JSON,
        b'{"_rev": "' + REV1.encode() + b'",',
    ),
    Bad("d01[12]", "POST", "/db", 400, "bad_request", INVALID_JSON, b"[1, 2"),
    Bad(
        "§10.2 invalid UTF-8 bytes", "PUT", "/db/doc-1", 400, "bad_request", INVALID_JSON, b'{"v":"\xff\xfe"}'
    ),
    Bad("§10.2 trailing garbage", "PUT", "/db/x", 400, "bad_request", INVALID_JSON, b'{"v":1} x'),
    Bad("d01[13]", "PUT", "/db/doc-not-object", 400, "bad_request", NOT_OBJECT, b"[1, 2, 3]"),
    Bad("d01[13] scalar", "PUT", "/db/doc-1", 400, "bad_request", NOT_OBJECT, b'"text"'),
    Bad("§3.9 POST array", "POST", "/db", 400, "bad_request", NOT_OBJECT, b"[1, 2]"),
    Bad("§10.2 empty body", "PUT", "/db/doc-1", 400, "bad_request", None, b""),
    Bad(
        "§7.2 bulk_docs invalid JSON",
        "POST",
        "/db/_bulk_docs",
        400,
        "bad_request",
        INVALID_JSON,
        b'{"docs":[',
    ),
    Bad("§7.2 bulk_docs array body", "POST", "/db/_bulk_docs", 400, "bad_request", BODY_NOT_OBJECT, b"[1]"),
    Bad(
        "§7.2 bulk_docs no docs",
        "POST",
        "/db/_bulk_docs",
        400,
        "bad_request",
        "POST body must include `docs` parameter.",
        j({"nodocs": []}),
    ),
    Bad(
        "d01[23]",
        "POST",
        "/db/_bulk_docs",
        400,
        "bad_request",
        "`docs` parameter must be an array.",
        j({"docs": 5}),
    ),
    Bad(
        "§7.2 doc not object",
        "POST",
        "/db/_bulk_docs",
        400,
        "bad_request",
        NOT_OBJECT,
        j({"docs": [{"_id": "n"}, "x"]}),
    ),
    Bad(
        "BC-10 new_edits",
        "POST",
        "/db/_bulk_docs",
        400,
        "bad_request",
        "`new_edits` parameter must be a boolean.",
        j({"new_edits": "no", "docs": [{"_id": "n"}]}),
    ),
    Bad("§7.3 bulk_get invalid JSON", "POST", "/db/_bulk_get", 400, "bad_request", INVALID_JSON, b'{"docs":'),
    Bad(
        "BC-20 bulk_get no docs",
        "POST",
        "/db/_bulk_get",
        400,
        "bad_request",
        "Missing JSON list of 'docs'.",
        j({"nodocs": []}),
    ),
    Bad("§7.1 revs_diff array", "POST", "/db/_revs_diff", 400, "bad_request", BODY_NOT_OBJECT, j(["doc-1"])),
    Bad("§7.1 revs_diff invalid JSON", "POST", "/db/_revs_diff", 400, "bad_request", INVALID_JSON, b"{"),
    Bad("§8.1 local invalid JSON", "PUT", "/db/_local/cp", 400, "bad_request", INVALID_JSON, b'{"x":'),
    Bad("§8.1 local array", "PUT", "/db/_local/cp", 400, "bad_request", NOT_OBJECT, b"[]"),
    Bad(
        "§7.8 all_docs keys",
        "POST",
        "/db/_all_docs",
        400,
        "bad_request",
        "`keys` body member must be an array.",
        j({"keys": "a"}),
    ),
    # bad rev strings (d01[14-15], §4.3, §8.1)
    Bad("d01[14]", "GET", "/db/doc-1?rev=not-a-rev", 400, "bad_request", INVALID_REV),
    Bad("d01[15]", "PUT", "/db/doc-1", 400, "bad_request", INVALID_REV, j({"_rev": "abc", "v": 2})),
    Bad(
        "§4.3 32 non-hex",
        "PUT",
        "/db/doc-1?new_edits=false",
        400,
        "bad_request",
        INVALID_REV,
        j({"_rev": "1-" + "g" * 32}),
    ),
    Bad("§4.3 rev not a string", "PUT", "/db/doc-1", 400, "bad_request", INVALID_REV, j({"_rev": 1, "v": 2})),
    Bad("§4.3 ?rev on DELETE", "DELETE", "/db/doc-1?rev=abc", 400, "bad_request", INVALID_REV),
    Bad(
        "§4.9(4)",
        "PUT",
        "/db/doc-1?rev=1-" + "b" * 32,
        400,
        "bad_request",
        "Document rev from request body and query string have different values",
        j({"_rev": REV1, "v": 2}),
    ),
    Bad(
        "§4.4 _revisions.start",
        "POST",
        "/db/_bulk_docs",
        400,
        "doc_validation",
        "_revisions.start isn't an integer.",
        j({"new_edits": False, "docs": [{"_id": "doc-1", "_revisions": {"start": "x", "ids": ["a"]}}]}),
    ),
    Bad(
        "§4.3 _revisions hex",
        "POST",
        "/db/_bulk_docs",
        400,
        "doc_validation",
        "RevId isn't a valid hexadecimal",
        j({"new_edits": False, "docs": [{"_id": "n", "_revisions": {"start": 1, "ids": ["g" * 32]}}]}),
    ),
    Bad(
        "§7.1 revs_diff bad rev",
        "POST",
        "/db/_revs_diff",
        400,
        "bad_request",
        INVALID_REV,
        j({"doc-1": ["bad"]}),
    ),
    Bad(
        "§8.1 local 0-abc",
        "PUT",
        "/db/_local/cp",
        400,
        "bad_request",
        INVALID_REV,
        j({"_rev": "0-abc", "last_seq": 9}),
    ),
    Bad(
        "§8.1 local 1-abc",
        "PUT",
        "/db/_local/cp",
        400,
        "bad_request",
        INVALID_REV,
        j({"_rev": "1-abc", "last_seq": 9}),
    ),
    Bad("§5.8 open_revs bad rev", "GET", '/db/doc-1?open_revs=["bad"]', 400, "bad_request", INVALID_REV),
    # new_edits=false without revision info (BC-10, d01[16, 22])
    Bad(
        "d01[16]",
        "PUT",
        "/db/doc-ne?new_edits=false",
        400,
        "bad_request",
        NEW_EDITS_FALSE_NEEDS_REV,
        j({"v": "no _rev"}),
    ),
    Bad(
        "d01[22]",
        "POST",
        "/db/_bulk_docs",
        400,
        "bad_request",
        NEW_EDITS_FALSE_NEEDS_REV,
        j({"new_edits": False, "docs": [{"_id": "ne-1", "_rev": "1-x"}, {"_id": "ne-2", "v": 2}]}),
    ),
    # illegal db names and ids (d01[6-7, 20], BC-03, BC-04, §4.1, §4.2)
    Bad(
        "d01[6]",
        "PUT",
        "/Bad_DB_Name",
        400,
        "illegal_database_name",
        ILLEGAL_DB_NAME.format("Bad_DB_Name"),
        None,
        NO_CT,
    ),
    Bad(
        "§3.4 leading digit",
        "PUT",
        "/1db",
        400,
        "illegal_database_name",
        ILLEGAL_DB_NAME.format("1db"),
        None,
        NO_CT,
    ),
    Bad(
        "§3.7 exists",
        "PUT",
        "/db",
        412,
        "file_exists",
        "The database could not be created, the file already exists.",
        None,
        NO_CT,
    ),
    Bad("§3.8 rev on db DELETE", "DELETE", "/db?rev=" + REV1, 400, "bad_request", None, None, NO_CT),
    Bad("d01[7]", "PUT", "/db/_bad_id", 400, "illegal_docid", RESERVED_ID, j({"a": 1})),
    Bad("BC-03 _localfoo", "PUT", "/db/_localfoo", 400, "illegal_docid", RESERVED_ID, j({})),
    Bad("BC-04 %FF", "PUT", "/db/%FF", 400, "illegal_docid", "Document id must be valid UTF-8", j({})),
    Bad("BC-04 %ZZ GET", "GET", "/db/bad%ZZ", 400, "bad_request", "invalid_url_encoding"),
    Bad("BC-04 %ZZ PUT", "PUT", "/db/bad%ZZ", 400, "bad_request", "invalid_url_encoding", j({})),
    Bad("BC-04 %ZZ in db name", "PUT", "/d%ZZb", 400, "bad_request", "invalid_url_encoding", None, NO_CT),
    Bad(
        "d01[20]",
        "POST",
        "/db/_bulk_docs",
        400,
        "illegal_docid",
        RESERVED_ID,
        j({"docs": [{"_id": "bulk-ok-2"}, {"_id": "_bad"}]}),
    ),
    Bad(
        "§4.1 id not a string",
        "POST",
        "/db/_bulk_docs",
        400,
        "illegal_docid",
        "Document id must be a string",
        j({"docs": [{"_id": "n"}, {"_id": 5}]}),
    ),
    Bad("§4.1 POST reserved id", "POST", "/db", 400, "illegal_docid", RESERVED_ID, j({"_id": "_foo"})),
    Bad(
        "§4.2 bad special field",
        "PUT",
        "/db/doc-1",
        400,
        "doc_validation",
        "Bad special document member: _foo",
        j({"_rev": REV1, "_foo": 1}),
    ),
    Bad(
        "§4.2 bulk bad special field",
        "POST",
        "/db/_bulk_docs",
        400,
        "doc_validation",
        "Bad special document member: _foo",
        j({"docs": [{"_id": "n"}, {"_id": "m", "_foo": 1}]}),
    ),
    Bad("BC-03 bare _local", "PUT", "/db/_local", 400, "bad_request", "Invalid _local document id.", j({})),
    Bad(
        "BC-03 _local attachment",
        "PUT",
        "/db/_local/cp/att",
        400,
        "bad_request",
        "_local documents do not accept attachments.",
        b"x",
        NO_CT,
    ),
    Bad(
        "BC-04 COPY to _bad",
        "COPY",
        "/db/doc-1",
        400,
        "illegal_docid",
        RESERVED_ID,
        None,
        {"Destination": "_bad"},
    ),
    Bad(
        "§7.6 COPY without Destination",
        "COPY",
        "/db/doc-1",
        400,
        "bad_request",
        "Destination header is mandatory for COPY.",
        None,
        NO_CT,
    ),
    # wrong content types (BC-24, d01[69])
    Bad(
        "BC-24 bulk_docs no CT",
        "POST",
        "/db/_bulk_docs",
        415,
        "bad_content_type",
        BAD_CT,
        j({"docs": [{"_id": "n"}]}),
        NO_CT,
    ),
    Bad(
        "BC-24 bulk_docs text",
        "POST",
        "/db/_bulk_docs",
        415,
        "bad_content_type",
        BAD_CT,
        j({"docs": [{"_id": "n"}]}),
        TEXT,
    ),
    Bad(
        "BC-24 revs_diff text",
        "POST",
        "/db/_revs_diff",
        415,
        "bad_content_type",
        BAD_CT,
        j({"doc-1": ["2-x"]}),
        TEXT,
    ),
    Bad("d01[69]", "POST", "/db/_ensure_full_commit", 415, "bad_content_type", BAD_CT, None, NO_CT),
    Bad(
        "BC-24 bulk_get no CT",
        "POST",
        "/db/_bulk_get",
        415,
        "bad_content_type",
        BAD_CT,
        j({"docs": []}),
        NO_CT,
    ),
    Bad("BC-24 POST db no CT", "POST", "/db", 415, "bad_content_type", BAD_CT, j({"_id": "n"}), NO_CT),
    Bad("BC-18 POST changes text", "POST", "/db/_changes", 415, "bad_content_type", BAD_CT, b"{}", TEXT),
    # conflicts (d01[9-10, 50], BC-11) and bad feed parameters (d01[59], BC-14, BC-18)
    Bad("d01[9]", "PUT", "/db/doc-1", 409, "conflict", CONFLICT, j({"v": "conflict, no rev"})),
    Bad(
        "d01[10]",
        "PUT",
        "/db/doc-1",
        409,
        "conflict",
        CONFLICT,
        j({"_rev": "1-" + "0" * 32, "v": "stale rev"}),
    ),
    Bad("d01[50]", "DELETE", "/db/doc-1", 409, "conflict", CONFLICT, None, NO_CT),
    Bad("BC-11 delete tombstone", "DELETE", "/db/gone?rev=2-t", 409, "conflict", CONFLICT, None, NO_CT),
    Bad("BC-11 edit internal rev", "PUT", "/db/doc-2", 409, "conflict", CONFLICT, j({"_rev": "1-a", "v": 9})),
    Bad(
        "d01[59]",
        "GET",
        "/db/_changes?since=garbage",
        400,
        "bad_request",
        "Malformed sequence supplied in 'since' parameter.",
    ),
    Bad(
        "BC-18 doc_ids",
        "POST",
        "/db/_changes?filter=_doc_ids",
        400,
        "bad_request",
        "`doc_ids` filter parameter is not a list of doc ids.",
        j({"doc_ids": "a"}),
    ),
    Bad("§3.11 revs_limit", "PUT", "/db/_revs_limit", 400, "bad_request", None, b'"abc"'),
]


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=str)
async def test_bad_input_is_rejected_and_changes_nothing(
    client: httpx.AsyncClient, seeded: str, bad: Bad
) -> None:
    """Issue acceptance: each bad request gets CouchDB's status and exact error JSON and
    leaves everything a client can read unchanged (see ``Bad.source`` for the case)."""
    before = await snapshot(client, seeded, ["cp"])
    response = await client.request(bad.method, bad.target, content=bad.body, headers=bad.headers)
    body = body_of(response)
    assert response.status_code == bad.status, (str(bad), response.status_code, body)
    expected = {"error": bad.error, "reason": body.get("reason") if bad.reason is None else bad.reason}
    assert body == expected, (str(bad), body)
    assert isinstance(body["reason"], str)
    assert await snapshot(client, seeded, ["cp"]) == before, str(bad)


# -- random input -------------------------------------------------------------------------------

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_value = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
rev_string = st.one_of(
    st.sampled_from(
        ["1-a", "2-b", "0-1", "1-" + "g" * 32, REV1, "abc", "-1", "1-x-y", "", "9999999999999999999999-a"]
    ),
    st.text(max_size=12),
    st.builds(lambda n, s: f"{n}-{s}", st.integers(-2, 10**20), st.text(max_size=34)),
)
doc_id = st.one_of(
    st.sampled_from(["doc-1", "doc-2", "gone", "_design/app", "_local/cp", "_bad", "", "new"]),
    st.text(max_size=12),
)
doc_like = st.fixed_dictionaries(
    {},
    optional={
        "_id": doc_id | json_value,
        "_rev": rev_string | json_value,
        "_revisions": st.fixed_dictionaries(
            {},
            optional={
                "start": st.integers(-2, 5) | json_value,
                "ids": st.lists(st.text(max_size=34), max_size=4) | json_value,
            },
        )
        | json_value,
        "_deleted": st.booleans() | json_value,
        "_conflicts": json_value,
        "_foo": json_value,
        "v": json_value,
    },
)
bulk_docs_body = st.fixed_dictionaries(
    {},
    optional={
        "docs": st.lists(doc_like | json_value, max_size=4) | json_value,
        "new_edits": st.booleans() | json_value,
    },
)
bulk_get_body = st.fixed_dictionaries(
    {},
    optional={
        "docs": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "id": doc_id | json_value,
                    "rev": rev_string | json_value,
                    "atts_since": json_value,
                },
            )
            | json_value,
            max_size=4,
        )
        | json_value,
        "revs": json_value,
        "latest": json_value,
    },
)
revs_diff_body = st.dictionaries(doc_id, st.lists(rev_string, max_size=3) | json_value, max_size=3)
changes_body = st.fixed_dictionaries({}, optional={"doc_ids": json_value, "selector": json_value})
raw_body = st.binary(max_size=64)


def encoded(structured: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        structured.map(lambda v: json.dumps(v).encode()),
        json_value.map(lambda v: json.dumps(v).encode()),
        raw_body,
    )


path_segment = st.text(alphabet="ab_%+:-~Z9é Fx2", min_size=1, max_size=10).filter(
    lambda s: s not in (".", "..")
)
query_value = st.text(max_size=12)
CHANGES_PARAMS = [
    "since",
    "limit",
    "style",
    "filter",
    "doc_ids",
    "descending",
    "include_docs",
    "conflicts",
    "heartbeat",
    "timeout",
]
DOC_PARAMS = [
    "rev",
    "revs",
    "open_revs",
    "latest",
    "conflicts",
    "revs_info",
    "meta",
    "new_edits",
    "atts_since",
]
ALL_DOCS_PARAMS = [
    "startkey",
    "endkey",
    "key",
    "keys",
    "limit",
    "skip",
    "descending",
    "include_docs",
    "inclusive_end",
]


def query(names: list[str], fixed: dict[str, st.SearchStrategy[str]] | None = None) -> st.SearchStrategy[str]:
    pairs = st.lists(st.tuples(st.sampled_from(names), query_value), max_size=3)
    extra = st.fixed_dictionaries({}, optional=fixed or {})
    return st.builds(
        lambda p, e: "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in [*p, *e.items()]),
        pairs,
        extra,
    )


# feed is never longpoll/continuous here: random ``heartbeat`` values would keep it open.
changes_query = query(
    CHANGES_PARAMS, {"feed": st.sampled_from(["normal", "bogus", "", "NORMAL", "longpoll "])}
)

no_headers: st.SearchStrategy[dict[str, str]] = st.just({})
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
if_match = st.fixed_dictionaries(
    {}, optional={"If-Match": rev_string.filter(str.isascii).map(lambda r: f'"{r}"')}
)
accept = st.fixed_dictionaries(
    {},
    optional={
        "Accept": st.sampled_from(["application/json", "multipart/mixed", "*/*", "text/html"]) | header_text
    },
)

requests = st.one_of(
    st.tuples(st.just("PUT"), path_segment.map(lambda s: f"/db/{s}"), encoded(doc_like), if_match),
    st.tuples(
        st.just("PUT"),
        st.sampled_from(["/db/doc-1", "/db/doc-2", "/db/gone", "/db/_design/app"]),
        encoded(doc_like),
        if_match,
    ),
    st.tuples(st.just("PUT"), query(DOC_PARAMS).map(lambda q: f"/db/doc-1?{q}"), encoded(doc_like), if_match),
    st.tuples(st.just("PUT"), path_segment.map(lambda s: f"/db/_local/{s}"), encoded(doc_like), no_headers),
    st.tuples(st.just("POST"), st.just("/db"), encoded(doc_like), no_headers),
    st.tuples(
        st.just("DELETE"),
        st.tuples(path_segment, rev_string).map(lambda t: f"/db/{t[0]}?rev={quote(t[1], safe='')}"),
        st.just(b""),
        if_match,
    ),
    st.tuples(
        st.just("GET"),
        st.tuples(st.sampled_from(["doc-1", "doc-2", "gone", "nodoc", "_local/cp"]), query(DOC_PARAMS)).map(
            lambda t: f"/db/{t[0]}?{t[1]}"
        ),
        st.just(b""),
        accept,
    ),
    st.tuples(
        st.just("COPY"),
        st.sampled_from(["/db/doc-1", "/db/gone", "/db/nodoc"]),
        st.just(b""),
        st.fixed_dictionaries({"Destination": header_text}),
    ),
    st.tuples(st.just("POST"), st.just("/db/_bulk_docs"), encoded(bulk_docs_body), no_headers),
    st.tuples(
        st.just("POST"),
        query(["revs", "latest", "attachments", "open_revs"]).map(lambda q: f"/db/_bulk_get?{q}"),
        encoded(bulk_get_body),
        accept,
    ),
    st.tuples(
        st.sampled_from(["POST"]),
        st.sampled_from(["/db/_revs_diff", "/db/_missing_revs"]),
        encoded(revs_diff_body),
        no_headers,
    ),
    st.tuples(
        st.sampled_from(["GET", "POST"]),
        changes_query.map(lambda q: f"/db/_changes?{q}"),
        encoded(changes_body),
        no_headers,
    ),
    st.tuples(
        st.sampled_from(["GET", "POST"]),
        query(ALL_DOCS_PARAMS).map(lambda q: f"/db/_all_docs?{q}"),
        encoded(st.fixed_dictionaries({}, optional={"keys": json_value})),
        no_headers,
    ),
    st.tuples(st.just("POST"), st.just("/db/_ensure_full_commit"), encoded(json_value), no_headers),
    st.tuples(st.just("PUT"), st.just("/db/_revs_limit"), encoded(json_value), no_headers),
    st.tuples(
        st.sampled_from(["GET", "PUT", "DELETE", "POST"]),
        path_segment.map(lambda s: f"/{s}"),
        encoded(json_value),
        no_headers,
    ),
    st.tuples(
        st.just("GET"),
        query_value.map(lambda v: f"/_uuids?count={quote(v, safe='')}"),
        st.just(b""),
        no_headers,
    ),
)
content_types = st.sampled_from(
    [None, "application/json", "application/json; charset=utf-8", "text/plain", ""]
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests, content_type=content_types)
async def test_random_input_never_500_and_failures_change_nothing(
    client: httpx.AsyncClient,
    seeded: str,
    request: tuple[str, str, bytes, dict[str, str]],
    content_type: str | None,
) -> None:
    """Issue acceptance, §1.2, §10: random bytes and JSON on the write and read routes
    never give a 5xx; every 4xx is CouchDB error JSON; a rejected request changes
    nothing."""
    method, target, body, extra = request
    headers = dict(extra) if content_type is None else {**extra, "Content-Type": content_type}
    before = await snapshot(client, seeded, ["cp"])
    response = await client.request(method, target, content=body, headers=headers)
    where = f"{method} {target} {headers} {body[:200]!r} -> {response.status_code} {response.text[:300]!r}"
    assert response.status_code < 500, where
    if response.status_code >= 400:
        error = body_of(response)
        assert isinstance(error, dict) and set(error) == {"error", "reason"}, where
        assert isinstance(error["error"], str) and isinstance(error["reason"], str), where
        assert await snapshot(client, seeded, ["cp"]) == before, where
