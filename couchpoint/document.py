"""Documents on the wire: id rules, special fields, and the JSON a client gets back.

Pure functions (no I/O).  CouchDB docs *Document API* and the protocol reference §4.1–§4.2:

* Ids are non-empty strings; ids starting with ``_`` are reserved, except ``_design/<n>``
  (and ``_local/<n>``, handled apart).
* Special fields: ``_id _rev _deleted _attachments _revisions`` are read;
  ``_revs_info _local_seq _conflicts _deleted_conflicts`` are silently dropped;
  ``_access`` and the ``_replication_*`` fields are kept in the body; any other
  underscore field is ``400 doc_validation "Bad special document member: _foo"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from couchpoint import errors
from couchpoint.attachments import stub
from couchpoint.revs import RevKey, parse_rev, parse_revisions

DESIGN_PREFIX = "_design/"
LOCAL_PREFIX = "_local/"

_DROPPED = frozenset({"_revs_info", "_local_seq", "_conflicts", "_deleted_conflicts"})
_KEPT = frozenset(
    {
        "_access",
        "_replication_id",
        "_replication_state",
        "_replication_state_time",
        "_replication_state_reason",
        "_replication_stats",
    }
)


def validate_docid(doc_id: object) -> str:
    """Return ``doc_id`` if it is a valid (non-local) document id.

    Raises ``400 illegal_docid`` for non-strings, empty ids, a bare ``_design/``, and other
    ids starting with ``_`` (``couch_doc:validate_docid``).
    """
    if not isinstance(doc_id, str):
        raise errors.illegal_docid("Document id must be a string")
    if not doc_id:
        raise errors.illegal_docid("Document id must not be empty")
    if doc_id.startswith("_"):
        if doc_id.startswith(DESIGN_PREFIX) and len(doc_id) > len(DESIGN_PREFIX):
            return doc_id
        if doc_id in (DESIGN_PREFIX, LOCAL_PREFIX):
            raise errors.illegal_docid("Illegal document id `" + doc_id + "`")
        raise errors.illegal_docid("Only reserved document ids may start with underscore.")
    try:
        doc_id.encode("utf-8")
    except UnicodeEncodeError:
        raise errors.illegal_docid("Document id must be valid UTF-8") from None
    return doc_id


@dataclass(frozen=True, slots=True)
class IncomingDoc:
    """A document body split into what the revision tree needs and what is stored.

    ``rev``: the ``_rev`` given (parsed) or ``None``.  ``revisions``: the path from
    ``_revisions`` (oldest first) or ``None``.  ``body``: everything else to store,
    including ``_attachments`` and kept special fields.
    """

    id: str | None
    rev: RevKey | None
    revisions: list[RevKey] | None
    deleted: bool
    body: dict[str, Any]


def split_doc(doc: object) -> IncomingDoc:
    """Validate a JSON document and split out its special fields.

    Raises ``400 bad_request`` if ``doc`` is not an object ("Document must be a JSON
    object"), ``400 doc_validation`` for unknown underscore fields or a bad
    ``_revisions``, ``400 bad_request "Invalid rev format"`` for a bad ``_rev``, and
    ``400 illegal_docid`` for a bad ``_id`` (``_local/`` ids are returned as they are).
    """
    if not isinstance(doc, dict):
        raise errors.BadRequest("Document must be a JSON object")
    body: dict[str, Any] = {}
    doc_id: str | None = None
    rev: RevKey | None = None
    revisions: list[RevKey] | None = None
    deleted = False
    is_local = isinstance(doc.get("_id"), str) and doc["_id"].startswith(LOCAL_PREFIX)
    for key, value in doc.items():
        if not key.startswith("_"):
            body[key] = value
        elif key == "_id":
            if isinstance(value, str) and value.startswith(LOCAL_PREFIX):
                doc_id = value
            else:
                doc_id = validate_docid(value)
        elif key == "_rev":
            rev = parse_local_rev(value) if is_local else parse_rev(value)
        elif key == "_deleted":
            deleted = value is True
        elif key == "_revisions":
            revisions = parse_revisions(value)
        elif key == "_attachments" or key in _KEPT:
            body[key] = value
        elif key in _DROPPED:
            continue
        else:
            raise errors.doc_validation(f"Bad special document member: {key}")
    return IncomingDoc(doc_id, rev, revisions, deleted, body)


def parse_local_rev(rev: object) -> RevKey:
    """Parse a ``_local`` rev ``"0-N"`` into ``(0, "N")``; ``400 Invalid rev format``."""
    if isinstance(rev, str):
        pos, sep, num = rev.partition("-")
        if sep and pos == "0" and num.isdigit():
            return 0, num
    raise errors.invalid_rev()


def render_doc(
    doc_id: str, rev: str, deleted: bool, body: dict[str, Any], *, att_encoding_info: bool = False
) -> dict[str, Any]:
    """The JSON a client gets for one revision: ``_id``, ``_rev``, ``_deleted`` (only when
    true), then the stored body, with stored attachments shown as stubs."""
    out: dict[str, Any] = {"_id": doc_id, "_rev": rev}
    if deleted:
        out["_deleted"] = True
    for key, value in body.items():
        out[key] = value
    atts = body.get("_attachments")
    if isinstance(atts, dict):
        out["_attachments"] = {
            name: stub(meta, encoding_info=att_encoding_info)
            if isinstance(meta, dict) and "blob" in meta
            else meta
            for name, meta in atts.items()
        }
    return out
