"""Authorization as CouchDB 3 does it: pure rules, no I/O (docs/security.md).

A request runs as a user context (``name`` -- ``None`` when anonymous -- and ``roles``;
server admins carry ``_admin``).  Each database has a security object::

    {"admins":  {"names": [...], "roles": [...]},
     "members": {"names": [...], "roles": [...]}}

* **db admin**: a server admin, or a name in ``admins.names``, or a role in
  ``admins.roles`` (``couch_db:is_admin``).
* **member**: a db admin, or a name in ``members.names`` or a role in ``members.roles``
  -- or anyone at all when ``members`` lists no name and no role (a *public* database;
  ``readers`` is the old name of ``members``).  Anonymous users never match a name.
* A database whose security object was never stored is admin-only
  (:data:`ADMIN_ONLY`, CouchDB 3's default object).  New databases get the object of the
  ``default_security`` setting stored when they are created (:func:`default_security`).

:func:`db_access` is the operation table (protocol reference §12.4); :func:`deny` builds
the error CouchDB answers for a refused request.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from couchpoint import errors

ADMIN_ROLE = "_admin"

ADMIN_ONLY: dict[str, Any] = {"members": {"roles": [ADMIN_ROLE]}, "admins": {"roles": [ADMIN_ROLE]}}
"""CouchDB 3's default security object (``[couchdb] default_security = admin_only``)."""

POLICIES = ("admin_only", "everyone")

NOT_AUTHORIZED = "You are not authorized to access this db."
"""Reason of the 401 an anonymous caller gets from a db it is not a member of."""
NOT_ALLOWED = "You are not allowed to access this db."
"""Reason of the 403 an authenticated non-member gets."""
NOT_DB_ADMIN = "You are not a db or server admin."
NOT_SERVER_ADMIN = "You are not a server admin."
NOT_SERVER_OR_DB_ADMIN = "You are not a server or db admin."

WRITE_METHODS = frozenset({"PUT", "POST", "DELETE", "COPY"})


class User(Protocol):
    """What the rules need of a user context (:class:`couchpoint.auth.UserCtx`)."""

    @property
    def name(self) -> str | None: ...

    @property
    def roles(self) -> tuple[str, ...]: ...


class Access(enum.Enum):
    """What an operation needs (the rows of the §12.4 table)."""

    NOBODY = "nobody"
    MEMBER = "member"
    DB_ADMIN = "db admin"
    """Member first (401/403 "access this db"), then db admin (401/403 "You are not a
    db or server admin.", ``couch_db:check_is_admin``)."""
    COMPACT = "compact"
    """Member first, then db admin with CouchDB's 401 "You are not a server or db
    admin." for everyone (``chttpd_auth_request:require_db_admin``)."""
    SERVER_ADMIN = "server admin"
    """401 "You are not a server admin." for everyone (``verify_is_server_admin``)."""


def default_security(policy: str) -> dict[str, Any]:
    """The object stored on a new database: ``admin_only`` → :data:`ADMIN_ONLY`,
    ``everyone`` → ``{}`` (public)."""
    if policy == "everyone":
        return {}
    if policy == "admin_only":
        return copy.deepcopy(ADMIN_ONLY)
    raise ValueError(f"default_security must be one of {POLICIES}, not {policy!r}")


def effective(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """The object the rules apply: the stored one, or :data:`ADMIN_ONLY` when none was
    ever stored."""
    return copy.deepcopy(dict(stored)) if stored is not None else copy.deepcopy(ADMIN_ONLY)


def _section(security: Mapping[str, Any], key: str) -> tuple[list[str], list[str]]:
    value = security.get(key)
    if key == "members" and value is None:
        value = security.get("readers")
    if not isinstance(value, Mapping):
        return [], []
    names = value.get("names")
    roles = value.get("roles")
    return (
        [n for n in names if isinstance(n, str)] if isinstance(names, list) else [],
        [r for r in roles if isinstance(r, str)] if isinstance(roles, list) else [],
    )


def is_server_admin(user: User) -> bool:
    return ADMIN_ROLE in user.roles


def _matches(user: User, names: Sequence[str], roles: Sequence[str]) -> bool:
    if set(user.roles) & set(roles):
        return True
    return user.name is not None and user.name in names


def is_db_admin(user: User, security: Mapping[str, Any]) -> bool:
    """Server admin, or named / role-matched in ``admins``."""
    names, roles = _section(security, "admins")
    return _matches(user, names, [ADMIN_ROLE, *roles])


def is_public(security: Mapping[str, Any]) -> bool:
    """``members`` lists no name and no role: everybody is a member."""
    names, roles = _section(security, "members")
    return not names and not roles


def is_member(user: User, security: Mapping[str, Any]) -> bool:
    """Db admin, public database, or named / role-matched in ``members``."""
    if is_db_admin(user, security) or is_public(security):
        return True
    names, roles = _section(security, "members")
    return _matches(user, names, roles)


def deny(user: User, reason: str | None = None) -> errors.CouchError:
    """CouchDB's refusal (``couch_db:throw_security_error``): 401 ``unauthorized`` for an
    anonymous caller, 403 ``forbidden`` for an authenticated one."""
    if user.name is None:
        return errors.Unauthorized(reason or NOT_AUTHORIZED)
    return errors.Forbidden(reason or NOT_ALLOWED)


def check(user: User, access: Access, security: Mapping[str, Any] | None) -> None:
    """Raise the CouchDB error if ``user`` may not do an operation needing ``access`` on
    a database whose (effective) object is ``security``."""
    if access is Access.NOBODY or is_server_admin(user):
        return
    if access is Access.SERVER_ADMIN:
        raise errors.Unauthorized(NOT_SERVER_ADMIN)
    sec = security if security is not None else ADMIN_ONLY
    if not is_member(user, sec):
        raise deny(user)
    if access is Access.DB_ADMIN and not is_db_admin(user, sec):
        raise deny(user, NOT_DB_ADMIN)
    if access is Access.COMPACT and not is_db_admin(user, sec):
        raise errors.Unauthorized(NOT_SERVER_OR_DB_ADMIN)


def is_design_id(segment: str) -> bool:
    return segment == "_design" or segment.startswith("_design/")


def db_access(method: str, rest: Sequence[str]) -> Access:
    """The access an operation on a database needs; ``rest`` is the path after the db.

    ==========================================================  ===================
    ``PUT|DELETE /{db}``                                        server admin
    ``PUT /{db}/_security``, ``PUT /{db}/_revs_limit``          db admin
    writes to ``/{db}/_design/...`` (PUT, DELETE, COPY, atts)   db admin
    ``POST /{db}/_compact``                                     db admin (401)
    everything else: reads, doc writes, ``_bulk_docs``,         member
    ``_local``, ``_changes``, ``_ensure_full_commit`` ...
    ==========================================================  ===================

    Design documents written through ``POST /{db}``, ``_bulk_docs`` or ``COPY`` are
    refused per document by :func:`design_doc_validator`.
    """
    if not rest:
        return Access.SERVER_ADMIN if method in ("PUT", "DELETE") else Access.MEMBER
    head = rest[0]
    if head in ("_security", "_revs_limit"):
        return Access.MEMBER if method in ("GET", "HEAD") else Access.DB_ADMIN
    if head == "_compact":
        return Access.COMPACT
    if is_design_id(head) and method in WRITE_METHODS:
        return Access.DB_ADMIN
    return Access.MEMBER


# -- the security object itself -----------------------------------------------------------


def validate_security_object(value: object) -> dict[str, Any]:
    """A ``PUT /{db}/_security`` body, checked as ``couch_db:validate_security_object``:
    an object whose ``admins`` and ``members`` (or ``readers``), when present, are
    objects with ``names`` / ``roles`` lists of strings.  400 ``bad_request`` otherwise."""
    if not isinstance(value, dict):
        raise errors.BadRequest("Request body must be a JSON object")
    for key in ("admins", "members", "readers"):
        if key not in value:
            continue
        section = value[key]
        if not isinstance(section, dict):
            raise errors.BadRequest("admins or members must be a JSON list of strings")
        for field in ("names", "roles"):
            items = section.get(field, [])
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise errors.BadRequest(f"{field} must be a JSON list of strings")
    return value


# -- per-document rule: design documents ---------------------------------------------------


def design_doc_validator(
    new_doc: dict[str, Any], old_doc: dict[str, Any] | None, user_ctx: dict[str, Any], sec: dict[str, Any]
) -> None:
    """A ``validate_doc_update`` hook (:mod:`couchpoint.hooks`): only db admins write
    design documents (interactive or replicated; ``_bulk_docs`` reports the others per
    document as ``unauthorized`` / ``forbidden``, "You are not a db or server admin.")."""
    doc_id = new_doc.get("_id")
    if not (isinstance(doc_id, str) and doc_id.startswith("_design/")):
        return
    user = _UserView(user_ctx)
    # The hook sees the stored object ({} when none was stored); an unset object means
    # admin-only, and for the admin check {} and ADMIN_ONLY agree (server admins only).
    if not is_db_admin(user, sec or {}):
        raise deny(user, NOT_DB_ADMIN)


design_doc_validator.design_only = True  # type: ignore[attr-defined]  # see Database.write


class _UserView:
    """A hook's ``user_ctx`` dict seen as a :class:`User`."""

    def __init__(self, ctx: Mapping[str, Any]) -> None:
        name = ctx.get("name")
        self.name: str | None = name if isinstance(name, str) else None
        roles = ctx.get("roles") or []
        self.roles: tuple[str, ...] = tuple(r for r in roles if isinstance(r, str))


# -- strict JSON for the security-sensitive bodies ----------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise errors.BadRequest(f"Duplicate key in JSON object: {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def loads_strict(raw: bytes) -> Any:
    """Parse a ``_users`` document or ``_security`` object body, refusing objects with
    a duplicate key (400): orjson, like CouchDB's parser before CVE-2017-12635 was fixed,
    keeps one of them silently, and two parsers disagreeing on which one is how that CVE
    granted roles.  Otherwise as strict as the rest of couchpoint (UTF-8, no NaN)."""
    import json

    try:
        text = raw.decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except errors.CouchError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise errors.BadRequest("invalid UTF-8 JSON") from None
