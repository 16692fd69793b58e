"""Shared helpers; the server fixtures come from the package's pytest plugin, ticketing_common.testing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from nats.js import JetStreamContext

from ticketing_common import EVENTS_STREAM, TicketCreatedEvent

WAIT = 10.0
"""Seconds any test waits for an event it expects before failing."""


def ticket(number: int = 1, *, version: int = 0) -> TicketCreatedEvent:
    return TicketCreatedEvent(
        id=f"t{number}", version=version, title=f"concert {number}", price=10.5, user_id="u1"
    )


async def wait_until(
    condition: Callable[[], bool], *, timeout: float = WAIT, what: str = "condition"
) -> None:
    """Wait until ``condition()`` holds, checked every few milliseconds, or fail after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)
    assert condition(), what


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float = WAIT) -> None:
    """Wait until the async ``check()`` is true, or fail after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def consumer_is_settled(js: JetStreamContext, consumer: str) -> bool:
    """Every event the consumer was given is acked (or terminated) and none is waiting."""
    info = await js.consumer_info(EVENTS_STREAM, consumer)
    return bool(info.num_ack_pending == 0 and info.num_pending == 0)


NOW = datetime(2026, 11, 23, 12, 30, 15, 123000, tzinfo=UTC)
