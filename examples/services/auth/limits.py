"""How often one client, and one email, may try to sign up or sign in: each attempt costs a scrypt hash.

``SIGNIN_RATE_LIMIT_PER_ADDRESS`` (default 100 a minute) counts the attempts of a client address,
``SIGNIN_RATE_LIMIT_PER_EMAIL`` (default 10 a minute) those for one email, sign-ups and sign-ins
together; beyond either, 429 with ``Retry-After``. Each replica counts its own attempts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import Field

from ticketing_common.fastapi import RateLimit, RateLimitSpec
from ticketing_common.service import EnvironmentSettings, read_environment


class _LimitsEnvironment(EnvironmentSettings):
    per_address: RateLimitSpec = Field(default="100/minute", validation_alias="SIGNIN_RATE_LIMIT_PER_ADDRESS")
    per_email: RateLimitSpec = Field(default="10/minute", validation_alias="SIGNIN_RATE_LIMIT_PER_EMAIL")


@dataclass(frozen=True)
class SignInLimits:
    """The two limits of sign-up and sign-in."""

    per_address: RateLimit
    per_email: RateLimit

    @classmethod
    def of(cls, *, per_address: str, per_email: str) -> SignInLimits:
        """Limits as ``limits`` writes them: ``"100/minute"``, ``"5 per second; 50 per hour"``."""
        return cls(RateLimit(per_address, name="sign-in address"), RateLimit(per_email, name="sign-in email"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SignInLimits:
        """The limits the environment sets, or the defaults."""
        env = read_environment(_LimitsEnvironment, environ, who="the auth service")
        return cls.of(per_address=env.per_address, per_email=env.per_email)
