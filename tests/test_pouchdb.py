"""Real PouchDB 9 (Node, memory adapter) replicating with a real ``couchpoint serve``.

Each test starts ``couchpoint serve`` on a fresh SQLite data dir (``tests/realserver.py``),
runs one scenario script from ``tests/js/`` with Node against it, and asserts the values
in the JSON the script prints. The scripts check themselves too (server state read back
through PouchDB's HTTP adapter), and the tests then re-read the server's state with
httpx (``_changes``, ``_bulk_get``, ``_all_docs``, single-doc GETs by URL) and compare it
with what PouchDB holds. The scenarios are the issue's acceptance list:

a. push of 1,000 docs (special ids, design doc, rev 3+, tombstones);
b. pull of that data plus server-side conflicts into an empty db;
c. two-way sync with conflicting edits on two clients and the server;
d. live sync between two clients through the server;
e. repeated replications of unchanged data write nothing;

plus live sync across a server restart (SIGKILL; SIGTERM is an expected failure until
``couchpoint serve`` stops with live clients attached).

Needs ``node`` (20+) on PATH and ``tests/js/node_modules`` (``./scripts/test`` runs
``npm ci`` there). Run: ``.venv/bin/pytest tests/test_pouchdb.py -q``. A scenario can
also be run by hand against any server: ``node tests/js/push.js --url URL --db NAME``
(``PDB_HTTP_LOG=file`` logs every request and response).
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
from pathlib import Path
from pprint import pformat
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import pytest

if TYPE_CHECKING:
    from tests.realserver import RealServer

# The fixtures couchpoint_real_server (a RealServer) and couchpoint_server (its URL).
pytest_plugins = ("tests.realserver",)

pytestmark = pytest.mark.pouchdb

JS_DIR = Path(__file__).resolve().parent / "js"
NODE_PACKAGES = ("pouchdb", "pouchdb-adapter-memory")
SCENARIO_TIMEOUT = 240.0  # seconds; every scenario takes a few seconds
DOCS = 1000

Json = dict[str, Any]


# ---------------------------------------------------------------------------
# Running the Node scenarios


def node_executable() -> str:
    missing = [p for p in NODE_PACKAGES if not (JS_DIR / "node_modules" / p / "package.json").is_file()]
    if missing:
        pytest.fail(
            f"tests/js/node_modules is missing {', '.join(missing)}: run ./scripts/test "
            "(it installs the PouchDB packages with `npm ci` in tests/js), "
            "or `npm ci --prefix tests/js` by hand",
            pytrace=False,
        )
    node = shutil.which("node")
    if node is None:
        pytest.fail("`node` is not on PATH: the PouchDB tests need Node.js 20 or newer", pytrace=False)
    return node


def run_scenario(server: RealServer, scenario: str, db: str, *args: str) -> Json:
    """Run ``tests/js/<scenario>.js`` against ``server``; its JSON result, or a test failure."""
    node = node_executable()
    command = [node, str(JS_DIR / f"{scenario}.js"), "--url", server.url, "--db", db, *args]
    env = {k: v for k, v in os.environ.items() if k != "POUCHDB_SERVER_QUIRKS"}
    try:
        done = subprocess.run(
            command, cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=SCENARIO_TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"{scenario}.js did not finish within {SCENARIO_TIMEOUT:g} s\n"
            f"--- node stderr (tail) ---\n{_text(exc.stderr)[-6000:]}\n"
            f"--- server log (tail) ---\n{server.log_tail()}",
            pytrace=False,
        )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    try:
        result: Json = json.loads(lines[-1])
    except (IndexError, ValueError):
        result = {"ok": False, "error": "no JSON result on stdout", "stdout": done.stdout[-2000:]}
    if done.returncode == 0 and result.get("ok") is True:
        assert result["pouchdb_version"] == "9.0.0", "tests/js/node_modules is stale: run ./scripts/test"
    else:
        details = pformat(result.get("details", result.get("stdout")), width=110)[:8000]
        pytest.fail(
            f"{scenario}.js failed (exit {done.returncode}): {result.get('error')}\n"
            f"details: {details}\n"
            f"--- node stderr (tail) ---\n{done.stderr[-8000:]}\n"
            f"--- server log (tail) ---\n{server.log_tail()}",
            pytrace=False,
        )
    return result


def _text(data: str | bytes | None) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data or ""


# ---------------------------------------------------------------------------
# Reading the server's state with httpx (independently of PouchDB)


def rev_key(rev: str) -> tuple[int, str]:
    pos, _, digest = rev.partition("-")
    return int(pos), digest


def winner(leaves: dict[str, Json]) -> str:
    """CouchDB's winning rev: live leaves beat deleted ones, then the highest (pos, hash)."""
    live = [rev for rev, leaf in leaves.items() if not leaf["deleted"]]
    return max(live or leaves, key=rev_key)


def doc_path(db: str, doc_id: str) -> str:
    """The path PouchDB uses for a doc: ``_design/`` keeps its slash, the rest is one segment."""
    if doc_id.startswith("_design/"):
        return f"/{quote(db, safe='')}/_design/{quote(doc_id[8:], safe='')}"
    return f"/{quote(db, safe='')}/{quote(doc_id, safe='')}"


def client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Accept": "application/json"}, timeout=60.0)


def server_state(url: str, db: str) -> dict[str, Json]:
    """Every doc on the server as ``{id: {rev, deleted, leaves, conflicts, body, revisions}}``.

    The same shape as ``summarize()`` in tests/js/lib/common.js: leaves and conflicts are
    sorted by (pos, hash); ``body`` and ``revisions`` are the winner's.
    """
    base = f"/{quote(db, safe='')}"
    with client(url) as http:
        response = http.get(f"{base}/_changes", params={"style": "all_docs", "include_docs": "true"})
        assert response.status_code == 200, response.text
        rows = response.json()["results"]
        ids = [row["id"] for row in rows]
        assert len(ids) == len(set(ids)), "_changes lists a doc more than once"
        wanted = [{"id": row["id"], "rev": c["rev"]} for row in rows for c in row["changes"]]
        response = http.post(f"{base}/_bulk_get", params={"revs": "true"}, json={"docs": wanted})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
    assert len(results) == len(wanted)
    leaves: dict[str, dict[str, Json]] = {}
    for want, result in zip(wanted, results, strict=True):
        assert result["id"] == want["id"]
        assert len(result["docs"]) == 1 and "ok" in result["docs"][0], result
        doc = result["docs"][0]["ok"]
        assert doc["_rev"] == want["rev"]
        leaves.setdefault(doc["_id"], {})[doc["_rev"]] = {
            "deleted": doc.get("_deleted") is True,
            "revisions": doc["_revisions"],
            "body": {k: v for k, v in doc.items() if k not in ("_id", "_rev", "_revisions", "_deleted")},
        }
    state: dict[str, Json] = {}
    for row in rows:
        doc_leaves = leaves[row["id"]]
        rev = winner(doc_leaves)
        assert row["doc"]["_rev"] == rev, f"_changes include_docs shows {row['doc']['_rev']} for {row['id']}"
        assert row.get("deleted", False) is doc_leaves[rev]["deleted"], row
        state[row["id"]] = {
            "rev": rev,
            "deleted": doc_leaves[rev]["deleted"],
            "leaves": sorted(doc_leaves, key=rev_key),
            "conflicts": sorted(
                (r for r in doc_leaves if r != rev and not doc_leaves[r]["deleted"]), key=rev_key
            ),
            "body": doc_leaves[rev]["body"],
            "revisions": doc_leaves[rev]["revisions"],
        }
    return state


def assert_same_state(actual: dict[str, Json], expected: dict[str, Json], what: str) -> None:
    """``actual`` (the server, read with httpx) equals ``expected`` (from PouchDB), doc by doc."""
    problems = [f"{doc_id!r}: missing on the server" for doc_id in expected.keys() - actual.keys()]
    problems += [f"{doc_id!r}: unexpected on the server" for doc_id in actual.keys() - expected.keys()]
    for doc_id in sorted(expected.keys() & actual.keys()):
        for field in ("rev", "deleted", "leaves", "conflicts", "body", "revisions"):
            if actual[doc_id][field] != expected[doc_id][field]:
                mine, theirs = actual[doc_id][field], expected[doc_id][field]
                problems.append(f"{doc_id!r} {field}: server={mine!r:.300} {what}={theirs!r:.300}")
    assert not problems, f"{len(problems)} differences between the server and {what}:\n" + "\n".join(
        problems[:30]
    )


def assert_all_docs(url: str, db: str, expected: dict[str, Json]) -> None:
    """``_all_docs?include_docs=true&conflicts=true`` lists exactly the live docs, with winners."""
    with client(url) as http:
        response = http.get(
            f"/{quote(db, safe='')}/_all_docs", params={"include_docs": "true", "conflicts": "true"}
        )
    assert response.status_code == 200, response.text
    rows = {row["id"]: row for row in response.json()["rows"]}
    live = {doc_id: e for doc_id, e in expected.items() if not e["deleted"]}
    assert rows.keys() == live.keys()
    for doc_id, e in live.items():
        row = rows[doc_id]
        assert row["key"] == doc_id and row["value"]["rev"] == e["rev"], row
        doc = dict(row["doc"])
        assert doc.pop("_id") == doc_id and doc.pop("_rev") == e["rev"]
        assert sorted(doc.pop("_conflicts", []), key=rev_key) == e["conflicts"], doc_id
        assert doc == e["body"], doc_id


def assert_docs_by_url(url: str, db: str, expected: dict[str, Json], ids: list[str]) -> None:
    """GET each doc by its percent-encoded URL: body and full history for live docs,
    ``404 not_found/deleted`` plus a readable tombstone (``?rev=``) for deleted ones."""
    with client(url) as http:
        for doc_id in ids:
            e = expected[doc_id]
            path = doc_path(db, doc_id)
            response = http.get(path, params={"revs": "true"})
            if e["deleted"]:
                assert response.status_code == 404, (doc_id, response.text)
                assert response.json() == {"error": "not_found", "reason": "deleted"}, doc_id
                response = http.get(path, params={"rev": e["rev"], "revs": "true"})
                assert response.status_code == 200, (doc_id, response.text)
                doc = response.json()
                assert doc["_deleted"] is True, doc
            else:
                assert response.status_code == 200, (doc_id, response.text)
                doc = response.json()
            assert doc["_id"] == doc_id and doc["_rev"] == e["rev"], (doc_id, doc)
            assert doc["_revisions"] == e["revisions"], doc_id
            body = {k: v for k, v in doc.items() if k not in ("_id", "_rev", "_revisions", "_deleted")}
            assert body == e["body"], doc_id


def db_info(url: str, db: str) -> Json:
    with client(url) as http:
        response = http.get(f"/{quote(db, safe='')}/")
    assert response.status_code == 200, response.text
    info: Json = response.json()
    return info


def assert_counts(info: Json, expected: dict[str, Json]) -> None:
    deleted = sum(1 for e in expected.values() if e["deleted"])
    assert info["doc_count"] == len(expected) - deleted
    assert info["doc_del_count"] == deleted


# ---------------------------------------------------------------------------
# a. push


def test_push_1000_docs(couchpoint_real_server: RealServer) -> None:
    server, db = couchpoint_real_server, "push-target"
    result = run_scenario(server, "push", db)

    replication = result["replication"]
    assert result["docs"] == DOCS
    assert replication["status"] == "complete"
    assert replication["docs_read"] == DOCS
    assert replication["docs_written"] == DOCS
    assert replication["doc_write_failures"] == 0 and replication["errors"] == []

    expected: dict[str, Json] = result["expected"]
    assert len(expected) == DOCS
    # The data set has what the acceptance asks for.
    special = result["dataset"]["special"]
    for fragment in ("/", "+", " ", "%", ":", "été 😀", "中文", "_design/app"):
        assert any(fragment in doc_id for doc_id in special), fragment
    assert max(rev_key(e["rev"])[0] for e in expected.values()) >= 5
    assert sum(1 for e in expected.values() if rev_key(e["rev"])[0] >= 3) > 100
    tombstones = [doc_id for doc_id, e in expected.items() if e["deleted"]]
    assert sorted(tombstones) == sorted(result["dataset"]["deleted"]) and len(tombstones) > 50
    assert any(e["body"] for e in expected.values() if e["deleted"])  # a tombstone with a body
    for doc_id in result["dataset"]["resurrected"]:
        assert not expected[doc_id]["deleted"] and len(expected[doc_id]["revisions"]["ids"]) >= 3

    state = server_state(server.url, db)
    assert_same_state(state, expected, "the pushed PouchDB")
    assert_all_docs(server.url, db, expected)
    assert_docs_by_url(server.url, db, expected, [*special, *tombstones])
    info = db_info(server.url, db)
    assert_counts(info, expected)
    assert info["db_name"] == db
    with client(server.url) as http:
        local_doc = http.get(f"/{db}/_local/not-replicated")
    assert local_doc.status_code == 404  # _local docs are never replicated


# ---------------------------------------------------------------------------
# b. pull


def test_pull_into_empty_db(couchpoint_real_server: RealServer) -> None:
    server, db = couchpoint_real_server, "pull-source"
    result = run_scenario(server, "pull", db)

    assert result["seeding"]["docs_written"] == DOCS
    expected: dict[str, Json] = result["expected"]  # the server, read through PouchDB
    pulled: dict[str, Json] = result["pulled"]  # the new local db
    edits = result["edits"]
    leaves = sum(len(e["leaves"]) for e in expected.values())

    replication = result["replication"]
    assert replication["status"] == "complete"
    assert replication["docs_written"] == leaves == result["leaves"]
    assert replication["docs_read"] == leaves
    assert replication["doc_write_failures"] == 0 and replication["errors"] == []
    assert result["docs"] == len(expected) == DOCS + len(edits["created"])
    assert pulled == expected

    # The server-side edits took the expected shape, on the server and in the pulled db.
    def shape(doc_id: str) -> tuple[int, int, bool]:
        e = pulled[doc_id]
        return len(e["leaves"]), len(e["conflicts"]), e["deleted"]

    for doc_id in edits["sibling"] + edits["longer"]:
        assert shape(doc_id) == (2, 1, False), doc_id
    for doc_id in edits["longer"]:
        assert pulled[doc_id]["body"] == {"conflict": "longer"}  # the longer branch wins
    for doc_id in edits["deleted_leaf"] + edits["revived"]:
        assert shape(doc_id) == (2, 0, False), doc_id
    for doc_id in edits["revived"]:
        assert pulled[doc_id]["body"] == {"conflict": "revived"}
    for doc_id in edits["put"]:
        assert pulled[doc_id]["body"]["edited_on_server"] is True
    for doc_id in edits["deleted"]:
        assert pulled[doc_id]["deleted"] is True
    assert pulled[edits["created"][0]]["body"] == {"made": "on the server"}
    conflicted = sorted(edits["sibling"] + edits["longer"] + edits["deleted_leaf"] + edits["revived"])
    assert sorted(result["conflicted"]) == conflicted

    state = server_state(server.url, db)
    assert_same_state(state, pulled, "the pulled PouchDB")
    assert_all_docs(server.url, db, pulled)
    assert_docs_by_url(
        server.url, db, pulled, conflicted + edits["put"] + edits["deleted"] + edits["created"]
    )
    assert result["local_info"]["doc_count"] == db_info(server.url, db)["doc_count"]


# ---------------------------------------------------------------------------
# c. two-way sync with conflicts


def test_two_way_sync_with_conflicts_converges(couchpoint_real_server: RealServer) -> None:
    server, db = couchpoint_real_server, "sync-shared"
    result = run_scenario(server, "sync", db)

    rounds = result["rounds"]
    assert rounds[-1]["written"] == 0 and len(rounds) <= 4
    first = rounds[0]
    assert first["A"]["push"]["docs_written"] > 0 and first["B"]["push"]["docs_written"] > 0
    revs = result["revs"]
    converged: dict[str, Json] = result["converged"]
    final: dict[str, Json] = result["final"]

    # Conflicts as created: A vs B, A vs server, A vs B vs server, edit vs delete, ...
    for doc_id in ("base-00", "été 😀", "_design/app", "with/slash", "100%25"):
        assert sorted([converged[doc_id]["rev"], *converged[doc_id]["conflicts"]], key=rev_key) == sorted(
            [revs["A"][doc_id], revs["B"][doc_id]], key=rev_key
        )
    assert converged["base-01"]["rev"] == revs["A"]["base-01"]
    assert converged["base-01"]["conflicts"] == [revs["B"]["base-01"]]
    assert converged["base-02"]["rev"] == revs["B"]["base-02"] and not converged["base-02"]["deleted"]
    assert converged["base-02"]["leaves"] == sorted([revs["A"]["base-02"], revs["B"]["base-02"]], key=rev_key)
    assert converged["base-03"]["deleted"] is True
    assert converged["base-03"]["leaves"] == sorted([revs["A"]["base-03"], revs["B"]["base-03"]], key=rev_key)
    assert sorted(converged["base-04"]["leaves"], key=rev_key) == sorted(
        [revs["A"]["base-04"], revs["server"]["base-04"]], key=rev_key
    )
    assert set(converged["base-05"]["leaves"]) == {revs[k]["base-05"] for k in ("A", "B", "server")}
    assert len(converged["base-05"]["conflicts"]) == 2
    assert (
        converged["base-06"]["deleted"] is True and converged["base-06"]["rev"] == revs["server"]["base-06"]
    )
    assert set(converged["same-new"]["leaves"]) == {revs["A"]["same-new"], revs["B"]["same-new"]}

    # After B resolved some conflicts, everyone agrees on the resolved state.
    for doc_id in result["resolved"]:
        assert final[doc_id]["conflicts"] == [] and final[doc_id]["rev"] == converged[doc_id]["rev"]
    assert final["base-04"]["conflicts"] == converged["base-04"]["conflicts"]

    state = server_state(server.url, db)
    assert_same_state(state, final, "clients A and B")
    assert_all_docs(server.url, db, final)
    assert_docs_by_url(server.url, db, final, sorted(final))
    assert_counts(db_info(server.url, db), final)


# ---------------------------------------------------------------------------
# d. live sync


def test_live_sync_between_two_clients(couchpoint_real_server: RealServer) -> None:
    server, db = couchpoint_real_server, "live-shared"
    result = run_scenario(server, "live", db)

    latency = result["latency_ms"]
    assert set(latency) == {
        "seed_a_to_b",
        "create_a_to_b",
        "update_b_to_a",
        "delete_a_to_b",
        "special_b_to_a",
        "burst_a_to_b",
        "server_to_a",
        "server_to_b",
    }
    assert all(0 <= ms < result["deadline_ms"] for ms in latency.values()), latency
    for name in ("A", "B"):
        log = result["logs"][name]
        assert log["errors"] == [] and log["denied"] == []
        assert log["completed"] == {"push": "cancelled", "pull": "cancelled"}, log
        assert log["events"]["change"] > 0
    assert result["drain_ms"] < 5000  # the long-polled _changes requests ended with the cancel

    final: dict[str, Json] = result["final"]
    assert final["live-1"]["deleted"] is True and result["live_1_status"] == 404
    assert final["from-server"]["body"] == {"text": "PUT on the server"}
    assert final["live/été 😀+%20 中"]["body"] == {"text": "special"}
    assert sum(1 for doc_id in final if doc_id.startswith("burst-")) == 200
    assert all(e["conflicts"] == [] for e in final.values())
    state = server_state(server.url, db)
    assert_same_state(state, final, "the live-synced clients")
    assert result["server_info"]["update_seq"] == result["server_info_before_cancel"]["update_seq"]


# ---------------------------------------------------------------------------
# e. replications of unchanged data


def test_repeated_replication_writes_nothing(couchpoint_real_server: RealServer) -> None:
    server, db = couchpoint_real_server, "noop-target"
    result = run_scenario(server, "noop", db)

    steps = result["steps"]
    assert steps["push_1"]["docs_written"] == DOCS
    assert steps["pull_1"]["docs_written"] == DOCS
    for name in ("push_2", "pull_2", "push_from_twin", "pull_into_source"):
        assert steps[name]["docs_written"] == 0, (name, steps[name])
    for name in ("sync_1_push", "sync_1_pull", "sync_2_push", "sync_2_pull"):
        assert steps[name]["docs_written"] == 0, (name, steps[name])
    # The same replication again starts from its checkpoint: nothing is even read.
    assert steps["push_2"]["docs_read"] == 0
    assert steps["pull_2"]["docs_read"] == 0
    # update_seq did not move after the first push (pull checkpoints are _local docs).
    seqs = result["seqs"]
    assert len({json.dumps(seq) for seq in seqs.values()}) == 1, seqs
    assert db_info(server.url, db)["update_seq"] == seqs["after_push_1"]
    assert result["pulled_docs"] == DOCS


# ---------------------------------------------------------------------------
# Extra: live sync across a server restart (crash, or SIGTERM with live clients attached)

GRACEFUL_STOP = 5.0  # seconds couchpoint may take to exit on SIGTERM


class SlowShutdown(AssertionError):
    """``couchpoint serve`` did not exit within :data:`GRACEFUL_STOP` s of SIGTERM."""


def _read_line(stream: Any, timeout: float) -> str:
    """One line from a child's stdout pipe, or "" if none arrived within ``timeout`` s."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    line: str = stream.readline()
    return line


@pytest.mark.parametrize(
    "stop",
    [
        "kill",
        "term",
    ],
)
def test_live_sync_survives_server_restart(tmp_path: Path, stop: str) -> None:
    from tests.realserver import ServerError, real_server  # not at import time: it is a plugin too

    node, db = node_executable(), "restart-shared"
    data_dir, log_path = tmp_path / "data", tmp_path / "server.log"
    stderr_path = tmp_path / "node-stderr.txt"
    try:
        with real_server(data_dir, log_path=log_path) as first, stderr_path.open("w") as stderr:
            command = [node, str(JS_DIR / "restart.js"), "--url", first.url, "--db", db]
            scenario = subprocess.Popen(
                command, cwd=JS_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True
            )
            try:
                line = _read_line(scenario.stdout, SCENARIO_TIMEOUT)
                assert line, (
                    f"restart.js never synced:\n{stderr_path.read_text()[-6000:]}\n{first.log_tail()}"
                )
                synced = json.loads(line)
                assert synced["phase"] == "synced"
                if stop == "kill":
                    first.kill()
                elif not first.terminate(GRACEFUL_STOP):
                    raise SlowShutdown(
                        f"couchpoint serve did not exit within {GRACEFUL_STOP:g} s of SIGTERM "
                        f"while PouchDB live syncs were connected\n{first.log_tail(15)}"
                    )
                with real_server(data_dir, log_path=log_path, port=first.port) as second:
                    assert second.welcome["uuid"] == first.welcome["uuid"]
                    assert db_info(second.url, db)["update_seq"] == synced["update_seq"]  # nothing lost
                    out, _ = scenario.communicate("restarted\n", timeout=SCENARIO_TIMEOUT)
                    result = json.loads(out.splitlines()[-1])
                    assert scenario.returncode == 0 and result["ok"] is True, (
                        f"restart.js failed: {result.get('error')}\n{pformat(result.get('details'))[:4000]}\n"
                        f"{stderr_path.read_text()[-6000:]}\n{second.log_tail()}"
                    )
                    state = server_state(second.url, db)
            finally:
                if scenario.poll() is None:
                    scenario.kill()
                    scenario.wait()
    except ServerError as exc:
        pytest.fail(str(exc), pytrace=False)

    final: dict[str, Json] = result["final"]
    assert_same_state(state, final, "the live-synced clients")
    assert {"after-restart", "server-after-restart", "last-before-stop"} <= final.keys()
    assert sum(1 for doc_id in final if doc_id.startswith("before-")) == 100
    assert 0 <= result["recovered_ms"] < 30000
    assert result["push_again"]["docs_written"] == 0 and result["push_again"]["docs_read"] == 0
