"""Authentication: server admins, Basic credentials and ``AuthSession`` cookies.

Pure standard library (``hashlib``, ``hmac``).  CouchDB docs *Authentication* and the
protocol reference §12:

* Server admins are configured as ``name → password``; passwords are kept only as salted
  PBKDF2-SHA256 hashes.  With no admin configured the server runs as "admin party":
  every request is a server admin.
* ``Authorization: Basic`` splits ``name:password`` at the **first** colon; wrong
  credentials are a 401 even where anonymous access would be allowed.
* ``AuthSession`` cookies are ``base64url("name:hex-expiry:hmac")``, signed with the
  server secret; an expired or badly signed cookie is ignored (anonymous).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from couchpoint import errors

PBKDF2_ITERATIONS = 100_000
COOKIE_NAME = "AuthSession"


@dataclass(frozen=True, slots=True)
class UserCtx:
    """Who a request runs as: ``name`` (``None`` = anonymous) and ``roles``.

    ``authenticated`` names the handler that authenticated it (``cookie``, ``default``).
    """

    name: str | None
    roles: tuple[str, ...] = ()
    authenticated: str | None = None

    @property
    def is_admin(self) -> bool:
        return "_admin" in self.roles

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "roles": list(self.roles)}


ANONYMOUS = UserCtx(None)
ADMIN_PARTY = UserCtx(None, ("_admin",))


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """A salted PBKDF2-SHA256 hash (``iterations``, ``salt``, ``derived_key`` bytes)."""

    salt: bytes
    derived_key: bytes
    iterations: int = PBKDF2_ITERATIONS

    @classmethod
    def create(cls, password: str, iterations: int = PBKDF2_ITERATIONS) -> PasswordHash:
        salt = os.urandom(16)
        return cls(salt, _derive(password, salt, iterations), iterations)

    def verify(self, password: str) -> bool:
        return hmac.compare_digest(_derive(password, self.salt, self.iterations), self.derived_key)


def _derive(password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)


@dataclass
class Authenticator:
    """Checks credentials against the configured server admins.

    ``admins``: ``name → password`` (hashed on construction).  ``secret``: cookie
    signing key (random when empty).  ``timeout_s``: cookie lifetime.
    """

    admins: Mapping[str, str]
    secret: str = ""
    timeout_s: int = 600
    _hashes: dict[str, PasswordHash] = field(init=False, default_factory=dict)
    _verified: dict[tuple[str, str], bool] = field(init=False, default_factory=dict)
    _key: bytes = field(init=False, default=b"")

    def __post_init__(self) -> None:
        self._hashes = {name: PasswordHash.create(pw) for name, pw in self.admins.items()}
        self._key = self.secret.encode() if self.secret else os.urandom(32)

    @property
    def admin_party(self) -> bool:
        """True when no admin is configured: everyone is a server admin."""
        return not self._hashes

    def check_password(self, name: str, password: str) -> UserCtx | None:
        """The admin's context if ``name``/``password`` are right, else ``None``.

        Results are cached per process so repeated Basic requests skip PBKDF2.
        """
        cached = self._verified.get((name, password))
        if cached is None:
            stored = self._hashes.get(name)
            cached = stored is not None and stored.verify(password)
            if len(self._verified) > 1024:
                self._verified.clear()
            self._verified[(name, password)] = cached
        return UserCtx(name, ("_admin",)) if cached else None

    def basic(self, header: str) -> UserCtx:
        """Authenticate an ``Authorization: Basic …`` value.

        Raises ``400 bad_request`` for undecodable base64 and ``401 unauthorized`` "Name
        or password is incorrect." for wrong credentials.  ``_:_`` is anonymous.
        """
        try:
            decoded = base64.b64decode(header.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise errors.BadRequest("Authorization header has invalid base64 value") from None
        name, _, password = decoded.partition(":")
        if name == "_" and password == "_":
            return ANONYMOUS
        user = self.check_password(name, password)
        if user is None:
            raise errors.Unauthorized("Name or password is incorrect.")
        return UserCtx(user.name, user.roles, "default")

    def make_cookie(self, name: str, now: float | None = None) -> str:
        """A signed ``AuthSession`` value for ``name`` valid for ``timeout_s``."""
        expiry = int((now if now is not None else time.time()) + self.timeout_s)
        payload = f"{name}:{expiry:X}"
        mac = hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()
        return base64.urlsafe_b64encode(f"{payload}:{mac}".encode()).decode().rstrip("=")

    def cookie(self, value: str, now: float | None = None) -> UserCtx | None:
        """The user of a valid, unexpired cookie for a configured admin, else ``None``."""
        try:
            padded = value + "=" * (-len(value) % 4)
            decoded = base64.urlsafe_b64decode(padded.encode()).decode()
            name, expiry_hex, mac = decoded.rsplit(":", 2)
            expiry = int(expiry_hex, 16)
        except (ValueError, UnicodeDecodeError, binascii.Error):
            return None
        expected = hmac.new(self._key, f"{name}:{expiry_hex}".encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, expected):
            return None
        if expiry < (now if now is not None else time.time()) or name not in self._hashes:
            return None
        return UserCtx(name, ("_admin",), "cookie")
