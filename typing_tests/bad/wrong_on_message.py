from __future__ import annotations

from nats.aio.msg import Msg

from ticketing_common import BaseListener, OrderCreatedEvent, TicketCreatedEvent


class OrderCreatedListener(BaseListener[OrderCreatedEvent]):
    queue_group_name = "tickets-service"

    async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:  # expect: override
        assert data.id  # noqa: S101 - uses data, so only the override is wrong
        await msg.ack()
