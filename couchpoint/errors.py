"""CouchDB's error catalogue: one exception type, rendered as ``{"error", "reason"}``.

Every failure couchpoint reports to a client is a :class:`CouchError` carrying the HTTP
status, CouchDB's short ``error`` token and a human ``reason`` (CouchDB docs, *API Basics*,
"HTTP Status Codes"; ``chttpd:error_info``).  The HTTP layer renders it in one place; the
layers below raise it without knowing about HTTP.

Hierarchy::

    CouchError(status, error, reason)
     ├── BadRequest            400 bad_request
     ├── NotFound              404 not_found
     ├── Conflict              409 conflict "Document update conflict."
     ├── Unauthorized          401 unauthorized
     └── Forbidden             403 forbidden

Other tokens (``illegal_docid``, ``doc_validation``, ``file_exists``, ``missing_stub`` ...)
are built with the factory functions below so each reason text lives in one place.
"""

from __future__ import annotations

from typing import Any


class CouchError(Exception):
    """An error with CouchDB's wire shape.

    Attributes: ``status`` (HTTP status code), ``error`` (CouchDB's token, e.g.
    ``"not_found"``), ``reason`` (text), ``headers`` (extra response headers, e.g. ``Allow``).
    """

    status: int = 500
    error: str = "unknown_error"

    def __init__(
        self,
        reason: str = "",
        *,
        status: int | None = None,
        error: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(reason)
        if status is not None:
            self.status = status
        if error is not None:
            self.error = error
        self.reason = reason
        self.headers = headers or {}

    def to_json(self) -> dict[str, Any]:
        """``{"error": token, "reason": text}`` as CouchDB sends it."""
        return {"error": self.error, "reason": self.reason}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.error!r}, {self.reason!r})"


class BadRequest(CouchError):
    status = 400
    error = "bad_request"


class NotFound(CouchError):
    status = 404
    error = "not_found"


class Conflict(CouchError):
    status = 409
    error = "conflict"

    def __init__(self, reason: str = "Document update conflict.") -> None:
        super().__init__(reason)


class Unauthorized(CouchError):
    status = 401
    error = "unauthorized"


class Forbidden(CouchError):
    status = 403
    error = "forbidden"


# -- factories: one place for every reason text CouchDB 3.x uses --------------------------


def missing() -> NotFound:
    return NotFound("missing")


def deleted() -> NotFound:
    return NotFound("deleted")


def db_not_found() -> NotFound:
    return NotFound("Database does not exist.")


def db_exists() -> CouchError:
    return CouchError(
        "The database could not be created, the file already exists.",
        status=412,
        error="file_exists",
    )


def illegal_database_name(name: str) -> CouchError:
    return CouchError(
        f"Name: '{name}'. Only lowercase characters (a-z), digits (0-9), and any of the "
        "characters _, $, (, ), +, -, and / are allowed. Must begin with a letter.",
        status=400,
        error="illegal_database_name",
    )


def illegal_docid(reason: str) -> CouchError:
    return CouchError(reason, status=400, error="illegal_docid")


def doc_validation(reason: str) -> CouchError:
    return CouchError(reason, status=400, error="doc_validation")


def invalid_rev() -> BadRequest:
    return BadRequest("Invalid rev format")


def bad_content_type(reason: str = "Content-Type must be application/json") -> CouchError:
    return CouchError(reason, status=415, error="bad_content_type")


def method_not_allowed(allowed: str) -> CouchError:
    return CouchError(
        f"Only {allowed} allowed",
        status=405,
        error="method_not_allowed",
        headers={"Allow": allowed},
    )


def too_large(reason: str = "the request entity is too large") -> CouchError:
    return CouchError(reason, status=413, error="too_large")


def document_too_large(docid: str) -> CouchError:
    return CouchError(docid, status=413, error="document_too_large")


def not_implemented(reason: str = "this feature is not yet implemented") -> CouchError:
    return CouchError(reason, status=501, error="not_implemented")
