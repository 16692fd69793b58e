"""The listener bench.py and hop.py time: it acks every event and says when it has seen them all."""

from __future__ import annotations

import asyncio

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
