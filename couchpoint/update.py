"""Write policy: how an incoming edit becomes a path to merge, or a conflict.

Pure functions over :mod:`couchpoint.revtree` (no I/O).  Two kinds of writes exist:

* **Interactive** (``new_edits=true``, the default; PUT, POST, DELETE, ``_bulk_docs``):
  the client names the revision it edits and the server makes the new rev.  CouchDB 3's
  rules (``couch_db:prep_and_validate_update``, ``couch_db_updater:merge_rev_tree``;
  protocol reference §4.9) are in :func:`interactive_edit`.
* **Replicated** (``new_edits=false``): the client sends a revision with its history;
  it is merged verbatim without any conflict check (§4.10), see :func:`replicated_path`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from couchpoint import errors, revtree
from couchpoint.revs import RevKey, new_revid
from couchpoint.revtree import RevTree


def interactive_edit(
    tree: RevTree,
    parent: RevKey | None,
    *,
    deleted: bool,
    body: dict[str, Any],
    attachment_digests: Sequence[str] = (),
) -> tuple[RevTree, RevKey]:
    """Apply an interactive edit; return the new tree and the new revision.

    * Doc absent (empty tree): no ``parent`` → ``1-<new>``; a ``parent`` → conflict.
    * Doc live (winner not deleted): ``parent`` must be a leaf (winner, losing or deleted
      leaf) → ``N+1-<new>``; no ``parent`` or a non-leaf → conflict.
    * Doc deleted (every leaf a tombstone): only a rev-less, non-deleting write is
      accepted, grafted under the winning tombstone (``N+1``); anything else → conflict.

    Raises :class:`~couchpoint.errors.Conflict` (409 "Document update conflict.").
    """
    if not tree:
        if parent is not None:
            raise errors.Conflict()
        new: RevKey = (1, new_revid(None, body, deleted, attachment_digests))
        merged, _ = revtree.merge(tree, [new], deleted=deleted)
        return merged, new
    if revtree.is_deleted(tree):
        if parent is not None or deleted:
            raise errors.Conflict()
        parent = revtree.winner(tree)
        assert parent is not None
    elif parent is None or not tree.is_leaf(parent):
        raise errors.Conflict()
    new = (parent[0] + 1, new_revid(parent, body, deleted, attachment_digests))
    merged, tag = revtree.merge(tree, [parent, new], deleted=deleted)
    if tag != "new_leaf":
        raise errors.Conflict()
    return merged, new


def replicated_path(rev: RevKey | None, revisions: list[RevKey] | None) -> list[RevKey]:
    """The path to merge for a ``new_edits=false`` write, oldest first.

    ``_revisions`` wins over ``_rev`` (CouchDB ignores ``_rev`` when both are given).
    Raises ``400 bad_request`` when neither is given (CouchDB 3.3+ ``validate_revs``).
    """
    if revisions:
        return revisions
    if rev is not None:
        return [rev]
    raise errors.BadRequest("When `new_edits: false`, the document needs `_rev` or `_revisions` specified")
