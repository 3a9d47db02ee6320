"""Authentication (§12.2, §12.3, BC-27): Basic, cookie sessions, JWT, lockout.

Time is a fake clock set on the app's :class:`Authenticator`, never a sleep.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette

from couchpoint.auth import Authenticator, PasswordHash, hash_password

from .conftest import ADMIN, ADMIN_AUTH, MakeApp, add_user, basic, client_for, error_of

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
LOCKED = (403, "forbidden", "Account is temporarily locked due to multiple authentication failures")
BAD = (401, "unauthorized", "Name or password is incorrect.")


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def authenticator(app: Starlette) -> Authenticator:
    for route in app.router.routes:
        router = getattr(route, "app", None)
        if router is not None and hasattr(router, "auth"):
            auth: Authenticator = router.auth
            return auth
    raise AssertionError("no CouchRouter in the app")


def cookie_of(response: httpx.Response) -> str:
    [value] = [c for c in response.headers.get_list("set-cookie") if c.startswith("AuthSession=")]
    return value.split(";", 1)[0].split("=", 1)[1]


async def test_basic_splits_at_the_first_colon_and_accepts_at_signs(client: httpx.AsyncClient) -> None:
    """BC-27: ``admin:p@ss`` is the admin's password (``:`` and ``@`` inside)."""
    response = await client.get("/_session", headers=ADMIN_AUTH)
    assert response.json()["userCtx"] == {"name": "admin", "roles": ["_admin"]}
    assert response.json()["info"]["authenticated"] == "default"
    await add_user(client, "carol", "a:b@c:d")
    session = (await client.get("/_session", headers=basic("carol", "a:b@c:d"))).json()
    assert session["userCtx"] == {"name": "carol", "roles": []}


async def test_wrong_basic_is_401_even_where_anonymous_may_go(client: httpx.AsyncClient) -> None:
    """§12.2: no silent downgrade to anonymous; ``_:_`` is anonymous; bad base64 is 400."""
    assert error_of(await client.get("/", headers=basic("admin", "nope"))) == BAD
    assert error_of(await client.get("/_up", headers=basic("ghost", "x"))) == BAD
    anon = await client.get("/_session", headers=basic("_", "_"))
    assert anon.json()["userCtx"] == {"name": None, "roles": []}
    response = await client.get("/", headers={"Authorization": "Basic !!!"})
    assert error_of(response)[:2] == (400, "bad_request")


async def test_session_login_form_and_json_then_cookie(client: httpx.AsyncClient) -> None:
    """§12.3: form (the replicator) and JSON (pouchdb-authentication) logins; the cookie
    authenticates; DELETE clears it; a wrong password is 401 with a clearing cookie."""
    await add_user(client, "dave", "pw", ["staff"])
    response = await client.post("/_session", content=b"name=dave&password=pw", headers=FORM)
    assert response.json() == {"ok": True, "name": "dave", "roles": ["staff"]}
    header = response.headers["set-cookie"]
    assert "Max-Age=600" in header and "Path=/" in header and "HttpOnly" in header
    token = cookie_of(response)
    session = (await client.get("/_session", headers={"Cookie": f"AuthSession={token}"})).json()
    assert session["userCtx"] == {"name": "dave", "roles": ["staff"]}
    assert session["info"]["authenticated"] == "cookie"
    response = await client.post("/_session", json={"username": "dave", "password": "pw"})
    assert response.status_code == 200 and cookie_of(response)
    response = await client.post("/_session", json={"name": "dave", "password": "wrong"})
    assert error_of(response) == BAD
    assert cookie_of(response) == ""
    response = await client.delete("/_session")
    assert response.json() == {"ok": True} and cookie_of(response) == ""
    response = await client.post("/_session", content=b"name=dave", headers={"Content-Type": "text/plain"})
    assert error_of(response)[:2] == (415, "bad_content_type")


async def test_cookie_expiry_refresh_and_forgery(app: Starlette) -> None:
    """BC-27: a cookie older than 10 % of its lifetime comes back refreshed (same
    ``Max-Age``); an expired, forged or foreign cookie is ignored (anonymous → 401 on an
    admin-only db)."""
    clock = Clock()
    authenticator(app).clock = clock
    async with client_for(app) as client:
        await client.put("/db", headers=ADMIN_AUTH)
        login = await client.post(
            "/_session", content=f"name=admin&password={ADMIN[1]}".encode(), headers=FORM
        )
        token = cookie_of(login)
        client.cookies.clear()
        fresh = await client.get("/db", headers={"Cookie": f"AuthSession={token}"})
        assert fresh.status_code == 200 and "set-cookie" not in fresh.headers
        clock.now += 61  # > 10 % of 600 s
        aged = await client.get("/db", headers={"Cookie": f"AuthSession={token}"})
        assert aged.status_code == 200
        renewed = cookie_of(aged)
        assert renewed and renewed != token and "Max-Age=600" in aged.headers["set-cookie"]
        clock.now += 560  # the first cookie is now expired, the renewed one is not
        assert error_of(await client.get("/db", headers={"Cookie": f"AuthSession={token}"}))[0] == 401
        assert (await client.get("/db", headers={"Cookie": f"AuthSession={renewed}"})).status_code == 200
        raw = base64.urlsafe_b64decode(renewed + "=" * (-len(renewed) % 4))
        forged = base64.urlsafe_b64encode(raw[:-1] + bytes([raw[-1] ^ 1])).decode().rstrip("=")
        for bad in (forged, "garbage", "", "YWRtaW4"):
            assert error_of(await client.get("/db", headers={"Cookie": f"AuthSession={bad}"}))[0] == 401
        # a cookie signed by another server (other secret) is ignored too
        other = Authenticator({"admin": "x"}, secret="other")
        foreign = other.make_cookie("admin", "salt", clock.now)
        assert error_of(await client.get("/db", headers={"Cookie": f"AuthSession={foreign}"}))[0] == 401


async def test_password_change_ends_the_users_sessions(client: httpx.AsyncClient) -> None:
    """The cookie HMAC key includes the user's salt (as CouchDB): a new password, a new
    salt, old cookies stop working; the user may change their own password."""
    rev = await add_user(client, "erin", "old")
    token = cookie_of(await client.post("/_session", json={"name": "erin", "password": "old"}))
    assert (await client.get("/_session", headers={"Cookie": f"AuthSession={token}"})).json()["userCtx"][
        "name"
    ] == "erin"
    doc = {"_rev": rev, "name": "erin", "roles": [], "type": "user", "password": "new"}
    response = await client.put("/_users/org.couchdb.user:erin", json=doc, headers=basic("erin", "old"))
    assert response.status_code == 201, response.text
    client.cookies.clear()
    assert (await client.get("/_session", headers={"Cookie": f"AuthSession={token}"})).json()["userCtx"][
        "name"
    ] is None
    assert error_of(await client.get("/_session", headers=basic("erin", "old"))) == BAD
    assert (await client.get("/_session", headers=basic("erin", "new"))).json()["userCtx"]["name"] == "erin"


async def test_lockout_after_five_failures_per_user_and_address(app: Starlette) -> None:
    """CouchDB 3.4 ``chttpd_auth_lockout``: the 6th try after 5 wrong passwords from one
    address answers 403 (even with the right password) until the window ends; other
    addresses and other users are not affected; unknown users are never locked."""
    clock = Clock()
    auth = authenticator(app)
    auth.lockout.clock = clock
    async with client_for(app) as client, client_for(app, ("10.9.9.9", 1)) as elsewhere:
        await add_user(client, "fred", "right")
        for _ in range(5):
            assert error_of(await client.get("/_session", headers=basic("fred", "wrong"))) == BAD
        assert error_of(await client.get("/_session", headers=basic("fred", "right"))) == LOCKED
        response = await client.post("/_session", json={"name": "fred", "password": "right"})
        assert error_of(response) == LOCKED
        ok = await elsewhere.get("/_session", headers=basic("fred", "right"))
        assert ok.json()["userCtx"]["name"] == "fred"
        assert (await client.get("/_session", headers=ADMIN_AUTH)).json()["userCtx"]["name"] == "admin"
        for _ in range(8):
            assert error_of(await client.get("/_session", headers=basic("nobody", "x"))) == BAD
        clock.now += 300
        ok = await client.get("/_session", headers=basic("fred", "right"))
        assert ok.json()["userCtx"]["name"] == "fred"


async def test_lockout_can_be_turned_off(make_app: MakeApp) -> None:
    app = await make_app(lockout_threshold=0)
    async with client_for(app) as client:
        for _ in range(7):
            assert error_of(await client.get("/_session", headers=basic("admin", "wrong"))) == BAD
        assert (await client.get("/_session", headers=ADMIN_AUTH)).status_code == 200


# -- JWT ---------------------------------------------------------------------------------------

SECRET = "a-long-shared-secret-for-hs256-tokens"


def _token(key: Any, alg: str = "HS256", **claims: Any) -> str:
    payload = {"sub": "jwtuser", "exp": int(time.time()) + 300, "_couchdb": {"roles": ["staff"]}, **claims}
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm=alg)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_jwt_hs256(make_app: MakeApp) -> None:
    app = await make_app(jwt_secret=SECRET)
    async with client_for(app) as client:
        await client.put("/staffdb", headers=ADMIN_AUTH)
        await client.put("/staffdb/_security", json={"members": {"roles": ["staff"]}}, headers=ADMIN_AUTH)
        session = (await client.get("/_session", headers=bearer(_token(SECRET)))).json()
        assert session["userCtx"] == {"name": "jwtuser", "roles": ["staff"]}
        assert session["info"]["authenticated"] == "jwt"
        assert (await client.get("/staffdb", headers=bearer(_token(SECRET)))).status_code == 200
        bad = [
            _token("wrong-secret-wrong-secret-wrong-secret"),
            _token(SECRET, exp=int(time.time()) - 10),
            _token(SECRET, exp=None),
            _token(SECRET, sub=None),
            jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, None, algorithm="none"),
            "not.a.token",
            _token(SECRET, _couchdb={"roles": "staff"}),
        ]
        for token in bad:
            assert error_of(await client.get("/staffdb", headers=bearer(token)))[:2] == (401, "unauthorized")


async def test_jwt_rs256_and_no_algorithm_confusion(make_app: MakeApp, tmp_path: Any) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp_path / "pub.pem"
    path.write_bytes(pem)
    app = await make_app(jwt_public_key=str(path), jwt_roles_claim="roles", jwt_required_claims=("iat",))
    async with client_for(app) as client:
        good = _token(private, "RS256", roles=["_admin"], iat=int(time.time()))
        session = (await client.get("/_session", headers=bearer(good))).json()
        assert session["userCtx"] == {"name": "jwtuser", "roles": ["_admin"]}
        no_iat = _token(private, "RS256", roles=[])
        assert error_of(await client.get("/_session", headers=bearer(no_iat)))[0] == 401

        # HS256 signed with the public key's bytes must not pass (algorithm confusion)
        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).decode().rstrip("=")

        signing_input = (
            b64(b'{"alg":"HS256","typ":"JWT"}')
            + "."
            + b64(b'{"sub":"evil","exp":9999999999,"roles":["_admin"],"iat":1}')
        )
        mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
        forged = signing_input + "." + b64(mac)
        assert error_of(await client.get("/_session", headers=bearer(forged)))[0] == 401


async def test_bearer_is_ignored_without_jwt_configuration(client: httpx.AsyncClient) -> None:
    session = (await client.get("/_session", headers=bearer("whatever"))).json()
    assert session["userCtx"] == {"name": None, "roles": []}


# -- hashes -----------------------------------------------------------------------------------


def test_password_hashes_round_trip_in_couchdb_forms() -> None:
    entry = hash_password("s3cret", 1000)
    assert entry.startswith("-pbkdf2:sha256-")
    parsed = PasswordHash.from_config(entry)
    assert parsed is not None and parsed.verify("s3cret") and not parsed.verify("S3cret")
    # CouchDB < 3.4 admins: PBKDF2-SHA1, salt used as its text
    derived = hashlib.pbkdf2_hmac("sha1", b"pw", b"abcdef", 10).hex()
    legacy = PasswordHash.from_config(f"-pbkdf2-{derived},abcdef,10")
    assert legacy is not None and legacy.prf == "sha1" and legacy.verify("pw")
    assert PasswordHash.from_config("plain") is None
    for bad in ("-pbkdf2-zz,salt,10", "-pbkdf2:md5-00,salt,1", "-pbkdf2-00,salt", "-pbkdf2-00,salt,x"):
        with pytest.raises(ValueError):
            PasswordHash.from_config(bad)
    doc = {"password_scheme": "simple", "salt": "s", "password_sha": hashlib.sha1(b"pws").hexdigest()}
    simple = PasswordHash.from_user_doc(doc)
    assert simple is not None and simple.verify("pw")


def test_authenticator_keeps_no_plain_password() -> None:
    auth = Authenticator({"admin": "hunter2"}, iterations=1000)
    assert "hunter2" not in repr(auth.admins) and auth.admins["admin"].startswith("-pbkdf2:sha256-")
