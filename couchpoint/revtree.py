"""Revision trees: the data structure that makes replication and MVCC work.

Why trees
---------
Every edit of a document names the revision it edits, so a document's history is a chain
``1-a -> 2-b -> 3-c``.  When two peers edit the same revision independently and then
replicate, both children end up on both peers: ``2-b -> (3-c | 3-d)``.  That fork is a
*conflict*.  Nobody loses data: every peer stores both branches and, without talking to
the others, picks the same *winning revision* by a fixed rule (see :func:`winner`).  A
client resolves the conflict by deleting the losing branch, i.e. by adding a *tombstone*
(a revision with ``_deleted: true``) on top of it; a deleted leaf no longer counts as a
conflict.

Shape
-----
A tree is a *forest* of nodes keyed by :data:`~couchpoint.revs.RevKey` ``(pos, revid)``.
``pos`` is the depth of the revision (its ``N-``).  Each node knows its parent (``None``
for a root), whether the revision is a deletion, and whether it is *missing*: known only
by id (an ancestor learned from ``_revisions``) without a stored revision record.  A node
without children is a *leaf*.  This is the relational form described in the protocol
reference §5.1; it is equivalent to CouchDB's ``couch_key_tree`` for every tree the
replicators produce.

Start positions and stemming
----------------------------
Trees are *stemmed* to ``revs_limit`` (default 1000): for every leaf only the newest
``revs_limit`` nodes of its path survive; a node whose parent was cut becomes a root that
starts at its own ``pos`` (so a root's ``pos`` may be greater than 1).  Because the key
includes ``pos``, a later path that overlaps the stemmed tree at any node lines up with
it, and a path that reaches further back makes the tree *grow upward* again (§5.6).

Everything here is pure (standard library only) and iterative: histories are up to 1,000
deep and Python's default recursion limit is 1,000 frames.  Trees are never mutated;
every operation returns a new :class:`RevTree`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from couchpoint.revs import RevKey, format_rev

MergeTag = Literal["new_leaf", "new_branch", "internal_node"]
"""What a merge did (``couch_key_tree:merge``'s tag).

``new_leaf``: the path extended an existing leaf (or the tree was empty).
``new_branch``: it created a sibling under an inner node, or a new root.
``internal_node``: the path's last revision was already in the tree; no revision was
added (at most, ancestors known by id were grafted above a stemmed root).
"""

RevStatus = Literal["available", "deleted", "missing"]

_DELETED = 1
_MISSING = 2


@dataclass(frozen=True, slots=True)
class RevNode:
    """One revision in a tree.

    ``parent``: the parent's key, ``None`` for a root.  ``deleted``: the revision is a
    tombstone.  ``missing``: only the id is known (no revision record / body).
    """

    parent: RevKey | None
    deleted: bool = False
    missing: bool = False


# Nodes are immutable values, so every root with the same flags can be one shared object
# (``from_json`` and ``merge`` build a great many single-node trees).
_ROOTS = {
    (deleted, missing): RevNode(None, deleted, missing)
    for deleted in (False, True)
    for missing in (False, True)
}


def _node(parent: RevKey | None, deleted: bool, missing: bool) -> RevNode:
    if parent is None:
        return _ROOTS[deleted, missing]
    return RevNode(parent, deleted, missing)


def _winning_order(item: tuple[RevKey, RevNode]) -> tuple[bool, int, str]:
    key, node = item
    return (not node.deleted, key[0], key[1])


class RevTree:
    """An immutable revision forest.  Build one with :meth:`empty` and :func:`merge`.

    Behaves as a read-only mapping ``RevKey -> RevNode``.  Equality is structural.
    """

    __slots__ = ("_leaves", "_nodes")

    def __init__(self, nodes: Mapping[RevKey, RevNode] | None = None) -> None:
        self._nodes: dict[RevKey, RevNode] = dict(nodes or {})
        self._leaves: tuple[RevKey, ...] | None = None

    @classmethod
    def empty(cls) -> RevTree:
        return cls()

    @classmethod
    def _own(cls, nodes: dict[RevKey, RevNode], leaves: tuple[RevKey, ...] | None = None) -> RevTree:
        """A tree that takes ``nodes`` as its own, without the defensive copy (callers in
        this module build a fresh dict and never touch it again); ``leaves`` when the
        caller knows them already (in winning order)."""
        tree = cls.__new__(cls)
        tree._nodes = nodes
        tree._leaves = leaves
        return tree

    # -- mapping protocol ------------------------------------------------------------
    def __contains__(self, key: object) -> bool:
        return key in self._nodes

    def __getitem__(self, key: RevKey) -> RevNode:
        return self._nodes[key]

    def __iter__(self) -> Iterator[RevKey]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __bool__(self) -> bool:
        return bool(self._nodes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RevTree) and self._nodes == other._nodes

    def __hash__(self) -> int:  # pragma: no cover - trees are not used as keys
        return hash(frozenset(self._nodes.items()))

    def __repr__(self) -> str:
        return f"RevTree({sorted(self._nodes.items())!r})"

    @property
    def nodes(self) -> Mapping[RevKey, RevNode]:
        return self._nodes

    # -- leaves and winner -------------------------------------------------------------
    def leaves(self) -> tuple[RevKey, ...]:
        """Every leaf, in *winning order*: non-deleted first, then higher pos, then
        higher revid (protocol reference §5.3).  The first one is the winner."""
        if self._leaves is None:
            if len(self._nodes) == 1:
                self._leaves = tuple(self._nodes)
                return self._leaves
            parents = {node.parent for node in self._nodes.values()}
            leaf_items = [item for item in self._nodes.items() if item[0] not in parents]
            leaf_items.sort(key=_winning_order, reverse=True)
            self._leaves = tuple(key for key, _ in leaf_items)
        return self._leaves

    def is_leaf(self, key: RevKey) -> bool:
        return key in self.leaves()

    def children(self) -> dict[RevKey, list[RevKey]]:
        """Parent key → child keys (ascending by revid)."""
        result: dict[RevKey, list[RevKey]] = {}
        for key in sorted(self._nodes):
            parent = self._nodes[key].parent
            if parent is not None:
                result.setdefault(parent, []).append(key)
        return result


def winner(tree: RevTree) -> RevKey | None:
    """The winning revision: the leaf with the greatest ``(not deleted, pos, revid)``.

    Every peer computes it independently and gets the same answer (CouchDB
    ``couch_doc:to_doc_info_path``, PouchDB ``winningRev``).  ``None`` for an empty tree.
    """
    leaves = tree.leaves()
    return leaves[0] if leaves else None


def is_deleted(tree: RevTree) -> bool:
    """A document is deleted when its winner is a tombstone, i.e. when every leaf is."""
    win = winner(tree)
    return win is not None and tree[win].deleted


def conflicts(tree: RevTree) -> list[RevKey]:
    """``_conflicts``: non-deleted leaves other than the winner, in winning order."""
    return [k for k in tree.leaves()[1:] if not tree[k].deleted]


def deleted_conflicts(tree: RevTree) -> list[RevKey]:
    """``_deleted_conflicts``: deleted leaves other than the winner, in winning order."""
    return [k for k in tree.leaves()[1:] if tree[k].deleted]


# -- paths -------------------------------------------------------------------------------


def ancestry(tree: RevTree, key: RevKey) -> list[RevKey]:
    """The path from ``key`` up to its root, **newest first** (``key`` included).

    Raises ``KeyError`` if ``key`` is not in the tree.
    """
    path = [key]
    node = tree[key]
    while node.parent is not None:
        path.append(node.parent)
        node = tree[node.parent]
    return path


def revisions(tree: RevTree, key: RevKey, limit: int | None = None) -> dict[str, Any]:
    """``_revisions`` for ``key``: ``{"start": pos, "ids": [newest ... oldest]}``,
    at most ``limit`` ids (CouchDB caps it at ``revs_limit``)."""
    path = ancestry(tree, key)
    if limit is not None:
        path = path[:limit]
    return {"start": key[0], "ids": [revid for _, revid in path]}


def status(node: RevNode) -> RevStatus:
    """``_revs_info`` status of one node."""
    if node.missing:
        return "missing"
    if node.deleted:
        return "deleted"
    return "available"


def revs_info(tree: RevTree, key: RevKey) -> list[dict[str, str]]:
    """``_revs_info`` for ``key``: ``[{"rev", "status"}]`` newest first (§4.5)."""
    return [{"rev": format_rev(k), "status": status(tree[k])} for k in ancestry(tree, key)]


def latest(tree: RevTree, key: RevKey) -> list[RevKey]:
    """The leaves descending from ``key`` (itself if it is a leaf), in winning order.

    Backs ``open_revs=[...]&latest=true`` (§5.8).  Empty if ``key`` is unknown.
    """
    if key not in tree:
        return []
    if tree.is_leaf(key):
        return [key]
    kids = tree.children()
    found: set[RevKey] = set()
    stack = [key]
    while stack:
        current = stack.pop()
        below = kids.get(current)
        if below:
            stack.extend(below)
        else:
            found.add(current)
    return [leaf for leaf in tree.leaves() if leaf in found]


def find_missing(tree: RevTree, revs: Iterable[RevKey]) -> tuple[list[RevKey], list[RevKey]]:
    """Split ``revs`` for ``_revs_diff`` (§5.7).

    Returns ``(missing, possible_ancestors)``: the revs not present anywhere in the tree
    (leaf or inner node, with or without a body), in input order without duplicates; and,
    when something is missing, the leaves whose ``pos`` is lower than that of some missing
    rev, in the order CouchDB lists them (reverse winning order).
    """
    missing: list[RevKey] = []
    seen: set[RevKey] = set()
    for rev in revs:
        if rev not in tree and rev not in seen:
            seen.add(rev)
            missing.append(rev)
    if not missing:
        return [], []
    top = max(pos for pos, _ in missing)
    ancestors = [leaf for leaf in reversed(tree.leaves()) if leaf[0] < top]
    return missing, ancestors


# -- merge and stem ----------------------------------------------------------------------


def merge(tree: RevTree, path: Sequence[RevKey], *, deleted: bool = False) -> tuple[RevTree, MergeTag]:
    """Merge a revision path into ``tree`` (``couch_key_tree:merge``, §5.2).

    ``path`` runs **oldest first** with consecutive positions; its last element is the
    new revision (a deletion if ``deleted``), every other element an ancestor known by id.
    Nodes already in the tree are shared; new ones are attached under their predecessor;
    a stored root that the path reaches above makes the tree grow upward; a path that
    overlaps nothing becomes a new root.

    If the last revision is already in the tree the result is ``"internal_node"`` and its
    flags are left alone (CouchDB ignores a replicated body for a revision it already
    has).  The path's ancestors are still grafted above a stored root, as
    ``couch_key_tree:merge`` does whatever the tag: otherwise the tree would depend on
    arrival order (``[1-a]``, ``[2-b]``, ``[1-a, 2-b]`` would keep ``1-a`` as a zombie
    leaf, while the reverse order gives one branch).  A path that adds nothing returns
    ``tree`` itself.

    Raises ``ValueError`` for an empty path or non-consecutive positions.
    """
    if not path:
        raise ValueError("empty revision path")
    for older, newer in zip(path, path[1:], strict=False):
        if newer[0] != older[0] + 1:
            raise ValueError(f"non-consecutive revision path at {format_rev(newer)}")
    last = path[-1]
    if not tree:  # a new document: the path is the whole tree (ancestors known by id)
        fresh: dict[RevKey, RevNode] = {}
        prev: RevKey | None = None
        for key in path:
            fresh[key] = _node(prev, deleted and key == last, key != last)
            prev = key
        return RevTree._own(fresh, (last,)), "new_leaf"
    return _merge(tree, path, deleted)


def _merge(tree: RevTree, path: Sequence[RevKey], deleted: bool) -> tuple[RevTree, MergeTag]:
    last = path[-1]
    known = last in tree

    nodes: Mapping[RevKey, RevNode] = tree.nodes  # copied on the first change only
    changed: dict[RevKey, RevNode] | None = None
    deepest_existing: RevKey | None = None
    inserted_prefix: list[RevKey] = []  # new nodes not yet connected to an existing one
    prev: RevKey | None = None
    for key in path:
        node = nodes.get(key)
        if node is None:
            if changed is None:
                nodes = changed = dict(nodes)
            is_last = key == last
            changed[key] = _node(prev, deleted and is_last, not is_last)
            inserted_prefix.append(key)
        else:
            deepest_existing = key
            if prev is not None and node.parent != prev:
                if node.parent is None:
                    # The stored tree was stemmed (or started late): grow it upward.
                    if changed is None:
                        nodes = changed = dict(nodes)
                    changed[key] = replace(node, parent=prev)
                elif changed is not None:
                    # The path disagrees with stored ancestry above this node; keep what
                    # is stored and drop the path's dangling prefix so it leaves no bogus
                    # leaf.
                    for orphan in inserted_prefix:
                        del changed[orphan]
            inserted_prefix = []
        prev = key

    tag: MergeTag
    if known:
        tag = "internal_node"
    elif not tree:
        tag = "new_leaf"
    elif deepest_existing is None:
        tag = "new_branch"
    elif tree.is_leaf(deepest_existing):
        tag = "new_leaf"
    else:
        tag = "new_branch"
    if changed is None or (known and changed == tree.nodes):
        return tree, tag
    return RevTree._own(changed), tag


def stem(tree: RevTree, limit: int) -> RevTree:
    """Keep, for every leaf, at most ``limit`` nodes of its path (§5.5).

    A node survives if it lies within ``limit`` of at least one leaf below it; a survivor
    whose parent is cut becomes a root.  Every leaf survives and no path gets longer.
    Raises ``ValueError`` if ``limit < 1``.
    """
    if limit < 1:
        raise ValueError("revs_limit must be at least 1")
    nodes = tree.nodes
    if len(nodes) <= limit:  # no path can be longer than the tree has nodes
        return tree
    keep: set[RevKey] = set()
    for leaf in tree.leaves():
        key: RevKey | None = leaf
        depth = 0
        while key is not None and depth < limit:
            keep.add(key)
            key = nodes[key].parent
            depth += 1
    if len(keep) == len(nodes):
        return tree
    stemmed: dict[RevKey, RevNode] = {}
    for key in keep:
        node = nodes[key]
        if node.parent is not None and node.parent not in keep:
            node = _node(None, node.deleted, node.missing)
        stemmed[key] = node
    return RevTree._own(stemmed)


def compact(tree: RevTree) -> RevTree:
    """Mark every non-leaf revision ``missing`` (its body is gone), as compaction does."""
    leaves = set(tree.leaves())
    return RevTree(
        {
            key: node if key in leaves or node.missing else replace(node, missing=True)
            for key, node in tree.nodes.items()
        }
    )


# -- serialization -----------------------------------------------------------------------


def to_json(tree: RevTree) -> list[list[Any]]:
    """Compact JSON form: ``[[pos, revid, parent_index, flags], ...]`` sorted by key.

    ``parent_index`` points into the same list (-1 for roots; parents sort first because
    their ``pos`` is smaller); ``flags`` bit 1 = deleted, bit 2 = missing.
    """
    if len(tree.nodes) == 1:
        [(key, node)] = tree.nodes.items()
        flags = (_DELETED if node.deleted else 0) | (_MISSING if node.missing else 0)
        return [[key[0], key[1], -1, flags]]
    order = sorted(tree.nodes)
    index = {key: i for i, key in enumerate(order)}
    rows: list[list[Any]] = []
    for key in order:
        node = tree[key]
        flags = (_DELETED if node.deleted else 0) | (_MISSING if node.missing else 0)
        parent = -1 if node.parent is None else index[node.parent]
        rows.append([key[0], key[1], parent, flags])
    return rows


def from_json(rows: Sequence[Sequence[Any]]) -> RevTree:
    """Inverse of :func:`to_json`."""
    keys: list[RevKey] = [(int(row[0]), str(row[1])) for row in rows]
    nodes: dict[RevKey, RevNode] = {}
    for key, row in zip(keys, rows, strict=True):
        parent_index = int(row[2])
        flags = int(row[3])
        nodes[key] = _node(
            None if parent_index < 0 else keys[parent_index], bool(flags & _DELETED), bool(flags & _MISSING)
        )
    return RevTree._own(nodes)


def leaf_summary(tree: RevTree) -> list[tuple[str, bool]]:
    """``[(rev string, deleted)]`` for every leaf in winning order (winner first)."""
    return [(format_rev(key), tree[key].deleted) for key in tree.leaves()]
