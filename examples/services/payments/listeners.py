"""Keep the order replica in step with the orders service (find-by-event)."""

from __future__ import annotations

from nats.aio.msg import Msg

from ticketing_common import OrderCancelledEvent, OrderCreatedEvent, OrderStatus
from ticketing_common.service import ServiceListener
from ticketing_common.versioning import should_apply

from .models import Order

QUEUE_GROUP = "payments-service"


class OrderCreatedListener(ServiceListener[OrderCreatedEvent]):
    """order:created: add the order to the replica (once, whatever the redeliveries)."""

    queue_group_name = QUEUE_GROUP

    async def on_message(self, data: OrderCreatedEvent, msg: Msg) -> None:
        """Insert the order at its version, or ignore a duplicate."""
        async with self.service.transaction() as session:
            order = await session.get(Order, data.id)
            if should_apply(
                None if order is None else order.version, data.version, record=f"order {data.id}"
            ):
                session.add(
                    Order(
                        id=data.id,
                        version=data.version,
                        user_id=data.user_id,
                        price=data.ticket.price,
                        status=data.status,
                    )
                )
        await msg.ack()


class OrderCancelledListener(ServiceListener[OrderCancelledEvent]):
    """order:cancelled: mark the replica cancelled; wait (OutOfOrder) for its order:created first."""

    queue_group_name = QUEUE_GROUP

    async def on_message(self, data: OrderCancelledEvent, msg: Msg) -> None:
        """Apply the cancellation at the next version, ignore the past, wait for a gap to fill."""
        async with self.service.transaction() as session:
            order = await session.get(Order, data.id)
            if should_apply(
                None if order is None else order.version, data.version, record=f"order {data.id}"
            ):
                assert order is not None  # noqa: S101 - should_apply only applies a version > 0 to a replica
                order.status, order.version = OrderStatus.CANCELLED, data.version
        await msg.ack()
