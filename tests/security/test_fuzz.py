"""Property-based fuzzing of every route (issue 5): ≥ 10,000 generated requests.

Hypothesis builds requests from the route table (every server endpoint, database,
``DB_ENDPOINTS`` entry, document, design, ``_local``, attachment and ``_users`` path,
plus arbitrary segments), with every kind of caller (anonymous, server admin, db admin,
member, non-member, wrong or malformed credentials and cookies), methods, query
parameters (valid and garbage values), content types and bodies (JSON documents,
arbitrary JSON, forms, bytes, broken multipart).  They run in-process through ASGI
against a seeded server on memory storage.  For every answer:

* no 5xx;
* an error (4xx) is CouchDB's JSON: ``application/json``, exactly ``{"error", "reason"}``
  with string values (HEAD answers have no body);
* a rejected request (4xx) changed no stored data: databases, each one's update seq,
  ``revs_limit``, ``_security`` object and ``_local`` documents are as before.

``COUCHPOINT_FUZZ_EXAMPLES`` changes the number of requests (default 10,000).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from couchpoint import create_app
from couchpoint.auth import hash_password
from couchpoint.config import Settings
from couchpoint.http import server_api
from couchpoint.http.routes import DB_ENDPOINTS
from couchpoint.storage import MemoryStorage

from .conftest import BASE_URL, basic

EXAMPLES = int(os.environ.get("COUCHPOINT_FUZZ_EXAMPLES", "10000"))
ADMIN = basic("admin", "fuzz-admin")
USERS = {"member": "pw-m", "dba": "pw-d", "outsider": "pw-o"}
SECURITY = {"admins": {"names": ["dba"], "roles": []}, "members": {"names": ["member"], "roles": ["staff"]}}
LOCAL_NAMES = ("cp", "other")

CALLERS: dict[str, dict[str, str]] = {
    "anonymous": {},
    "admin": ADMIN,
    "member": basic("member", "pw-m"),
    "dba": basic("dba", "pw-d"),
    "outsider": basic("outsider", "pw-o"),
    "wrong": basic("member", "nope"),
    "unknown": basic("ghost", "x"),
    "colon": basic("admin:fuzz", "admin"),
    "bad-base64": {"Authorization": "Basic %%%"},
    "empty-basic": {"Authorization": "Basic "},
    "bearer": {"Authorization": "Bearer eyJhbGciOiJub25lIn0.e30."},
    "cookie": {"Cookie": "AuthSession=YWRtaW46NjAwMDAwMDA6AAAA"},
    "cookie-garbage": {"Cookie": "AuthSession=%%%; other=1"},
}

CALLER_WEIGHTS = ["admin"] * 12 + ["member"] * 6 + ["dba"] * 3 + ["anonymous"] * 2 + sorted(CALLERS)

DBS = ["fz", "pub", "_users", "nope", "newdb", "Bad_Name", "_replicator", "a%2Fb"]
DOCS = [
    "d1",
    "d2",
    "new",
    "_design/dd",
    "_design/new",
    "_local/cp",
    "_local/other",
    "_bad",
    "org.couchdb.user:member",
]
SEGMENT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12).map(
    lambda s: quote(s, safe="_-.~:@") or "x"
)

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)  # fmt: skip
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
REV = st.sampled_from(["1-" + "a" * 32, "2-" + "b" * 32, "0-1", "bad", "1-xyz", ""])
doc_body = st.fixed_dictionaries(
    {},
    optional={
        "_id": st.sampled_from(DOCS + ["x", ""]),
        "_rev": REV,
        "_deleted": st.booleans(),
        "_revisions": st.fixed_dictionaries(
            {"start": st.integers(-1, 3), "ids": st.lists(st.text(max_size=4))}
        ),
        "_attachments": st.dictionaries(
            st.sampled_from(["a.txt", "b"]),
            st.fixed_dictionaries(
                {}, optional={"data": st.sampled_from(["aGk=", "!!"]), "stub": st.booleans(),
                              "content_type": st.just("text/plain"), "follows": st.booleans()}
            ),
            max_size=2,
        ),
        "name": st.sampled_from(["member", "x", "_x"]),
        "type": st.sampled_from(["user", "x"]),
        "roles": st.lists(st.sampled_from(["staff", "_admin", "boss"]), max_size=2),
        "password": st.sampled_from(["pw", ""]),
        "members": st.fixed_dictionaries({}, optional={"names": st.lists(st.text(max_size=5), max_size=2)}),
        "admins": json_value,
        "v": json_value,
    },
)  # fmt: skip
bulk_body = st.fixed_dictionaries(
    {"docs": st.lists(doc_body, max_size=3)},
    optional={"new_edits": st.booleans(), "all_or_nothing": st.booleans()},
)
keys_body = st.fixed_dictionaries({}, optional={"keys": st.lists(st.sampled_from(DOCS), max_size=3)})
revs_diff_body = st.dictionaries(st.sampled_from(DOCS), st.lists(REV, max_size=2), max_size=3)
bulk_get_body = st.fixed_dictionaries(
    {
        "docs": st.lists(
            st.fixed_dictionaries({"id": st.sampled_from(DOCS)}, optional={"rev": REV}), max_size=3
        )
    }
)
JSON_BODY = st.one_of(doc_body, bulk_body, keys_body, revs_diff_body, bulk_get_body, json_value)

QUERY_VALUES = st.sampled_from(
    ["true", "false", "0", "1", "-1", "abc", '"d1"', "[]", '["d1"]', '["1-' + "a" * 32 + '"]', "all",
     "now", "normal", "bogus", "10", "_doc_ids", "all_docs", "1-" + "a" * 32, "", "%", "{"]
)  # fmt: skip
QUERY_NAMES = st.sampled_from(
    ["rev", "revs", "revs_info", "open_revs", "conflicts", "latest", "attachments", "atts_since", "since",
     "limit", "skip", "descending", "include_docs", "keys", "key", "startkey", "endkey", "style", "filter",
     "doc_ids", "new_edits", "count", "basic", "update_seq", "local_seq", "meta", "batch", "w"]
)  # fmt: skip


@st.composite
def paths(draw: st.DrawFn) -> str:
    kind = draw(
        st.sampled_from(["server", "db", "endpoint", "doc", "att", "local", "user", "random", "design"])
    )
    db = draw(st.sampled_from(DBS))
    if kind == "server":
        return "/" + draw(st.sampled_from(["", *sorted(server_api.ENDPOINTS), "_config", "_foo"]))
    if kind == "db":
        return f"/{db}" + draw(st.sampled_from(["", "/"]))
    if kind == "endpoint":
        return f"/{db}/" + draw(st.sampled_from(sorted(DB_ENDPOINTS) + ["_find", "_nonexistent"]))
    if kind == "doc":
        return f"/{db}/" + draw(st.sampled_from(DOCS)).replace("/", draw(st.sampled_from(["/", "%2F"])))
    if kind == "att":
        return (
            f"/{db}/"
            + draw(st.sampled_from(["d1", "d2", "_design/dd", "new"]))
            + "/"
            + draw(st.sampled_from(["a.txt", "b", "dir/c", "%00"]))
        )
    if kind == "local":
        return f"/{db}/_local/" + draw(st.sampled_from(list(LOCAL_NAMES) + ["%00security", ""]))
    if kind == "user":
        return "/_users/org.couchdb.user:" + draw(st.sampled_from(["member", "dba", "new", "x:y"]))
    if kind == "design":
        return f"/{db}/_design/" + draw(st.sampled_from(["dd", "new"])) + draw(st.sampled_from(["", "/att"]))
    return "/" + "/".join(draw(st.lists(SEGMENT, min_size=1, max_size=4)))


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    method = draw(
        st.sampled_from(["GET", "GET", "HEAD", "PUT", "PUT", "POST", "POST", "DELETE", "COPY", "PATCH"])
    )
    headers = dict(CALLERS[draw(st.sampled_from(CALLER_WEIGHTS))])
    headers["Accept"] = draw(st.sampled_from(["application/json", "*/*", "multipart/mixed", "text/html"]))
    query = draw(st.lists(st.tuples(QUERY_NAMES, QUERY_VALUES), max_size=3))
    if draw(st.booleans()):
        headers["Destination"] = draw(st.sampled_from(["copied", "_design/x", "_local/cp", "d1", ""]))
    body_kind = draw(
        st.sampled_from(["none", "json", "json", "json", "form", "bytes", "multipart", "dupkeys"])
    )
    content: bytes = b""
    if body_kind == "json":
        content = orjson.dumps(draw(JSON_BODY))
        headers["Content-Type"] = draw(
            st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain"])
        )
    elif body_kind == "form":
        content = draw(
            st.sampled_from([b"name=admin&password=fuzz-admin", b"name=member&password=x", b"a=%zz"])
        )
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif body_kind == "bytes":
        content = draw(st.binary(max_size=64))
        headers["Content-Type"] = draw(
            st.sampled_from(["application/json", "application/octet-stream", "image/png"])
        )
    elif body_kind == "multipart":
        content = (
            b"--b\r\nContent-Type: application/json\r\n\r\n"
            + orjson.dumps(draw(doc_body))
            + draw(st.sampled_from([b"\r\n--b--", b"", b"\r\n--b\r\n\r\nxx\r\n--b--"]))
        )
        headers["Content-Type"] = "multipart/related; boundary=b"
    elif body_kind == "dupkeys":
        content = b'{"type":"user","name":"member","roles":["_admin"],"roles":[],"members":{},"members":{}}'
        headers["Content-Type"] = "application/json"
    path = draw(paths())
    if method == "DELETE" and path.rstrip("/") == "/_users":
        method = "GET"  # keep the seeded users (deleting databases is fuzzed on the others)
    return {"method": method, "path": path, "query": query, "headers": headers, "content": content}


async def seed(client: httpx.AsyncClient) -> None:
    async def ok(response: Any) -> None:
        response = await response
        assert response.status_code < 300, response.text

    await ok(client.put("/_users", headers=ADMIN))
    for name, password in USERS.items():
        doc = {
            "name": name,
            "password": password,
            "roles": ["staff"] if name == "member" else [],
            "type": "user",
        }
        await ok(client.put(f"/_users/org.couchdb.user:{name}", json=doc, headers=ADMIN))
    for db in ("fz", "pub"):
        await ok(client.put(f"/{db}", headers=ADMIN))
        await ok(client.put(f"/{db}/_security", json=SECURITY if db == "fz" else {}, headers=ADMIN))
        await ok(client.put(f"/{db}/d1", json={"v": 1}, headers=ADMIN))
        await ok(client.put(f"/{db}/_design/dd", json={"views": {}}, headers=ADMIN))
        await ok(client.put(f"/{db}/_local/cp", json={"seq": 1}, headers=ADMIN))
        await ok(
            client.put(f"/{db}/d2/a.txt", content=b"hello", headers={"Content-Type": "text/plain", **ADMIN})
        )


async def fingerprint(storage: MemoryStorage) -> tuple[Any, ...]:
    out: list[Any] = []
    for name in await storage.all_dbs():
        store = await storage.get_db(name)
        assert store is not None
        info = await store.info()
        local = sorted((k, v.rev) for k, v in store._state.local.items())
        out.append((name, info.update_seq, info.revs_limit, await store.get_security(), local))
    return tuple(out)


def check_error_shape(request: dict[str, Any], response: httpx.Response) -> None:
    if request["method"] == "HEAD" or response.status_code < 400:
        return
    content_type = response.headers.get("content-type", "")
    assert content_type.split(";")[0].strip() == "application/json", content_type
    body = orjson.loads(response.content)
    assert isinstance(body, dict) and set(body) == {"error", "reason"}, body
    assert isinstance(body["error"], str) and isinstance(body["reason"], str), body


def test_fuzz_every_route() -> None:
    storage = MemoryStorage()
    app = create_app(
        storage=storage,
        settings=Settings(),
        admins={"admin": hash_password("fuzz-admin", 1000)},
        password_iterations=1000,
        lockout_threshold=0,
        changes_timeout_ms=100,
    )
    counts = {"requests": 0, "rejected": 0}
    statuses: dict[int, int] = {}

    with asyncio.Runner() as runner:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
        runner.run(seed(client))

        async def one(request: dict[str, Any]) -> None:
            before = await fingerprint(storage)
            with anyio.fail_after(10):
                response = await client.request(
                    request["method"],
                    request["path"],
                    params=request["query"],
                    headers=request["headers"],
                    content=request["content"],
                )
            counts["requests"] += 1
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            where = f"{request['method']} {request['path']} {request['query']} -> {response.status_code}"
            if response.status_code == 501:  # documented: endpoints couchpoint does not offer
                assert request["method"] == "HEAD" or response.json()["error"] == "not_implemented", where
            else:
                assert response.status_code < 500, f"{where}: {response.text[:500]}"
            check_error_shape(request, response)
            if response.status_code >= 400:
                counts["rejected"] += 1
                after = await fingerprint(storage)
                assert after == before, f"{where}: a rejected request changed stored data"

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(request=requests())
        def run(request: dict[str, Any]) -> None:
            runner.run(one(request))

        started = time.monotonic()
        try:
            run()
        finally:
            runner.run(client.aclose())
            runner.run(app.state.server.close())
        elapsed = time.monotonic() - started
    summary = f"{counts['requests']} requests ({counts['rejected']} rejected) in {elapsed:.1f} s"
    print(f"\nfuzz: {summary}; {statuses}")
    assert counts["requests"] >= EXAMPLES
    assert len(statuses) > 6 and any(s < 300 for s in statuses) and 401 in statuses and 403 in statuses
