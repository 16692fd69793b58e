"""Rate limits on a route, per client address or per any key (an email), with the ``limits`` library.

Counted in memory with a moving window: each replica counts its own requests, so behind N replicas a
client gets up to N times the limit. That bounds what one client costs a replica (sign-in's scrypt
saturates two cores at about 21 a second), which is what the limit is for.
"""

from __future__ import annotations

import math
import time
from typing import Annotated

import limits
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from pydantic import AfterValidator
from starlette.requests import HTTPConnection

from ticketing_common.errors import TooManyRequestsError


def _parsed(value: str) -> str:
    limits.parse_many(value)  # raises ValueError, which names the variable in a settings error
    return value


RateLimitSpec = Annotated[str, AfterValidator(_parsed)]
"""A rate limit as ``limits`` writes it: ``"10/minute"``, ``"5 per second; 100 per hour"``."""


class RateLimit:
    """At most ``spec`` hits per key; one more raises ``TooManyRequestsError`` (429, ``Retry-After``).

    Use ``hit(key)`` in a route, or ``per_address`` as a dependency (``Depends(limit.per_address)``) to
    count requests by client address before the body is even validated. Behind a proxy, run uvicorn
    with ``--proxy-headers --forwarded-allow-ips`` so the address is the client's, not the proxy's.
    """

    def __init__(self, spec: str, *, name: str) -> None:
        self.spec = spec
        self.name = name
        self._items = limits.parse_many(spec)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def __repr__(self) -> str:
        return f"RateLimit({self.spec!r}, name={self.name!r})"

    def hit(self, key: str) -> None:
        """Count one hit for ``key``; raise ``TooManyRequestsError`` if any window is full (not counted)."""
        for item in self._items:
            if not self._limiter.test(item, self.name, key):
                reset_time, _ = self._limiter.get_window_stats(item, self.name, key)
                raise TooManyRequestsError(retry_after=math.ceil(reset_time - time.time()))
        for item in self._items:
            self._limiter.hit(item, self.name, key)

    async def per_address(self, connection: HTTPConnection) -> None:
        """The dependency that counts a hit for the request's client address."""
        self.hit(connection.client.host if connection.client is not None else "unknown")
