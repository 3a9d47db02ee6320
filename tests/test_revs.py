"""Laws for revision strings and ``_revisions`` (protocol reference §4.3, §4.4, §4.8).

Each test pins one rule; its docstring names the CouchDB rule it comes from
(``couch_doc:parse_rev/1``, ``couch_doc:transfer_fields/3``, ``couch_doc:to_path/1``).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from couchpoint.errors import BadRequest, CouchError
from couchpoint.revs import (
    format_rev,
    format_revisions,
    new_revid,
    normalize_revid,
    parse_rev,
    parse_revisions,
)

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def assert_invalid_rev(rev: object) -> None:
    with pytest.raises(BadRequest) as info:
        parse_rev(rev)
    assert info.value.status == 400
    assert info.value.to_json() == {"error": "bad_request", "reason": "Invalid rev format"}


def assert_doc_validation(revisions: object, reason: str) -> None:
    with pytest.raises(CouchError) as info:
        parse_revisions(revisions)
    assert info.value.status == 400
    assert info.value.to_json() == {"error": "doc_validation", "reason": reason}


# -- parse_rev / format_rev ----------------------------------------------------------------


def test_a_valid_rev_parses_into_pos_and_revid() -> None:
    """§4.3 revision strings: ``N-<revid>`` is ``(N, revid)``."""
    assert parse_rev("1-abc") == (1, "abc")
    assert parse_rev("42-967a00dff5e02add41819138abb3284d") == (42, "967a00dff5e02add41819138abb3284d")


def test_format_rev_is_the_inverse_of_parse_rev() -> None:
    """§4.3 revision strings: formatting a parsed rev gives the canonical string back."""
    for rev in ("1-abc", "3-967a00dff5e02add41819138abb3284d", "1000-x", "7-a-b"):
        assert format_rev(parse_rev(rev)) == rev
    assert format_rev((12, "zz")) == "12-zz"


def test_a_rev_without_a_dash_is_invalid() -> None:
    """§4.3 / couch_doc:parse_rev: no ``-`` → 400 "Invalid rev format"."""
    assert_invalid_rev("1abc")
    assert_invalid_rev("")


def test_a_rev_with_a_non_digit_pos_is_invalid() -> None:
    """§4.3 / couch_doc:parse_rev: ``N`` must be a decimal integer."""
    for rev in ("x-abc", "-abc", "1a-abc", " 1-abc", "1.0-abc", "١-abc", "²-abc"):
        assert_invalid_rev(rev)


def test_pos_zero_is_invalid_for_a_document_rev() -> None:
    """§4.3: ``0-N`` is reserved for ``_local`` docs (§8); a document rev starts at 1."""
    assert_invalid_rev("0-abc")
    assert_invalid_rev("00-abc")


def test_an_empty_revid_is_invalid() -> None:
    """§4.3: ``N-`` with nothing after the dash is not a revision."""
    assert_invalid_rev("1-")


def test_a_32_char_non_hex_revid_is_invalid() -> None:
    """§4.3: a 32-character revid is decoded as hex by CouchDB; non-hex → "Invalid rev format"."""
    assert_invalid_rev("1-" + "g" * 32)
    assert_invalid_rev("1-" + "0" * 31 + "-")


def test_a_32_char_uppercase_hex_revid_is_lower_cased() -> None:
    """§4.3: CouchDB decodes 32-hex revids to 16 bytes and re-emits them lower-case."""
    assert parse_rev("2-967A00DFF5E02ADD41819138ABB3284D") == (2, "967a00dff5e02add41819138abb3284d")
    assert normalize_revid("ABCDEF" + "0" * 26) == "abcdef" + "0" * 26


def test_revids_of_other_lengths_are_stored_verbatim() -> None:
    """§4.3: only 32-character revids are hex-decoded; others are opaque and kept as sent."""
    assert parse_rev("1-ABC") == (1, "ABC")
    assert parse_rev("1-" + "G" * 31) == (1, "G" * 31)
    assert parse_rev("1-" + "A" * 33) == (1, "A" * 33)


def test_the_rev_is_split_at_the_first_dash() -> None:
    """§4.3 / couch_doc:parse_rev: split at the **first** ``-``, so "1-a-b" is (1, "a-b")."""
    assert parse_rev("1-a-b") == (1, "a-b")
    assert parse_rev("12--") == (12, "-")


def test_a_non_string_rev_is_invalid() -> None:
    """§4.3 / couch_doc:parse_rev(_BadRev): anything but a string → "Invalid rev format"."""
    for rev in (None, 1, 1.5, ["1-a"], {"rev": "1-a"}, b"1-abc"):
        assert_invalid_rev(rev)


@settings(max_examples=500)
@given(
    pos=st.integers(min_value=1, max_value=10**6), revid=st.text("0123456789abcdef", min_size=32, max_size=32)
)
def test_every_generated_style_rev_round_trips(pos: int, revid: str) -> None:
    """§4.3: a ``pos-<32 lowercase hex>`` rev round-trips through parse_rev/format_rev."""
    assert parse_rev(format_rev((pos, revid))) == (pos, revid)


# -- parse_revisions -------------------------------------------------------------------------


def test_revisions_become_a_path_oldest_first() -> None:
    """§4.4 ``_revisions``: ``ids[k]`` is the ancestor at depth ``start - k``."""
    assert parse_revisions({"start": 3, "ids": ["c", "b", "a"]}) == [(1, "a"), (2, "b"), (3, "c")]


def test_revisions_may_be_shorter_than_start() -> None:
    """§4.4: ``_revisions`` may be stemmed; the first id is still at depth ``start``."""
    assert parse_revisions({"start": 1000, "ids": ["z", "y"]}) == [(999, "y"), (1000, "z")]


def test_revisions_ids_are_normalized_like_revs() -> None:
    """§4.3: 32-hex ids in ``_revisions`` are lower-cased like in ``_rev``."""
    upper = "967A00DFF5E02ADD41819138ABB3284D"
    assert parse_revisions({"start": 1, "ids": [upper]}) == [(1, upper.lower())]


def test_revisions_start_must_be_an_integer() -> None:
    """couch_doc:transfer_fields: ``start`` not an integer → doc_validation."""
    reason = "_revisions.start isn't an integer."
    for start in (None, "3", 3.0, True, [3]):
        assert_doc_validation({"start": start, "ids": ["a"]}, reason)
    assert_doc_validation({"ids": ["a"]}, reason)


def test_revisions_ids_must_be_an_array() -> None:
    """couch_doc:transfer_fields: ``ids`` not a list → "_revisions.ids isn't a array."."""
    reason = "_revisions.ids isn't a array."
    for ids in (None, "a", {"a": 1}, 3):
        assert_doc_validation({"start": 1, "ids": ids}, reason)
    assert_doc_validation({"start": 1}, reason)
    assert_doc_validation({"start": 1, "ids": []}, reason)


def test_revisions_ids_must_be_strings() -> None:
    """couch_doc:transfer_fields: a non-string id → "RevId isn't a string"."""
    assert_doc_validation({"start": 2, "ids": ["a", 1]}, "RevId isn't a string")
    assert_doc_validation({"start": 1, "ids": [None]}, "RevId isn't a string")


def test_revisions_32_char_ids_must_be_hex() -> None:
    """§4.3 / couch_doc:transfer_fields: a 32-char non-hex id → "RevId isn't a valid hexadecimal"."""
    assert_doc_validation({"start": 1, "ids": ["x" * 32]}, "RevId isn't a valid hexadecimal")


def test_revisions_start_smaller_than_ids_is_rejected() -> None:
    """§4.4: the oldest id would sit at depth ``start - len(ids) + 1 < 1``: doc_validation."""
    reason = "_revisions.start is too small for _revisions.ids."
    assert_doc_validation({"start": 2, "ids": ["c", "b", "a"]}, reason)
    assert_doc_validation({"start": 0, "ids": ["a"]}, reason)
    assert_doc_validation({"start": -1, "ids": ["a"]}, reason)


def test_revisions_that_is_not_an_object_is_a_bad_special_member() -> None:
    """couch_doc:transfer_fields: a non-object ``_revisions`` falls through to the
    unknown-special-field clause: doc_validation "Bad special document member: _revisions"."""
    for value in (None, [], "1-a", 3):
        assert_doc_validation(value, "Bad special document member: _revisions")


def test_format_revisions_is_the_inverse_of_parse_revisions() -> None:
    """§4.4 on output: ``{"start": pos of the rev, "ids": newest first}``."""
    revisions = {"start": 5, "ids": ["e", "d", "c"]}
    path = parse_revisions(revisions)
    assert format_revisions(list(reversed(path))) == revisions


@settings(max_examples=500)
@given(
    start=st.integers(min_value=1, max_value=5000),
    ids=st.lists(st.text("abcdef0123", min_size=1, max_size=6), min_size=1, max_size=20),
)
def test_parse_revisions_gives_a_consecutive_path_ending_at_start(start: int, ids: list[str]) -> None:
    """§4.4: the path has consecutive positions and its last element is at ``start``."""
    start = max(start, len(ids))
    path = parse_revisions({"start": start, "ids": ids})
    assert path[-1] == (start, ids[0])
    assert [pos for pos, _ in path] == list(range(start - len(ids) + 1, start + 1))
    assert format_revisions(list(reversed(path))) == {"start": start, "ids": ids}


# -- new_revid -------------------------------------------------------------------------------


def test_new_revid_is_32_lowercase_hex() -> None:
    """§4.3/§4.8: couchpoint generates exactly 32 lowercase hex characters."""
    assert HEX32.match(new_revid(None, {"a": 1}, False))
    assert HEX32.match(new_revid((3, "abc"), {}, True, ["md5-xyz"]))


def test_new_revid_is_deterministic_in_the_edit() -> None:
    """§4.8: the same edit of the same parent gives the same rev (retries do not fork)."""
    body = {"b": [1, 2], "a": {"y": 1, "x": 2}}
    same = {"a": {"x": 2, "y": 1}, "b": [1, 2]}  # key order does not matter
    assert new_revid((1, "p"), body, False) == new_revid((1, "p"), same, False)
    assert new_revid(None, body, False, ["md5-1"]) == new_revid(None, dict(body), False, ("md5-1",))


def test_new_revid_depends_on_parent_body_deleted_and_attachments() -> None:
    """§4.8: the hash covers deleted flag, parent rev, body and attachment digests."""
    base = new_revid((1, "p"), {"a": 1}, False)
    variants = [
        new_revid(None, {"a": 1}, False),
        new_revid((1, "q"), {"a": 1}, False),
        new_revid((2, "p"), {"a": 1}, False),
        new_revid((1, "p"), {"a": 2}, False),
        new_revid((1, "p"), {"a": 1}, True),
        new_revid((1, "p"), {"a": 1}, False, ["md5-x"]),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


def test_new_revid_is_a_valid_rev() -> None:
    """§4.3: a generated revid parses back unchanged."""
    revid = new_revid((7, "p"), {"x": "é"}, False)
    assert parse_rev(format_rev((8, revid))) == (8, revid)
