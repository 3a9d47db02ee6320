"""The storage protocol: what a couchpoint backend must do, and nothing more.

Storage is deliberately *dumb* (as CouchDB's ``couch_db_engine`` behaviour): it atomically
persists revision trees that are **already merged and stemmed**, revision bodies,
sequence numbers and ``_local`` documents.  It never decides conflicts, never generates
revs and never interprets bodies.  Merging, conflict rules and stemming happen above it in
:mod:`couchpoint.database`, so every backend behaves identically.

Two backends ship with couchpoint: :class:`couchpoint.storage.memory.MemoryStorage` (the
executable specification) and :class:`couchpoint.storage.sqlite.SQLiteStorage` (the
embedded default).  ``couchpoint.testing.storage_contract`` is the conformance suite every
backend must pass (see docs/storage.md).

Model
-----
* A server holds named databases (:class:`Storage`), each a :class:`DbStore`.
* A database maps doc ids to a :class:`DocInfo`: the merged :class:`~couchpoint.revtree.RevTree`
  and the doc's current update ``seq``.
* Revision bodies (:class:`Revision`) are stored per ``(doc id, rev)``; a tree node may
  exist without a body (``missing``).
* Every :meth:`WriteTxn.put_docs` gives each written doc a **new** seq, strictly greater
  than every seq the database ever handed out (never reused, also across restarts), and
  removes its previous one: ``changes()`` lists each doc once, at its latest seq.
* ``_local`` docs live apart: no tree, no seq, never in ``changes()`` or ``all_docs()``.

Concurrency
-----------
Writes go through :meth:`DbStore.write`, an async context manager yielding a
:class:`WriteTxn`.  Everything done through one ``WriteTxn`` is atomic and isolated: reads
inside it see a state no other writer can change until it ends, the writes become visible
all at once when the block exits normally, and nothing is kept when it raises.  Reads
outside a transaction (the :class:`DbStore` read methods) never wait for a writer and see
the last committed state.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from couchpoint import revtree
from couchpoint.revtree import RevTree


@dataclass(frozen=True, slots=True)
class DocInfo:
    """A document's revision tree and its current update seq."""

    id: str
    seq: int
    tree: RevTree

    @property
    def leaves(self) -> list[tuple[str, bool]]:
        """``[(rev, deleted)]`` in winning order; the first is the winner."""
        return revtree.leaf_summary(self.tree)


@dataclass(frozen=True, slots=True)
class DocSummary:
    """What ``_changes`` and ``_all_docs`` need of a document, without its tree.

    ``leaves`` is ``[(rev, deleted)]`` in winning order (winner first).
    """

    id: str
    seq: int
    leaves: tuple[tuple[str, bool], ...]

    @property
    def rev(self) -> str:
        """The winning revision."""
        return self.leaves[0][0]

    @property
    def deleted(self) -> bool:
        """True when the winning revision is a tombstone."""
        return self.leaves[0][1]


@dataclass(frozen=True, slots=True)
class Revision:
    """A stored revision body.

    ``body`` is the JSON object without ``_id``, ``_rev``, ``_revisions`` and
    ``_deleted`` (those live in the tree); it keeps ``_attachments`` metadata and any
    other field verbatim.  Tombstones may carry a body too.
    """

    doc_id: str
    rev: str
    deleted: bool
    body: dict[str, Any]
    blobs: tuple[str, ...] = ()
    """Keys of the attachment blobs this revision references (kept alive by it)."""


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """A stored attachment body.

    ``key``: the content address, the SHA-256 hex of the stored bytes (so equal bodies
    are stored once, across revisions, documents and databases).  ``length``: stored
    bytes.  ``md5``: ``"md5-<base64>"`` of the stored bytes (CouchDB's digest form).
    """

    key: str
    length: int
    md5: str


class BlobTooLarge(Exception):
    """Raised by :meth:`Storage.put_blob` when a stream exceeds ``max_size`` bytes;
    nothing of it is kept."""


@dataclass(frozen=True, slots=True)
class DocWrite:
    """One document's new state for :meth:`WriteTxn.put_docs`.

    ``tree``: the merged, stemmed tree to store (replaces the old one).
    ``revisions``: bodies to add (normally the one new leaf).
    ``drop_revs``: revs whose bodies may be removed (stemmed away, or compacted).
    """

    id: str
    tree: RevTree
    revisions: Sequence[Revision] = ()
    drop_revs: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class LocalDoc:
    """A ``_local`` document: ``id`` without the ``_local/`` prefix, integer ``rev``
    (``0-<rev>`` on the wire) and the stored ``body``."""

    id: str
    rev: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DbInfo:
    """Database facts for ``GET /{db}``.

    ``update_seq``: the highest seq handed out (0 for a new db).  ``doc_count`` /
    ``doc_del_count``: docs whose winner is live / a tombstone.  ``instance_start_time``:
    a string fixed at creation, different for a re-created db.  ``revs_limit``: stemming
    depth.  Sizes in bytes: ``active`` (live data), ``external`` (JSON size of winning
    bodies), ``file`` (on disk, 0 in memory).
    """

    name: str
    update_seq: int
    doc_count: int
    doc_del_count: int
    instance_start_time: str
    revs_limit: int = 1000
    sizes: dict[str, int] = field(default_factory=lambda: {"active": 0, "external": 0, "file": 0})


@runtime_checkable
class WriteTxn(Protocol):
    """The writer's view inside :meth:`DbStore.write` (atomic and isolated)."""

    async def get_docs(self, ids: Sequence[str]) -> dict[str, DocInfo]:
        """The stored :class:`DocInfo` of each id that exists (absent ids are left out)."""
        ...

    async def get_revisions(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Revision]:
        """Stored bodies for ``(doc id, rev)`` pairs; pairs without a body are left out."""
        ...

    async def put_docs(self, writes: Sequence[DocWrite]) -> list[int]:
        """Store each write (at most one per id) and give each doc a new seq.

        Returns the new seqs in input order; they are consecutive and greater than every
        seq this database handed out before.  An empty ``writes`` does nothing.
        """
        ...

    async def get_local(self, doc_id: str) -> LocalDoc | None:
        """The ``_local`` doc ``doc_id`` (without prefix), or ``None``."""
        ...

    async def put_local(self, doc: LocalDoc) -> None:
        """Create or replace a ``_local`` doc."""
        ...

    async def delete_local(self, doc_id: str) -> bool:
        """Delete a ``_local`` doc; ``False`` if it did not exist."""
        ...

    async def set_revs_limit(self, limit: int) -> None:
        """Persist the database's ``revs_limit``."""
        ...

    async def put_security(self, security: dict[str, Any]) -> None:
        """Store the database's ``_security`` object (replaces the previous one; not a
        document: no revision, no seq, never in ``changes()``)."""
        ...


@runtime_checkable
class DbStore(Protocol):
    """One database.  Read methods see the last committed state and never block on a
    writer."""

    name: str

    async def info(self) -> DbInfo:
        """Counts, ``update_seq``, ``instance_start_time``, ``revs_limit`` and sizes."""
        ...

    async def get_docs(self, ids: Sequence[str]) -> dict[str, DocInfo]:
        """The stored :class:`DocInfo` of each id that exists."""
        ...

    async def get_summaries(self, ids: Sequence[str]) -> dict[str, DocSummary]:
        """:class:`DocSummary` of each id that exists (cheaper than :meth:`get_docs`)."""
        ...

    async def get_revisions(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Revision]:
        """Stored bodies for ``(doc id, rev)`` pairs; pairs without a body are left out."""
        ...

    async def changes(self, since: int, limit: int, *, descending: bool = False) -> list[DocSummary]:
        """Docs whose seq is greater than ``since``, by seq ascending (or descending, in
        which case ``since`` is ignored), at most ``limit`` of them."""
        ...

    async def count_changes(self, since: int) -> int:
        """How many docs have a seq greater than ``since`` (``pending``)."""
        ...

    async def all_docs(
        self,
        *,
        start: str | None = None,
        end: str | None = None,
        inclusive_end: bool = True,
        descending: bool = False,
        skip: int = 0,
        limit: int | None = None,
    ) -> list[DocSummary]:
        """Docs whose winner is not deleted, ordered by id in UTF-8 byte order (reversed
        when ``descending``), from ``start`` to ``end`` (either ``None`` = unbounded;
        with ``descending`` ``start`` is the high end), after skipping ``skip`` rows."""
        ...

    async def get_local(self, doc_id: str) -> LocalDoc | None:
        """The ``_local`` doc ``doc_id`` (without prefix), or ``None``."""
        ...

    async def get_security(self) -> dict[str, Any] | None:
        """The ``_security`` object last stored with :meth:`WriteTxn.put_security`, or
        ``None`` if none was ever stored (the caller decides what that means)."""
        ...

    def write(self) -> AbstractAsyncContextManager[WriteTxn]:
        """Begin the database's single write transaction (see module docstring)."""
        ...


@runtime_checkable
class Storage(Protocol):
    """A server's worth of databases plus the server's persistent identity."""

    async def open(self) -> None:
        """Acquire resources (files, connections).  Idempotent."""
        ...

    async def close(self) -> None:
        """Release every resource.  Idempotent; committed data stays durable."""
        ...

    async def server_uuid(self) -> str:
        """A 32-hex id generated once and kept for the life of the data (PouchDB builds
        replication ids from it)."""
        ...

    async def all_dbs(self) -> list[str]:
        """Database names, sorted ascending (by code point)."""
        ...

    async def create_db(self, name: str) -> DbStore:
        """Create a database.  Raises ``errors.db_exists()`` if it exists.  The name is
        already validated."""
        ...

    async def delete_db(self, name: str) -> None:
        """Delete a database and everything in it.  Raises ``errors.db_not_found()``."""
        ...

    async def get_db(self, name: str) -> DbStore | None:
        """The database, or ``None`` if it does not exist.  Returns the same object for
        the same database until it is deleted (listeners are keyed on it)."""
        ...

    async def update_seqs(self) -> dict[str, int]:
        """``{db name: update_seq}`` for every database, read in one cheap query.

        Lets a process notice writes committed by *other* processes on the same storage
        (several ``--workers`` on one SQLite file) and wake its ``_changes`` feeds.
        """
        ...

    # -- attachment blobs (content-addressed, streamed) --------------------------------
    async def put_blob(self, chunks: AsyncIterable[bytes], *, max_size: int | None = None) -> BlobInfo:
        """Store a byte stream as a blob and return its :class:`BlobInfo`.

        The stream is consumed chunk by chunk and never held whole in memory.  Storing
        bytes that are already stored returns the existing blob.  Raises
        :class:`BlobTooLarge` (keeping nothing) once more than ``max_size`` bytes arrive.
        The blob is durable when this returns; it is garbage until a committed
        :class:`Revision` lists its key in ``blobs``.
        """
        ...

    async def blob_length(self, key: str) -> int | None:
        """Stored length of blob ``key``, or ``None`` if there is no such blob."""
        ...

    def read_blob(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes ``[start, end)`` of blob ``key`` in chunks (``end=None``: to the
        end).  Raises ``KeyError`` when iterated if the blob does not exist."""
        ...

    async def collect_garbage(self, grace_s: float = 600.0) -> int:
        """Delete blobs that no stored revision references and that are older than
        ``grace_s`` seconds (so blobs of writes still in flight survive).  Returns how
        many were deleted.  Runs on ``POST /{db}/_compact``."""
        ...
