from __future__ import annotations

from nats.aio.client import Client

from ticketing_common import BasePublisher, OrderCreatedEvent, TicketCreatedEvent


class TicketCreatedPublisher(BasePublisher[TicketCreatedEvent]):
    pass


async def publish_an_order_as_a_ticket(client: Client, order: OrderCreatedEvent) -> None:
    await TicketCreatedPublisher(client).publish(order)  # expect: arg-type


async def publish_raw_data(client: Client) -> None:
    await TicketCreatedPublisher(client).publish({"id": "t1"})  # expect: arg-type
