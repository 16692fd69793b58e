"""Keep the ticket replica in step (find-by-event), expire orders, complete paid ones."""

from __future__ import annotations

import logging

from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import AsyncSession

from ticketing_common import (
    ExpirationCompleteEvent,
    OrderStatus,
    PaymentCreatedEvent,
    TicketCreatedEvent,
    TicketUpdatedEvent,
)
from ticketing_common.service import ServiceListener
from ticketing_common.versioning import should_apply

from .models import Order, Ticket

QUEUE_GROUP = "orders-service"
logger = logging.getLogger(__name__)


async def existing_order(session: AsyncSession, order_id: str) -> Order:
    """The order an event names; a missing one is an error, so the event is retried, then dead-lettered."""
    order = await session.get(Order, order_id)
    if order is None:
        raise LookupError(f"order {order_id} does not exist")
    return order


class TicketCreatedListener(ServiceListener[TicketCreatedEvent]):
    """ticket:created: add the ticket to the replica (once, whatever the redeliveries)."""

    queue_group_name = QUEUE_GROUP

    async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
        """Insert version 0, or ignore a duplicate."""
        async with self.service.transaction() as session:
            ticket = await session.get(Ticket, data.id)
            if should_apply(
                None if ticket is None else ticket.version, data.version, record=f"ticket {data.id}"
            ):
                session.add(Ticket(id=data.id, title=data.title, price=data.price, version=data.version))
        await msg.ack()


class TicketUpdatedListener(ServiceListener[TicketUpdatedEvent]):
    """ticket:updated: apply the next version; wait (OutOfOrder) for a gap; ignore the past."""

    queue_group_name = QUEUE_GROUP

    async def on_message(self, data: TicketUpdatedEvent, msg: Msg) -> None:
        """Find the replica at version - 1 and update it, or let the listener redeliver later."""
        async with self.service.transaction() as session:
            ticket = await session.get(Ticket, data.id)
            if should_apply(
                None if ticket is None else ticket.version, data.version, record=f"ticket {data.id}"
            ):
                assert ticket is not None  # noqa: S101 - should_apply only applies a version > 0 to a replica
                ticket.title, ticket.price, ticket.version = data.title, data.price, data.version
        await msg.ack()


class ExpirationCompleteListener(ServiceListener[ExpirationCompleteEvent]):
    """expiration:complete: cancel the order unless it is paid; an order already closed stays as it is."""

    queue_group_name = QUEUE_GROUP

    async def on_message(self, data: ExpirationCompleteEvent, msg: Msg) -> None:
        """Cancel and announce order:cancelled once; ack and ignore a complete or cancelled order."""
        async with self.service.transaction() as session:
            order = await existing_order(session, data.order_id)
            if order.status not in {OrderStatus.COMPLETE, OrderStatus.CANCELLED}:
                order.status = OrderStatus.CANCELLED
                await session.flush()
                await self.service.publish(session, order.cancelled())
        await msg.ack()
        await self.service.flush()


class PaymentCreatedListener(ServiceListener[PaymentCreatedEvent]):
    """payment:created: the order is complete."""

    queue_group_name = QUEUE_GROUP

    async def on_message(self, data: PaymentCreatedEvent, msg: Msg) -> None:
        """Mark the order complete (once)."""
        async with self.service.transaction() as session:
            order = await existing_order(session, data.order_id)
            if order.status == OrderStatus.CANCELLED:
                logger.warning("order %s was paid (%s) after it was cancelled", order.id, data.stripe_id)
            order.status = OrderStatus.COMPLETE
        await msg.ack()
