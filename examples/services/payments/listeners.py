"""Keep the order replica in step with the orders service (find-by-event); refund cancelled orders."""

from __future__ import annotations

from typing import TypeVar

from nats.aio.msg import Msg

from ticketing_common import Event, OrderCancelledEvent, OrderCreatedEvent, OrderStatus, PaymentCreatedEvent
from ticketing_common.service import Service, ServiceListener

from .gateway import PaymentGateway
from .models import Order
from .refunds import refund_if_cancelled

QUEUE_GROUP = "payments-service"
E = TypeVar("E", bound=Event)


class OrderCreatedListener(ServiceListener[OrderCreatedEvent]):
    """order:created: add the order to the replica (once, whatever the redeliveries)."""

    queue_group_name = QUEUE_GROUP

    async def on_message(self, data: OrderCreatedEvent, msg: Msg) -> None:
        """Insert the order at its version, or ignore a duplicate."""
        async with self.service.transaction() as session:
            await Order.apply(
                session,
                data,
                user_id=data.user_id,
                price=data.ticket.price,
                status=data.status,
                expires_at=data.expires_at,
            )
        await msg.ack()


class RefundingListener(ServiceListener[E]):
    """A listener that may have to give a charge back, through the service's gateway."""

    def __init__(self, service: Service, *, gateway: PaymentGateway) -> None:
        super().__init__(service)
        self.gateway = gateway


class OrderCancelledListener(RefundingListener[OrderCancelledEvent]):
    """order:cancelled: mark the replica cancelled, refund its payment if any; wait for order:created."""

    queue_group_name = QUEUE_GROUP

    async def on_message(self, data: OrderCancelledEvent, msg: Msg) -> None:
        """Apply the cancellation at the next version (ignore the past, wait for a gap), then refund."""
        async with self.service.transaction() as session:
            # Locked: a payment being saved for this order now is seen here, or sees the cancellation.
            await Order.apply(session, data, lock=True, status=OrderStatus.CANCELLED)
        await refund_if_cancelled(self.service, self.gateway, data.id)
        await msg.ack()


class PaymentCreatedListener(RefundingListener[PaymentCreatedEvent]):
    """payment:created (our own): a payment saved for an order cancelled by then is refunded."""

    queue_group_name = QUEUE_GROUP

    async def on_message(self, data: PaymentCreatedEvent, msg: Msg) -> None:
        """Refund if the order is cancelled; usually it is not, and this changes nothing."""
        await refund_if_cancelled(self.service, self.gateway, data.order_id)
        await msg.ack()
