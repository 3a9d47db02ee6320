"""Tests for couchpoint.mango: CouchDB 3.x Mango selector semantics.

Quoted passages come from the CouchDB documentation, *Mango Queries* (``ddocs/mango.rst``)
and *Views Collation*; behaviour the docs leave open follows ``mango_selector.erl``.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from couchpoint.errors import BadRequest
from couchpoint.mango import Selector, SelectorError, collate


def match(selector: dict[str, Any], doc: Any) -> bool:
    return Selector.compile(selector).matches(doc)


def norm(selector: dict[str, Any]) -> dict[str, Any]:
    return Selector.compile(selector).normalized


# ---------------------------------------------------------------------------------------
# Selector basics and implicit operators
# ---------------------------------------------------------------------------------------


def test_selector_basics_director() -> None:
    """*Selector Basics*: "This selector matches all documents whose "director" field has
    the value "Lars von Trier"."""
    sel = {"director": "Lars von Trier"}
    assert match(sel, {"_id": "1", "director": "Lars von Trier"})
    assert not match(sel, {"_id": "2", "director": "Lars"})
    assert not match(sel, {"_id": "3"})


def test_selector_with_two_fields() -> None:
    """*Selector with 2 fields*: "matches any document with a name field containing "Paul",
    and that also has a location field with the value "Boston"."""
    sel = {"name": "Paul", "location": "Boston"}
    assert match(sel, {"name": "Paul", "location": "Boston", "x": 1})
    assert not match(sel, {"name": "Paul", "location": "Paris"})
    assert not match(sel, {"name": "Paul"})


def test_subfields_nested_object_and_dot_notation_are_equivalent() -> None:
    """*Subfields*: ``{"imdb": {"rating": 8}}`` -- "An abbreviated equivalent uses a dot
    notation": ``{"imdb.rating": 8}``."""
    nested = Selector.compile({"imdb": {"rating": 8}})
    dotted = Selector.compile({"imdb.rating": 8})
    explicit = Selector.compile({"imdb": {"rating": {"$eq": 8}}})
    assert nested.normalized == dotted.normalized == explicit.normalized == {"imdb.rating": {"$eq": 8}}
    for doc, expected in [
        ({"imdb": {"rating": 8}}, True),
        ({"imdb": {"rating": 8.0, "votes": 3}}, True),
        ({"imdb": {"rating": 7}}, False),
        ({"imdb": 8}, False),
        ({"imdb.rating": 8}, False),
        ({}, False),
    ]:
        assert nested.matches(doc) is expected
        assert dotted.matches(doc) is expected
        assert explicit.matches(doc) is expected


def test_implicit_and_explicit_and_eq() -> None:
    """*Implicit Operators*: "the field "director" must be present and contain the value
    "Lars von Trier" and the field "year" must exist and have the value 2003" -- and "You
    can make both the $and operator and the equality operator explicit"."""
    implicit = {"director": "Lars von Trier", "year": 2003}
    explicit = {"$and": [{"director": {"$eq": "Lars von Trier"}}, {"year": {"$eq": 2003}}]}
    docs = [
        {"director": "Lars von Trier", "year": 2003},
        {"director": "Lars von Trier", "year": 2004},
        {"director": "Lars von Trier"},
        {"year": 2003},
    ]
    assert [match(implicit, d) for d in docs] == [True, False, False, False]
    assert [match(explicit, d) for d in docs] == [True, False, False, False]
    assert norm(implicit) == explicit


def test_implicit_gt() -> None:
    """*Implicit Operators*: "match any document, where the "year" field has a value
    greater than 2010": ``{"year": {"$gt": 2010}}``."""
    sel = {"year": {"$gt": 2010}}
    assert match(sel, {"year": 2011})
    assert match(sel, {"year": 2010.5})
    assert not match(sel, {"year": 2010})
    assert not match(sel, {"year": 1999})


def test_empty_selector_matches_everything() -> None:
    sel = Selector.compile({})
    assert sel.normalized == {}
    assert sel.matches({})
    assert sel.matches({"_id": "x", "a": [1]})


def test_plain_object_value_means_subfield_equality() -> None:
    """An object without operators is an implicit ``$and`` of sub-field equalities
    (``norm_fields``: ``{foo: {bar: {$gt: 10}}}`` -> ``{"foo.bar": {$gt: 10}}``)."""
    assert norm({"foo": {"bar": {"$gt": 10}}}) == {"foo.bar": {"$gt": 10}}
    sel = {"a": {"b": 1, "c": 2}}
    assert norm(sel) == {"$and": [{"a.b": {"$eq": 1}}, {"a.c": {"$eq": 2}}]}
    assert match(sel, {"a": {"b": 1, "c": 2, "d": 3}})  # not whole-object equality
    assert not match(sel, {"a": {"b": 1}})
    # To compare a whole object, use $eq explicitly.
    assert not match({"a": {"$eq": {"b": 1}}}, {"a": {"b": 1, "c": 2}})
    assert match({"a": {"$eq": {"b": 1}}}, {"a": {"b": 1}})


def test_empty_object_value_is_equality_with_empty_object() -> None:
    assert match({"a": {}}, {"a": {}})
    assert not match({"a": {}}, {"a": {"b": 1}})
    assert not match({"a": {}}, {})


def test_operators_and_subfields_can_be_mixed() -> None:
    sel = {"a": {"$exists": True, "b": 1}}
    assert norm(sel) == {"$and": [{"a": {"$exists": True}}, {"a.b": {"$eq": 1}}]}
    assert match(sel, {"a": {"b": 1}})
    assert not match(sel, {"a": {"b": 2}})


def test_multiple_operators_on_one_field_are_anded() -> None:
    """*The $not operator* example uses ``{"year": {"$gte": 1900, "$lte": 1903}}``."""
    sel = {"year": {"$gte": 1900, "$lte": 1903}}
    assert [match(sel, {"year": y}) for y in (1899, 1900, 1903, 1904)] == [False, True, True, False]


def test_normalization_examples_from_mango_selector() -> None:
    """The worked examples in mango_selector.erl's comments."""
    assert norm({"foo": {"$and": [{"$gt": 5}, {"$lt": 10}]}}) == {
        "$and": [{"foo": {"$gt": 5}}, {"foo": {"$lt": 10}}]
    }
    assert norm({"$not": {"foo": {"$gt": 10}}}) == {"foo": {"$lte": 10}}
    assert norm({"$not": {"$and": [{"foo": {"$gt": 10}}, {"foo": {"$lt": 5}}]}}) == {
        "$or": [{"foo": {"$lte": 10}}, {"foo": {"$gte": 5}}]
    }
    assert norm({"$nor": [{"a": 1}, {"b": {"$in": [1]}}]}) == {
        "$and": [{"a": {"$ne": 1}}, {"b": {"$nin": [1]}}]
    }
    assert norm({"$not": {"$not": {"a": 1}}}) == {"a": {"$eq": 1}}
    assert norm({"$not": {"a": {"$regex": "x"}}}) == {"a": {"$not": {"$regex": "x"}}}
    assert norm({"$not": {"a": {"$exists": True}}}) == {"a": {"$exists": False}}


# ---------------------------------------------------------------------------------------
# Field paths
# ---------------------------------------------------------------------------------------


def test_dotted_path_three_levels() -> None:
    sel = {"a.b.c": 1}
    assert match(sel, {"a": {"b": {"c": 1}}})
    assert not match(sel, {"a": {"b": {"c": 2}}})
    assert not match(sel, {"a": {"b": 1}})


def test_escaped_dot_addresses_a_key_containing_a_dot() -> None:
    sel = {"a\\.b": 1}
    assert match(sel, {"a.b": 1})
    assert not match(sel, {"a": {"b": 1}})
    assert match({"x.a\\.b": 1}, {"x": {"a.b": 1}})
    assert match({"x": {"a\\.b": 1}}, {"x": {"a.b": 1}})


def test_nested_member_names_with_dots_are_paths() -> None:
    """norm_fields joins names with ".", so a dot inside a nested member name splits."""
    assert match({"a": {"b.c": 1}}, {"a": {"b": {"c": 1}}})
    assert not match({"a": {"b.c": 1}}, {"a": {"b.c": 1}})


def test_escaped_dollar_field_name() -> None:
    """*Selectors* warning: "Field names starting with $ cannot be queried ("Invalid
    operator: $")" -- unless escaped with a backslash."""
    assert match({"\\$foo": 1}, {"$foo": 1})
    assert not match({"\\$foo": 1}, {"foo": 1})
    with pytest.raises(SelectorError, match=r"^Invalid operator: \$foo$"):
        Selector.compile({"$foo": 1})


def test_numeric_path_segment_indexes_arrays() -> None:
    assert match({"tags.0": "a"}, {"tags": ["a", "b"]})
    assert match({"tags.1": "b"}, {"tags": ["a", "b"]})
    assert not match({"tags.0": "b"}, {"tags": ["a", "b"]})
    assert match({"rows.1.v": 2}, {"rows": [{"v": 1}, {"v": 2}]})
    assert match({"m.0": 1}, {"m": {"0": 1}})  # on an object it is just a key


def test_bad_path_fails_every_condition_including_exists_false() -> None:
    """mango_doc:get_field returns bad_path for an out-of-range index, a non-numeric
    segment on an array or any segment below a scalar; the match then fails."""
    for doc in ({"a": "str"}, {"a": [1]}, {"a": 5}):
        assert not match({"a.b": {"$exists": False}}, doc)
        assert not match({"a.b": {"$exists": True}}, doc)
        assert not match({"a.b": {"$ne": 1}}, doc)
    assert not match({"a.5": {"$exists": False}}, {"a": [1, 2]})
    assert not match({"a.-1": 2}, {"a": [1, 2]})
    # Missing (not bad): $exists false matches.
    assert match({"a.b": {"$exists": False}}, {"a": {}})
    assert match({"a.b": {"$exists": False}}, {})


def test_array_index_syntax_follows_erlang_list_to_integer() -> None:
    assert match({"a.+1": 2}, {"a": [1, 2]})
    assert match({"a.-0": 1}, {"a": [1, 2]})
    assert not match({"a. 1": 2}, {"a": [1, 2]})
    assert not match({"a.1_0": 2}, {"a": list(range(12))})


def test_field_value_null_exists() -> None:
    assert match({"a": None}, {"a": None})
    assert not match({"a": None}, {})
    assert match({"a": {"$exists": True}}, {"a": None})


def test_empty_name_inside_combinator_is_the_value_itself() -> None:
    """CouchDB only rejects an empty field name at the top level; below it "" means the
    current value, which is what ``$elemMatch: {"$gt": 1}`` relies on."""
    assert norm({"a": {"$elemMatch": {"$gt": 1}}}) == {"a": {"$elemMatch": {"": {"$gt": 1}}}}
    assert match({"$and": [{"$type": "object"}]}, {"a": 1})
    assert match({"": {"a": 1}}, {"a": 1})  # "" + "a" -> "a"


def test_nested_empty_selector_is_equality_with_empty_object() -> None:
    """norm_ops turns a nested ``{}`` into ``{"$eq": {}}``: ``{"$or": [{}]}`` matches only
    the empty document (CouchDB quirk, kept)."""
    assert norm({"$or": [{}]}) == {"$or": [{"": {"$eq": {}}}]}
    assert not match({"$or": [{}]}, {"_id": "a"})
    assert match({"$or": [{}]}, {})


# ---------------------------------------------------------------------------------------
# Condition operators: (in)equality and collation
# ---------------------------------------------------------------------------------------


def test_eq_numbers_compare_numerically_booleans_are_not_numbers() -> None:
    assert match({"a": 1}, {"a": 1.0})
    assert match({"a": 1.0}, {"a": 1})
    assert not match({"a": 1}, {"a": True})
    assert not match({"a": True}, {"a": 1})
    assert not match({"a": 0}, {"a": False})
    assert not match({"a": None}, {"a": False})
    assert not match({"a": "1"}, {"a": 1})


def test_eq_on_arrays_is_whole_value_equality_not_containment() -> None:
    """Unlike MongoDB, ``{"tags": "a"}`` does not match ``["a", "b"]`` in Mango."""
    assert not match({"tags": "a"}, {"tags": ["a", "b"]})
    assert match({"tags": ["a", "b"]}, {"tags": ["a", "b"]})
    assert match({"tags": [1, [2]]}, {"tags": [1.0, [2.0]]})
    assert not match({"tags": ["a", "b"]}, {"tags": ["b", "a"]})
    assert not match({"tags": [True]}, {"tags": [1]})


def test_eq_on_objects_respects_member_order() -> None:
    """*Views Collation*: "Member order does matter for collation" -- mango compares with
    couch_ejson_compare, so ``{"a":1,"b":2}`` and ``{"b":2,"a":1}`` differ."""
    assert match({"o": {"$eq": {"a": 1, "b": 2}}}, {"o": {"a": 1, "b": 2.0}})
    assert not match({"o": {"$eq": {"a": 1, "b": 2}}}, {"o": {"b": 2, "a": 1}})


def test_ne_requires_the_field_to_exist() -> None:
    """*Condition Operators*: "the field **must exist** in the document for the selector to
    match. As an example, $ne means the specified field must exist, and is not equal to
    the value of the argument." """
    sel = {"status": {"$ne": "archived"}}
    assert match(sel, {"status": "active"})
    assert match(sel, {"status": None})
    assert match(sel, {"status": ["archived"]})
    assert not match(sel, {"status": "archived"})
    assert not match(sel, {"type": "user"})


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        ("$lt", [True, True, False, False, False]),
        ("$lte", [True, True, True, True, False]),
        ("$gt", [False, False, False, False, True]),
        ("$gte", [False, False, True, True, True]),
    ],
)
def test_range_operators_on_numbers(op: str, expected: list[bool]) -> None:
    """*Condition Operators*: "$lt: The field is less than the argument" etc."""
    values = [-1, 4.5, 5, 5.0, 6]
    assert [match({"n": {op: 5}}, {"n": v}) for v in values] == expected


def test_range_operators_on_strings_use_code_point_order() -> None:
    """Approximation of ICU collation (documented in couchpoint.mango): code point order."""
    assert match({"s": {"$gt": "a"}}, {"s": "b"})
    assert match({"s": {"$gt": "a"}}, {"s": "ab"})
    assert not match({"s": {"$gt": "a"}}, {"s": "a"})
    assert match({"s": {"$lt": "a"}}, {"s": "B"})  # ICU would say "B" > "a"
    assert match({"s": {"$gte": "é"}}, {"s": "é"})


def test_range_operators_compare_across_types_by_collation() -> None:
    """*Views Collation*: null < false < true < numbers < strings < arrays < objects; mango
    compares with this collation, so a numeric range also admits strings, arrays and
    objects."""
    gt5 = Selector.compile({"a": {"$gt": 5}})
    assert [gt5.matches({"a": v}) for v in (None, False, True, 4, 6, "abc", [], {})] == [
        False,
        False,
        False,
        False,
        True,
        True,
        True,
        True,
    ]
    lt_a = Selector.compile({"a": {"$lt": "a"}})
    assert [lt_a.matches({"a": v}) for v in (None, True, 10**9, "", "b", [], {})] == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    assert match({"a": {"$gt": None}}, {"a": False})
    assert not match({"a": {"$gt": None}}, {"a": None})
    assert match({"a": {"$lt": True}}, {"a": False})
    assert match({"a": {"$gte": []}}, {"a": [0]})
    assert match({"a": {"$lt": {}}}, {"a": [1, 2, 3]})


def test_range_operators_on_arrays_and_objects() -> None:
    assert match({"a": {"$gt": [1, 2]}}, {"a": [1, 3]})
    assert match({"a": {"$gt": [1, 2]}}, {"a": [1, 2, 0]})
    assert not match({"a": {"$gt": [1, 2]}}, {"a": [1]})
    assert match({"a": {"$lt": [1, 2]}}, {"a": [0, 9, 9]})
    assert match({"o": {"$gt": {"a": 1}}}, {"o": {"a": 2}})
    assert match({"o": {"$gt": {"a": 1}}}, {"o": {"b": 0}})
    assert match({"o": {"$gt": {"a": 1}}}, {"o": {"a": 1, "b": 0}})
    assert not match({"o": {"$gt": {"a": 1}}}, {"o": {}})


def test_range_operators_never_match_missing_fields() -> None:
    for op in ("$lt", "$lte", "$gt", "$gte", "$eq", "$ne"):
        assert not match({"a": {op: 5}}, {"b": 5})


def test_id_uses_raw_erlang_term_order() -> None:
    """*The $and operator* (primary index example): ``{"_id": {"$gt": null}}`` matches
    every document.  mango compares ``_id`` with mango_json:cmp_raw (Erlang term order:
    numbers < atoms < tuples (objects) < lists (arrays) < binaries (strings))."""
    assert match({"_id": {"$gt": None}}, {"_id": "anything"})
    assert match({"_id": {"$gt": 0}}, {"_id": ""})
    assert match({"_id": {"$gt": {}}}, {"_id": "a"})  # view collation: "a" < {}
    assert not match({"_id": {"$lt": {}}}, {"_id": "a"})
    assert not match({"_id": {"$lt": []}}, {"_id": "a"})
    assert match({"other": {"$lt": {}}}, {"other": "a"})  # collation elsewhere
    assert match({"_id": {"$gte": "b", "$lt": "c"}}, {"_id": "bob"})
    assert match({"_id": {"$lt": "a"}}, {"_id": "B"})
    assert match({"_id": "x"}, {"_id": "x"})


def test_docs_and_example_with_id_and_in() -> None:
    """*The $and operator*: ``{"$and": [{"_id": {"$gt": null}}, {"year": {"$in": [2014,
    2015]}}]}``."""
    sel = {"$and": [{"_id": {"$gt": None}}, {"year": {"$in": [2014, 2015]}}]}
    assert match(sel, {"_id": "a", "year": 2015})
    assert not match(sel, {"_id": "a", "year": 2016})
    assert not match(sel, {"year": 2015})


# ---------------------------------------------------------------------------------------
# $exists, $type
# ---------------------------------------------------------------------------------------


def test_exists() -> None:
    """*Condition Operators*: "$exists: Check whether the field exists or not, regardless
    of its value." """
    assert match({"a": {"$exists": True}}, {"a": False})
    assert not match({"a": {"$exists": True}}, {"b": 1})
    assert match({"a": {"$exists": False}}, {"b": 1})
    assert not match({"a": {"$exists": False}}, {"a": None})
    assert match({"a.b": {"$exists": True}}, {"a": {"b": 0}})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("null", None),
        ("boolean", True),
        ("boolean", False),
        ("number", 0),
        ("number", -2.5),
        ("string", ""),
        ("array", []),
        ("object", {}),
    ],
)
def test_type_matches(name: str, value: Any) -> None:
    """*Condition Operators*: "$type: Valid values are "null", "boolean", "number",
    "string", "array", and "object"."""
    assert match({"a": {"$type": name}}, {"a": value})
    others = {"null", "boolean", "number", "string", "array", "object"} - {name}
    assert not any(match({"a": {"$type": o}}, {"a": value}) for o in others)


def test_type_unknown_name_is_accepted_and_never_matches() -> None:
    sel = Selector.compile({"a": {"$type": "integer"}})
    assert not sel.matches({"a": 1})
    assert not match({"a": {"$type": "null"}}, {})


# ---------------------------------------------------------------------------------------
# $in, $nin, $size, $all
# ---------------------------------------------------------------------------------------


def test_in() -> None:
    """*Condition Operators*: "$in: The document field must exist in the list provided."
    Docs example: ``{"year": {"$in": [1984, 1991]}}``."""
    sel = {"year": {"$in": [1984, 1991]}}
    assert match(sel, {"year": 1984})
    assert match(sel, {"year": 1991.0})
    assert not match(sel, {"year": 1985})
    assert not match(sel, {"title": "Total Recall"})
    assert match({"a": {"$in": [None, "x"]}}, {"a": None})
    assert not match({"a": {"$in": [1]}}, {"a": True})
    assert match({"a": {"$in": [{"k": [1]}]}}, {"a": {"k": [1.0]}})
    assert not match({"a": {"$in": []}}, {"a": 1})


def test_in_on_array_values_matches_any_element() -> None:
    """mango_selector: for an array field, $in holds when any element equals an argument
    (the array itself is not compared)."""
    assert match({"tags": {"$in": ["b", "z"]}}, {"tags": ["a", "b"]})
    assert not match({"tags": {"$in": ["z"]}}, {"tags": ["a", "b"]})
    assert not match({"tags": {"$in": [["a", "b"]]}}, {"tags": ["a", "b"]})
    assert not match({"tags": {"$in": ["a"]}}, {"tags": []})


def test_nin() -> None:
    """*Condition Operators*: "$nin: The document field not must exist in the list
    provided." """
    sel = {"a": {"$nin": [1, 2]}}
    assert match(sel, {"a": 3})
    assert match(sel, {"a": "1"})
    assert not match(sel, {"a": 2.0})
    assert not match(sel, {"b": 3})  # field must exist
    assert match({"a": {"$nin": []}}, {"a": 1})
    assert match({"tags": {"$nin": ["z"]}}, {"tags": ["a", "b"]})
    assert not match({"tags": {"$nin": ["b"]}}, {"tags": ["a", "b"]})
    assert match({"tags": {"$nin": ["b"]}}, {"tags": []})


def test_size() -> None:
    """*Condition Operators*: "$size: Special condition to match the length of an array
    field in a document. Non-array fields cannot match this condition." """
    assert match({"a": {"$size": 2}}, {"a": [1, [2, 3]]})
    assert match({"a": {"$size": 0}}, {"a": []})
    assert not match({"a": {"$size": 2}}, {"a": [1]})
    assert not match({"a": {"$size": 2}}, {"a": "ab"})
    assert not match({"a": {"$size": 1}}, {"a": {"k": 1}})
    assert not match({"a": {"$size": 0}}, {})


def test_all_docs_example() -> None:
    """*The $all operator*: "matches an array value if it contains all the elements of the
    argument array": ``{"_id": {"$gt": null}, "genre": {"$all": ["Comedy","Short"]}}``."""
    sel = {"_id": {"$gt": None}, "genre": {"$all": ["Comedy", "Short"]}}
    assert match(sel, {"_id": "m1", "genre": ["Short", "Drama", "Comedy"]})
    assert not match(sel, {"_id": "m2", "genre": ["Comedy"]})
    assert not match(sel, {"_id": "m3", "genre": "Comedy Short"})
    assert not match(sel, {"_id": "m4"})


def test_all_edge_cases() -> None:
    assert not match({"a": {"$all": []}}, {"a": [1]})
    assert not match({"a": {"$all": []}}, {"a": []})
    assert match({"a": {"$all": [[1, 2]]}}, {"a": [1, 2]})  # single list arg: whole value
    assert match({"a": {"$all": [[1, 2]]}}, {"a": [[1, 2], 3]})
    assert match({"a": {"$all": [1, 1]}}, {"a": [1.0]})
    assert not match({"a": {"$all": [1]}}, {"a": 1})


# ---------------------------------------------------------------------------------------
# $mod, $regex, $beginsWith
# ---------------------------------------------------------------------------------------


def test_mod() -> None:
    """*Condition Operators*: "$mod: Divisor is a non-zero integer, Remainder is any
    integer. ... Matches documents where field % Divisor == Remainder is true, and only
    when the document field is an integer." """
    sel = {"n": {"$mod": [4, 1]}}
    assert match(sel, {"n": 9})
    assert not match(sel, {"n": 8})
    assert not match(sel, {"n": 9.0})
    assert not match(sel, {"n": "9"})
    assert not match(sel, {"n": True})
    assert match({"n": {"$mod": [2, 1]}}, {"n": 2**70 + 1})


def test_mod_uses_erlang_rem_sign_of_dividend() -> None:
    assert match({"n": {"$mod": [3, -2]}}, {"n": -5})
    assert not match({"n": {"$mod": [3, 1]}}, {"n": -5})
    assert match({"n": {"$mod": [-3, 2]}}, {"n": 5})
    assert match({"n": {"$mod": [3, 0]}}, {"n": -6})


def test_regex() -> None:
    """*Condition Operators*: "$regex: ... Only matches when the field is a string value and
    matches the supplied regular expression." Docs example ``{"afieldname": {"$regex":
    "^A"}}``."""
    sel = {"afieldname": {"$regex": "^A"}}
    assert match(sel, {"afieldname": "Apple"})
    assert not match(sel, {"afieldname": "apple"})
    assert not match(sel, {"afieldname": ["Apple"]})
    assert not match(sel, {"other": "Apple"})
    assert match({"s": {"$regex": "pl"}}, {"s": "Apple"})  # unanchored, like re:run
    assert match({"s": {"$regex": "(?i)^a"}}, {"s": "Apple"})
    assert not match({"s": {"$regex": "^\\d+$"}}, {"s": 123})


def test_begins_with() -> None:
    """*Condition Operators*: "$beginsWith: Matches where the document field begins with
    the specified prefix (case-sensitive). If the document field contains a non-string
    value, the document is not matched." """
    sel = {"name": {"$beginsWith": "Ja"}}
    assert match(sel, {"name": "Jane"})
    assert not match(sel, {"name": "jane"})
    assert not match(sel, {"name": ["Jane"]})
    assert not match(sel, {})
    assert match({"name": {"$beginsWith": ""}}, {"name": ""})


# ---------------------------------------------------------------------------------------
# Combination operators
# ---------------------------------------------------------------------------------------


def test_or_docs_example() -> None:
    """*The $or operator*: ``{"year": 1977, "$or": [{"director": "George Lucas"},
    {"director": "Steven Spielberg"}]}``."""
    sel = {"year": 1977, "$or": [{"director": "George Lucas"}, {"director": "Steven Spielberg"}]}
    assert match(sel, {"year": 1977, "director": "George Lucas"})
    assert match(sel, {"year": 1977, "director": "Steven Spielberg"})
    assert not match(sel, {"year": 1977, "director": "Ridley Scott"})
    assert not match(sel, {"year": 1978, "director": "George Lucas"})


def test_not_docs_example() -> None:
    """*The $not operator*: ``{"year": {"$gte": 1900, "$lte": 1903}, "$not": {"year":
    1901}}``."""
    sel = {"year": {"$gte": 1900, "$lte": 1903}, "$not": {"year": 1901}}
    assert [match(sel, {"year": y}) for y in (1900, 1901, 1902, 1903, 1904)] == [
        True,
        False,
        True,
        True,
        False,
    ]


def test_nor_docs_example() -> None:
    """*The $nor operator*: ``{"year": {"$gte": 1900, "$lte": 1910}, "$nor": [{"year":
    1901}, {"year": 1905}, {"year": 1907}]}``."""
    sel = {"year": {"$gte": 1900, "$lte": 1910}, "$nor": [{"year": 1901}, {"year": 1905}, {"year": 1907}]}
    matching = [y for y in range(1898, 1913) if match(sel, {"year": y})]
    assert matching == [1900, 1902, 1903, 1904, 1906, 1908, 1909, 1910]


def test_not_and_nor_never_match_a_missing_field() -> None:
    """Negations are pushed down to the conditions (``{"$not": {"a": 1}}`` is ``{"a":
    {"$ne": 1}}``), and a condition on a missing field fails."""
    assert not match({"$not": {"a": 1}}, {"b": 1})
    assert not match({"$nor": [{"a": 1}]}, {"b": 1})
    assert not match({"$not": {"a": {"$regex": "x"}}}, {"b": 1})
    assert match({"$not": {"a": {"$regex": "x"}}}, {"a": "y"})
    assert not match({"$not": {"a": {"$regex": "x"}}}, {"a": "xy"})
    assert match({"$not": {"a": {"$exists": True}}}, {"b": 1})
    assert not match({"$not": {"a": {"$exists": False}}}, {"b": 1})
    # De Morgan with one field missing: the other branch decides.
    sel = {"$not": {"$and": [{"a": 1}, {"b": 2}]}}
    assert match(sel, {"b": 3})
    assert not match(sel, {"b": 2})
    assert not match(sel, {})


def test_not_on_field_conditions() -> None:
    assert match({"a": {"$not": {"$gt": 5}}}, {"a": 5})
    assert not match({"a": {"$not": {"$gt": 5}}}, {"a": 6})
    assert not match({"a": {"$not": {"$gt": 5}}}, {})
    assert match({"a": {"$not": {"$size": 1}}}, {"a": [1, 2]})
    assert match({"a": {"$not": {"$in": [1, 2]}}}, {"a": 3})


def test_empty_combinators() -> None:
    """mango_selector: "We need to treat an empty array as always true" ($and, $or)."""
    assert match({"$and": []}, {"a": 1})
    assert match({"$or": []}, {"a": 1})
    assert match({"$nor": []}, {"a": 1})
    assert match({"a": 1, "$or": []}, {"a": 1})


def test_combinators_nest_and_carry_field_paths() -> None:
    sel = {"a": {"$or": [{"b": 1}, {"$gt": 10}]}}
    assert norm(sel) == {"$or": [{"a.b": {"$eq": 1}}, {"a": {"$gt": 10}}]}
    assert match(sel, {"a": {"b": 1}})
    assert match(sel, {"a": 11})
    assert not match(sel, {"a": 5})
    deep = {"$or": [{"$and": [{"x": 1}, {"y": {"$lt": 0}}]}, {"$nor": [{"z": {"$exists": False}}]}]}
    assert match(deep, {"x": 1, "y": -1})
    assert match(deep, {"z": None})
    assert not match(deep, {"x": 1, "y": 1})


# ---------------------------------------------------------------------------------------
# $elemMatch, $allMatch, $keyMapMatch
# ---------------------------------------------------------------------------------------


def test_elem_match_docs_example() -> None:
    """*The $elemMatch operator*: "matches and returns all documents that contain an array
    field with at least one element matching the supplied query criteria":
    ``{"_id": {"$gt": null}, "genre": {"$elemMatch": {"$eq": "Horror"}}}``."""
    sel = {"_id": {"$gt": None}, "genre": {"$elemMatch": {"$eq": "Horror"}}}
    assert match(sel, {"_id": "a", "genre": ["Comedy", "Horror"]})
    assert not match(sel, {"_id": "b", "genre": ["Comedy"]})
    assert not match(sel, {"_id": "c", "genre": []})
    assert not match(sel, {"_id": "d", "genre": "Horror"})
    assert not match(sel, {"_id": "e"})


def test_elem_match_conditions_hold_for_the_same_element() -> None:
    """mango_selector's example ``{"field_name": {"$elemMatch": {"$gte": 80, "$lt":
    85}}}``."""
    sel = {"results": {"$elemMatch": {"$gte": 80, "$lt": 85}}}
    assert match(sel, {"results": [70, 82, 90]})
    assert not match(sel, {"results": [79, 90]})


def test_elem_match_on_objects() -> None:
    sel = {"items": {"$elemMatch": {"name": "x", "qty": {"$gt": 2}}}}
    assert match(sel, {"items": [{"name": "y", "qty": 5}, {"name": "x", "qty": 3}]})
    assert not match(sel, {"items": [{"name": "y", "qty": 5}, {"name": "x", "qty": 1}]})
    assert not match(sel, {"items": [1, "x", None]})
    nested = {"m": {"$elemMatch": {"$elemMatch": {"$eq": 1}}}}
    assert match(nested, {"m": [[0], [2, 1]]})
    assert not match(nested, {"m": [[0], 1]})


def test_negation_inside_elem_match_is_plain_not() -> None:
    """CouchDB does not negation-normalise sub-selectors of $elemMatch, so there ``$not``
    is a plain logical not: it matches elements without the field."""
    sel = {"a": {"$elemMatch": {"$not": {"b": 1}}}}
    assert match(sel, {"a": [{"c": 2}]})
    assert match(sel, {"a": [{"b": 1}, {"b": 2}]})
    assert not match(sel, {"a": [{"b": 1}]})
    nor = {"a": {"$elemMatch": {"$nor": [{"b": 1}, {"b": 2}]}}}
    assert match(nor, {"a": [{"b": 1}, {"b": 3}]})
    assert not match(nor, {"a": [{"b": 1}, {"b": 2}]})


def test_not_elem_match() -> None:
    sel = {"$not": {"a": {"$elemMatch": {"$eq": 1}}}}
    assert norm(sel) == {"a": {"$not": {"$elemMatch": {"": {"$eq": 1}}}}}
    assert match(sel, {"a": [2, 3]})
    assert match(sel, {"a": "not an array"})
    assert not match(sel, {"a": [1]})
    assert not match(sel, {})


def test_all_match_docs_example() -> None:
    """*The $allMatch operator*: "matches and returns all documents that contain an array
    field with all its elements matching the supplied query criteria"."""
    sel = {"_id": {"$gt": None}, "genre": {"$allMatch": {"$eq": "Horror"}}}
    assert match(sel, {"_id": "a", "genre": ["Horror", "Horror"]})
    assert not match(sel, {"_id": "b", "genre": ["Horror", "Comedy"]})
    assert not match(sel, {"_id": "c", "genre": []})  # mango: empty array is false
    assert not match(sel, {"_id": "d", "genre": "Horror"})


def test_all_match_on_objects() -> None:
    sel = {"items": {"$allMatch": {"qty": {"$gt": 0}}}}
    assert match(sel, {"items": [{"qty": 1}, {"qty": 2}]})
    assert not match(sel, {"items": [{"qty": 1}, {"other": 2}]})


def test_key_map_match_docs_example() -> None:
    """*The $keyMapMatch operator*: "matches and returns all documents that contain a map
    that contains at least one key that matches all the specified query criteria":
    ``{"_id": {"$gt": null}, "cameras": {"$keyMapMatch": {"$eq": "secondary"}}}``."""
    sel = {"_id": {"$gt": None}, "cameras": {"$keyMapMatch": {"$eq": "secondary"}}}
    assert match(sel, {"_id": "a", "cameras": {"primary": 1, "secondary": 2}})
    assert not match(sel, {"_id": "b", "cameras": {"primary": "secondary"}})  # keys only
    assert not match(sel, {"_id": "c", "cameras": {}})
    assert not match(sel, {"_id": "d", "cameras": ["secondary"]})
    assert match({"m": {"$keyMapMatch": {"$beginsWith": "x-"}}}, {"m": {"a": 1, "x-b": 2}})
    assert match({"m": {"$keyMapMatch": {"$gt": "b", "$lt": "d"}}}, {"m": {"a": 1, "c": 2}})


# ---------------------------------------------------------------------------------------
# Invalid selectors
# ---------------------------------------------------------------------------------------

NOT_AN_OBJECT = "Selector error: expected a JSON object"
MISSING_FIELD = "One or more conditions is missing a field name."


@pytest.mark.parametrize("selector", [None, [], [{"a": 1}], "a", 1, True])
def test_non_object_selector(selector: Any) -> None:
    """*Changes Feed*, _selector: "If the selector object is not a well-formed JSON object
    ... "reason": "Selector error: expected a JSON object"."""
    with pytest.raises(SelectorError) as info:
        Selector.compile(selector)
    assert info.value.reason == NOT_AN_OBJECT
    assert info.value.mango_error == "invalid_selector_json"


@pytest.mark.parametrize(
    ("selector", "reason", "token"),
    [
        ({"$and": {"a": 1}}, "Bad argument for operator $and: {[{<<97>>,1}]}", "bad_arg"),
        ({"$or": "ab"}, "Bad argument for operator $or: <<97,98>>", "bad_arg"),
        ({"$nor": None}, "Bad argument for operator $nor: null", "bad_arg"),
        ({"f": {"$not": 5}}, "Bad argument for operator $not: 5", "bad_arg"),
        ({"$not": [{"a": 1}]}, "Bad argument for operator $not: [{[{<<97>>,1}]}]", "bad_arg"),
        ({"a": {"$elemMatch": [1]}}, "Bad argument for operator $elemMatch: [1]", "bad_arg"),
        ({"a": {"$allMatch": 1}}, "Bad argument for operator $allMatch: 1", "bad_arg"),
        ({"a": {"$keyMapMatch": "k"}}, "Bad argument for operator $keyMapMatch: <<107>>", "bad_arg"),
        ({"a": {"$in": 1}}, "Bad argument for operator $in: 1", "bad_arg"),
        ({"a": {"$in": "abc"}}, "Bad argument for operator $in: <<97,98,99>>", "bad_arg"),
        ({"a": {"$nin": {}}}, "Bad argument for operator $nin: {[]}", "bad_arg"),
        ({"a": {"$all": "x"}}, "Bad argument for operator $all: <<120>>", "bad_arg"),
        ({"a": {"$exists": "true"}}, "Bad argument for operator $exists: <<116,114,117,101>>", "bad_arg"),
        ({"a": {"$exists": 1}}, "Bad argument for operator $exists: 1", "bad_arg"),
        ({"a": {"$type": 1}}, "Bad argument for operator $type: 1", "bad_arg"),
        ({"a": {"$size": -1}}, "Bad argument for operator $size: -1", "bad_arg"),
        ({"a": {"$size": 1.5}}, "Bad argument for operator $size: 1.5", "bad_arg"),
        ({"a": {"$size": True}}, "Bad argument for operator $size: true", "bad_arg"),
        ({"a": {"$mod": [2]}}, "Bad argument for operator $mod: [2]", "bad_arg"),
        ({"a": {"$mod": [2, 1, 0]}}, "Bad argument for operator $mod: [2,1,0]", "bad_arg"),
        ({"a": {"$mod": [2.0, 1]}}, "Bad argument for operator $mod: [2.0,1]", "bad_arg"),
        ({"a": {"$mod": [True, 1]}}, "Bad argument for operator $mod: [true,1]", "bad_arg"),
        ({"a": {"$mod": [0, 1]}}, "Bad argument for operator $mod: [0,1]", "bad_arg"),
        ({"a": {"$mod": 2}}, "Bad argument for operator $mod: 2", "bad_arg"),
        ({"a": {"$regex": "^a["}}, "Bad argument for operator $regex: <<94,97,91>>", "bad_arg"),
        ({"a": {"$regex": "é("}}, "Bad argument for operator $regex: <<195,169,40>>", "bad_arg"),
        # norm_ops has clauses for string arguments only; others are unknown operators.
        ({"a": {"$regex": 5}}, "Invalid operator: $regex", "invalid_operator"),
        ({"a": {"$beginsWith": 5}}, "Invalid operator: $beginsWith", "invalid_operator"),
        ({"a": {"$foo": 1}}, "Invalid operator: $foo", "invalid_operator"),
        ({"$foo": 1}, "Invalid operator: $foo", "invalid_operator"),
        ({"$": 1}, "Invalid operator: $", "invalid_operator"),
        ({"a": {"$GT": 1}}, "Invalid operator: $GT", "invalid_operator"),
        ({"a": {"$where": "x"}}, "Unsupported operator: $where", "not_supported"),
        ({"a": {"$near": [0, 0]}}, "Unsupported operator: $near", "not_supported"),
        ({"$text": "hello"}, "Unsupported operator: $text", "not_supported"),
        ({"$gt": 1}, MISSING_FIELD, "invalid_selector"),
        ({"": 1}, MISSING_FIELD, "invalid_selector"),
        ({"$elemMatch": {"a": 1}}, MISSING_FIELD, "invalid_selector"),
        ({"$not": {"$eq": 1}}, MISSING_FIELD, "invalid_selector"),
        ({"a..b": 1}, "Invalid field name: a..b", "invalid_field_name"),
        ({"a.": 1}, "Invalid field name: a.", "invalid_field_name"),
        ({"a": {"": 1}}, "Invalid field name: a.", "invalid_field_name"),
        ({".a\\.b": 1}, "Invalid field name: .a\\.b", "invalid_field_name"),
    ],
)
def test_invalid_selectors(selector: Any, reason: str, token: str) -> None:
    """Reasons are mango_error:info/2 texts (``~w`` renders strings as ``<<bytes>>``), as
    couch_changes:check_selector reports them under ``bad_request``."""
    with pytest.raises(SelectorError) as info:
        Selector.compile(selector)
    err = info.value
    assert isinstance(err, BadRequest)
    assert (err.status, err.error, err.reason) == (400, "bad_request", reason)
    assert err.to_json() == {"error": "bad_request", "reason": reason}
    assert err.mango_error == token


def test_errors_deep_inside_are_found() -> None:
    with pytest.raises(SelectorError, match=r"^Invalid operator: \$bad$"):
        Selector.compile({"a": 1, "$or": [{"b": 1}, {"c": {"$elemMatch": {"d": {"$bad": 1}}}}]})
    with pytest.raises(SelectorError, match=r"^Bad argument for operator \$size: <<49>>$"):
        Selector.compile({"$nor": [{"$not": {"x": {"$size": "1"}}}]})


def test_too_deeply_nested_selector_is_a_400() -> None:
    sel: dict[str, Any] = {"a": 1}
    for _ in range(5000):
        sel = {"$not": sel}
    with pytest.raises(SelectorError, match="too deeply nested"):
        Selector.compile(sel)


# ---------------------------------------------------------------------------------------
# Collation helper
# ---------------------------------------------------------------------------------------


def test_collate_views_collation_order() -> None:
    """*Views Collation*, "Collation Specification" sample keys (strings reduced to ones
    where code point order and ICU agree), including "Member order does matter for
    collation": ``{"b": 2, "a": 1}`` sorts after ``{"b": 2}`` and before ``{"b": 2, "c":
    2}``."""
    ordered: list[Any] = [
        None,
        False,
        True,
        1,
        2,
        3.0,
        4,
        "a",
        "aa",
        "b",
        "ba",
        "bb",
        ["a"],
        ["b"],
        ["b", "c"],
        ["b", "c", "a"],
        ["b", "d"],
        ["b", "d", "e"],
        {"a": 1},
        {"a": 2},
        {"b": 1},
        {"b": 2},
        {"b": 2, "a": 1},
        {"b": 2, "c": 2},
    ]
    for i, a in enumerate(ordered):
        for j, b in enumerate(ordered):
            assert collate(a, b) == (i > j) - (i < j), (a, b)


def test_collate_numbers_and_code_points() -> None:
    assert collate(1, 1.0) == 0
    assert collate(-0.0, 0) == 0
    assert collate("B", "a") == -1  # code point, not ICU
    assert collate([], None) == 1
    with pytest.raises(TypeError):
        collate(object(), 1)


# ---------------------------------------------------------------------------------------
# The compiled object
# ---------------------------------------------------------------------------------------


def test_compiled_selector_is_immutable_and_independent_of_its_input() -> None:
    source = {"a": {"$in": [1, 2]}, "b": {"$eq": {"k": [1]}}}
    sel = Selector.compile(source)
    before = copy.deepcopy(sel.normalized)
    source["a"]["$in"].append(3)
    source["b"]["$eq"]["k"].append(2)
    assert sel.normalized == before
    assert not sel.matches({"a": 3, "b": {"k": [1]}})
    assert sel.matches({"a": 2, "b": {"k": [1]}})
    sel.normalized["$and"].clear()
    assert sel.normalized == before
    with pytest.raises(AttributeError):
        sel._tree = None  # type: ignore[misc]
    with pytest.raises(TypeError):
        Selector()
    assert repr(sel).startswith("Selector({'$and': ")


def test_reuse_across_many_documents() -> None:
    sel = Selector.compile({"type": "user", "age": {"$gte": 18}, "tags": {"$elemMatch": {"$eq": "x"}}})
    docs = [
        {"_id": str(i), "type": "user", "age": i % 40, "tags": ["x"] if i % 3 else []} for i in range(300)
    ]
    hits = [d["_id"] for d in docs if sel.matches(d)]
    assert hits == [str(i) for i in range(300) if i % 40 >= 18 and i % 3]


# ---------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------

FIELDS = ["a", "b", "c"]
TYPE_NAMES = ["null", "boolean", "number", "string", "array", "object", "bogus"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, 1.0, -1, 2.5, 10]),
    st.text(alphabet="abAB", max_size=2),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "k"]), children, max_size=2),
    ),
    max_leaves=6,
)
docs = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=3)
field_names = st.sampled_from(FIELDS)

conditions = st.one_of(
    json_values.map(lambda v: {"$eq": v}),
    json_values.map(lambda v: {"$ne": v}),
    st.tuples(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), json_values).map(lambda t: {t[0]: t[1]}),
    st.lists(json_values, max_size=3).map(lambda vs: {"$in": vs}),
    st.lists(json_values, max_size=3).map(lambda vs: {"$nin": vs}),
    st.lists(json_values, max_size=2).map(lambda vs: {"$all": vs}),
    st.booleans().map(lambda b: {"$exists": b}),
    st.sampled_from(TYPE_NAMES).map(lambda t: {"$type": t}),
    st.integers(0, 2).map(lambda n: {"$size": n}),
    st.sampled_from(["^a", "b", "A$"]).map(lambda r: {"$regex": r}),
    st.sampled_from(["", "a", "aB"]).map(lambda p: {"$beginsWith": p}),
    scalars.map(lambda v: {"$elemMatch": {"$eq": v}}),
    scalars.map(lambda v: {"$allMatch": {"$gte": v}}),
)
field_selectors = st.builds(lambda f, c: {f: c}, field_names, conditions)
selectors = st.recursive(
    field_selectors,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda s: {"$and": s}),
        st.lists(children, min_size=1, max_size=3).map(lambda s: {"$or": s}),
        st.lists(children, min_size=1, max_size=3).map(lambda s: {"$nor": s}),
        children.map(lambda s: {"$not": s}),
    ),
    max_leaves=5,
)


@settings(max_examples=300)
@given(field=field_names, value=json_values, doc=docs)
def test_property_not_inverts_eq_on_existing_fields(field: str, value: Any, doc: dict[str, Any]) -> None:
    eq = Selector.compile({field: {"$eq": value}})
    negated = Selector.compile({"$not": {field: {"$eq": value}}})
    ne = Selector.compile({field: {"$ne": value}})
    if field in doc:
        assert negated.matches(doc) is (not eq.matches(doc))
    else:
        assert not eq.matches(doc)
        assert not negated.matches(doc)
    assert ne.matches(doc) is negated.matches(doc)


@settings(max_examples=300)
@given(a=selectors, b=selectors, doc=docs)
def test_property_or_and_are_boolean_combinations(
    a: dict[str, Any], b: dict[str, Any], doc: dict[str, Any]
) -> None:
    in_a = Selector.compile(a).matches(doc)
    in_b = Selector.compile(b).matches(doc)
    assert Selector.compile({"$or": [a, b]}).matches(doc) is (in_a or in_b)
    assert Selector.compile({"$and": [a, b]}).matches(doc) is (in_a and in_b)
    not_a = Selector.compile({"$not": a}).matches(doc)
    not_b = Selector.compile({"$not": b}).matches(doc)
    # $nor and De Morgan are defined through the (pushed-down) negations.
    assert Selector.compile({"$nor": [a, b]}).matches(doc) is (not_a and not_b)
    assert Selector.compile({"$not": {"$and": [a, b]}}).matches(doc) is (not_a or not_b)
    assert Selector.compile({"$not": {"$not": a}}).matches(doc) is in_a


@settings(max_examples=300)
@given(selector=selectors, doc_list=st.lists(docs, max_size=5))
def test_property_compile_is_deterministic_and_normalize_idempotent(
    selector: dict[str, Any], doc_list: list[dict[str, Any]]
) -> None:
    first = Selector.compile(selector)
    second = Selector.compile(copy.deepcopy(selector))
    again = Selector.compile(first.normalized)
    assert first.normalized == second.normalized == again.normalized
    for doc in doc_list:
        assert first.matches(doc) is second.matches(doc) is again.matches(doc)


@settings(max_examples=300)
@given(x=json_values, y=json_values, z=json_values)
def test_property_collate_is_a_total_order(x: Any, y: Any, z: Any) -> None:
    assert collate(x, x) == 0
    assert collate(x, y) == -collate(y, x)
    if collate(x, y) <= 0 and collate(y, z) <= 0:
        assert collate(x, z) <= 0
    eq = Selector.compile({"f": {"$eq": y}}).matches({"f": x})
    assert eq is (collate(x, y) == 0)
    if not isinstance(x, list):
        assert Selector.compile({"f": {"$in": [y]}}).matches({"f": x}) is eq
    for op, test in (("$gt", 1), ("$lt", -1)):
        assert Selector.compile({"f": {op: y}}).matches({"f": x}) is (collate(x, y) == test)
