from __future__ import annotations

from typing import assert_type

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import PubAck

from ticketing_common import (
    BaseListener,
    BasePublisher,
    Event,
    OrderCreatedEvent,
    TicketCreatedEvent,
    nats_wrapper,
)


class TicketCreatedPublisher(BasePublisher[TicketCreatedEvent]):
    pass


class OrderCreatedListener(BaseListener[OrderCreatedEvent]):
    queue_group_name = "tickets-service"
    ack_wait = 10.0
    concurrency = 4

    async def on_message(self, data: OrderCreatedEvent, msg: Msg) -> None:
        assert_type(data.ticket.id, str)
        await msg.ack()


async def use(client: Client, event: TicketCreatedEvent) -> None:
    ack = await TicketCreatedPublisher(client).publish(event)
    assert_type(ack, PubAck)
    await TicketCreatedPublisher(client).publish(event, msg_id="explicit")
    listener = OrderCreatedListener(nats_wrapper.client)
    await listener.listen()
    assert_type(listener.event_type, type[Event])
    await listener.close(timeout=1.0)
    assert_type(nats_wrapper.client, Client)
