"""Reserve a ticket when an order is created, release it when that same order is cancelled."""

from __future__ import annotations

from nats.aio.msg import Msg

from ticketing_common import OrderCancelledEvent, OrderCreatedEvent
from ticketing_common.service import ServiceListener

from .models import CancelledOrder, Ticket

QUEUE_GROUP = "tickets-service"


class OrderCreatedListener(ServiceListener[OrderCreatedEvent]):
    """order:created: the ticket is reserved by that order; ticket:updated announces it with ``orderId``."""

    queue_group_name = QUEUE_GROUP

    async def on_message(self, data: OrderCreatedEvent, msg: Msg) -> None:
        """Reserve, unless the order is already known cancelled or already holds the ticket."""
        async with self.service.transaction() as session:
            ticket = await session.get(Ticket, data.ticket.id)
            if ticket is None:
                raise LookupError(f"ticket {data.ticket.id} of order {data.id} does not exist")
            cancelled = await session.get(CancelledOrder, data.id)
            if cancelled is None and ticket.order_id != data.id:
                ticket.order_id = data.id
                await session.flush()
                await self.service.publish(session, ticket.updated())
        await msg.ack()
        await self.service.flush()


class OrderCancelledListener(ServiceListener[OrderCancelledEvent]):
    """order:cancelled: the ticket is released, only if that order is the one holding it."""

    queue_group_name = QUEUE_GROUP

    async def on_message(self, data: OrderCancelledEvent, msg: Msg) -> None:
        """Release the ticket if this order holds it; remember the order as cancelled either way."""
        async with self.service.transaction() as session:
            if await session.get(CancelledOrder, data.id) is None:
                session.add(CancelledOrder(order_id=data.id))
            ticket = await session.get(Ticket, data.ticket.id)
            if ticket is not None and ticket.order_id == data.id:
                ticket.order_id = None
                await session.flush()
                await self.service.publish(session, ticket.updated())
        await msg.ack()
        await self.service.flush()
