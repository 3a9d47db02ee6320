"""Revision strings: ``"N-<revid>"`` parsing, formatting and generation.

CouchDB docs, *Document API* ("Revisions") and the protocol reference §4.3:

* ``N`` is the depth of the revision (1 for the first), ``<revid>`` an opaque token.
* CouchDB splits at the **first** ``-``; PouchDB rejects a ``-`` inside the revid, so
  couchpoint stores incoming revids verbatim but only ever *generates* 32 lowercase hex.
* A 32-character revid that is hex is lower-cased (CouchDB decodes it to 16 bytes); a
  32-character non-hex revid is invalid.

A parsed revision is a :data:`RevKey`, the pair ``(pos, revid)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from couchpoint import errors

RevKey = tuple[int, str]
"""A revision as ``(pos, revid)``: depth in the tree and the opaque id."""

_HEX = frozenset("0123456789abcdefABCDEF")


def normalize_revid(revid: str) -> str | None:
    """Return the canonical form of a revid, or ``None`` if it is invalid.

    Empty revids are invalid; 32-character ones must be hex and are lower-cased.
    """
    if not revid:
        return None
    if len(revid) == 32:
        if not _HEX.issuperset(revid):
            return None
        return revid.lower()
    return revid


def parse_rev(rev: object) -> RevKey:
    """Parse ``"N-revid"`` into ``(N, revid)``.

    Raises :class:`~couchpoint.errors.BadRequest` ("Invalid rev format") when ``rev`` is
    not a string, ``N`` is not a non-negative decimal integer, or the revid is invalid.
    ``N == 0`` is only valid for ``_local`` docs and is rejected here.
    """
    if not isinstance(rev, str):
        raise errors.invalid_rev()
    pos_text, sep, revid = rev.partition("-")
    if not sep or not pos_text.isdigit() or not pos_text.isascii():
        raise errors.invalid_rev()
    pos = int(pos_text)
    canonical = normalize_revid(revid)
    if pos < 1 or canonical is None:
        raise errors.invalid_rev()
    return pos, canonical


def format_rev(key: RevKey) -> str:
    """Format ``(pos, revid)`` as ``"pos-revid"``."""
    return f"{key[0]}-{key[1]}"


def parse_revisions(revisions: object) -> list[RevKey]:
    """Turn a ``_revisions`` object into a path, **oldest first**.

    ``{"start": 3, "ids": ["c", "b", "a"]}`` → ``[(1, "a"), (2, "b"), (3, "c")]``.
    Raises ``400 doc_validation`` when the shape is wrong (CouchDB
    ``couch_doc:transfer_fields``): ``start`` not a positive integer, ``ids`` not a
    non-empty list of strings, more ids than ``start`` allows, or an invalid revid.
    """
    if not isinstance(revisions, dict):
        # CouchDB only matches an object here; anything else falls through to the
        # unknown-special-field clause of couch_doc:transfer_fields.
        raise errors.doc_validation("Bad special document member: _revisions")
    start = revisions.get("start")
    ids = revisions.get("ids")
    if not isinstance(start, int) or isinstance(start, bool):
        raise errors.doc_validation("_revisions.start isn't an integer.")
    if not isinstance(ids, list) or not ids:
        raise errors.doc_validation("_revisions.ids isn't a array.")
    if start < len(ids) or start < 1:
        raise errors.doc_validation("_revisions.start is too small for _revisions.ids.")
    path: list[RevKey] = []
    for offset, revid in enumerate(ids):
        if not isinstance(revid, str):
            raise errors.doc_validation("RevId isn't a string")
        canonical = normalize_revid(revid)
        if canonical is None:
            raise errors.doc_validation("RevId isn't a valid hexadecimal")
        path.append((start - offset, canonical))
    path.reverse()
    return path


def format_revisions(path_newest_first: Sequence[RevKey]) -> dict[str, Any]:
    """``[(3, "c"), (2, "b"), (1, "a")]`` → ``{"start": 3, "ids": ["c", "b", "a"]}``."""
    return {
        "start": path_newest_first[0][0],
        "ids": [revid for _, revid in path_newest_first],
    }


def new_revid(
    parent: RevKey | None,
    body: dict[str, Any],
    deleted: bool,
    attachment_digests: Sequence[str] = (),
) -> str:
    """A deterministic 32-hex revid for an interactive edit.

    MD5 over the canonical JSON of ``[deleted, parent rev, body, attachment digests]``, so
    a retried write of the same edit gets the same rev instead of a spurious conflict
    branch (the rule CouchDB follows with its Erlang term hash, protocol reference §4.8).
    """
    material = orjson.dumps(
        [deleted, format_rev(parent) if parent else None, body, list(attachment_digests)],
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.md5(material, usedforsecurity=False).hexdigest()
