"""The handlers bench.py and hop.py time: each validates and acks every event, and says when all came."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg

from ticketing_common import BaseListener, TicketCreatedEvent


def counting_listener(
    group: str, count: int, done: asyncio.Event, *, concurrency: int = 1
) -> type[BaseListener[TicketCreatedEvent]]:
    """A listener class of queue group ``group``: it acks each event and sets ``done`` at the last."""
    workers = concurrency
    seen = 0

    class Counting(BaseListener[TicketCreatedEvent]):
        queue_group_name = group
        concurrency = workers

        async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
            nonlocal seen
            await msg.ack()
            seen += 1
            if seen == count:
                done.set()

    return Counting


def counting_callback(count: int, done: asyncio.Event) -> Callable[[Msg], Awaitable[None]]:
    """A raw nats-py callback that validates and acks each event and sets ``done`` at the last."""
    seen = 0

    async def handle(msg: Msg) -> None:
        nonlocal seen
        TicketCreatedEvent.model_validate_json(msg.data)
        await msg.ack()
        seen += 1
        if seen == count:
            done.set()

    return handle
