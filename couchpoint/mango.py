"""Mango selectors: compile a CouchDB ``selector`` once, match it against many documents.

This module is a pure-Python (standard library only) port of CouchDB 3.x's selector
engine, ``src/mango/src/mango_selector.erl``, together with the pieces it leans on:
``mango_doc:get_field/2`` (field lookup), ``mango_util:parse_field/1`` (dotted paths),
``mango_json`` / ``couch_ejson_compare`` (value comparison) and ``mango_error`` (reason
texts).  It backs ``POST /{db}/_changes?filter=_selector`` (protocol reference §6.5) and is
meant to back ``_find`` as well.

Documentation followed: CouchDB docs, *Mango Queries* (``ddocs/mango.rst``): "Selectors",
"Selector Basics", "Subfields", "Operators", "Implicit Operators", "Combination
Operators", "Condition Operators", "Creating Selector Expressions"; *Changes Feed*
("_selector" filter); *Views Collation* for the ordering of values.  Where the
documentation and ``mango_selector.erl`` disagree, the code wins (it is what clients
observe), and the differences are listed below.

Compilation
-----------
:meth:`Selector.compile` runs CouchDB's three normalisation passes and then turns the
result into a tree of closures:

1. ``norm_ops`` -- validate every operator argument (400 on error); a plain value means
   ``$eq``; an object with several members is an implicit ``$and`` of its members.  An
   object *without* operators is therefore a set of sub-field conditions:
   ``{"a": {"b": 1}}`` is ``a.b == 1`` (docs, "Subfields"), and ``{"a": {}}`` is
   ``a == {}``.
2. ``norm_fields`` -- push field names down through ``$and``/``$or``/``$not``/``$nor``
   until every condition operator sits under one full dotted path:
   ``{"a": {"$or": [{"b": 1}, {"$gt": 2}]}}`` becomes
   ``{"$or": [{"a.b": {"$eq": 1}}, {"a": {"$gt": 2}}]}``.
3. ``norm_negations`` -- push ``$not``/``$nor`` down to the conditions (De Morgan;
   ``$eq``<->``$ne``, ``$gt``<->``$lte``, ``$in``<->``$nin``, ``$exists`` flipped; other
   conditions get a ``$not`` wrapper).

:attr:`Selector.normalized` returns the result as JSON, in the shape ``_explain`` shows.

Semantics (CouchDB 3.x behaviour, reproduced on purpose)
--------------------------------------------------------
* **Missing fields.**  A condition on a field that does not exist never matches, except
  ``{"$exists": false}`` (docs, "Condition Operators": "the field **must exist** in the
  document for the selector to match ... ``$ne`` means the specified field must exist").
  Because negations are pushed down first, ``{"$not": {"a": 1}}`` is ``{"a": {"$ne": 1}}``
  and does *not* match a document without ``a``; ``{"$nor": [{"a": 1}]}`` likewise.
  A path that runs into a non-container (``"a.b"`` where ``a`` is a string) or an array
  index out of range is a *bad path*: it fails every condition, ``$exists: false``
  included.
* **Paths.**  ``"a.b.c"`` walks objects; a numeric segment indexes an array
  (``"tags.0"``); ``\\.`` escapes a literal dot and every backslash is then removed
  (``"a\\\\.b"`` in JSON addresses the key ``"a.b"``; ``"\\\\$x"`` the key ``"$x"``).
  Empty segments (``"a..b"``) are rejected with 400 at compile time (CouchDB fails at
  match time).
* **Comparison / collation.**  ``$eq $ne $gt $gte $lt $lte $in $nin $all`` use CouchDB's
  view collation across types: ``null < false < true < numbers < strings < arrays <
  objects``; arrays compare element-wise (a prefix sorts first); objects compare member
  by member *in document order* (key, then value), then by size.  Range operators
  therefore match across types exactly as CouchDB does: ``{"a": {"$gt": 5}}`` matches
  ``"abc"``, ``[]`` and ``{}`` but not ``null`` or ``true``.  Numbers compare
  numerically (``1 == 1.0``); booleans are not numbers.
* **String collation approximation.**  CouchDB collates strings with ICU (UCA root
  collation: ``"a" < "B" < "b"``).  couchpoint compares strings by Unicode code point
  (``"B" < "a"``), so a range over mixed-case or accented strings can differ from
  CouchDB; equality is unaffected.  :func:`collate` exposes this ordering.
* **``_id``.**  Like CouchDB (``mango_json:cmp_raw``), conditions on the field ``_id`` use
  Erlang's raw term order: numbers < false < null < true < objects < arrays < strings,
  strings by code point.  ``{"_id": {"$gt": null}}`` (the docs' idiom) matches every
  document.
* **``$in`` / ``$nin`` on arrays.**  If the field value is an array, ``$in`` matches when
  *any element* equals any argument (the array itself is not compared); ``$nin`` when no
  element does.  ``$in: []`` never matches; ``$nin: []`` always does.
* **``$all``** matches an array containing every argument; ``$all: []`` never matches;
  ``{"$all": [[1, 2]]}`` also matches the value ``[1, 2]`` itself.
* **Empty combinators.**  ``$and: []`` and ``$or: []`` match everything (mango
  "treat an empty array as always true"); ``$nor: []`` likewise.
* **``$elemMatch`` / ``$allMatch``** need a non-empty array (``$allMatch`` on ``[]`` is
  false); **``$keyMapMatch``** needs a non-empty object and applies its sub-selector to
  the object's *keys*.  Their sub-selectors are not negation-normalised by CouchDB, so
  inside them ``$not`` is a plain logical not (``{"$not": {"b": 1}}`` *does* match an
  element without ``b``).
* **``$mod``** ``[divisor, remainder]``: integers only; matches integer values whose
  Erlang ``rem`` (sign of the dividend, e.g. ``-5 rem 3 == -2``) equals the remainder.
* **``$regex``**: Python :func:`re.search` (unanchored, like ``re:run``).  CouchDB uses
  PCRE on UTF-8 bytes; patterns using PCRE-only syntax are rejected with 400 here and
  ``.``/classes match code points rather than bytes.
* **``$type``** accepts any string; only ``null boolean number string array object``
  can match.
* Selectors with an empty field name at the top level (``{"$gt": 1}``, ``{"": 1}``) are
  rejected ("One or more conditions is missing a field name."); nested, an empty name
  means "this value" (that is how ``{"$elemMatch": {"$gt": 1}}`` works).  Such a nested
  ``{}`` is an equality test against ``{}``: ``{"$or": [{}]}`` matches no real document.

Deliberate differences from CouchDB
-----------------------------------
* ``$mod`` with divisor 0 is a 400 (CouchDB crashes at match time).
* An empty path segment is a 400 at compile time (CouchDB: an error at match time).
* ``$nor`` inside ``$elemMatch``/``$allMatch``/``$keyMapMatch`` means "none match"
  (CouchDB reports "Invalid operator: $nor" while matching).
* ``$text`` (and the internal ``$default``) is a 400 "Unsupported operator": there is no
  full-text index (CouchDB's ``_changes`` would silently match every document).
* Duplicate keys in a JSON object are collapsed by the JSON parser before they get here.

Errors
------
Every invalid selector raises :class:`SelectorError`, a :class:`~couchpoint.errors.BadRequest`
(``400 bad_request``) whose reason is CouchDB's text, Erlang term formatting included, as
``_changes`` reports it, e.g. ``"Invalid operator: $foo"``, ``"Bad argument for operator
$in: <<97,98,99>>"``, ``"One or more conditions is missing a field name."``.  The
original mango error token (``invalid_operator``, ``bad_arg`` ...) is kept in
:attr:`SelectorError.mango_error` for ``_find``, which reports it as ``error``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from couchpoint.errors import BadRequest

__all__ = ["Selector", "SelectorError", "collate"]

Json = Any
"""A decoded JSON value: ``dict``, ``list``, ``str``, ``int``, ``float``, ``bool`` or ``None``."""

Predicate = Callable[[Json], bool]


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


class SelectorError(BadRequest):
    """An invalid selector: ``400 bad_request`` with CouchDB's reason text.

    ``mango_error`` holds the token CouchDB's ``_find`` would use instead of
    ``bad_request`` (``invalid_selector_json``, ``invalid_selector``, ``invalid_operator``,
    ``bad_arg``, ``not_supported``, ``invalid_field_name``, ``too_deep``).
    """

    def __init__(self, reason: str, *, mango_error: str) -> None:
        super().__init__(reason)
        self.mango_error = mango_error


def _erl(value: Json) -> str:
    """Render a JSON value like Erlang's ``io_lib:format("~w", [EJSON])``.

    CouchDB prints bad arguments this way: strings as ``<<UTF-8 bytes>>``, objects as
    ``{[{Key,Value}]}``.
    """
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        return "<<" + ",".join(str(b) for b in data) + ">>"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        if "e" in text:
            mantissa, exponent = text.split("e")
            if "." not in mantissa:
                mantissa += ".0"
            return f"{mantissa}e{int(exponent)}"
        return text
    if isinstance(value, list):
        return "[" + ",".join(_erl(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{[" + ",".join("{" + _erl(k) + "," + _erl(v) + "}" for k, v in value.items()) + "]}"
    return repr(value)


def _bad_arg(op: str, arg: Json) -> SelectorError:
    return SelectorError(f"Bad argument for operator {op}: {_erl(arg)}", mango_error="bad_arg")


def _invalid_operator(op: str) -> SelectorError:
    return SelectorError(f"Invalid operator: {op}", mango_error="invalid_operator")


def _not_supported(op: str) -> SelectorError:
    return SelectorError(f"Unsupported operator: {op}", mango_error="not_supported")


# ---------------------------------------------------------------------------------------
# Collation
# ---------------------------------------------------------------------------------------

# Rank of each JSON type in CouchDB's view collation (couch_ejson_compare): null, false,
# true, numbers, strings, arrays, objects.  bool is listed as false; true is fixed up.
_COLLATION_RANK: dict[type, int] = {type(None): 0, bool: 1, int: 3, float: 3, str: 4, list: 5, dict: 6}
# Erlang term order used for _id (mango_json:cmp_raw): number < atom (false < null < true,
# alphabetical) < tuple (object) < list (array) < binary (string).
_RAW_RANK: dict[type, int] = {int: 0, float: 0, bool: 1, type(None): 2, dict: 4, list: 5, str: 6}
_R_NULL, _R_FALSE, _R_TRUE, _R_NUMBER, _R_STRING, _R_ARRAY, _R_OBJECT = range(7)


def _base_type(value: Json) -> type:
    """The JSON type of a value whose class is a subclass of a JSON type."""
    for base in (bool, int, float, str, list, dict):
        if isinstance(value, base):
            return base
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _collation_rank(value: Json) -> int:
    rank = _COLLATION_RANK.get(value.__class__)
    if rank is None:
        rank = _COLLATION_RANK[_base_type(value)]
    if rank == _R_FALSE and value:
        return _R_TRUE
    return rank


def _raw_rank(value: Json) -> int:
    rank = _RAW_RANK.get(value.__class__)
    if rank is None:
        rank = _RAW_RANK[_base_type(value)]
    if rank == 1 and value:
        return 3
    return rank


def _make_comparator(
    rank_of: Callable[[Json], int], native_ranks: frozenset[int]
) -> Callable[[Json, Json], int]:
    """A three-way comparator: types ordered by ``rank_of``; numbers and strings (the
    ``native_ranks``) by Python's own ordering (numeric, code point); arrays and objects
    element-wise; the singletons null/false/true equal to themselves."""

    def compare(a: Json, b: Json) -> int:
        if a is b:
            return 0
        rank_a, rank_b = rank_of(a), rank_of(b)
        if rank_a != rank_b:
            return -1 if rank_a < rank_b else 1
        if isinstance(a, list):
            for x, y in zip(a, b, strict=False):
                c = compare(x, y)
                if c:
                    return c
            return (len(a) > len(b)) - (len(a) < len(b))
        if isinstance(a, dict):
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=False):
                if ka != kb:
                    return -1 if ka < kb else 1
                c = compare(va, vb)
                if c:
                    return c
            return (len(a) > len(b)) - (len(a) < len(b))
        if rank_a in native_ranks:
            return (a > b) - (a < b)
        return 0  # null, false, true: one value per rank

    return compare


collate: Callable[[Json, Json], int] = _make_comparator(_collation_rank, frozenset({_R_NUMBER, _R_STRING}))
collate.__name__ = "collate"
collate.__doc__ = """Compare two JSON values in CouchDB view-collation order: ``-1``, ``0`` or ``1``.

``null < false < true < numbers < strings < arrays < objects``; numbers numerically;
strings by Unicode code point (an approximation of CouchDB's ICU collation); arrays
element-wise, shorter prefix first; objects member by member in their order (key,
then value), smaller object first.  Raises ``TypeError`` for non-JSON values.
"""

_compare_raw: Callable[[Json, Json], int] = _make_comparator(_raw_rank, frozenset({0, 6}))


def _freeze(value: Json) -> Any:
    """A hashable key such that ``_freeze(a) == _freeze(b)`` iff ``collate(a, b) == 0``."""
    rank = _collation_rank(value)
    if rank == _R_NUMBER or rank == _R_STRING:
        return (rank, value)
    if rank == _R_ARRAY:
        return (rank, tuple(_freeze(v) for v in value))
    if rank == _R_OBJECT:
        return (rank, tuple((k, _freeze(v)) for k, v in value.items()))
    return (rank,)


# ---------------------------------------------------------------------------------------
# Normalisation (mango_selector:normalize/1)
# ---------------------------------------------------------------------------------------
#
# Nodes are tuples ``(operator, argument)`` -- the Python shape of Erlang's single-member
# ``{[{Op, Arg}]}`` -- and ``_Field(name, node)`` for a field condition.  Before
# norm_fields a _Field holds one field name and any node; after it, a full dotted path and
# a condition (a terminal operator, one of the _SUBSELECTOR_OPS, or ``("$not", cond)``).


class _Field(NamedTuple):
    path: str
    cond: Any


_COMBINATION_OPS = frozenset({"$and", "$or", "$nor"})
_SUBSELECTOR_OPS = frozenset({"$elemMatch", "$allMatch", "$keyMapMatch"})
_COMPARISON_OPS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})
_UNSUPPORTED_OPS = frozenset(
    {"$where", "$geoWithin", "$geoIntersects", "$near", "$nearSphere", "$text", "$default"}
)
_NEGATED = {
    "$lt": "$gte",
    "$lte": "$gt",
    "$eq": "$ne",
    "$ne": "$eq",
    "$gte": "$lt",
    "$gt": "$lte",
    "$in": "$nin",
    "$nin": "$in",
}


def _is_int(value: Json) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _norm_ops(sel: Json) -> Any:
    """``norm_ops``: validate operators, make implicit ``$eq``/``$and`` explicit."""
    if isinstance(sel, dict):
        if len(sel) == 1:
            ((key, arg),) = sel.items()
            return _norm_member(key, arg)
        if len(sel) > 1:
            return ("$and", [_norm_member(key, arg) for key, arg in sel.items()])
    return ("$eq", sel)


def _norm_member(key: str, arg: Json) -> Any:
    if not isinstance(key, str):
        raise SelectorError("Selector error: expected a JSON object", mango_error="invalid_selector_json")
    if not key.startswith("$"):
        return _Field(key, _norm_ops(arg))
    if key in _COMBINATION_OPS:
        if not isinstance(arg, list):
            raise _bad_arg(key, arg)
        return (key, [_norm_ops(a) for a in arg])
    if key == "$not" or key in _SUBSELECTOR_OPS:
        if not isinstance(arg, dict):
            raise _bad_arg(key, arg)
        return (key, _norm_ops(arg))
    if key in _COMPARISON_OPS:
        return (key, arg)
    if key in ("$in", "$nin", "$all"):
        if not isinstance(arg, list):
            raise _bad_arg(key, arg)
        return (key, arg)
    if key == "$exists":
        if not isinstance(arg, bool):
            raise _bad_arg(key, arg)
        return (key, arg)
    if key == "$type":
        if not isinstance(arg, str):
            raise _bad_arg(key, arg)
        return (key, arg)
    if key == "$size":
        if not _is_int(arg) or arg < 0:
            raise _bad_arg(key, arg)
        return (key, arg)
    if key == "$mod":
        if not (isinstance(arg, list) and len(arg) == 2 and _is_int(arg[0]) and _is_int(arg[1])):
            raise _bad_arg(key, arg)
        if arg[0] == 0:
            raise _bad_arg(key, arg)
        return (key, arg)
    # $regex and $beginsWith only have a clause for string arguments in norm_ops; any
    # other argument falls through to the unknown-operator clause, as in CouchDB.
    if key == "$regex" and isinstance(arg, str):
        try:
            re.compile(arg)
        except (re.error, OverflowError, RecursionError):
            raise _bad_arg(key, arg) from None
        return (key, arg)
    if key == "$beginsWith" and isinstance(arg, str):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad_arg(key, arg) from None
        return (key, arg)
    if key in _UNSUPPORTED_OPS:
        raise _not_supported(key)
    raise _invalid_operator(key)


def _norm_fields(node: Any, path: str = "") -> Any:
    """``norm_fields``: give every condition its full dotted path."""
    if isinstance(node, _Field):
        return _norm_fields(node.cond, node.path if not path else f"{path}.{node.path}")
    op, arg = node
    if op in _COMBINATION_OPS:
        return (op, [_norm_fields(a, path) for a in arg])
    if op == "$not":
        return (op, _norm_fields(arg, path))
    if op in _SUBSELECTOR_OPS:
        return _Field(path, (op, _norm_fields(arg)))
    return _Field(path, node)


def _norm_negations(node: Any) -> Any:
    """``norm_negations``: remove ``$not``/``$nor`` reachable through combinators."""
    if isinstance(node, _Field):
        return node
    op, arg = node
    if op == "$not":
        return _negate(arg)
    if op == "$nor":
        return ("$and", [_negate(a) for a in arg])
    if op in ("$and", "$or"):
        return (op, [_norm_negations(a) for a in arg])
    return node


def _negate(node: Any) -> Any:
    """``negate``: De Morgan down to the conditions."""
    if isinstance(node, _Field):
        return _Field(node.path, _negate(node.cond))
    op, arg = node
    if op == "$not":
        return _norm_negations(arg)
    if op == "$nor":
        return ("$or", [_norm_negations(a) for a in arg])
    if op == "$and":
        return ("$or", [_negate(a) for a in arg])
    if op == "$or":
        return ("$and", [_negate(a) for a in arg])
    if op in _NEGATED:
        return (_NEGATED[op], arg)
    if op == "$exists":
        return (op, not arg)
    return ("$not", node)


def _normalize(selector: dict[str, Json]) -> Any:
    """Run the three passes; ``None`` for the empty selector (matches everything)."""
    if not selector:
        return None
    tree = _norm_negations(_norm_fields(_norm_ops(selector)))
    if isinstance(tree, _Field) and tree.path == "":
        raise SelectorError("One or more conditions is missing a field name.", mango_error="invalid_selector")
    return tree


# ---------------------------------------------------------------------------------------
# Field paths (mango_util:parse_field/1, mango_doc:get_field/2)
# ---------------------------------------------------------------------------------------

_UNESCAPED_DOT = re.compile(r"(?<!\\)\.")
_ARRAY_INDEX = re.compile(r"[+-]?[0-9]+")


def _parse_field(path: str) -> tuple[str, ...]:
    """Split a dotted path into keys; ``""`` is the value itself."""
    if path == "":
        return ()
    if "\\" not in path:
        parts = path.split(".")
    else:
        parts = _UNESCAPED_DOT.split(path)
    if "" in parts:
        raise SelectorError(f"Invalid field name: {path}", mango_error="invalid_field_name")
    return tuple(p.replace("\\", "") for p in parts)


def _array_index(key: str) -> int | None:
    """The array position a path segment addresses (Erlang ``list_to_integer``), if any."""
    if _ARRAY_INDEX.fullmatch(key) is None:
        return None
    index = int(key)
    return index if index >= 0 else None


# ---------------------------------------------------------------------------------------
# Compilation into closures
# ---------------------------------------------------------------------------------------


def _true(_value: Json) -> bool:
    return True


def _false(_value: Json) -> bool:
    return False


def _all_of(preds: Sequence[Predicate]) -> Predicate:
    if not preds:
        return _true
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        first, second = preds

        def both(value: Json) -> bool:
            return first(value) and second(value)

        return both

    preds = tuple(preds)

    def every(value: Json) -> bool:
        for pred in preds:
            if not pred(value):
                return False
        return True

    return every


def _any_of(preds: Sequence[Predicate]) -> Predicate:
    preds = tuple(preds)

    def some(value: Json) -> bool:
        for pred in preds:
            if pred(value):
                return True
        return False

    return some


def _negation(pred: Predicate) -> Predicate:
    def negated(value: Json) -> bool:
        return not pred(value)

    return negated


def _compile_selector(node: Any, compare: Callable[[Json, Json], int]) -> Predicate:
    """A selector-level node (combinator or field) -> predicate on a document/element."""
    if isinstance(node, _Field):
        return _compile_field(node, compare)
    op, arg = node
    if op == "$and":
        return _all_of([_compile_selector(a, compare) for a in arg])
    if op == "$or":
        if not arg:
            return _true
        return _any_of([_compile_selector(a, compare) for a in arg])
    if op == "$nor":
        if not arg:
            return _true
        return _negation(_any_of([_compile_selector(a, compare) for a in arg]))
    if op == "$not":
        return _negation(_compile_selector(arg, compare))
    raise AssertionError(f"unnormalized selector node {node!r}")  # pragma: no cover


_MISSING = object()


def _compile_field(field: _Field, compare: Callable[[Json, Json], int]) -> Predicate:
    path = field.path
    if path == "_id":
        compare = _compare_raw
    cond = _compile_condition(field.cond, compare)
    # The one condition a missing field satisfies (mango_selector:match/3, field clause).
    if_missing = field.cond == ("$exists", False)
    steps = tuple((key, _array_index(key)) for key in _parse_field(path))

    if not steps:
        return cond

    if len(steps) == 1 and steps[0][1] is None:
        key = steps[0][0]

        def single(value: Json) -> bool:
            if isinstance(value, dict):
                sub = value.get(key, _MISSING)
                if sub is _MISSING:
                    return if_missing
                return cond(sub)
            return False

        return single

    def nested(value: Json) -> bool:
        for key, index in steps:
            if isinstance(value, dict):
                value = value.get(key, _MISSING)
                if value is _MISSING:
                    return if_missing
            elif isinstance(value, list):
                if index is None or index >= len(value):
                    return False  # bad_path
                value = value[index]
            else:
                return False  # bad_path
        return cond(value)

    return nested


def _compile_condition(node: Any, compare: Callable[[Json, Json], int]) -> Predicate:
    """A condition node -> predicate on the (existing) field value."""
    op, arg = node
    if op == "$not":
        return _negation(_compile_condition(arg, compare))
    if op == "$eq":
        return _equality(arg)
    if op == "$ne":
        return _negation(_equality(arg))
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return _range(op, arg, compare)
    if op == "$in":
        return _membership(arg)
    if op == "$nin":
        return _negation(_membership(arg))
    if op == "$exists":
        return _true if arg else _false
    if op == "$type":
        return _type_test(arg)
    if op == "$size":
        size = arg

        def has_size(value: Json) -> bool:
            return isinstance(value, list) and len(value) == size

        return has_size
    if op == "$mod":
        return _modulo(arg[0], arg[1])
    if op == "$regex":
        search = re.compile(arg).search

        def matches_regex(value: Json) -> bool:
            return isinstance(value, str) and search(value) is not None

        return matches_regex
    if op == "$beginsWith":
        prefix = arg

        def begins_with(value: Json) -> bool:
            return isinstance(value, str) and value.startswith(prefix)

        return begins_with
    if op == "$all":
        return _all_elements(arg)
    if op == "$elemMatch":
        element = _compile_selector(arg, compare)

        def elem_match(value: Json) -> bool:
            if isinstance(value, list):
                for item in value:
                    if element(item):
                        return True
            return False

        return elem_match
    if op == "$allMatch":
        element = _compile_selector(arg, compare)

        def all_match(value: Json) -> bool:
            if not isinstance(value, list) or not value:
                return False
            for item in value:
                if not element(item):
                    return False
            return True

        return all_match
    if op == "$keyMapMatch":
        key_pred = _compile_selector(arg, compare)

        def key_map_match(value: Json) -> bool:
            if isinstance(value, dict):
                for key in value:
                    if key_pred(key):
                        return True
            return False

        return key_map_match
    raise AssertionError(f"unknown condition {node!r}")  # pragma: no cover


def _equality(arg: Json) -> Predicate:
    """``collate(value, arg) == 0`` (the same under raw and view collation)."""
    if arg is None:

        def is_null(value: Json) -> bool:
            return value is None

        return is_null
    if isinstance(arg, bool):

        def is_bool(value: Json) -> bool:
            return value is arg

        return is_bool
    if isinstance(arg, str):

        def equals_string(value: Json) -> bool:
            return value == arg and isinstance(value, str)

        return equals_string
    if isinstance(arg, (int, float)):

        def equals_number(value: Json) -> bool:
            return value == arg and isinstance(value, (int, float)) and not isinstance(value, bool)

        return equals_number
    rank = _collation_rank(arg)

    def equals_composite(value: Json) -> bool:
        return _collation_rank(value) == rank and collate(value, arg) == 0

    return equals_composite


_RANGE_TESTS: dict[str, Callable[[int], bool]] = {
    "$gt": lambda c: c > 0,
    "$gte": lambda c: c >= 0,
    "$lt": lambda c: c < 0,
    "$lte": lambda c: c <= 0,
}


def _range(op: str, arg: Json, compare: Callable[[Json, Json], int]) -> Predicate:
    test = _RANGE_TESTS[op]
    if compare is collate and isinstance(arg, (int, float, str)) and not isinstance(arg, bool):
        # Fast path: same-rank values compare natively, others by rank alone.
        arg_rank = _collation_rank(arg)
        if op == "$gt":

            def native(value: Json) -> bool:
                return value > arg

        elif op == "$gte":

            def native(value: Json) -> bool:
                return value >= arg

        elif op == "$lt":

            def native(value: Json) -> bool:
                return value < arg

        else:

            def native(value: Json) -> bool:
                return value <= arg

        def in_range_scalar(value: Json) -> bool:
            rank = _collation_rank(value)
            if rank == arg_rank:
                return native(value)
            return test(rank - arg_rank)

        return in_range_scalar

    def in_range(value: Json) -> bool:
        return test(compare(value, arg))

    return in_range


def _membership(args: list[Json]) -> Predicate:
    """``$in``: the value, or any element of an array value, equals an argument."""
    keys = frozenset(_freeze(a) for a in args)
    if not keys:
        return _false

    def is_in(value: Json) -> bool:
        if isinstance(value, list):
            for item in value:
                if _freeze(item) in keys:
                    return True
            return False
        return _freeze(value) in keys

    return is_in


def _all_elements(args: list[Json]) -> Predicate:
    if not args:
        return _false
    wanted = frozenset(_freeze(a) for a in args)
    whole = _freeze(args[0]) if len(args) == 1 and isinstance(args[0], list) else None

    def contains_all(value: Json) -> bool:
        if not isinstance(value, list):
            return False
        if whole is not None and _freeze(value) == whole:
            return True
        return wanted <= {_freeze(item) for item in value}

    return contains_all


_TYPE_RANKS: dict[str, frozenset[int]] = {
    "null": frozenset({_R_NULL}),
    "boolean": frozenset({_R_FALSE, _R_TRUE}),
    "number": frozenset({_R_NUMBER}),
    "string": frozenset({_R_STRING}),
    "array": frozenset({_R_ARRAY}),
    "object": frozenset({_R_OBJECT}),
}


def _type_test(name: str) -> Predicate:
    ranks = _TYPE_RANKS.get(name)
    if ranks is None:
        return _false

    def has_type(value: Json) -> bool:
        return _collation_rank(value) in ranks

    return has_type


def _modulo(divisor: int, remainder: int) -> Predicate:
    abs_divisor = abs(divisor)

    def mod(value: Json) -> bool:
        if not isinstance(value, int) or isinstance(value, bool):
            return False
        # Erlang ``rem`` truncates: the result takes the sign of the dividend.
        rem = abs(value) % abs_divisor
        return (-rem if value < 0 else rem) == remainder

    return mod


# ---------------------------------------------------------------------------------------
# Rendering the normalised tree (for `normalized` / _explain)
# ---------------------------------------------------------------------------------------


def _render(node: Any) -> dict[str, Json]:
    if isinstance(node, _Field):
        return {node.path: _render(node.cond)}
    op, arg = node
    if op in _COMBINATION_OPS:
        return {op: [_render(a) for a in arg]}
    if op == "$not" or op in _SUBSELECTOR_OPS:
        return {op: _render(arg)}
    return {op: copy.deepcopy(arg)}


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------


class Selector:
    """A compiled Mango selector; immutable, thread-safe, reusable for any number of docs.

    >>> sel = Selector.compile({"year": {"$gt": 2010}, "tags": {"$all": ["a"]}})
    >>> sel.matches({"_id": "x", "year": 2011, "tags": ["a", "b"]})
    True
    """

    __slots__ = ("_predicate", "_tree")

    _predicate: Predicate
    _tree: Any

    def __init__(self) -> None:
        raise TypeError("use Selector.compile(selector)")

    @classmethod
    def compile(cls, selector: object) -> Selector:
        """Validate and compile a decoded JSON selector.

        ``selector`` must be a JSON object (``dict``) such as ``{"year": {"$gt": 2010}}``;
        ``{}`` matches every document.  The argument is copied: later changes to it do
        not affect the compiled selector.

        Raises :class:`SelectorError` (a 400 :class:`~couchpoint.errors.BadRequest`):

        * ``"Selector error: expected a JSON object"`` -- not a dict;
        * ``"Invalid operator: $foo"`` -- unknown ``$`` key (also a field name starting
          with ``$``: escape it as ``\\$``; also ``$regex``/``$beginsWith`` with a
          non-string argument, as in CouchDB);
        * ``"Bad argument for operator $in: <<97>>"`` -- wrong argument type or value
          (``$and/$or/$nor/$in/$nin/$all`` need an array, ``$not/$elemMatch/$allMatch/
          $keyMapMatch`` an object, ``$exists`` a boolean, ``$type`` a string, ``$size``
          an integer >= 0, ``$mod`` ``[non-zero int, int]``, ``$regex`` a valid pattern);
        * ``"Unsupported operator: $where"`` -- ``$where``, geo operators, ``$text``;
        * ``"One or more conditions is missing a field name."`` -- a condition at the
          top level without a field (``{"$gt": 1}``, ``{"": 1}``);
        * ``"Invalid field name: a..b"`` -- empty path segment;
        * ``"Selector is too deeply nested"`` -- nesting beyond Python's recursion limit.
        """
        if not isinstance(selector, dict):
            raise SelectorError("Selector error: expected a JSON object", mango_error="invalid_selector_json")
        try:
            tree = _normalize(copy.deepcopy(selector))
            predicate = _true if tree is None else _compile_selector(tree, collate)
        except RecursionError:
            raise SelectorError("Selector is too deeply nested", mango_error="too_deep") from None
        self = object.__new__(cls)
        object.__setattr__(self, "_tree", tree)
        object.__setattr__(self, "_predicate", predicate)
        return self

    def matches(self, doc: dict[str, Json]) -> bool:
        """Whether ``doc`` satisfies the selector.

        ``doc`` is the document as JSON, special fields included, as CouchDB's
        ``_changes`` filter sees it (``couch_doc:to_json_obj``): ``{"_id": ..., "_rev":
        ..., "_deleted": true?, ...body}``.  Values must be plain decoded JSON
        (``dict``/``list``/``str``/``int``/``float``/``bool``/``None``); anything else
        may raise ``TypeError``.  Never raises for a well-formed document.
        """
        return self._predicate(doc)

    @property
    def normalized(self) -> dict[str, Json]:
        """The normalised selector as JSON (fresh copy), e.g. ``{"a": {"$gt": 1}}`` for
        ``{"a": {"$not": {"$lte": 1}}}``; ``{}`` for the empty selector."""
        return {} if self._tree is None else _render(self._tree)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Selector is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Selector is immutable")

    def __repr__(self) -> str:
        return f"Selector({self.normalized!r})"
