"""Session cookies built by hand, byte for byte as Node's jsonwebtoken and cookie-session 1.x write them.

Independent of PyJWT on purpose: the tests compare the package's cookies with these, so a change in how the
package (or PyJWT) encodes them shows up as a failure.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

KEY = "test-jwt-key-shared-by-every-service-0123456789"
"""A key long enough that PyJWT does not warn (RFC 7518 asks for 32 bytes with HS256)."""


def js_json(value: object) -> bytes:
    """JSON.stringify: no spaces, non-ASCII characters as they are."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def node_token(claims: dict[str, object], key: str = KEY, *, alg: str = "HS256") -> str:
    """jsonwebtoken.sign(claims, key): header {"alg","typ"}, HMAC-SHA256 over header.payload."""
    signing_input = f"{b64url(js_json({'alg': alg, 'typ': 'JWT'}))}.{b64url(js_json(claims))}"
    digest = hashlib.sha512 if alg == "HS512" else hashlib.sha256
    signature = hmac.new(key.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def unsigned_token(claims: dict[str, object]) -> str:
    """A token with ``alg: none`` and no signature, which a careless verifier accepts."""
    return f"{b64url(js_json({'alg': 'none', 'typ': 'JWT'}))}.{b64url(js_json(claims))}."


def node_cookie(session: object) -> str:
    """cookie-session's value for req.session = session: base64 (standard alphabet) of its JSON."""
    return base64.b64encode(js_json(session)).decode()


def cookie_header(value: str, name: str = "express:sess") -> dict[str, str]:
    """The request header a browser sends back for that cookie."""
    return {"cookie": f"{name}={value}"}


def node_verify(cookie_value: str, key: str = KEY) -> dict[str, object]:
    """What a Node service's currentUser does with a cookie: base64 JSON session, then HS256-verify its jwt.

    Raises:
        ValueError: the signature does not match, or the token is not HS256.
    """
    token = json.loads(base64.b64decode(cookie_value))["jwt"]
    header, payload, signature = token.split(".")
    if json.loads(base64.urlsafe_b64decode(header + "==")) != {"alg": "HS256", "typ": "JWT"}:
        raise ValueError(f"not an HS256 token: {header}")
    expected = hmac.new(key.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(b64url(expected), signature):
        raise ValueError("bad signature")
    claims: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return claims
