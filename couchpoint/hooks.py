"""Hooks: plain Python callables that replace CouchDB's JavaScript design-doc functions.

Register them with :func:`couchpoint.create_app` (``hooks=Hooks(...)``, or the keyword
arguments ``validate_doc_update=``, ``filters=``, ``read_access=``).  Each hook may be a
plain function or a coroutine function, and may apply server-wide or to one database.

``validate_doc_update(new_doc, old_doc, user_ctx, security)``
    Called for every document write (interactive and replicated, ``_local`` docs
    excepted) before it is stored, like CouchDB's ``validate_doc_update`` design function
    (CouchDB docs *Design Documents → Validate Document Update Functions*).  ``new_doc``
    is the revision as a client would read it (``_id``, ``_rev``, ``_deleted``...),
    ``old_doc`` the revision it replaces (or ``None``), ``user_ctx`` a dict ``{"name",
    "roles", "db"}``, ``security`` the db's security object.  Raise
    :class:`couchpoint.errors.Forbidden` or :class:`couchpoint.errors.Unauthorized` to
    reject: a PUT answers 403/401, ``_bulk_docs`` reports the doc as
    ``{"id", "error": "forbidden"|"unauthorized", "reason"}``.

``filters["ddoc/name"](doc, req)``
    Named ``_changes`` filters (``?filter=ddoc/name``), replacing JavaScript filter
    functions.  ``req`` is ``{"query": {...query params}, "userCtx": {...}}``; return
    ``True`` to emit the revision.  Must be synchronous (it runs per row).

``authenticate(request)``
    Your own authentication, tried before couchpoint's (JWT, cookie, Basic): given the
    Starlette ``Request``, return ``{"name": ..., "roles": [...]}`` to run the request
    as that user, or ``None`` to fall back to couchpoint's own; raise
    :class:`couchpoint.errors.Unauthorized` to answer 401.  Sync or async.  Use it when
    the app embedding couchpoint already knows its users (sessions, API keys, a proxy).

``read_access(doc, user_ctx)``
    Per-document visibility: return ``False`` to hide ``doc`` (the winning revision) from
    the caller.  Applied consistently to doc GETs, ``open_revs``, ``_bulk_get``,
    ``_all_docs`` and ``_changes``, so many users can share one database.  Hidden docs
    look missing (404 / ``not_found``).  Must be synchronous.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Validator = Callable[[dict[str, Any], dict[str, Any] | None, dict[str, Any], dict[str, Any]], Any]
ChangeFilter = Callable[[dict[str, Any], dict[str, Any]], bool]
ReadAccess = Callable[[dict[str, Any], dict[str, Any]], bool]
Authenticate = Callable[[Any], Any]


def _for_db(registry: Mapping[str | None, Any] | Any, db: str) -> list[Any]:
    if registry is None:
        return []
    if callable(registry):
        return [registry]
    if isinstance(registry, list | tuple):
        return list(registry)
    found = []
    for key in (None, "*", db):
        value = registry.get(key)
        if value is None:
            continue
        found.extend(value if isinstance(value, list | tuple) else [value])
    return found


@dataclass
class Hooks:
    """The hooks of one couchpoint app.

    Each attribute is one callable or a list of callables (server-wide), or a mapping
    ``{db name: callable or list of callables}``; the key ``"*"`` (or ``None``) means every database.
    ``filters`` maps ``"ddoc/name"`` to a filter, or ``{db: {"ddoc/name": filter}}``.
    """

    validate_doc_update: Validator | Mapping[str | None, Any] | None = None
    filters: Mapping[str, Any] = field(default_factory=dict)
    read_access: ReadAccess | Mapping[str | None, Any] | None = None
    authenticate: Authenticate | None = None

    def validators(self, db: str) -> list[Validator]:
        """Validators that apply to database ``db``."""
        return _for_db(self.validate_doc_update, db)

    def readers(self, db: str) -> list[ReadAccess]:
        """Read-access checks that apply to database ``db``."""
        return _for_db(self.read_access, db)

    def change_filter(self, db: str, name: str) -> ChangeFilter | None:
        """The named filter ``name`` for ``db`` (db-specific first), or ``None``."""
        specific = self.filters.get(db)
        if isinstance(specific, Mapping) and name in specific:
            found: ChangeFilter = specific[name]
            return found
        value = self.filters.get(name)
        return value if callable(value) else None


async def call(hook: Callable[..., Any], *args: Any) -> Any:
    """Call a sync or async hook."""
    result = hook(*args)
    if inspect.isawaitable(result):
        result = await result
    return result
