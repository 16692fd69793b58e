"""The session cookie format shared with Node services: tokens, cookie values, Set-Cookie headers."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import NOW
from node_session import KEY, node_cookie, node_token
from ticketing_common import ConfigurationError
from ticketing_common.fastapi import SessionConfig, UserPayload

CONFIG = SessionConfig(jwt_key=KEY)
IAT = int(NOW.timestamp())
RECENT = int(time.time()) - 60
"""A minute ago: a token issued then without exp (as the original's) is still valid."""


def test_a_node_cookie_names_its_user() -> None:
    """A cookie as the original's cookie-session + jsonwebtoken write it (no exp) is a user for a day."""
    token = node_token({"id": "5f8d0d55b54764421b7156c5", "email": "test@test.com", "iat": RECENT})
    assert CONFIG.read_cookie(node_cookie({"jwt": token})) == UserPayload(
        id="5f8d0d55b54764421b7156c5", email="test@test.com", iat=RECENT, exp=RECENT + 86400
    )


def test_issued_tokens_are_the_bytes_jsonwebtoken_would_make() -> None:
    """Same claims, same key: the package's token equals the hand-built Node one, exp included."""
    user = CONFIG.new_session(user_id="u1", email="a@b.io", now=NOW)
    assert user == UserPayload(id="u1", email="a@b.io", iat=IAT, exp=IAT + 24 * 3600)
    assert CONFIG.issue_token(user) == node_token(
        {"id": "u1", "email": "a@b.io", "iat": IAT, "exp": IAT + 86400}
    )


def test_set_cookie_header_matches_cookie_session() -> None:
    """Name, base64 JSON value and attributes, in cookie-session's order, with expires at the token's exp."""
    user = SessionConfig(jwt_key=KEY, lifetime=timedelta(hours=1)).new_session(
        user_id="u1", email="e", now=NOW
    )
    header = SessionConfig(jwt_key=KEY).set_cookie_header(user)
    token = node_token({"id": "u1", "email": "e", "iat": IAT, "exp": IAT + 3600})
    assert header == (
        f"express:sess={node_cookie({'jwt': token})}; path=/; expires=Mon, 23 Nov 2026 13:30:15 GMT; "
        "samesite=lax; secure; httponly"
    )


def test_secure_and_the_cookie_name_are_configurable() -> None:
    """secure=False drops the flag (plain-HTTP local runs); another name is used as given."""
    config = SessionConfig(jwt_key=KEY, secure=False, cookie_name="session")
    header = config.set_cookie_header(config.new_session(user_id="u", email="e"))
    assert header.startswith("session=")
    assert "secure" not in header
    assert config.clear_cookie_header() == (
        "session=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; samesite=lax; httponly"
    )


def test_a_token_without_exp_expires_a_lifetime_after_its_iat() -> None:
    """It never expired; now it lasts the session lifetime from iat, and one without iat is no user."""
    hour = SessionConfig(jwt_key=KEY, lifetime=timedelta(hours=1))
    assert hour.read_token(node_token({"id": "u", "email": "e", "iat": RECENT})) is not None
    assert hour.read_token(node_token({"id": "u", "email": "e", "iat": RECENT - 3600})) is None
    assert hour.read_token(node_token({"id": "u", "email": "e"})) is None


def test_from_env_requires_jwt_key() -> None:
    """A missing or empty JWT_KEY is a ConfigurationError naming the variable."""
    for environ in ({}, {"JWT_KEY": ""}):
        with pytest.raises(ConfigurationError, match="set JWT_KEY"):
            SessionConfig.from_env(environ)
    assert SessionConfig.from_env({"JWT_KEY": KEY}).jwt_key == KEY


def test_the_key_never_shows_in_the_repr() -> None:
    """Logging the settings does not leak the secret."""
    assert KEY not in repr(CONFIG)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"jwt_key": ""}, "empty"),
        ({"jwt_key": KEY, "cookie_name": "bad name;"}, "cookie name"),
        ({"jwt_key": KEY, "lifetime": timedelta(0)}, "positive"),
    ],
)
def test_invalid_settings_are_refused(settings: dict[str, object], message: str) -> None:
    """Settings that would make every session fail are rejected when made."""
    with pytest.raises(ConfigurationError, match=message):
        SessionConfig(**settings)  # type: ignore[arg-type]


def test_a_short_node_key_still_works_with_a_warning() -> None:
    """The course's short keys (JWT_KEY=asdf) interoperate; PyJWT warns that they are weak."""
    token = node_token({"id": "u", "email": "e", "iat": RECENT}, key="asdf")
    with pytest.warns(jwt.InsecureKeyLengthWarning):
        user = SessionConfig(jwt_key="asdf").read_token(token)
    assert user == UserPayload(id="u", email="e", iat=RECENT, exp=RECENT + 86400)


CLAIMS = {"id": "u1", "email": "a@b.io", "iat": RECENT}
TAMPERED = node_token(CLAIMS).split(".")
TAMPERED[1] = base64.urlsafe_b64encode(b'{"id":"admin","email":"a@b.io","iat":1}').rstrip(b"=").decode()
PAST = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp())

BAD_COOKIES = {
    "empty": "",
    "not base64": "%%%***",
    "base64 of not JSON": base64.b64encode(b"jwt=abc").decode(),
    "JSON array": node_cookie(["jwt"]),
    "no jwt": node_cookie({"token": node_token(CLAIMS)}),
    "jwt not a string": node_cookie({"jwt": 42}),
    "malformed token": node_cookie({"jwt": "abc.def"}),
    "tampered payload": node_cookie({"jwt": ".".join(TAMPERED)}),
    "wrong key": node_cookie({"jwt": node_token(CLAIMS, key="another-key-of-the-same-length-0123456789")}),
    "alg none": node_cookie({"jwt": node_token(CLAIMS).rsplit(".", 1)[0].replace("HS256", "none") + "."}),
    "alg HS512": node_cookie({"jwt": node_token(CLAIMS, alg="HS512")}),
    "expired": node_cookie({"jwt": node_token({**CLAIMS, "exp": PAST})}),
    "no email": node_cookie({"jwt": node_token({"id": "u1", "iat": RECENT})}),
    "empty id": node_cookie({"jwt": node_token({**CLAIMS, "id": ""})}),
    "no exp and no iat": node_cookie({"jwt": node_token({"id": "u1", "email": "a@b.io"})}),
    "id not a string": node_cookie({"jwt": node_token({**CLAIMS, "id": 7})}),
    "deeply nested JSON": base64.b64encode(b"[" * 100_000).decode(),
}


@pytest.mark.parametrize("value", BAD_COOKIES.values(), ids=BAD_COOKIES.keys())
def test_a_bad_cookie_reads_as_no_user(value: str) -> None:
    """Every malformed, forged, unsigned or expired session is simply no user, never an exception."""
    assert CONFIG.read_cookie(value) is None


def test_alg_none_is_refused_even_when_the_claims_are_valid() -> None:
    """An unsigned token built from valid claims is not accepted (the classic alg=none attack)."""
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(CLAIMS).encode()).rstrip(b"=")
    assert CONFIG.read_token(f"{header.decode()}.{payload.decode()}.") is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=10,
)


@given(
    st.text()
    | json_values.map(node_cookie)
    | st.dictionaries(st.just("jwt"), st.text() | json_values).map(node_cookie)
    | st.builds(lambda parts: node_cookie({"jwt": ".".join(parts)}), st.lists(st.text(), max_size=4))
)
def test_garbage_never_raises(value: str) -> None:
    """Whatever a client puts in the cookie, reading it returns None or a user, and raises nothing."""
    assert CONFIG.read_cookie(value) is None
