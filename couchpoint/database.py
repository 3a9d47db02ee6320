"""The database service: read → merge → write, one batched transaction per request.

This layer sits between HTTP and storage.  It owns CouchDB's semantics: validating ids
and bodies, interactive and replicated writes (through :mod:`couchpoint.update` and
:mod:`couchpoint.revtree`), stemming to ``revs_limit``, reading revisions with their
``_revisions`` / ``_revs_info`` / ``_conflicts``, ``open_revs``, ``_bulk_get``,
``_revs_diff``, ``_all_docs``, ``_local`` docs, and waking ``_changes`` listeners after
each committed write.  It never imports Starlette or a storage driver.

Every request does its database work in one step: a whole ``_bulk_docs`` is one
transaction with one batched read of the trees it touches and one batched write
(protocol reference §4.9–§4.10, §7).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import re
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from couchpoint import errors, revtree
from couchpoint.attachments import PreparedAttachment, decoded_bytes, store_inline
from couchpoint.attachments import validate_name as validate_attachment_name
from couchpoint.config import Settings
from couchpoint.document import (
    DESIGN_PREFIX,
    LOCAL_PREFIX,
    IncomingDoc,
    render_doc,
    split_doc,
    validate_docid,
)
from couchpoint.hooks import Hooks
from couchpoint.hooks import call as call_hook
from couchpoint.notify import ChangeNotifier, SeqWatcher
from couchpoint.revs import RevKey, format_rev, parse_rev
from couchpoint.revtree import RevTree
from couchpoint.storage.base import DbStore, DocInfo, DocSummary, DocWrite, LocalDoc, Revision, Storage
from couchpoint.update import interactive_edit, replicated_path

DB_NAME_RE = re.compile(r"^[a-z][a-z0-9_$()+/-]*$")
SYSTEM_DBS = frozenset({"_users", "_replicator", "_global_changes"})
CHANGES_PAGE = 1000
"""Rows read from storage per step while streaming ``_changes``."""


def validate_db_name(name: str) -> str:
    """Return ``name`` if CouchDB 3 accepts it; else ``400 illegal_database_name``."""
    if name in SYSTEM_DBS or DB_NAME_RE.match(name):
        return name
    raise errors.illegal_database_name(name)


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """Query options that decorate each returned document (``GET /{db}/{doc}``,
    ``open_revs``, ``_bulk_get``, ``include_docs``)."""

    revs: bool = False
    revs_info: bool = False
    conflicts: bool = False
    deleted_conflicts: bool = False
    local_seq: bool = False
    latest: bool = False
    attachments: bool = False
    att_encoding_info: bool = False
    atts_since: tuple[RevKey, ...] | None = None

    @classmethod
    def from_flags(cls, flags: Mapping[str, bool], atts_since: Sequence[RevKey] | None = None) -> ReadOptions:
        meta = flags.get("meta", False)
        return cls(
            attachments=flags.get("attachments", False),
            att_encoding_info=flags.get("att_encoding_info", False),
            atts_since=None if atts_since is None else tuple(atts_since),
            revs=flags.get("revs", False),
            revs_info=flags.get("revs_info", False) or meta,
            conflicts=flags.get("conflicts", False) or meta,
            deleted_conflicts=flags.get("deleted_conflicts", False) or meta,
            local_seq=flags.get("local_seq", False),
            latest=flags.get("latest", False),
        )


Rendered = tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]
"""A document as sent, plus the ``(name, stored metadata)`` of each attachment whose
stored bytes follow it in a multipart body (empty for JSON)."""


@dataclass(frozen=True, slots=True)
class WriteItem:
    """One document to write: resolved id, parent rev (interactive) and parsed body."""

    id: str
    doc: IncomingDoc


def _error_entry(doc_id: str | None, err: errors.CouchError, rev: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": doc_id}
    if rev is not None:
        entry["rev"] = rev
    entry["error"] = err.error
    entry["reason"] = err.reason
    return entry


class Database:
    """One database: the operations the HTTP layer calls.  Created by :class:`Server`."""

    def __init__(
        self,
        store: DbStore,
        notifier: ChangeNotifier,
        settings: Settings,
        revs_limit: int,
        storage: Storage,
        hooks: Hooks | None = None,
    ) -> None:
        self.name = store.name
        self.store = store
        self.storage = storage
        self.notifier = notifier
        self.settings = settings
        self._shared = {"revs_limit": revs_limit}  # shared with every for_user() view
        self.hooks = hooks or Hooks()
        self.user: dict[str, Any] = {"name": None, "roles": ["_admin"]}

    @property
    def revs_limit(self) -> int:
        """The stemming depth (``_revs_limit``, default 1000)."""
        return self._shared["revs_limit"]

    def for_user(self, user: Mapping[str, Any]) -> Database:
        """This database as seen by ``user`` (``{"name", "roles"}``): the view that hooks
        (validation, read access) are evaluated for.  Cheap: shares everything else."""
        view = copy.copy(self)
        view.user = {"name": user.get("name"), "roles": list(user.get("roles", [])), "db": self.name}
        return view

    async def security_object(self) -> dict[str, Any]:
        """The database's ``_security`` object (``{}`` when none is set)."""
        getter = getattr(self.store, "get_security", None)
        if getter is None:
            return {}
        found = await getter()
        return dict(found or {})

    # -- read access -----------------------------------------------------------------
    def visible(self, doc: dict[str, Any] | None) -> bool:
        """Whether the caller may see ``doc`` (the ``read_access`` hooks; §12.4 note)."""
        if doc is None:
            return False
        return all(reader(doc, self.user) for reader in self.hooks.readers(self.name))

    @property
    def restricts_reads(self) -> bool:
        return bool(self.hooks.readers(self.name))

    # -- info ------------------------------------------------------------------------
    async def info(self) -> dict[str, Any]:
        """``GET /{db}`` (protocol reference §3.6)."""
        info = await self.store.info()
        return {
            "db_name": self.name,
            "purge_seq": 0,
            "update_seq": info.update_seq,
            "sizes": dict(info.sizes),
            "props": {},
            "doc_del_count": info.doc_del_count,
            "doc_count": info.doc_count,
            "disk_format_version": 8,
            "compact_running": False,
            "cluster": {"q": 1, "n": 1, "w": 1, "r": 1},
            "instance_start_time": info.instance_start_time,
        }

    async def instance_start_time(self) -> str:
        return (await self.store.info()).instance_start_time

    async def set_revs_limit(self, limit: object) -> None:
        """``PUT /{db}/_revs_limit``: a positive integer, else 400."""
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise errors.BadRequest("`revs_limit` must be positive integer")
        async with self.store.write() as txn:
            await txn.set_revs_limit(limit)
        self._shared["revs_limit"] = limit

    # -- writes ----------------------------------------------------------------------
    def _publish(self, seqs: Sequence[int]) -> None:
        if seqs:
            self.notifier.publish(max(seqs))

    async def bulk_docs(self, docs: object, new_edits: bool) -> list[dict[str, Any]]:
        """``POST /{db}/_bulk_docs`` (§7.2).

        ``docs`` is the request's ``docs`` value.  Whole-request errors (not a list, a doc
        that is not an object, a bad special field, an illegal id, ``new_edits=false``
        without revision info) raise; per-doc outcomes are returned in input order:
        ``{"ok": true, "id", "rev"}`` or ``{"id", "error", "reason"}``.  With
        ``new_edits=false`` only failed docs are returned (CouchDB 3).
        """
        if not isinstance(docs, list):
            raise errors.BadRequest("`docs` parameter must be an array.")
        items: list[WriteItem] = []
        for raw in docs:
            doc = split_doc(raw)
            if doc.id is None:
                if not new_edits:
                    raise errors.illegal_docid("Document id must not be empty")
                doc_id = uuid.uuid4().hex
            else:
                doc_id = doc.id
            if not new_edits and not doc_id.startswith(LOCAL_PREFIX):
                replicated_path(doc.rev, doc.revisions)  # 400 for the whole request
            items.append(WriteItem(doc_id, doc))
        items = [await self.prepare_attachments(item) for item in items]
        results = await self.write(items, new_edits)
        if new_edits:
            return results
        return [r for r in results if "error" in r]

    async def write(self, items: Sequence[WriteItem], new_edits: bool) -> list[dict[str, Any]]:
        """Write documents in one transaction; return one result per item.

        Results are ``{"ok": True, "id", "rev"}`` or ``{"id", "error", "reason"}``
        (``"rev"`` too for replicated writes).  ``_local/`` ids go to the local store.
        """
        doc_ids = list(dict.fromkeys(i.id for i in items if not i.id.startswith(LOCAL_PREFIX)))
        results: list[dict[str, Any]] = []
        validators = self.hooks.validators(self.name)
        # Validators marked ``design_only`` (couchpoint's design-doc admin rule) cost
        # nothing for ordinary documents.
        general_validators = [v for v in validators if not getattr(v, "design_only", False)]
        security: dict[str, Any] | None = None
        async with self.store.write() as txn:
            stored = await txn.get_docs(doc_ids)
            trees: dict[str, RevTree] = {i: info.tree for i, info in stored.items()}
            bodies: dict[str, list[Revision]] = {}
            changed: dict[str, None] = {}
            for item in items:
                if item.id.startswith(LOCAL_PREFIX):
                    results.append(await self._write_local(txn, item))
                    continue
                tree = trees.get(item.id, RevTree.empty())
                doc = item.doc
                try:
                    if new_edits:
                        hash_body = {k: v for k, v in doc.body.items() if k != "_attachments"}
                        new_tree, key = interactive_edit(
                            tree,
                            doc.rev,
                            deleted=doc.deleted,
                            body=hash_body,
                            attachment_digests=_digests(doc.body),
                        )
                    else:
                        path = replicated_path(doc.rev, doc.revisions)
                        key = path[-1]
                        new_tree, tag = revtree.merge(tree, path, deleted=doc.deleted)
                        if tag == "internal_node":
                            results.append({"ok": True, "id": item.id, "rev": format_rev(key)})
                            continue
                    body, blobs = await self._finalize_attachments(
                        txn, item.id, doc.body, new_tree, key, new_edits, bodies.get(item.id, [])
                    )
                    self._check_size(item.id, body)
                    applicable = validators if item.id.startswith(DESIGN_PREFIX) else general_validators
                    if applicable:
                        if security is None:
                            security = await self.security_object()
                        await self._validate(
                            applicable, txn, item.id, new_tree, key, doc.deleted, body, bodies, security
                        )
                except errors.CouchError as err:
                    rev = None if new_edits else format_rev(replicated_path(doc.rev, doc.revisions)[-1])
                    results.append(_error_entry(item.id, err, rev))
                    continue
                rev = format_rev(key)
                trees[item.id] = new_tree
                bodies.setdefault(item.id, []).append(Revision(item.id, rev, doc.deleted, body, blobs))
                changed[item.id] = None
                results.append({"ok": True, "id": item.id, "rev": rev})
            writes = [self._doc_write(doc_id, trees[doc_id], bodies[doc_id]) for doc_id in changed]
            seqs = await txn.put_docs(writes)
        self._publish(seqs)
        return results

    def _doc_write(self, doc_id: str, tree: RevTree, revisions: list[Revision]) -> DocWrite:
        stemmed = revtree.stem(tree, self.revs_limit)
        dropped = [format_rev(k) for k in tree if k not in stemmed]
        kept = [r for r in revisions if parse_rev(r.rev) in stemmed]
        return DocWrite(doc_id, stemmed, kept, dropped)

    def _check_size(self, doc_id: str, body: dict[str, Any]) -> None:
        limit = self.settings.max_document_size
        if limit and len(body) and _json_size(body) > limit:
            raise errors.document_too_large(doc_id)

    async def prepare_attachments(self, item: WriteItem) -> WriteItem:
        """Store the inline ``data`` attachments of a document as blobs (before its write
        transaction) and return the item with :class:`PreparedAttachment` entries."""
        atts = item.doc.body.get("_attachments")
        if not isinstance(atts, dict) or not any(
            isinstance(e, dict) and "data" in e and not e.get("stub") for e in atts.values()
        ):
            return item
        prepared: dict[str, Any] = {}
        for name, entry in atts.items():
            validate_attachment_name(name)
            if isinstance(entry, dict) and "data" in entry and not entry.get("stub"):
                prepared[name] = await store_inline(
                    self.storage,
                    entry,
                    compressible_types=self.settings.compressible_types,
                    max_size=self.settings.max_attachment_size,
                    name=name,
                )
            else:
                prepared[name] = entry
        doc = item.doc
        body = {**doc.body, "_attachments": prepared}
        return WriteItem(item.id, IncomingDoc(doc.id, doc.rev, doc.revisions, doc.deleted, body))

    async def _finalize_attachments(
        self,
        txn: Any,
        doc_id: str,
        body: dict[str, Any],
        tree: RevTree,
        key: RevKey,
        new_edits: bool,
        pending: Sequence[Revision],
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        """Turn a new revision's ``_attachments`` into stored metadata (§4.7).

        Prepared bodies get their ``revpos``; stubs are resolved against the nearest
        ancestor with a stored body (412 ``missing_stub`` when that fails).  Returns the
        body to store and the blob keys it references.
        """
        atts = body.get("_attachments")
        if atts is None:
            return body, ()
        if not isinstance(atts, dict):
            raise errors.doc_validation("Bad special document member: _attachments")
        ancestor: dict[str, Any] | None = None
        stored: dict[str, Any] = {}
        for name, entry in atts.items():
            validate_attachment_name(name)
            if isinstance(entry, PreparedAttachment):
                revpos = key[0] if new_edits or entry.revpos is None else entry.revpos
                stored[name] = {**entry.meta, "revpos": revpos}
                continue
            if not isinstance(entry, dict):
                raise errors.BadRequest(f"Invalid attachment {name}")
            if entry.get("stub") is True:
                if ancestor is None:
                    ancestor = await self._ancestor_attachments(txn, doc_id, tree, key, pending)
                found = ancestor.get(name)
                revpos = entry.get("revpos")
                if found is None or (isinstance(revpos, int) and revpos != found.get("revpos")):
                    raise errors.CouchError(
                        f"Invalid attachment stub in {doc_id} for {name}", status=412, error="missing_stub"
                    )
                stored[name] = found
                continue
            if entry.get("follows") is True:
                raise errors.BadRequest(f"Attachment {name} is marked as following but has no part")
            raise errors.BadRequest(f"Invalid attachment {name}: expected data, stub or follows")
        if not stored:
            return {k: v for k, v in body.items() if k != "_attachments"}, ()
        blobs = tuple(dict.fromkeys(m["blob"] for m in stored.values()))
        return {**body, "_attachments": stored}, blobs

    async def _ancestor(
        self, txn: Any, doc_id: str, tree: RevTree, key: RevKey, pending: Sequence[Revision]
    ) -> Revision | None:
        """The nearest ancestor of ``key`` whose body is stored (in this batch or before)."""
        ancestors = [format_rev(k) for k in revtree.ancestry(tree, key)[1:]]
        in_batch = {r.rev: r for r in pending}
        found = await txn.get_revisions([(doc_id, rev) for rev in ancestors if rev not in in_batch])
        for rev in ancestors:
            revision = in_batch.get(rev) or found.get((doc_id, rev))
            if revision is not None:
                return revision
        return None

    async def _ancestor_attachments(
        self, txn: Any, doc_id: str, tree: RevTree, key: RevKey, pending: Sequence[Revision]
    ) -> dict[str, Any]:
        """Stored ``_attachments`` of the nearest ancestor of ``key`` that has a body."""
        revision = await self._ancestor(txn, doc_id, tree, key, pending)
        atts = revision.body.get("_attachments") if revision else None
        return atts if isinstance(atts, dict) else {}

    async def _validate(
        self,
        validators: Sequence[Any],
        txn: Any,
        doc_id: str,
        tree: RevTree,
        key: RevKey,
        deleted: bool,
        body: dict[str, Any],
        batch: Mapping[str, Sequence[Revision]],
        security: dict[str, Any],
    ) -> None:
        """Run the ``validate_doc_update`` hooks for one new revision (raise to reject)."""
        new_doc = render_doc(doc_id, format_rev(key), deleted, body)
        parent = await self._ancestor(txn, doc_id, tree, key, batch.get(doc_id, []))
        old_doc = render_doc(doc_id, parent.rev, parent.deleted, parent.body) if parent else None
        for validator in validators:
            await call_hook(validator, new_doc, old_doc, dict(self.user), security)

    async def _write_local(self, txn: Any, item: WriteItem) -> dict[str, Any]:
        name = item.id[len(LOCAL_PREFIX) :]
        if not name:
            return _error_entry(item.id, errors.BadRequest("Invalid _local document id."))
        doc = item.doc
        if doc.deleted:
            await txn.delete_local(name)
            return {"ok": True, "id": item.id, "rev": "0-0"}
        base = doc.rev[1] if doc.rev else None
        new = await self._put_local_txn(txn, name, int(base) if base and base.isdigit() else None, doc.body)
        return {"ok": True, "id": item.id, "rev": f"0-{new}"}

    async def put_doc(
        self, doc_id: str, body: object, *, rev: str | None, new_edits: bool
    ) -> tuple[str, bool]:
        """``PUT /{db}/{docid}``: write one doc; the URL id wins over ``_id``.

        ``rev`` is the rev from ``?rev=`` or ``If-Match`` (already checked against the
        body's ``_rev``).  Returns ``(new rev, deleted)``.  Raises the doc's error
        (409 conflict, 400 ...).
        """
        doc = split_doc(body)
        doc_rev = doc.rev
        if rev is not None:
            query_rev = parse_rev(rev)
            if doc_rev is not None and doc_rev != query_rev:
                raise errors.BadRequest(
                    "Document rev from request body and query string have different values"
                )
            doc_rev = query_rev
        incoming = IncomingDoc(doc_id, doc_rev, doc.revisions, doc.deleted, doc.body)
        if not new_edits:
            replicated_path(incoming.rev, incoming.revisions)
        item = await self.prepare_attachments(WriteItem(doc_id, incoming))
        [result] = await self.write([item], new_edits)
        if "error" in result:
            raise _entry_error(result)
        return result["rev"], incoming.deleted

    async def delete_doc(self, doc_id: str, rev: str | None) -> str:
        """``DELETE /{db}/{docid}?rev=``: add an empty tombstone; returns its rev.

        404 when the doc never existed; 409 for a stale, missing or non-leaf rev.
        """
        info = (await self.store.get_docs([doc_id])).get(doc_id)
        if info is None:
            raise errors.missing()
        parent = parse_rev(rev) if rev is not None else None
        incoming = IncomingDoc(doc_id, parent, None, True, {})
        [result] = await self.write([WriteItem(doc_id, incoming)], True)
        if "error" in result:
            raise _entry_error(result)
        rev_out: str = result["rev"]
        return rev_out

    # -- reads -----------------------------------------------------------------------
    async def _doc_info(self, doc_id: str) -> DocInfo | None:
        return (await self.store.get_docs([doc_id])).get(doc_id)

    async def get_doc(
        self, doc_id: str, *, rev: str | None, options: ReadOptions, multipart: bool = False
    ) -> Rendered:
        """``GET /{db}/{docid}`` (§7.4): the document and, when ``multipart``, the
        attachments whose stored bodies follow it.  404 ``missing`` / ``deleted``."""
        info = await self._doc_info(doc_id)
        if info is None:
            raise errors.missing()
        tree = info.tree
        if rev is None or options.latest:
            key = revtree.winner(tree)
            assert key is not None
            if rev is None and tree[key].deleted:
                raise errors.deleted()
        else:
            key = parse_rev(rev)
            if key not in tree or tree[key].missing:
                raise errors.missing()
        [rendered] = await self._render(info, [key], options, multipart=multipart)
        if rendered is None or (self.restricts_reads and not await self._winner_visible(info)):
            raise errors.missing()
        return rendered

    async def _winner_visible(self, info: DocInfo) -> bool:
        """Read access is decided on the winning revision of the document."""
        return self.visible((await self.access_docs([info])).get(info.id))

    async def access_docs(self, infos: Sequence[DocInfo]) -> dict[str, dict[str, Any]]:
        """The doc the ``read_access`` hooks judge, per document: the winning revision;
        for a deleted document, its tombstone laid over the last live revision before it
        (clients delete with bare ``{_id, _rev, _deleted}``, so the fields that decide
        ownership live in the revision the tombstone replaced)."""
        wanted: list[tuple[str, str]] = []
        plans: dict[str, list[str]] = {}
        for info in infos:
            winner = revtree.winner(info.tree)
            if winner is None:
                continue
            revs = [format_rev(winner)]
            if info.tree[winner].deleted:
                revs += [format_rev(k) for k in revtree.ancestry(info.tree, winner)[1:]]
            plans[info.id] = revs
            wanted.extend((info.id, rev) for rev in revs)
        found = await self.store.get_revisions(wanted)
        out: dict[str, dict[str, Any]] = {}
        for doc_id, revs in plans.items():
            top = found.get((doc_id, revs[0]))
            if top is None:
                continue
            doc = render_doc(doc_id, top.rev, top.deleted, top.body)
            for rev in revs[1:]:
                live = found.get((doc_id, rev))
                if live is not None and not live.deleted:
                    doc = {**render_doc(doc_id, live.rev, False, live.body), **doc}
                    break
            out[doc_id] = doc
        return out

    async def _render(
        self, info: DocInfo, keys: Sequence[RevKey], options: ReadOptions, *, multipart: bool = False
    ) -> list[Rendered | None]:
        revisions = await self.store.get_revisions([(info.id, format_rev(k)) for k in keys])
        out: list[Rendered | None] = []
        for key in keys:
            revision = revisions.get((info.id, format_rev(key)))
            doc = self._render_one(info, key, revision, options)
            if doc is None or revision is None:
                out.append(None)
            else:
                out.append(await self._attachment_bodies(doc, info, key, revision, options, multipart))
        return out

    def _render_one(
        self, info: DocInfo, key: RevKey, revision: Revision | None, options: ReadOptions
    ) -> dict[str, Any] | None:
        if revision is None:
            return None
        tree = info.tree
        doc = render_doc(
            info.id,
            revision.rev,
            revision.deleted,
            revision.body,
            att_encoding_info=options.att_encoding_info,
        )
        if options.revs:
            doc["_revisions"] = revtree.revisions(tree, key, self.revs_limit)
        if options.revs_info:
            doc["_revs_info"] = revtree.revs_info(tree, key)
        if options.conflicts:
            found = revtree.conflicts(tree)
            if found:
                doc["_conflicts"] = [format_rev(k) for k in found]
        if options.deleted_conflicts:
            found = revtree.deleted_conflicts(tree)
            if found:
                doc["_deleted_conflicts"] = [format_rev(k) for k in found]
        if options.local_seq:
            doc["_local_seq"] = info.seq
        return doc

    def _names_with_bodies(
        self, info: DocInfo, key: RevKey, atts: dict[str, Any], options: ReadOptions, multipart: bool
    ) -> list[str]:
        """Which attachments travel with their bodies (§7.4, §7.5): all of them with
        ``attachments=true`` (and by default in multipart); with ``atts_since`` only those
        whose ``revpos`` is newer than the newest listed rev in the doc's ancestry."""
        if options.atts_since is not None:
            ancestry = set(revtree.ancestry(info.tree, key))
            depths = [k[0] for k in options.atts_since if k in ancestry]
            if depths:
                cutoff = max(depths)
                return [n for n, m in atts.items() if int(m.get("revpos", 0)) > cutoff]
            return list(atts)
        if options.attachments or multipart:
            return list(atts)
        return []

    async def _attachment_bodies(
        self,
        doc: dict[str, Any],
        info: DocInfo,
        key: RevKey,
        revision: Revision,
        options: ReadOptions,
        multipart: bool,
    ) -> Rendered:
        atts = revision.body.get("_attachments")
        if not isinstance(atts, dict) or not atts:
            return doc, []
        names = self._names_with_bodies(info, key, atts, options, multipart)
        if not names:
            return doc, []
        shown = dict(doc["_attachments"])
        follows: list[tuple[str, dict[str, Any]]] = []
        for name in names:
            meta = atts[name]
            entry: dict[str, Any] = {k: meta[k] for k in ("content_type", "revpos", "digest") if k in meta}
            if multipart:
                entry["length"] = meta.get("length", 0)
                entry["follows"] = True
                if meta.get("encoding"):
                    entry["encoding"] = meta["encoding"]
                    entry["encoded_length"] = meta["encoded_length"]
                follows.append((name, meta))
            else:
                if options.att_encoding_info and meta.get("encoding"):
                    entry["encoding"] = meta["encoding"]
                    entry["encoded_length"] = meta["encoded_length"]
                data = await decoded_bytes(self.storage, meta)
                entry["data"] = base64.b64encode(data).decode("ascii")
            shown[name] = entry
        doc["_attachments"] = shown
        return doc, follows

    async def stored_attachments(self, doc_id: str, rev: str) -> dict[str, Any]:
        """Stored attachment metadata of revision ``rev`` (``{}`` when it has none)."""
        key = (doc_id, format_rev(parse_rev(rev)))
        revision = (await self.store.get_revisions([key])).get(key)
        atts = revision.body.get("_attachments") if revision else None
        return dict(atts) if isinstance(atts, dict) else {}

    async def attachment(self, doc_id: str, name: str, rev: str | None) -> dict[str, Any]:
        """Stored metadata of attachment ``name`` of the winner (or of ``rev``).

        404 ``missing``/``deleted`` for the doc, 404 "Document is missing attachment"."""
        info = await self._doc_info(doc_id)
        if info is None or (self.restricts_reads and not await self._winner_visible(info)):
            raise errors.missing()
        if rev is None:
            key = revtree.winner(info.tree)
            assert key is not None
            if info.tree[key].deleted:
                raise errors.deleted()
        else:
            key = parse_rev(rev)
            if key not in info.tree:
                raise errors.missing()
        revision = (await self.store.get_revisions([(doc_id, format_rev(key))])).get(
            (doc_id, format_rev(key))
        )
        if revision is None:
            raise errors.missing()
        atts = revision.body.get("_attachments")
        meta = atts.get(name) if isinstance(atts, dict) else None
        if not isinstance(meta, dict) or "blob" not in meta:
            raise errors.NotFound("Document is missing attachment")
        return meta

    def _resolve_revs(
        self, tree: RevTree, requested: Sequence[str] | None, latest: bool
    ) -> list[RevKey | str]:
        """Revisions to return for ``open_revs``/``_bulk_get``: keys, or the requested
        rev string when it is missing.  ``None`` = every leaf."""
        if requested is None:
            return list(tree.leaves())
        out: list[RevKey | str] = []
        seen: set[RevKey] = set()
        for rev in requested:
            key = parse_rev(rev)
            found = revtree.latest(tree, key) if latest else ([key] if key in tree else [])
            found = [k for k in found if not tree[k].missing]
            if not found:
                out.append(rev)
            for k in found:
                if k not in seen:
                    seen.add(k)
                    out.append(k)
        return out

    async def open_revs(
        self, doc_id: str, revs: Sequence[str] | None, options: ReadOptions, *, multipart: bool = False
    ) -> list[Rendered | str]:
        """``GET /{db}/{docid}?open_revs=…`` (§5.8, §7.4, §7.5).

        ``revs=None`` means ``all`` (every leaf; 404 if the doc does not exist).  Returns,
        in request order, a :data:`Rendered` document or the rev string of a missing
        revision.
        """
        for rev in revs or ():
            parse_rev(rev)
        info = await self._doc_info(doc_id)
        if info is not None and self.restricts_reads and not await self._winner_visible(info):
            info = None
        if info is None:
            if revs is None:
                raise errors.missing()
            return list(revs)
        wanted = self._resolve_revs(info.tree, revs, options.latest)
        keys = [k for k in wanted if isinstance(k, tuple)]
        rendered = dict(zip(keys, await self._render(info, keys, options, multipart=multipart), strict=True))
        out: list[Rendered | str] = []
        for entry in wanted:
            if isinstance(entry, str):
                out.append(entry)
            else:
                found = rendered[entry]
                out.append(found if found is not None else format_rev(entry))
        return out

    async def bulk_get(
        self, docs: object, options: ReadOptions, *, multipart: bool = False
    ) -> list[dict[str, Any]]:
        """``POST /{db}/_bulk_get`` (§7.3): one result per entry, in request order.

        Per-entry problems become ``{"error": {"id", "rev", "error", "reason"}}``.  With
        ``multipart`` each ``"ok"`` value is a :data:`Rendered` pair (doc, following
        attachments) instead of the doc.
        """
        if not isinstance(docs, list):
            raise errors.BadRequest("Missing JSON list of 'docs'.")
        ids = [d["id"] for d in docs if isinstance(d, dict) and isinstance(d.get("id"), str)]
        infos = await self.store.get_docs(list(dict.fromkeys(ids)))
        if self.restricts_reads:
            access = await self.access_docs(list(infos.values()))
            infos = {i: info for i, info in infos.items() if self.visible(access.get(i))}
        plans: list[tuple[Any, Any, list[RevKey | str] | errors.CouchError, ReadOptions | None]] = []
        wanted_keys: list[tuple[str, str]] = []
        for entry in docs:
            if not isinstance(entry, dict):
                plans.append((None, None, errors.BadRequest("document must be a JSON object"), None))
                continue
            doc_id = entry.get("id")
            rev = entry.get("rev")
            if not isinstance(doc_id, str) or not doc_id:
                plans.append((None, None, errors.BadRequest("document id missed"), None))
                continue
            info = infos.get(doc_id)
            try:
                if rev is not None and not isinstance(rev, str):
                    raise errors.invalid_rev()
                if info is None:
                    if rev is not None:
                        parse_rev(rev)
                    raise errors.missing()
                wanted = self._resolve_revs(info.tree, None if rev is None else [rev], options.latest)
            except errors.CouchError as err:
                plans.append((doc_id, rev, err, None))
                continue
            since = entry.get("atts_since")
            entry_options = options
            if isinstance(since, list) and since:
                try:
                    entry_options = replace(options, atts_since=tuple(parse_rev(r) for r in since))
                except errors.CouchError as err:
                    plans.append((doc_id, rev, err, None))
                    continue
            plans.append((doc_id, rev, wanted, entry_options))
            wanted_keys.extend((doc_id, format_rev(k)) for k in wanted if isinstance(k, tuple))
        revisions = await self.store.get_revisions(wanted_keys)
        results: list[dict[str, Any]] = []
        for doc_id, rev, plan, entry_options in plans:
            shown_rev = rev if rev is not None else ("undefined" if doc_id is not None else None)
            if isinstance(plan, errors.CouchError):
                results.append({"id": doc_id, "docs": [{"error": _bulk_get_error(doc_id, shown_rev, plan)}]})
                continue
            info = infos[doc_id]
            entries: list[dict[str, Any]] = []
            for item in plan:
                if isinstance(item, str):
                    entries.append({"error": _bulk_get_error(doc_id, item, errors.missing())})
                    continue
                revision = revisions.get((doc_id, format_rev(item)))
                doc = self._render_one(info, item, revision, entry_options or options)
                if doc is None or revision is None:
                    entries.append({"error": _bulk_get_error(doc_id, format_rev(item), errors.missing())})
                else:
                    rendered = await self._attachment_bodies(
                        doc, info, item, revision, entry_options or options, multipart
                    )
                    entries.append({"ok": rendered if multipart else rendered[0]})
            if not entries:
                entries.append({"error": _bulk_get_error(doc_id, shown_rev, errors.missing())})
            results.append({"id": doc_id, "docs": entries})
        return results

    async def revs_diff(self, body: object) -> dict[str, Any]:
        """``POST /{db}/_revs_diff`` (§7.1): only ids with missing revs appear."""
        if not isinstance(body, dict):
            raise errors.BadRequest("Request body must be a JSON object")
        wanted: dict[str, list[RevKey]] = {}
        for doc_id, revs in body.items():
            if not isinstance(revs, list):
                raise errors.BadRequest("Invalid revs list")
            wanted[doc_id] = [parse_rev(r) for r in revs]
        infos = await self.store.get_docs(list(wanted))
        out: dict[str, Any] = {}
        for doc_id, keys in wanted.items():
            info = infos.get(doc_id)
            tree = info.tree if info else RevTree.empty()
            missing, ancestors = revtree.find_missing(tree, keys)
            if missing:
                entry: dict[str, Any] = {"missing": [format_rev(k) for k in missing]}
                if ancestors:
                    entry["possible_ancestors"] = [format_rev(k) for k in ancestors]
                out[doc_id] = entry
        return out

    async def winner_docs(self, rows: Sequence[DocSummary]) -> dict[str, dict[str, Any]]:
        """Winning-revision bodies for ``include_docs``, in one storage read."""
        revisions = await self.store.get_revisions([(r.id, r.rev) for r in rows])
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            revision = revisions.get((row.id, row.rev))
            if revision is not None:
                out[row.id] = render_doc(row.id, row.rev, revision.deleted, revision.body)
        return out

    async def changes_pages(
        self, since: int, *, descending: bool = False, page_size: int = CHANGES_PAGE
    ) -> AsyncIterator[list[DocSummary]]:
        """Committed changes after ``since`` in bounded pages (ascending seq), or every doc
        newest first when ``descending``.  No read transaction is held between pages."""
        if descending:
            rows = await self.store.changes(0, 2**62, descending=True)
            for start in range(0, len(rows), page_size):
                yield rows[start : start + page_size]
            return
        while True:
            rows = await self.store.changes(since, page_size)
            if not rows:
                return
            yield rows
            since = rows[-1].seq
            if len(rows) < page_size:
                return

    async def doc_ids_changes(self, since: int, doc_ids: Iterable[str]) -> list[DocSummary]:
        """Changes after ``since`` restricted to ``doc_ids`` (``filter=_doc_ids``), by seq."""
        found = await self.store.get_summaries(list(dict.fromkeys(doc_ids)))
        return sorted((s for s in found.values() if s.seq > since), key=lambda s: s.seq)

    # -- _all_docs -------------------------------------------------------------------
    async def all_docs(
        self,
        *,
        keys: Sequence[object] | None,
        start: str | None,
        end: str | None,
        inclusive_end: bool,
        descending: bool,
        skip: int,
        limit: int | None,
        include_docs: bool,
        conflicts: bool,
    ) -> tuple[int, list[dict[str, Any]]]:
        """``_all_docs`` rows (§7.8) and ``total_rows``."""
        total = (await self.store.info()).doc_count
        rows: list[dict[str, Any]] = []
        if keys is not None:
            str_keys = [k for k in keys if isinstance(k, str)]
            found = await self.store.get_summaries(str_keys)
            if self.restricts_reads:
                found = await self._visible_only(found)
            live = [found[k] for k in str_keys if k in found]
            docs = await self._include(live, conflicts) if include_docs else {}
            for key in keys[skip:] if skip else keys:
                summary = found.get(key) if isinstance(key, str) else None
                if summary is None:
                    rows.append({"key": key, "error": "not_found"})
                    continue
                value: dict[str, Any] = {"rev": summary.rev}
                row: dict[str, Any] = {"id": summary.id, "key": summary.id, "value": value}
                if summary.deleted:
                    value["deleted"] = True
                    if include_docs:
                        row["doc"] = None
                elif include_docs:
                    row["doc"] = docs.get(summary.id)
                rows.append(row)
            if limit is not None:
                rows = rows[:limit]
            return total, rows
        if self.restricts_reads:
            # Visibility is known only per doc, so the range is filtered before skip/limit
            # and total_rows counts what the caller may see.
            everything = await self.store.all_docs(
                start=start, end=end, inclusive_end=inclusive_end, descending=descending
            )
            visible = await self._visible_only({s.id: s for s in everything})
            summaries = [s for s in everything if s.id in visible][skip:]
            summaries = summaries if limit is None else summaries[:limit]
            total = len(visible)
        else:
            summaries = await self.store.all_docs(
                start=start,
                end=end,
                inclusive_end=inclusive_end,
                descending=descending,
                skip=skip,
                limit=limit,
            )
        docs = await self._include(summaries, conflicts) if include_docs else {}
        for s in summaries:
            row = {"id": s.id, "key": s.id, "value": {"rev": s.rev}}
            if include_docs:
                row["doc"] = docs.get(s.id)
            rows.append(row)
        return total, rows

    async def _visible_only(self, found: Mapping[str, DocSummary]) -> dict[str, DocSummary]:
        """The summaries of the documents the caller may read (see :meth:`access_docs`)."""
        infos = await self.store.get_docs(list(found))
        docs = await self.access_docs(list(infos.values()))
        return {i: s for i, s in found.items() if self.visible(docs.get(i))}

    async def _include(self, rows: Sequence[DocSummary], conflicts: bool) -> dict[str, dict[str, Any]]:
        docs = await self.winner_docs([r for r in rows if not r.deleted])
        if conflicts:
            for r in rows:
                losers = [rev for rev, deleted in r.leaves[1:] if not deleted]
                if losers and r.id in docs:
                    docs[r.id]["_conflicts"] = losers
        return docs

    # -- _local ----------------------------------------------------------------------
    async def get_local(self, name: str) -> dict[str, Any]:
        """``GET /{db}/_local/{name}`` → ``{"_id", "_rev": "0-N", ...body}`` or 404."""
        doc = await self.store.get_local(name)
        if doc is None:
            raise errors.missing()
        out: dict[str, Any] = {"_id": LOCAL_PREFIX + name, "_rev": f"0-{doc.rev}"}
        out.update(doc.body)
        return out

    async def put_local(self, name: str, body: object, rev: str | None) -> str:
        """``PUT /{db}/_local/{name}`` with CouchDB 3's rule: no conflict check; the new
        rev is the sent ``0-N`` (or 0) plus one.  Returns ``"0-<N+1>"``.  A body with
        ``_deleted: true`` deletes.  400 for a malformed rev."""
        if not isinstance(body, dict):
            raise errors.BadRequest("Document must be a JSON object")
        sent = body.get("_rev", rev)
        if rev is not None and "_rev" in body and body["_rev"] != rev:
            raise errors.BadRequest("Document rev from request body and query string have different values")
        base = _local_rev(sent)
        clean = {k: v for k, v in body.items() if k not in ("_id", "_rev", "_revisions", "_deleted")}
        async with self.store.write() as txn:
            if body.get("_deleted") is True:
                if not await txn.delete_local(name):
                    raise errors.missing()
                return "0-0"
            new = await self._put_local_txn(txn, name, base, clean)
        return f"0-{new}"

    async def _put_local_txn(self, txn: Any, name: str, base: int | None, body: dict[str, Any]) -> int:
        if base is None:
            base = 0
        clean = {k: v for k, v in body.items() if k not in ("_id", "_rev", "_revisions", "_deleted")}
        await txn.put_local(LocalDoc(name, base + 1, clean))
        return base + 1

    async def delete_local(self, name: str) -> None:
        """``DELETE /{db}/_local/{name}``: 404 if absent."""
        async with self.store.write() as txn:
            if not await txn.delete_local(name):
                raise errors.missing()


def _local_rev(rev: object) -> int | None:
    if rev is None:
        return None
    if isinstance(rev, str):
        pos, sep, num = rev.partition("-")
        if sep and pos == "0" and num.isdigit():
            return int(num)
    raise errors.invalid_rev()


def _digests(body: dict[str, Any]) -> list[str]:
    atts = body.get("_attachments")
    if not isinstance(atts, dict):
        return []
    out = []
    for name in sorted(atts):
        entry = atts[name]
        meta = entry.meta if isinstance(entry, PreparedAttachment) else entry
        if isinstance(meta, dict) and isinstance(meta.get("digest"), str):
            out.append(f"{name}:{meta['digest']}")
    return out


def _json_size(body: dict[str, Any]) -> int:
    import orjson

    return len(orjson.dumps(body))


def _bulk_get_error(doc_id: str | None, rev: str | None, err: errors.CouchError) -> dict[str, Any]:
    return {"id": doc_id, "rev": rev, "error": err.error, "reason": err.reason}


def _entry_error(entry: Mapping[str, Any]) -> errors.CouchError:
    token = entry["error"]
    reason = entry.get("reason", "")
    if token == "conflict":
        return errors.Conflict(reason)
    status = {"forbidden": 403, "unauthorized": 401, "not_found": 404, "missing_stub": 412}.get(token, 400)
    if token == "document_too_large":
        status = 413
    return errors.CouchError(reason, status=status, error=token)


class Server:
    """The databases of one couchpoint server, over one :class:`Storage`.

    Opens storage lazily on first use (``httpx.ASGITransport`` sends no lifespan events)
    and caches one :class:`Database` (with its :class:`ChangeNotifier`) per name.
    """

    def __init__(self, storage: Storage, settings: Settings, hooks: Hooks | None = None) -> None:
        self.storage = storage
        self.settings = settings
        self.hooks = hooks or Hooks()
        self._dbs: dict[str, Database] = {}
        self._started = False
        self._start_lock = asyncio.Lock()
        self.uuid = ""
        self.watcher = SeqWatcher(storage)  # wakes feeds on writes of other processes

    async def start(self) -> None:
        """Open storage and read the server uuid (idempotent)."""
        if self._started:
            return
        async with self._start_lock:
            if not self._started:
                await self.storage.open()
                self.uuid = await self.storage.server_uuid()
                self._started = True

    async def close(self) -> None:
        """Close storage (idempotent)."""
        if self._started:
            self._started = False
            await self.watcher.close()  # ends the live _changes feeds
            self._dbs.clear()
            await self.storage.close()

    async def all_dbs(self) -> list[str]:
        await self.start()
        return await self.storage.all_dbs()

    async def get_db(self, name: str) -> Database:
        """The database ``name``; 404 ``Database does not exist.`` otherwise."""
        await self.start()
        store = await self.storage.get_db(name)
        if store is None:
            self._dbs.pop(name, None)
            raise errors.db_not_found()
        db = self._dbs.get(name)
        if db is None or db.store is not store:
            info = await store.info()
            db = self._dbs.get(name)  # another request may have opened it meanwhile
            if db is not None and db.store is store:
                return db
            db = Database(
                store,
                ChangeNotifier(info.update_seq),
                self.settings,
                info.revs_limit,
                self.storage,
                self.hooks,
            )
            self._dbs[name] = db
            self.watcher.attach(name, db.notifier, store)
        return db

    async def create_db(self, name: str) -> None:
        """``PUT /{db}``: 400 bad name, 412 exists."""
        await self.start()
        validate_db_name(name)
        await self.storage.create_db(name)

    async def delete_db(self, name: str) -> None:
        """``DELETE /{db}``: 404 if missing.  Wakes the db's listeners so they end."""
        await self.start()
        await self.storage.delete_db(name)
        self._dbs.pop(name, None)
        self.watcher.forget(name)  # closes the db's notifier: its feeds end


__all__ = ["ChangeNotifier", "Database", "ReadOptions", "Server", "validate_db_name", "validate_docid"]
