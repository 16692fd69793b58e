"""Keep the ticket replica in step (find-by-event), expire orders, complete paid ones."""

from __future__ import annotations

import logging
from typing import TypeVar

from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import AsyncSession

from ticketing_common import (
    ExpirationCompleteEvent,
    OrderAction,
    OrderStatus,
    PaymentCreatedEvent,
    TicketCreatedEvent,
    TicketUpdatedEvent,
)
from ticketing_common.service import ServiceListener

from .models import Order, Ticket

QUEUE_GROUP = "orders-service"
logger = logging.getLogger(__name__)
TicketEvent = TypeVar("TicketEvent", TicketCreatedEvent, TicketUpdatedEvent)


async def existing_order(session: AsyncSession, order_id: str) -> Order:
    """The order an event names, locked; a missing one is an error: retried, then dead-lettered."""
    order = await Order.locked(session, order_id)
    if order is None:
        raise LookupError(f"order {order_id} does not exist")
    return order


class _TicketListener(ServiceListener[TicketEvent]):
    queue_group_name = QUEUE_GROUP

    async def on_message(self, data: TicketEvent, msg: Msg) -> None:
        """Apply the ticket's version to the replica (find-by-event), or let the listener redeliver it."""
        async with self.service.transaction() as session:
            await Ticket.apply(session, data, title=data.title, price=data.price)
        await msg.ack()


class TicketCreatedListener(_TicketListener[TicketCreatedEvent]):
    """ticket:created: add the ticket to the replica (once, whatever the redeliveries)."""


class TicketUpdatedListener(_TicketListener[TicketUpdatedEvent]):
    """ticket:updated: apply the next version; wait (OutOfOrder) for a gap; ignore the past."""


class ExpirationCompleteListener(ServiceListener[ExpirationCompleteEvent]):
    """expiration:complete: cancel the order unless it is paid; an order already closed stays as it is."""

    queue_group_name = QUEUE_GROUP

    async def on_message(self, data: ExpirationCompleteEvent, msg: Msg) -> None:
        """Cancel and announce order:cancelled once; ack and ignore a complete or cancelled order."""
        async with self.service.transaction() as session:
            order = await existing_order(session, data.order_id)
            if order.transition(OrderAction.EXPIRE):
                await session.flush()
                await self.service.publish(session, order.cancelled())
        await msg.ack()
        await self.service.flush()


class PaymentCreatedListener(ServiceListener[PaymentCreatedEvent]):
    """payment:created: the order is complete, unless it was cancelled first (then payments refunds it)."""

    queue_group_name = QUEUE_GROUP

    async def on_message(self, data: PaymentCreatedEvent, msg: Msg) -> None:
        """Complete the order once; a cancelled order stays cancelled, its ticket free."""
        async with self.service.transaction() as session:
            order = await existing_order(session, data.order_id)
            if not order.transition(OrderAction.PAY) and order.status == OrderStatus.CANCELLED:
                logger.info(
                    "order %s was cancelled before its payment %s: it stays cancelled, payments refunds it",
                    order.id,
                    data.id,
                )
        await msg.ack()
