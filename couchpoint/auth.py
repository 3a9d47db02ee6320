"""Authentication: server admins, ``_users`` users, Basic, ``AuthSession`` cookies, JWT.

Standard library for hashing and cookies (``hashlib``, ``hmac``), PyJWT for bearer
tokens.  CouchDB docs *Authentication*, protocol reference §12.1-§12.3, and
docs/security.md for the decisions.

* **Passwords** are kept only as salted PBKDF2 hashes (:class:`PasswordHash`).  Server
  admins come from the configuration as ``name → password`` or ``name → hash`` in
  CouchDB's ``-pbkdf2:sha256-<derived key>,<salt>,<iterations>`` form (``-pbkdf2-...``
  is PBKDF2-SHA1, as CouchDB < 3.4 wrote it).  Users are documents of the ``_users``
  database (``derived_key``, ``salt``, ``iterations``, ``password_scheme: "pbkdf2"``,
  ``pbkdf2_prf``; :mod:`couchpoint.users`).  A server admin shadows a user of the
  same name.  With no admin configured the server is an "admin party": every request is
  a server admin (``serve`` allows that only on a loopback address).
* **Basic** (``Authorization: Basic``) splits ``name:password`` at the first colon (the
  password may hold ``:`` and ``@``).  Wrong credentials are a 401 "Name or password is
  incorrect." even where anonymous access would be allowed; ``_:_`` is anonymous.
* **Cookies**: ``AuthSession=base64url(name ":" HEX(issued) ":" HMAC-SHA256(secret +
  user salt, name ":" HEX(issued)))`` as CouchDB builds them, so a password change ends
  the user's sessions.  Valid for ``timeout_s`` after issue; a cookie older than 10 % of
  that is replaced by a fresh one in the response (``Set-Cookie``).  An expired, forged
  or unknown-user cookie is ignored: the request runs as anonymous (CouchDB's rule).
* **JWT** (``Authorization: Bearer``): HS256 with ``jwt_secret`` and/or RS256 with
  ``jwt_public_key``; the name is ``sub``, the roles the ``jwt_roles_claim`` (dotted
  path, default ``_couchdb.roles``); ``exp`` (and ``jwt_required_claims``) required.
  Any failure is a 401.  Tokens are only verified, never issued.
* **Lockout**: after ``lockout_threshold`` wrong passwords for one user from one client
  address within ``lockout_window_s`` (counted from the first failure), further
  password checks for that user from that address answer 403 "Account is temporarily
  locked due to multiple authentication failures" without checking (CouchDB 3.4's
  ``chttpd_auth_lockout``: key = peer, user name, user salt).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

import anyio

from couchpoint import errors

if TYPE_CHECKING:
    from starlette.requests import Request

    from couchpoint.config import Settings
    from couchpoint.database import Server

PBKDF2_ITERATIONS = 600_000
"""Iterations of new PBKDF2-SHA256 hashes (OWASP's 2023 figure for PBKDF2-HMAC-SHA256)."""
PBKDF2_PRF = "sha256"
COOKIE_NAME = "AuthSession"
USERS_DB = "_users"
USER_PREFIX = "org.couchdb.user:"
LOCKED_OUT = "Account is temporarily locked due to multiple authentication failures"
BAD_CREDENTIALS = "Name or password is incorrect."
_PRFS = frozenset({"sha1", "sha224", "sha256", "sha384", "sha512"})


def is_local_client(host: str | None) -> bool:
    """True for loopback clients (and in-process transports that name no real address)."""
    if not host or host in ("localhost", "testclient"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class UserCtx:
    """Who a request runs as: ``name`` (``None`` = anonymous) and ``roles``.

    ``authenticated`` names the handler that authenticated it (``cookie``, ``default``
    for Basic, ``jwt``), ``None`` for anonymous and admin-party requests.
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


# -- password hashes ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """A salted password hash as CouchDB stores it.

    ``scheme``: ``pbkdf2`` (``prf`` = ``sha256``, or ``sha1`` for CouchDB < 3.4) or
    ``simple`` (CouchDB 1.x ``password_sha`` = SHA-1 of password + salt; verified, never
    created).  ``salt`` is a string used as its UTF-8 bytes (CouchDB: 32 hex chars);
    ``derived_key`` is lowercase hex.
    """

    salt: str
    derived_key: str
    iterations: int = PBKDF2_ITERATIONS
    prf: str = PBKDF2_PRF
    scheme: str = "pbkdf2"

    @classmethod
    def create(cls, password: str, iterations: int = PBKDF2_ITERATIONS) -> PasswordHash:
        salt = os.urandom(16).hex()
        derived = hashlib.pbkdf2_hmac(PBKDF2_PRF, password.encode("utf-8"), salt.encode(), iterations)
        return cls(salt, derived.hex(), iterations)

    def verify(self, password: str) -> bool:
        """Constant-time comparison of ``password``'s hash with the stored one (slow:
        run it in a worker thread, as :class:`Authenticator` does)."""
        raw = password.encode("utf-8")
        if self.scheme == "simple":
            actual = hashlib.sha1(raw + self.salt.encode()).hexdigest()
        else:
            actual = hashlib.pbkdf2_hmac(self.prf, raw, self.salt.encode(), self.iterations).hex()
        return hmac.compare_digest(actual, self.derived_key.lower())

    # CouchDB's forms ------------------------------------------------------------------
    def to_config(self) -> str:
        """``-pbkdf2:sha256-<derived>,<salt>,<iterations>`` (CouchDB's ``[admins]``)."""
        tag = "-pbkdf2-" if self.prf == "sha1" else f"-pbkdf2:{self.prf}-"
        return f"{tag}{self.derived_key},{self.salt},{self.iterations}"

    @classmethod
    def from_config(cls, value: str) -> PasswordHash | None:
        """Parse CouchDB's hashed ``[admins]`` value; ``None`` if ``value`` is not one
        (a plain password).  Raises ``ValueError`` for a malformed hash."""
        if not value.startswith("-pbkdf2"):
            return None
        head, sep, rest = value[1:].partition("-")
        prf = "sha1" if head == "pbkdf2" else head.removeprefix("pbkdf2:")
        parts = rest.split(",")
        if not sep or prf not in _PRFS or len(parts) != 3:
            raise ValueError("hashed admin password must look like -pbkdf2:sha256-<key>,<salt>,<iterations>")
        derived, salt, iterations = parts
        bytes.fromhex(derived)
        if not iterations.isdigit() or int(iterations) < 1:
            raise ValueError("hashed admin password: iterations must be a positive integer")
        return cls(salt, derived.lower(), int(iterations), prf)

    def to_user_fields(self) -> dict[str, Any]:
        """The fields of a ``_users`` document."""
        return {
            "password_scheme": "pbkdf2",
            "pbkdf2_prf": self.prf,
            "iterations": self.iterations,
            "salt": self.salt,
            "derived_key": self.derived_key,
        }

    @classmethod
    def from_user_doc(cls, doc: Mapping[str, Any]) -> PasswordHash | None:
        """The hash a ``_users`` document carries, or ``None`` (no usable password)."""
        salt = doc.get("salt")
        if not isinstance(salt, str):
            return None
        scheme = doc.get("password_scheme", "simple")
        if scheme == "pbkdf2":
            derived, iterations = doc.get("derived_key"), doc.get("iterations")
            prf = doc.get("pbkdf2_prf", "sha1")
            if (
                isinstance(derived, str)
                and isinstance(iterations, int)
                and not isinstance(iterations, bool)
                and iterations > 0
                and prf in _PRFS
            ):
                return cls(salt, derived.lower(), iterations, prf)
            return None
        if scheme == "simple" and isinstance(doc.get("password_sha"), str):
            return cls(salt, doc["password_sha"].lower(), 1, "sha1", "simple")
        return None


def hash_password(password: str, iterations: int = PBKDF2_ITERATIONS) -> str:
    """A server admin entry for configuration files: ``-pbkdf2:sha256-...``."""
    return PasswordHash.create(password, iterations).to_config()


# -- who can log in -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    """A name that can authenticate: its hash and roles (server admins: ``_admin``)."""

    name: str
    password: PasswordHash
    roles: tuple[str, ...]


def user_roles(doc: Mapping[str, Any]) -> tuple[str, ...]:
    """Roles of a ``_users`` document: its string ``roles``, never ``_admin`` (only the
    configuration makes server admins)."""
    roles = doc.get("roles")
    if not isinstance(roles, list):
        return ()
    return tuple(r for r in roles if isinstance(r, str) and r != "_admin")


async def load_user(server: Server, name: str) -> Account | None:
    """The ``_users`` account ``name`` (winning revision, not deleted), or ``None``."""
    if not name:
        return None
    await server.start()
    store = await server.storage.get_db(USERS_DB)
    if store is None:
        return None
    doc_id = USER_PREFIX + name
    info = (await store.get_docs([doc_id])).get(doc_id)
    if info is None or not info.leaves or info.leaves[0][1]:
        return None
    rev = info.leaves[0][0]
    revision = (await store.get_revisions([(doc_id, rev)])).get((doc_id, rev))
    if revision is None:
        return None
    body = revision.body
    password = PasswordHash.from_user_doc(body)
    if password is None or body.get("name", name) != name:
        return None
    return Account(name, password, user_roles(body))


# -- lockout --------------------------------------------------------------------------------


class Lockout:
    """Failed-password counters per ``(client address, user name, user salt)``.

    An entry lives ``window_s`` seconds from its first failure (as CouchDB's LRU with
    ``max_lifetime``); at most ``max_entries`` are kept (oldest dropped).  Per process:
    with ``--workers N`` each worker counts on its own.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = 10_000) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str, str], tuple[float, int]] = OrderedDict()

    def _get(self, key: tuple[str, str, str], window_s: float) -> int:
        entry = self._entries.get(key)
        if entry is None:
            return 0
        if self.clock() - entry[0] >= window_s:
            del self._entries[key]
            return 0
        return entry[1]

    def locked(self, key: tuple[str, str, str], threshold: int, window_s: float) -> bool:
        return threshold > 0 and self._get(key, window_s) >= threshold

    def failed(self, key: tuple[str, str, str], threshold: int, window_s: float) -> None:
        if threshold <= 0:
            return
        count = self._get(key, window_s)
        started = self._entries[key][0] if count else self.clock()
        self._entries[key] = (started, count + 1)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


# -- the authenticator ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The caller, and a fresh ``AuthSession`` value to set when its cookie is aging."""

    user: UserCtx
    refresh_cookie: str | None = None


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


@dataclass
class Authenticator:
    """Checks credentials of server admins and ``_users`` users, signs cookies.

    ``admins``: ``name → password`` or ``name → "-pbkdf2..."`` hash (plain passwords
    are hashed here and not kept).  ``secret``: cookie signing key (random when empty).
    ``timeout_s``: cookie lifetime.  ``clock``: wall clock (tests pass a fake one).
    """

    admins: Mapping[str, str]
    secret: str = ""
    timeout_s: int = 600
    iterations: int = PBKDF2_ITERATIONS
    clock: Callable[[], float] = time.time
    lockout: Lockout = field(default_factory=Lockout)
    _accounts: dict[str, Account] = field(init=False, default_factory=dict)
    _key: bytes = field(init=False, default=b"")
    _verified: OrderedDict[tuple[str, str, str], None] = field(init=False, default_factory=OrderedDict)
    _cache_key: bytes = field(init=False, default=b"")
    _jwt_keys: tuple[tuple[str, str], Any] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        for name, value in self.admins.items():
            hashed = PasswordHash.from_config(value) or PasswordHash.create(value, self.iterations)
            self._accounts[name] = Account(name, hashed, ("_admin",))
        self.admins = {name: account.password.to_config() for name, account in self._accounts.items()}
        self._key = self.secret.encode() if self.secret else secrets.token_bytes(32)
        self._cache_key = secrets.token_bytes(32)

    @property
    def admin_party(self) -> bool:
        """True when no admin is configured: everyone is a server admin."""
        return not self._accounts

    # -- looking up and checking ----------------------------------------------------
    async def account(self, server: Server | None, name: str) -> Account | None:
        """The server admin ``name``, else the ``_users`` user ``name``, else ``None``."""
        found = self._accounts.get(name)
        if found is not None or server is None:
            return found
        return await load_user(server, name)

    async def _verify(self, account: Account, password: str) -> bool:
        digest = hmac.new(self._cache_key, password.encode("utf-8"), hashlib.sha256).hexdigest()
        key = (account.name, digest, account.password.derived_key)
        if key in self._verified:
            self._verified.move_to_end(key)
            return True
        ok = await anyio.to_thread.run_sync(account.password.verify, password)
        if ok:
            self._verified[key] = None
            if len(self._verified) > 1024:
                self._verified.popitem(last=False)
        return ok

    async def login(
        self, server: Server | None, name: str, password: str, peer: str | None, settings: Settings | None
    ) -> UserCtx | None:
        """The user context for ``name``/``password``, or ``None`` if wrong.

        Raises 403 :data:`LOCKED_OUT` while ``name`` is locked out for ``peer`` (``None``
        = no client address: no lockout, as CouchDB without a peer)."""
        account = await self.account(server, name)
        if account is None:
            return None
        threshold = settings.lockout_threshold if settings is not None else 5
        window = settings.lockout_window_s if settings is not None else 300
        key = (peer or "", name, account.password.salt)
        if peer is not None and self.lockout.locked(key, threshold, window):
            raise errors.Forbidden(LOCKED_OUT)
        if await self._verify(account, password):
            return UserCtx(account.name, account.roles)
        if peer is not None:
            self.lockout.failed(key, threshold, window)
        return None

    async def authenticate(self, request: Request, server: Server, settings: Settings) -> AuthResult:
        """Who sent ``request``: JWT bearer token, then a valid ``AuthSession`` cookie,
        then Basic credentials, else anonymous (admin party: everyone is admin)."""
        if self.admin_party:
            # With no admin configured everyone is an admin, but only on this machine:
            # a request from another host (an embedded app bound to 0.0.0.0) is anonymous.
            client = request.client.host if request.client else None
            return AuthResult(ADMIN_PARTY if is_local_client(client) else ANONYMOUS)
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and (settings.jwt_secret or settings.jwt_public_key):
            return AuthResult(self.jwt(value.strip(), settings))
        cookie = request.cookies.get(COOKIE_NAME)
        if cookie:
            found = await self.cookie_user(server, cookie)
            if found is not None:
                user, issued, salt = found
                refresh = None
                if self.clock() - issued > self.timeout_s * 0.1:
                    refresh = self.make_cookie(user.name or "", salt)
                return AuthResult(user, refresh)
        if scheme == "basic":
            name, password = decode_basic(value)
            if name == "_" and password == "_":
                return AuthResult(ANONYMOUS)
            peer = request.client.host if request.client else None
            user = await self.login(server, name, password, peer, settings)
            if user is None:
                raise errors.Unauthorized(BAD_CREDENTIALS)
            return AuthResult(UserCtx(user.name, user.roles, "default"))
        return AuthResult(ANONYMOUS)

    # -- cookies ----------------------------------------------------------------------
    def _mac(self, name: str, stamp: str, salt: str) -> bytes:
        return hmac.new(self._key + salt.encode(), f"{name}:{stamp}".encode(), hashlib.sha256).digest()

    def make_cookie(self, name: str, salt: str, now: float | None = None) -> str:
        """A signed ``AuthSession`` value for ``name`` (whose password salt is ``salt``)."""
        stamp = f"{int(now if now is not None else self.clock()):X}"
        raw = f"{name}:{stamp}:".encode() + self._mac(name, stamp, salt)
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    async def cookie_for(self, server: Server | None, name: str) -> str:
        """A cookie for the account ``name`` (it must exist)."""
        account = await self.account(server, name)
        if account is None:
            raise errors.Unauthorized(BAD_CREDENTIALS)
        return self.make_cookie(name, account.password.salt)

    async def cookie_user(self, server: Server | None, value: str) -> tuple[UserCtx, float, str] | None:
        """``(user, issue time, user salt)`` of a valid, unexpired cookie, else ``None``."""
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            name_b, stamp_b, mac = raw.split(b":", 2)
            name, stamp = name_b.decode("utf-8"), stamp_b.decode("ascii")
            issued = int(stamp, 16)
        except (ValueError, UnicodeDecodeError, binascii.Error):
            return None
        if issued + self.timeout_s <= self.clock():
            return None
        account = await self.account(server, name)
        if account is None or not hmac.compare_digest(mac, self._mac(name, stamp, account.password.salt)):
            return None
        return UserCtx(name, account.roles, "cookie"), float(issued), account.password.salt

    def set_cookie_header(self, value: str, *, clear: bool = False) -> str:
        """The ``Set-Cookie`` value CouchDB sends (``Max-Age`` = the timeout; a clearing
        cookie has an empty value)."""
        max_age = self.timeout_s
        expires = formatdate(self.clock() + max_age, usegmt=True)
        cookie = "" if clear else value
        return f"{COOKIE_NAME}={cookie}; Version=1; Expires={expires}; Max-Age={max_age}; Path=/; HttpOnly"

    # -- JWT --------------------------------------------------------------------------
    def jwt(self, token: str, settings: Settings) -> UserCtx:
        """Verify a bearer token (HS256 / RS256 as configured); 401 on any failure."""
        import jwt as pyjwt

        keys = self._load_jwt_keys(settings)
        try:
            header = pyjwt.get_unverified_header(token)
        except pyjwt.PyJWTError:
            raise errors.Unauthorized("Invalid JWT.") from None
        alg = header.get("alg")
        key = keys.get(alg) if isinstance(alg, str) else None
        if key is None:
            raise errors.Unauthorized("JWT algorithm not allowed.")
        required = ["exp", "sub", *(c for c in settings.jwt_required_claims if c)]
        try:
            claims = pyjwt.decode(
                token, key, algorithms=[alg], options={"require": list(dict.fromkeys(required))}
            )
        except pyjwt.ExpiredSignatureError:
            raise errors.Unauthorized("Token has expired.") from None
        except pyjwt.PyJWTError as exc:
            raise errors.Unauthorized(f"Invalid JWT: {exc}") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise errors.Unauthorized("Invalid JWT: sub must be a string.")
        roles = _claim(claims, settings.jwt_roles_claim) or []
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise errors.Unauthorized(f"Invalid JWT: {settings.jwt_roles_claim} must be a list of strings.")
        return UserCtx(sub, tuple(roles), "jwt")

    def _load_jwt_keys(self, settings: Settings) -> dict[str, Any]:
        source = (settings.jwt_secret, settings.jwt_public_key)
        if self._jwt_keys is not None and self._jwt_keys[0] == source:
            loaded: dict[str, Any] = self._jwt_keys[1]
            return loaded
        keys: dict[str, Any] = {}
        if settings.jwt_secret:
            keys["HS256"] = settings.jwt_secret.encode()
        if settings.jwt_public_key:
            pem = settings.jwt_public_key
            if not pem.lstrip().startswith("-----BEGIN"):
                with open(pem, encoding="utf-8") as fh:
                    pem = fh.read()
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            keys["RS256"] = load_pem_public_key(pem.encode())
        self._jwt_keys = (source, keys)
        return keys

    # -- the plain parsers CouchRouter calls before dispatch -----------------------------
    def basic(self, header: str) -> UserCtx:
        """Parse (not check) an ``Authorization: Basic`` value: 400 for bad base64.

        The check needs storage (``_users``) and the client address, so it happens in
        :meth:`authenticate`, which the dispatcher calls for every request."""
        decode_basic(header)
        return ANONYMOUS

    def cookie(self, value: str) -> UserCtx | None:
        """Cookies are checked in :meth:`authenticate` (they need the user's salt)."""
        return None


def decode_basic(value: str) -> tuple[str, str]:
    """``(name, password)`` of a Basic credential, split at the first colon.  400
    ``bad_request`` for undecodable base64."""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise errors.BadRequest("Authorization header has invalid base64 value") from None
    name, _, password = decoded.partition(":")
    return name, password
