"""The session cookie all ticketing services share: Node's cookie-session 1.x, unsigned, holding an HS256 JWT.

Wire format, as ``cookie-session`` with ``signed: false`` and ``jsonwebtoken`` write it::

    Set-Cookie: express:sess=<base64 of {"jwt":"<token>"}>; path=/; expires=..; samesite=lax; secure; httponly
    token = HS256 JWT of {"id": ..., "email": ..., "iat": ..., "exp": ...}, signed with JWT_KEY

The cookie itself is not signed, as in the original, because the JWT inside it is: a forged or edited
cookie carries a token whose signature fails, which reads as "no user".
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import jwt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ticketing_common._input import CONTROL_CHARACTERS
from ticketing_common._settings import EnvironmentSettings, read_environment
from ticketing_common.errors import ConfigurationError

COOKIE_NAME = "express:sess"
DEFAULT_LIFETIME = timedelta(hours=24)
_ALGORITHM = "HS256"
# RFC 6265 cookie-name token characters; ':' included, as "express:sess" needs it.
_COOKIE_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~:0-9A-Za-z]+$")
# A claim a database will store or compare: some text, and no control character (PostgreSQL refuses NUL).
_CLAIM = rf"^[^{CONTROL_CHARACTERS}]+$"


class UserPayload(BaseModel):
    """The signed-in user, as the session token states it (``iat``/``exp`` in seconds since the epoch).

    ``exp`` is always set: a token of the original Node auth service, which signs ``{id, email, iat}``
    with no ``exp``, expires ``SessionConfig.lifetime`` after its ``iat`` instead of never.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    id: str = Field(min_length=1, max_length=64, pattern=_CLAIM)
    email: str = Field(min_length=1, max_length=320, pattern=_CLAIM)
    iat: int | None = None
    exp: int


class _SessionEnvironment(EnvironmentSettings):
    jwt_key: str = Field(validation_alias="JWT_KEY", min_length=1)
    secure_cookies: bool = Field(default=True, validation_alias="SECURE_COOKIES")


@dataclass(frozen=True, kw_only=True)
class SessionConfig:
    """How the session cookie is named, signed and flagged; one per service, made once at start-up.

    Attributes:
        jwt_key: the HS256 secret shared by every service (``JWT_KEY``); never printed in the repr.
        cookie_name: ``express:sess``, the name Node's cookie-session uses, so Node services read our cookie.
        secure: send the cookie over HTTPS only; turn off for plain-HTTP local runs.
        lifetime: how long an issued token (and its cookie) stays valid.
    """

    jwt_key: str = field(repr=False)
    cookie_name: str = COOKIE_NAME
    secure: bool = True
    lifetime: timedelta = DEFAULT_LIFETIME

    def __post_init__(self) -> None:
        if not self.jwt_key:
            raise ConfigurationError("the JWT key is empty: session tokens cannot be signed or verified")
        if not _COOKIE_NAME.match(self.cookie_name):
            raise ConfigurationError(f"{self.cookie_name!r} is not a valid cookie name")
        if self.lifetime <= timedelta(0):
            raise ConfigurationError(f"the session lifetime must be positive, not {self.lifetime}")

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        cookie_name: str = COOKIE_NAME,
        secure: bool | None = None,
        lifetime: timedelta = DEFAULT_LIFETIME,
    ) -> SessionConfig:
        """Read ``JWT_KEY`` and ``SECURE_COOKIES`` (a boolean, default true) from the environment.

        ``secure``, when given, wins over ``SECURE_COOKIES``. Every service signs and verifies session
        tokens with ``JWT_KEY``, so it must be the same secret in all of them.

        Raises:
            ConfigurationError: ``JWT_KEY`` is missing or ``SECURE_COOKIES`` is not a boolean; at once.
        """
        env = read_environment(_SessionEnvironment, environ, who="the session (JWT_KEY)")
        return cls(
            jwt_key=env.jwt_key,
            cookie_name=cookie_name,
            secure=env.secure_cookies if secure is None else secure,
            lifetime=lifetime,
        )

    def new_session(self, *, user_id: str, email: str, now: datetime | None = None) -> UserPayload:
        """The claims of a fresh session for this user: issued now, expiring after ``lifetime``."""
        issued = int((now or datetime.now(UTC)).timestamp())
        return UserPayload(
            id=user_id, email=email, iat=issued, exp=issued + int(self.lifetime.total_seconds())
        )

    def issue_token(self, user: UserPayload) -> str:
        """The token of these claims, byte for byte what jsonwebtoken's ``sign(claims, key)`` makes."""
        return jwt.encode(user.model_dump(exclude_none=True), self.jwt_key, algorithm=_ALGORITHM)

    def read_token(self, token: str) -> UserPayload | None:
        """The user a token names, or None if it is malformed, forged, unsigned, expired or incomplete.

        A token needs ``exp``, or ``iat`` from which it expires after ``lifetime`` (the original's tokens
        have only ``iat``); one with neither would never expire, and names no user. ``id`` and ``email``
        must be non-empty text without control characters.
        """
        try:
            claims = jwt.decode(token, self.jwt_key, algorithms=[_ALGORITHM])
            if "exp" not in claims:
                issued = claims.get("iat")
                if type(issued) is not int:
                    return None
                claims["exp"] = issued + int(self.lifetime.total_seconds())
                if claims["exp"] <= datetime.now(UTC).timestamp():
                    return None
            return UserPayload.model_validate(claims)
        except (jwt.PyJWTError, ValidationError, ValueError, TypeError):
            return None

    def read_cookie(self, value: str | None) -> UserPayload | None:
        """The user of a session cookie value, or None for anything but a valid session."""
        token = _token_of(value) if value else None
        return self.read_token(token) if token else None

    def cookie_value(self, token: str) -> str:
        """The cookie value cookie-session writes for the session ``{"jwt": token}``."""
        session = json.dumps({"jwt": token}, separators=(",", ":"))
        return base64.b64encode(session.encode()).decode("ascii")

    def set_cookie_header(self, user: UserPayload) -> str:
        """A ``Set-Cookie`` value that starts this user's session, as cookie-session writes it."""
        # Written by hand: http.cookies would quote a base64 value ('=' and '/'), and Node keeps the quotes.
        expires = datetime.fromtimestamp(user.exp, UTC)
        return self._header(self.cookie_value(self.issue_token(user)), expires)

    def clear_cookie_header(self) -> str:
        """A ``Set-Cookie`` value that ends the session: empty, expired at the epoch."""
        return self._header("", datetime.fromtimestamp(0, UTC))

    def _header(self, value: str, expires: datetime | None) -> str:
        attributes = [f"{self.cookie_name}={value}", "path=/"]
        if expires is not None:
            attributes.append(f"expires={format_datetime(expires, usegmt=True)}")
        attributes.append("samesite=lax")
        if self.secure:
            attributes.append("secure")
        attributes.append("httponly")
        return "; ".join(attributes)


def _token_of(value: str) -> str | None:
    # Node's Buffer.from(value, "base64") accepts both alphabets and missing padding; so do we.
    text = value.strip().replace("-", "+").replace("_", "/").rstrip("=")
    try:
        session = json.loads(base64.b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return None
    token = session.get("jwt") if isinstance(session, dict) else None
    return token if isinstance(token, str) and token else None
