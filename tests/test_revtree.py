"""Laws for revision trees (protocol reference §4.5, §5.1–§5.9).

Two halves, after Apache CouchDB's ``couch_key_tree_tests.erl`` / PouchDB's
``test.merge.js`` (examples named as laws) and ``couch_key_tree_prop_tests.erl``
(properties over generated trees):

* unit tests, one per rule, each docstring naming the rule it pins;
* Hypothesis properties over random revision forests (see :func:`histories`).

Revisions are written as CouchDB strings (``"2-b"``) in the examples and parsed with
:func:`couchpoint.revs.parse_rev`; paths run oldest first, like :func:`merge` takes them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from couchpoint.revs import RevKey, format_rev, parse_rev
from couchpoint.revtree import (
    RevNode,
    RevTree,
    ancestry,
    compact,
    conflicts,
    deleted_conflicts,
    find_missing,
    from_json,
    is_deleted,
    latest,
    leaf_summary,
    merge,
    revisions,
    revs_info,
    stem,
    to_json,
    winner,
)

# -- helpers -------------------------------------------------------------------------------


def keys(*revs: str) -> list[RevKey]:
    """``keys("1-a", "2-b")`` → ``[(1, "a"), (2, "b")]``."""
    return [parse_rev(rev) for rev in revs]


def k(rev: str) -> RevKey:
    return parse_rev(rev)


def revs(key_list: Sequence[RevKey]) -> list[str]:
    return [format_rev(key) for key in key_list]


def add(tree: RevTree, *path: str, deleted: bool = False) -> RevTree:
    """Merge a path (rev strings, oldest first) and return the new tree."""
    new, _ = merge(tree, keys(*path), deleted=deleted)
    return new


def tree_of(*paths: Sequence[str]) -> RevTree:
    """Merge each path (rev strings, oldest first; none deleted) into an empty tree."""
    tree = RevTree.empty()
    for path in paths:
        tree = add(tree, *path)
    return tree


def shape(tree: RevTree) -> dict[RevKey, RevKey | None]:
    """The parent relation only (flags ignored)."""
    return {key: node.parent for key, node in tree.nodes.items()}


def max_depth(tree: RevTree) -> int:
    return max((len(ancestry(tree, leaf)) for leaf in tree.leaves()), default=0)


# ==========================================================================================
# Unit tests
# ==========================================================================================

# -- merge ---------------------------------------------------------------------------------


def test_the_empty_tree_is_the_identity_for_merge() -> None:
    """§5.2 (PouchDB "The empty tree is the identity for merge"): merging a path into an
    empty tree gives exactly the tree of that path, tagged new_leaf."""
    path = keys("1-a", "2-b", "3-c")
    tree, tag = merge(RevTree.empty(), path)
    assert tag == "new_leaf"
    assert tree == RevTree(
        {
            (1, "a"): RevNode(parent=None, missing=True),
            (2, "b"): RevNode(parent=(1, "a"), missing=True),
            (3, "c"): RevNode(parent=(2, "b")),
        }
    )
    assert RevTree.empty() == RevTree() and not RevTree.empty() and len(RevTree.empty()) == 0


def test_merging_a_single_rev_into_an_empty_tree_is_a_new_leaf() -> None:
    """§5.2 rule 3: "new_leaf — the path extended an existing leaf (or the tree was empty)"."""
    tree, tag = merge(RevTree.empty(), keys("1-a"))
    assert tag == "new_leaf"
    assert tree.leaves() == (k("1-a"),)
    assert tree[k("1-a")] == RevNode(parent=None)


def test_extending_a_leaf_is_a_new_leaf() -> None:
    """§5.2 rule 3 / §4.9: an edit whose parent is a leaf is new_leaf (the only tag an
    interactive edit accepts)."""
    tree = tree_of(["1-a", "2-b"])
    new, tag = merge(tree, keys("2-b", "3-c"))
    assert tag == "new_leaf"
    assert new.leaves() == (k("3-c"),)
    assert new[k("3-c")].parent == k("2-b")
    assert not new[k("2-b")].missing  # the old leaf keeps its body


def test_a_sibling_of_an_existing_revision_is_a_new_branch() -> None:
    """§5.2 rule 3: a path that forks below an inner node is new_branch (a conflict)."""
    tree = tree_of(["1-a", "2-b"])
    new, tag = merge(tree, keys("1-a", "2-c"))
    assert tag == "new_branch"
    assert set(new.leaves()) == {k("2-b"), k("2-c")}
    assert new.children() == {k("1-a"): [k("2-b"), k("2-c")]}


def test_a_disjoint_path_becomes_a_new_root_and_a_new_branch() -> None:
    """§5.2 rule 2 / §5.6 disjoint path: a path overlapping no tree is a separate root."""
    tree = tree_of(["1-a", "2-b"])
    new, tag = merge(tree, keys("5-x", "6-y"))
    assert tag == "new_branch"
    roots = sorted(key for key, node in new.nodes.items() if node.parent is None)
    assert roots == [k("1-a"), k("5-x")]
    assert set(new.leaves()) == {k("2-b"), k("6-y")}
    assert new[k("5-x")].missing and not new[k("6-y")].missing


def test_merging_is_reflexive() -> None:
    """§5.2 rule 3 / §4.10 (couch_key_tree "should_merge_reflexive"): re-merging a path
    whose revisions are all present is internal_node and returns the same tree."""
    tree = tree_of(["1-a", "2-b", "3-c"], ["1-a", "2-d"])
    for path in (["1-a", "2-b", "3-c"], ["2-b", "3-c"], ["3-c"], ["1-a", "2-d"], ["1-a"], ["2-b"]):
        new, tag = merge(tree, keys(*path))
        assert tag == "internal_node"
        assert new == tree


def test_a_replayed_body_for_a_known_revision_is_ignored() -> None:
    """§5.2 row model: "CouchDB ignores a replicated body for a revision that is already
    in the tree, even one only known by id" — flags do not change, even if deleted."""
    tree = tree_of(["1-a", "2-b", "3-c"])
    new, tag = merge(tree, keys("1-a", "2-b"), deleted=True)
    assert tag == "internal_node"
    assert new == tree
    assert new[k("2-b")] == RevNode(parent=k("1-a"), missing=True)


def test_a_replicated_path_marks_its_ancestors_missing() -> None:
    """§4.10 / §4.5: ancestors learned from ``_revisions`` are known by id only,
    revs_info status "missing"; the new leaf carries the body."""
    tree, _ = merge(RevTree.empty(), keys("1-a", "2-b", "3-c", "4-d"))
    assert revs_info(tree, k("4-d")) == [
        {"rev": "4-d", "status": "available"},
        {"rev": "3-c", "status": "missing"},
        {"rev": "2-b", "status": "missing"},
        {"rev": "1-a", "status": "missing"},
    ]


def test_a_stored_revision_beats_a_missing_marker() -> None:
    """§5.2 rule 1 (couch_key_tree value_pref): a node that already has a body keeps it
    when a longer path names it as an ancestor."""
    tree = tree_of(["1-a"], ["1-a", "2-b"])
    assert not tree[k("1-a")].missing and not tree[k("2-b")].missing
    new = add(tree, "1-a", "2-b", "3-c")
    assert not new[k("1-a")].missing and not new[k("2-b")].missing


def test_a_deleted_path_stores_a_tombstone_leaf() -> None:
    """§4.6: deleting is adding a child revision flagged deleted; ancestors are not."""
    tree = add(tree_of(["1-a"]), "1-a", "2-b", deleted=True)
    assert tree[k("2-b")].deleted and not tree[k("1-a")].deleted
    assert revs_info(tree, k("2-b"))[0] == {"rev": "2-b", "status": "deleted"}


def test_the_tree_grows_upward_when_a_path_reaches_above_a_stemmed_root() -> None:
    """§5.2 rule 1 / §5.6 overlapping path: the stored root gets the path's earlier nodes
    as ancestors (new_leaf), and stemming to the limit trims them again."""
    stemmed = tree_of(["3-c", "4-d"])  # history before 3 was stemmed away
    grown, tag = merge(stemmed, keys("1-a", "2-b", "3-c", "4-d", "5-e"))
    assert tag == "new_leaf"
    assert ancestry(grown, k("5-e")) == keys("5-e", "4-d", "3-c", "2-b", "1-a")
    assert grown[k("3-c")].parent == k("2-b")
    assert grown[k("1-a")].missing and grown[k("2-b")].missing
    assert stem(grown, 2) == RevTree(
        {(4, "d"): RevNode(parent=None, missing=False), (5, "e"): RevNode(parent=(4, "d"))}
    )


def test_a_replayed_rev_still_grows_the_tree_above_a_stemmed_root() -> None:
    """§5.2 rule 1 (couch_key_tree:merge grows the tree whatever the tag): a known rev
    re-sent with a longer ``_revisions`` is internal_node, yet its older ancestors are
    grafted above the stored root, so the merge result does not depend on arrival order."""
    short_first = add(tree_of(["2-b", "3-c"]), "1-a", "2-b", "3-c")
    long_first = add(tree_of(["1-a", "2-b", "3-c"]), "2-b", "3-c")
    _, tag = merge(tree_of(["2-b", "3-c"]), keys("1-a", "2-b", "3-c"))
    assert tag == "internal_node"
    assert short_first == long_first
    assert short_first[k("2-b")].parent == k("1-a")
    assert short_first[k("1-a")] == RevNode(parent=None, missing=True)
    assert not short_first[k("3-c")].missing  # the stored body stays


def test_stemming_after_reinserting_stemmed_history_is_invisible() -> None:
    """§5.6 overlapping path: "the tree grows back up ... then stemming trims it to limit
    again. Net effect: nothing visible"."""
    full = keys(*(f"{i}-r{i}" for i in range(1, 11)))
    stemmed = stem(merge(RevTree.empty(), full)[0], 4)
    assert min(pos for pos, _ in stemmed) == 7
    regrown, tag = merge(stemmed, full)
    assert tag == "internal_node"
    assert min(pos for pos, _ in regrown) == 1
    assert stem(regrown, 4) == stemmed


def test_a_path_can_join_a_stemmed_tree_to_an_older_one() -> None:
    """§5.2 rule 1: a path that overlaps two stored trees links them (the newer root
    grows upward onto the path, which hangs off the older tree)."""
    tree = tree_of(["1-a", "2-b"], ["4-d", "5-e"])
    new, tag = merge(tree, keys("1-a", "2-b", "3-c", "4-d", "5-e", "6-f"))
    assert tag == "new_leaf"
    assert ancestry(new, k("6-f")) == keys("6-f", "5-e", "4-d", "3-c", "2-b", "1-a")
    assert new.leaves() == (k("6-f"),)


def test_merge_rejects_empty_and_non_consecutive_paths() -> None:
    """§4.4: a path has consecutive positions (``ids[k]`` is at depth ``start - k``)."""
    with pytest.raises(ValueError):
        merge(RevTree.empty(), [])
    with pytest.raises(ValueError):
        merge(RevTree.empty(), keys("1-a", "3-c"))
    with pytest.raises(ValueError):
        merge(RevTree.empty(), keys("2-a", "1-b"))


def test_merge_never_mutates_its_input() -> None:
    """Trees are immutable values (architecture §4 caveat: PouchDB's merge mutates)."""
    tree = tree_of(["1-a", "2-b"])
    before = to_json(tree)
    add(tree, "1-a", "2-c")
    add(tree, "3-x")
    stem(tree, 1)
    compact(tree)
    assert to_json(tree) == before


# -- winner, conflicts, leaves ----------------------------------------------------------------


def test_winner_of_the_empty_tree_is_none() -> None:
    """§5.3: no leaves, no winner; a document that does not exist is not deleted."""
    assert winner(RevTree.empty()) is None
    assert not is_deleted(RevTree.empty())
    assert conflicts(RevTree.empty()) == [] and deleted_conflicts(RevTree.empty()) == []


def test_winner_non_deleted_beats_deleted() -> None:
    """§5.3 winner rule 1: any non-deleted leaf beats every deleted leaf, even a longer one."""
    tree = add(tree_of(["1-a", "2-b"]), "1-a", "2-c", "3-d", "4-e", deleted=True)
    assert winner(tree) == k("2-b")
    assert not is_deleted(tree)


def test_winner_higher_pos_wins() -> None:
    """§5.3 winner rule 2: the longer edit history (greater pos) wins."""
    tree = tree_of(["1-a", "2-z"], ["1-a", "2-b", "3-a"])
    assert winner(tree) == k("3-a")


def test_winner_higher_revid_string_wins() -> None:
    """§5.3 winner rule 3: at equal pos, the greater revid as a string (byte order)."""
    tree = tree_of(["1-a", "2-b"], ["1-a", "2-c"], ["1-a", "2-B"])
    assert winner(tree) == k("2-c")
    # string order, not numeric: "9" > "10"
    assert winner(tree_of(["1-10"], ["1-9"])) == k("1-9")
    # 32-hex ids compare as lowercase hex strings
    low, high = "0" * 31 + "f", "1" + "0" * 31
    assert winner(tree_of([f"1-{low}"], [f"1-{high}"])) == (1, high)


def test_a_document_is_deleted_only_when_every_leaf_is() -> None:
    """§4.6 / §5.4: deleted ⇔ the winner is a tombstone ⇔ all leaves are tombstones."""
    tree = tree_of(["1-a", "2-b"])
    tree = add(tree, "1-a", "2-c", deleted=True)
    assert not is_deleted(tree)
    tree = add(tree, "2-b", "3-d", deleted=True)
    assert is_deleted(tree)
    assert winner(tree) == k("3-d")


def test_conflicts_are_the_other_live_leaves_in_winning_order() -> None:
    """§4.5 / §5.4: ``_conflicts`` = non-deleted leaves other than the winner, by
    (pos, revid) descending; ``_deleted_conflicts`` = the deleted ones."""
    tree = tree_of(["1-a", "2-b", "3-c"], ["1-a", "2-d"], ["1-a", "2-e"], ["1-a", "2-b", "3-a"])
    tree = add(tree, "1-a", "2-f", deleted=True)
    tree = add(tree, "1-a", "2-b", "3-g", "4-h", deleted=True)
    tree = add(tree, "2-e", "3-z", deleted=True)  # resolves the 2-e branch
    assert winner(tree) == k("3-c")
    assert revs(conflicts(tree)) == ["3-a", "2-d"]
    assert revs(deleted_conflicts(tree)) == ["4-h", "3-z", "2-f"]


def test_a_deleted_leaf_is_not_a_conflict() -> None:
    """§5.4: "a doc with one live leaf and any number of deleted leaves is simply that live
    revision"."""
    tree = add(tree_of(["1-a", "2-b"]), "1-a", "2-c", deleted=True)
    assert conflicts(tree) == []
    assert revs(deleted_conflicts(tree)) == ["2-c"]


def test_leaves_are_listed_in_winning_order() -> None:
    """§5.1 / §5.3: leaves() is every leaf, winner first, deleted last; inner nodes never."""
    tree = tree_of(["1-a", "2-b", "3-c"], ["1-a", "2-d"], ["7-q"])
    tree = add(tree, "1-a", "2-b", "3-e", "4-f", deleted=True)
    assert revs(tree.leaves()) == ["7-q", "3-c", "2-d", "4-f"]
    assert leaf_summary(tree) == [("7-q", False), ("3-c", False), ("2-d", False), ("4-f", True)]
    assert tree.is_leaf(k("2-d")) and not tree.is_leaf(k("2-b"))


def test_children_are_sorted_by_revid() -> None:
    """§5.1: "Children are kept sorted by revid (ascending, plain string/byte order)"."""
    tree = tree_of(["1-a", "2-z"], ["1-a", "2-B"], ["1-a", "2-m"])
    assert tree.children() == {k("1-a"): keys("2-B", "2-m", "2-z")}


# -- paths, revisions, revs_info ---------------------------------------------------------------


def test_ancestry_runs_newest_first_up_to_the_root() -> None:
    """§4.4 / §4.5: paths are listed from the revision back to the oldest stored ancestor."""
    tree = tree_of(["1-a", "2-b", "3-c"], ["1-a", "2-d"])
    assert ancestry(tree, k("3-c")) == keys("3-c", "2-b", "1-a")
    assert ancestry(tree, k("1-a")) == keys("1-a")
    with pytest.raises(KeyError):
        ancestry(tree, k("9-x"))


def test_revisions_lists_ids_newest_first_capped_by_limit() -> None:
    """§4.4 on output: ``_revisions`` runs back to the oldest stored ancestor, capped at
    ``revs_limit`` entries; ``start`` is the revision's own pos."""
    tree = tree_of(["3-c", "4-d", "5-e", "6-f"])
    assert revisions(tree, k("6-f")) == {"start": 6, "ids": ["f", "e", "d", "c"]}
    assert revisions(tree, k("6-f"), limit=2) == {"start": 6, "ids": ["f", "e"]}
    assert revisions(tree, k("6-f"), limit=100) == {"start": 6, "ids": ["f", "e", "d", "c"]}
    assert revisions(tree, k("4-d")) == {"start": 4, "ids": ["d", "c"]}


def test_revs_info_reports_available_deleted_and_missing() -> None:
    """§4.5 ``_revs_info`` statuses: available (body stored), deleted (a deletion),
    missing (known by id only)."""
    tree = tree_of(["1-a"])
    tree = add(tree, "1-a", "2-b", deleted=True)
    tree = add(tree, "2-b", "3-c")  # undelete on top of the tombstone
    tree = add(tree, "1-a", "2-b", "3-c", "4-d", "5-e")  # replicated: 4-d missing
    assert revs_info(tree, k("5-e")) == [
        {"rev": "5-e", "status": "available"},
        {"rev": "4-d", "status": "missing"},
        {"rev": "3-c", "status": "available"},
        {"rev": "2-b", "status": "deleted"},
        {"rev": "1-a", "status": "available"},
    ]


# -- latest ------------------------------------------------------------------------------------


def test_latest_of_a_leaf_is_the_leaf_itself() -> None:
    """§5.8 ``latest=true``: a requested leaf is returned as is (deleted ones too)."""
    tree = add(tree_of(["1-a", "2-b"]), "1-a", "2-c", deleted=True)
    assert latest(tree, k("2-b")) == [k("2-b")]
    assert latest(tree, k("2-c")) == [k("2-c")]


def test_latest_of_an_inner_node_is_every_leaf_below_it_in_winning_order() -> None:
    """§5.8 ``latest=true``: each requested rev is replaced by all leaves descending from it."""
    tree = tree_of(["1-a", "2-b", "3-c"], ["1-a", "2-b", "3-d", "4-e"], ["1-a", "2-f"], ["1-x"])
    tree = add(tree, "2-b", "3-g", deleted=True)
    assert latest(tree, k("2-b")) == keys("4-e", "3-c", "3-g")
    assert latest(tree, k("1-a")) == keys("4-e", "3-c", "2-f", "3-g")
    assert latest(tree, k("3-d")) == keys("4-e")


def test_latest_of_an_unknown_rev_is_empty() -> None:
    """§5.8: "Requested revs unknown to the tree come back as missing entries"."""
    tree = tree_of(["1-a", "2-b"])
    assert latest(tree, k("3-z")) == []
    assert latest(RevTree.empty(), k("1-a")) == []


# -- find_missing (_revs_diff) -----------------------------------------------------------------


def test_find_missing_reports_nothing_when_every_rev_is_known() -> None:
    """§5.7: a rev is present if it is anywhere in the tree, leaf or inner, with or without
    a body; nothing missing → no possible_ancestors."""
    tree = tree_of(["3-c", "4-d", "5-e"], ["3-c", "4-f"])
    assert find_missing(tree, keys("3-c", "4-d", "5-e", "4-f")) == ([], [])
    assert find_missing(tree, []) == ([], [])


def test_find_missing_lists_missing_revs_once_in_input_order() -> None:
    """§5.7: unknown revs, including stemmed ones and revs of a missing doc, are missing."""
    tree = tree_of(["3-c", "4-d"])
    assert find_missing(tree, keys("9-z", "1-a", "4-d", "9-z", "2-b"))[0] == keys("9-z", "1-a", "2-b")
    assert find_missing(RevTree.empty(), keys("1-a")) == (keys("1-a"), [])


def test_possible_ancestors_are_leaves_below_some_missing_rev() -> None:
    """§5.7: ``possible_ancestors`` = leaves (deleted included) whose pos is lower than the
    highest pos among the missing revs, in CouchDB's order (reverse winning order)."""
    tree = tree_of(["1-a", "2-b", "3-c"], ["1-a", "2-d"], ["1-a", "2-b", "3-e", "4-f"])
    tree = add(tree, "1-a", "2-g", deleted=True)
    assert find_missing(tree, keys("3-x")) == (keys("3-x"), keys("2-g", "2-d"))
    assert find_missing(tree, keys("4-x")) == (keys("4-x"), keys("2-g", "2-d", "3-c"))
    assert find_missing(tree, keys("5-x", "2-y")) == (keys("5-x", "2-y"), keys("2-g", "2-d", "3-c", "4-f"))
    assert find_missing(tree, keys("2-x", "1-y")) == (keys("2-x", "1-y"), [])


def test_stemmed_revisions_are_missing() -> None:
    """§5.5: "Stemmed revisions are forgotten completely: _revs_diff reports them missing"."""
    tree = stem(tree_of(["1-a", "2-b", "3-c"]), 2)
    assert find_missing(tree, keys("1-a", "2-b")) == (keys("1-a"), [])


# -- stem --------------------------------------------------------------------------------------


def test_stem_keeps_at_most_limit_nodes_per_leaf() -> None:
    """§5.5: for each leaf keep at most ``limit`` nodes of its path; the cut node's child
    becomes a root at its own pos."""
    tree = tree_of(["1-a", "2-b", "3-c", "4-d", "5-e"])
    stemmed = stem(tree, 3)
    assert sorted(stemmed) == keys("3-c", "4-d", "5-e")
    assert stemmed[k("3-c")].parent is None
    assert revisions(stemmed, k("5-e")) == {"start": 5, "ids": ["e", "d", "c"]}


def test_stem_keeps_every_leaf() -> None:
    """§5.5 / couch_key_tree prop "stemming keeps every leaf": short branches survive."""
    tree = tree_of(["1-a", "2-b", "3-c", "4-d", "5-e", "6-f"], ["1-a", "2-x"], ["1-a", "2-b", "3-y"])
    stemmed = stem(tree, 2)
    assert set(stemmed.leaves()) == set(tree.leaves())
    assert set(stemmed) == set(keys("5-e", "6-f", "1-a", "2-x", "2-b", "3-y"))


def test_stem_keeps_a_node_within_limit_of_any_leaf() -> None:
    """§5.5: "A node survives if it is within limit of at least one leaf below it", and
    it keeps its children: a long branch hangs off a node a short branch kept."""
    tree = tree_of(["1-a", "2-b", "3-c", "4-d"], ["1-a", "2-b", "3-s"])
    stemmed = stem(tree, 2)
    assert set(stemmed) == set(keys("2-b", "3-s", "3-c", "4-d"))
    assert stemmed[k("3-c")].parent == k("2-b")  # kept, because 2-b is within 2 of 3-s
    assert stemmed[k("2-b")].parent is None


def test_stem_to_one_leaves_only_the_leaves() -> None:
    """§5.5 with ``revs_limit=1``: every leaf becomes its own root."""
    tree = tree_of(["1-a", "2-b", "3-c"], ["1-a", "2-d"], ["4-x", "5-y"])
    tree = add(tree, "2-b", "3-e", deleted=True)
    stemmed = stem(tree, 1)
    assert set(stemmed) == set(tree.leaves())
    assert all(node.parent is None for node in stemmed.nodes.values())
    assert stemmed[k("3-e")].deleted
    assert stemmed.leaves() == tree.leaves()


def test_stem_deeper_than_the_tree_is_the_identity() -> None:
    """couch_key_tree prop "stemming deeper than the depth is a no-op"."""
    tree = tree_of(["1-a", "2-b", "3-c"], ["1-a", "2-d"])
    assert stem(tree, 3) == tree
    assert stem(tree, 1000) is tree


def test_stem_rejects_a_limit_below_one() -> None:
    """§3.11 ``_revs_limit``: the limit is a positive integer."""
    with pytest.raises(ValueError):
        stem(tree_of(["1-a"]), 0)


# -- compact, serialization --------------------------------------------------------------------


def test_compact_marks_inner_nodes_missing() -> None:
    """§5.9: compaction drops bodies of non-leaf revisions; the ids stay (``_revs_diff``
    still finds them) and leaves keep their bodies and flags."""
    tree = tree_of(["1-a"], ["1-a", "2-b"], ["2-b", "3-c"], ["1-a", "2-d"])
    tree = add(tree, "2-d", "3-e", deleted=True)
    compacted = compact(tree)
    assert set(compacted) == set(tree)
    assert [key for key, node in sorted(compacted.nodes.items()) if node.missing] == keys("1-a", "2-b", "2-d")
    assert compacted[k("3-e")] == RevNode(parent=k("2-d"), deleted=True)
    assert compacted[k("3-c")] == tree[k("3-c")]
    assert find_missing(compacted, keys("1-a", "2-b")) == ([], [])
    assert compact(compacted) == compacted


def test_to_json_from_json_round_trip() -> None:
    """Storage form: ``[[pos, revid, parent_index, flags]]`` survives JSON and comes back
    equal, flags (deleted=1, missing=2) included."""
    tree = tree_of(["1-a", "2-b", "3-c"], ["5-x", "6-y"])
    tree = add(tree, "1-a", "2-d", deleted=True)
    rows = to_json(tree)
    assert rows[0] == [1, "a", -1, 2]
    assert [2, "d", 0, 1] in rows
    assert from_json(json.loads(json.dumps(rows))) == tree
    assert to_json(RevTree.empty()) == [] and from_json([]) == RevTree.empty()


# -- deep histories ----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1000, 3000])
def test_deep_linear_histories_need_no_recursion(depth: int) -> None:
    """Module contract ("everything here is iterative"): a ``depth``-long history merges,
    stems, serializes and computes ancestry with the recursion limit at 200."""
    path = [(pos, f"r{pos}") for pos in range(1, depth + 1)]
    tip = (depth + 1, "tip")
    twig = (depth, "twig")
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        tree, tag = merge(RevTree.empty(), path)
        assert tag == "new_leaf"
        tree, tag = merge(tree, [path[-1], tip])
        assert tag == "new_leaf"
        tree, tag = merge(tree, [path[-2], twig], deleted=True)
        assert tag == "new_branch"
        assert merge(tree, path)[1] == "internal_node"

        assert ancestry(tree, tip) == [tip, *reversed(path)]
        assert revisions(tree, tip, limit=1000)["ids"][:2] == ["tip", f"r{depth}"]
        assert len(revisions(tree, tip, limit=1000)["ids"]) == 1000
        assert len(revs_info(tree, tip)) == depth + 1
        assert latest(tree, path[0]) == [tip, twig]
        assert winner(tree) == tip and deleted_conflicts(tree) == [twig]
        assert find_missing(tree, [(depth + 5, "new"), path[0]]) == ([(depth + 5, "new")], [twig, tip])

        rows = to_json(tree)
        assert from_json(json.loads(json.dumps(rows))) == tree
        assert compact(tree)[path[0]].missing

        stemmed = stem(tree, 1000)
        assert set(stemmed.leaves()) == {tip, twig}
        # each leaf keeps 1000 nodes; r(depth-999) survives for the twig, so the tip's
        # path is 1001 long (a node within the limit of ANY leaf survives, §5.5)
        assert len(ancestry(stemmed, twig)) == 1000
        assert len(ancestry(stemmed, tip)) == 1001
        assert len(stemmed) == 1002
        assert stem(stemmed, 1000) is stemmed
        # §5.6: the full history sent again grows the tree back up; stemming hides it.
        regrown, tag = merge(stemmed, [*path, tip])
        assert tag == "internal_node" and len(regrown) == depth + 2
        assert stem(regrown, 1000) == stemmed
    finally:
        sys.setrecursionlimit(old_limit)


# ==========================================================================================
# Properties (Hypothesis; after couch_key_tree_prop_tests.erl)
# ==========================================================================================

# Revision forests are generated as a *universe*: one consistent history in which every
# (pos, revid) has exactly one parent and one deleted flag.  That is what real peers share:
# a revid is a hash over the parent rev, the body and the deleted flag (§4.8), so the same
# (pos, revid) can never arrive with a different parent or a different deleted flag.  The
# revid alphabet is tiny, so the same revid recurs at different positions, siblings compete
# on revid order for the winner, and many paths share nodes.  Paths are root-to-node
# histories of random universe nodes, truncated to a random suffix (stemmed ``_revisions``);
# some universe roots start above pos 1 (docs whose early history nobody has any more).

ALPHABET = "abcd"

Path = tuple[RevKey, ...]
Edit = tuple[Path, bool]  # (path oldest first, deleted flag of its last revision)


@st.composite
def universes(draw: st.DrawFn, max_nodes: int = 24) -> dict[RevKey, tuple[RevKey | None, bool]]:
    """``{key: (parent, deleted)}``, keys in insertion order (parents first)."""
    nodes: dict[RevKey, tuple[RevKey | None, bool]] = {}
    order: list[RevKey] = []
    for _ in range(draw(st.integers(min_value=1, max_value=max_nodes))):
        choice = draw(st.integers(min_value=0, max_value=2 * len(order) + 1)) if order else -1
        if choice < 0 or choice > 2 * len(order):
            parent, pos = None, draw(st.integers(min_value=1, max_value=4))  # a new root
        elif choice >= len(order):
            parent = order[-1]  # keep extending the newest node: deep chains
            pos = parent[0] + 1
        else:
            parent = order[choice]  # branch anywhere
            pos = parent[0] + 1
        key = (pos, draw(st.sampled_from(ALPHABET)))
        if key in nodes:
            continue  # that revision exists already (see the comment above)
        nodes[key] = (parent, draw(st.booleans()))
        order.append(key)
    return nodes


def full_path(universe: dict[RevKey, tuple[RevKey | None, bool]], key: RevKey) -> list[RevKey]:
    path = [key]
    parent = universe[key][0]
    while parent is not None:
        path.append(parent)
        parent = universe[parent][0]
    path.reverse()
    return path


@st.composite
def histories(draw: st.DrawFn, antichain: bool = False) -> list[Edit]:
    """A list of edits (paths with deleted flags) drawn from one universe.

    With ``antichain``, no edit's last revision appears as an *ancestor* in another edit
    (the same revision may still arrive several times, with differently stemmed paths).
    Why: when a revision first arrives as an ancestor (known by id, ``missing``) and later
    with its own body, CouchDB ignores that body (§5.2: "CouchDB ignores a replicated body
    for a revision that is already in the tree"; couch_db only keeps replicated docs that
    are leaves of the merged tree), while the opposite order stores it.  So which inner
    nodes have a body (and a deleted flag) legitimately depends on arrival order, in
    CouchDB as here; replicators never send such a revision, because ``_revs_diff`` reports
    it present.  Everything else (keys, parents, leaves, leaf flags, winner) is checked for
    order independence on unrestricted histories too.
    """
    universe = draw(universes())
    population = list(universe)
    edits: list[Edit] = []
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        end = draw(st.sampled_from(population))
        path = full_path(universe, end)
        keep = draw(st.integers(min_value=1, max_value=len(path)))
        edits.append((tuple(path[-keep:]), universe[end][1]))
    if antichain:
        inner = {key for path, _ in edits for key in path[:-1]}
        edits = [edit for edit in edits if edit[0][-1] not in inner]  # never empty
    return edits


def build(edits: Sequence[Edit], tree: RevTree | None = None) -> RevTree:
    tree = RevTree.empty() if tree is None else tree
    for path, deleted in edits:
        tree, _ = merge(tree, path, deleted=deleted)
    return tree


def model(edits: Sequence[Edit]) -> RevTree:
    """The expected result of merging an antichain history, from first principles: the
    union of the paths' nodes, each linked to its predecessor in any path; only a path's
    last revision carries a body (and a deleted flag)."""
    nodes: dict[RevKey, RevNode] = {}
    parents: dict[RevKey, RevKey] = {}
    for path, _ in edits:
        for older, newer in zip(path, path[1:], strict=False):
            parents[newer] = older
    lasts = {path[-1]: deleted for path, deleted in edits}
    for path, _ in edits:
        for key in path:
            if key in lasts:
                nodes[key] = RevNode(parent=parents.get(key), deleted=lasts[key])
            else:
                nodes[key] = RevNode(parent=parents.get(key), missing=True)
    return RevTree(nodes)


def leaf_view(tree: RevTree) -> tuple[tuple[RevKey, RevNode], ...]:
    return tuple((leaf, tree[leaf]) for leaf in tree.leaves())


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=histories(antichain=True))
def test_prop_merge_builds_the_union_of_the_paths(edits: list[Edit]) -> None:
    """§5.1/§5.2: merging paths gives their union — shared nodes once, each linked to its
    predecessor, ancestors missing, last revisions with their bodies and deleted flags."""
    assert build(edits) == model(edits)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=histories(antichain=True), data=st.data())
def test_prop_merge_is_order_independent(edits: list[Edit], data: st.DataObject) -> None:
    """§5.2/§5.3: every peer must compute the same tree whatever order the revisions
    arrived in: any permutation of the paths gives an equal tree (flags included)."""
    shuffled = data.draw(st.permutations(edits))
    assert build(shuffled) == build(edits)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=histories(), data=st.data())
def test_prop_merge_shape_and_leaves_are_order_independent(edits: list[Edit], data: st.DataObject) -> None:
    """§5.2: for any arrival order (ancestors re-sent later included) the keys, parents,
    leaves and leaf flags agree; only bodies of inner nodes may differ (see histories)."""
    a = build(edits)
    b = build(data.draw(st.permutations(edits)))
    assert shape(a) == shape(b)
    assert leaf_view(a) == leaf_view(b)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=histories(), data=st.data())
def test_prop_winner_is_independent_of_insertion_order(edits: list[Edit], data: st.DataObject) -> None:
    """§5.3: "every peer must independently pick the same winner for the same tree"."""
    a = build(edits)
    b = build(data.draw(st.permutations(edits)))
    assert winner(a) == winner(b)
    assert is_deleted(a) == is_deleted(b)
    assert conflicts(a) == conflicts(b)
    assert deleted_conflicts(a) == deleted_conflicts(b)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=histories())
def test_prop_merge_is_idempotent(edits: list[Edit]) -> None:
    """§4.10/§5.2 (couch_key_tree "merging is reflexive"): re-merging any path already
    merged is internal_node and leaves the tree unchanged."""
    tree = build(edits)
    for path, deleted in edits:
        again, tag = merge(tree, path, deleted=deleted)
        assert tag == "internal_node"
        assert again == tree


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=histories())
def test_prop_every_merged_rev_is_in_the_tree(edits: list[Edit]) -> None:
    """§5.2 (couch_key_tree prop "merging loses no keys"): every node of every merged
    path is in the tree, every last revision in particular, and the tree is consistent."""
    tree = build(edits)
    for path, _ in edits:
        assert path[-1] in tree
        assert all(key in tree for key in path)
    for key, node in tree.nodes.items():
        assert node.parent is None or (node.parent in tree and node.parent[0] == key[0] - 1)
    assert all(not tree[leaf].missing for leaf in tree.leaves())


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=histories(), data=st.data())
def test_prop_merge_tags_describe_what_happened(edits: list[Edit], data: st.DataObject) -> None:
    """§5.2 rule 3: internal_node iff the last revision was already in the tree; otherwise
    it is now a leaf; new_leaf iff the tree was empty or a former leaf is its ancestor."""
    tree = RevTree.empty()
    for path, deleted in data.draw(st.permutations(edits)):
        new, tag = merge(tree, path, deleted=deleted)
        last = path[-1]
        if last in tree:
            assert tag == "internal_node"
        else:
            assert new.is_leaf(last)
            assert new[last] == RevNode(parent=new[last].parent, deleted=deleted)
            old_leaves = set(tree.leaves())
            extended = [key for key in ancestry(new, last) if key in old_leaves]
            if tag == "new_leaf":
                assert not tree or extended
            else:
                assert tag == "new_branch" and tree
        tree = new


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=histories(), limit=st.integers(min_value=1, max_value=8))
def test_prop_stem_keeps_leaves_and_never_lengthens_a_path(edits: list[Edit], limit: int) -> None:
    """§5.5 (couch_key_tree props): stemming keeps every leaf (with its flags), each leaf's
    path becomes a newest-first prefix of the old one, and exactly the nodes within
    ``limit`` of some leaf survive."""
    tree = build(edits)
    stemmed = stem(tree, limit)
    assert stemmed.leaves() == tree.leaves()
    within: set[RevKey] = set()
    for leaf in tree.leaves():
        old_path = ancestry(tree, leaf)
        new_path = ancestry(stemmed, leaf)
        assert new_path == old_path[: len(new_path)]
        assert len(new_path) >= min(limit, len(old_path))
        within.update(old_path[:limit])
    assert set(stemmed) == within
    for key, node in stemmed.nodes.items():
        assert (node.deleted, node.missing) == (tree[key].deleted, tree[key].missing)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=histories(), extra=st.integers(min_value=0, max_value=3))
def test_prop_stem_at_or_beyond_the_depth_is_the_identity(edits: list[Edit], extra: int) -> None:
    """couch_key_tree prop "stemming deeper than the depth is a no-op"."""
    tree = build(edits)
    assert stem(tree, max_depth(tree) + extra) == tree


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=histories(), limit=st.integers(min_value=1, max_value=8))
def test_prop_stem_is_idempotent(edits: list[Edit], limit: int) -> None:
    """§5.5: stemming a stemmed tree to the same limit changes nothing."""
    once = stem(build(edits), limit)
    assert stem(once, limit) == once


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=histories(), limit=st.integers(min_value=1, max_value=8), data=st.data())
def test_prop_reinserting_surviving_history_is_invisible_after_stemming(
    edits: list[Edit], limit: int, data: st.DataObject
) -> None:
    """§5.6 overlapping path: re-sending the full history of a revision the stemmed tree
    still has grows the tree back up, and stemming to the limit trims it again."""
    stemmed = stem(build(edits), limit)
    resent = [(path, deleted) for path, deleted in edits if path[-1] in stemmed]
    regrown = build(data.draw(st.permutations(resent)), stemmed)
    assert stem(regrown, limit) == stemmed


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=histories(), limit=st.integers(min_value=1, max_value=8))
def test_prop_to_json_from_json_round_trips(edits: list[Edit], limit: int) -> None:
    """Storage form round-trips through JSON for merged, stemmed and compacted trees."""
    tree = build(edits)
    for candidate in (tree, stem(tree, limit), compact(tree)):
        assert from_json(json.loads(json.dumps(to_json(candidate)))) == candidate


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=histories())
def test_prop_find_missing_of_the_trees_own_keys_is_empty(edits: list[Edit]) -> None:
    """§5.7: every node is present, leaf or inner, with or without a body."""
    tree = build(edits)
    assert find_missing(tree, list(tree)) == ([], [])
    assert find_missing(compact(tree), list(tree)) == ([], [])


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=histories(), probe=st.lists(st.tuples(st.integers(1, 12), st.sampled_from(ALPHABET))))
def test_prop_find_missing_splits_unknown_revs_and_possible_ancestors(
    edits: list[Edit], probe: list[RevKey]
) -> None:
    """§5.7: missing = the unknown revs (input order, once); possible_ancestors = the
    leaves whose pos is below the highest missing pos, reverse winning order."""
    tree = build(edits)
    missing, ancestors = find_missing(tree, probe)
    assert missing == list(dict.fromkeys(rev for rev in probe if rev not in tree))
    if missing:
        top = max(pos for pos, _ in missing)
        assert ancestors == [leaf for leaf in reversed(tree.leaves()) if leaf[0] < top]
    else:
        assert ancestors == []


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=histories())
def test_prop_latest_returns_exactly_the_leaves_descending_from_a_rev(edits: list[Edit]) -> None:
    """§5.8 ``latest=true``: every leaf returned for k is a leaf with k in its ancestry,
    and every such leaf is returned, in winning order."""
    tree = build(edits)
    for key in tree:
        found = latest(tree, key)
        assert all(tree.is_leaf(leaf) and key in ancestry(tree, leaf) for leaf in found)
        assert found == [leaf for leaf in tree.leaves() if key in ancestry(tree, leaf)]
        assert found  # every node has at least one leaf below it (or is one)
