"""Who may write and who may see what: the example's two hooks, registered for the
``todos`` database only (``create_app(validate_doc_update={"todos": ...}, ...)``).

* :func:`validate_todo` replaces a CouchDB ``validate_doc_update`` design function: every
  revision a user writes (PUT, ``_bulk_docs``, replication) must be a todo they own.
* :func:`can_read` is per-document read access, which CouchDB does not have: a user sees
  only their own todos, through every route (``_changes``, ``_all_docs``, ``_bulk_get``,
  ``open_revs``, doc and attachment GETs), so all users share one database.

A deletion must keep the ``owner`` field (``db.put({...doc, _deleted: true})`` in
PouchDB, not ``db.remove(doc)``, which drops every field): otherwise the tombstone would
belong to nobody, :func:`can_read` would hide it, and the deletion would never reach the
owner's other devices.  This is the usual advice for filtered replication.
"""

from __future__ import annotations

from typing import Any

from couchpoint import Forbidden, Unauthorized


def validate_todo(
    new_doc: dict[str, Any],
    old_doc: dict[str, Any] | None,
    user_ctx: dict[str, Any],
    security: dict[str, Any],
) -> None:
    """Reject anything but a well-formed todo owned by the writer."""
    name = user_ctx.get("name")
    if name is None:
        raise Unauthorized("Log in to write todos.")
    if old_doc is not None and old_doc.get("owner") not in (None, name):
        raise Forbidden("This todo belongs to someone else.")
    if new_doc.get("owner") != name:
        raise Forbidden("A todo's owner must be the user who writes it.")
    if new_doc.get("_deleted"):
        return
    title = new_doc.get("title")
    if not isinstance(title, str) or not title.strip():
        raise Forbidden("A todo needs a title.")
    if not isinstance(new_doc.get("done", False), bool):
        raise Forbidden("`done` must be true or false.")


def can_read(doc: dict[str, Any], user_ctx: dict[str, Any]) -> bool:
    """A user sees the documents they own, nothing else (no design docs either)."""
    return doc.get("owner") is not None and doc.get("owner") == user_ctx.get("name")
