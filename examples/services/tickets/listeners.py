"""Reserve a ticket when an order is created, release it when that same order is cancelled."""

from __future__ import annotations

import logging

from nats.aio.msg import Msg

from ticketing_common import OrderCancelledEvent, OrderCreatedEvent, OutOfOrder
from ticketing_common.service import ServiceListener

from .models import CancelledOrder, Ticket

QUEUE_GROUP = "tickets-service"
logger = logging.getLogger(__name__)


class OrderCreatedListener(ServiceListener[OrderCreatedEvent]):
    """order:created: the ticket is reserved by that order; ticket:updated announces it with ``orderId``."""

    queue_group_name = QUEUE_GROUP

    async def on_message(self, data: OrderCreatedEvent, msg: Msg) -> None:
        """Reserve at the order's price, unless the order is known cancelled or already holds the ticket.

        Raises:
            OutOfOrder: another order holds the ticket. The orders service lets one order at a time hold
                it, so one of the two is cancelled and its order:cancelled is on its way: wait for it.
        """
        async with self.service.transaction() as session:
            ticket = await session.get(Ticket, data.ticket.id, with_for_update=True)
            if ticket is None:
                raise LookupError(f"ticket {data.ticket.id} of order {data.id} does not exist")
            cancelled = await session.get(CancelledOrder, data.id)
            if cancelled is None and ticket.order_id != data.id:
                if ticket.order_id is not None:
                    raise OutOfOrder(
                        record=f"ticket {ticket.id}",
                        waiting_for=f"the cancellation of order {ticket.order_id} or {data.id}",
                    )
                if ticket.price != data.ticket.price:
                    # An edit reached us before this order, which orders made at the price it knew: the
                    # buyer is charged that price, so the edit loses and the ticket shows it again.
                    logger.warning(
                        "ticket %s: order %s was made at %s; the edit to %s, which raced it, is undone",
                        ticket.id,
                        data.id,
                        data.ticket.price,
                        ticket.price,
                    )
                    ticket.price = data.ticket.price
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
            ticket = await session.get(Ticket, data.ticket.id, with_for_update=True)
            if ticket is not None and ticket.order_id == data.id:
                ticket.order_id = None
                await session.flush()
                await self.service.publish(session, ticket.updated())
        await msg.ack()
        await self.service.flush()
