"""Give back the charge of an order that the orders service cancelled: a payment that lost a race.

Orders is the authority on an order (``ticketing_common.next_order_status``): a payment that reaches it
after the order was cancelled changes nothing, and the order:cancelled it published tells payments to
refund. Called after every change that can make an order cancelled and paid at once, in either order:
the order:cancelled listener, the payment route, and this service's own payment:created listener (which
covers the route's process dying between saving the payment and refunding it).
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from ticketing_common import OrderStatus
from ticketing_common.service import Service

from .gateway import PaymentGateway
from .models import Order, Payment

logger = logging.getLogger(__name__)


async def refund_if_cancelled(service: Service, gateway: PaymentGateway, order_id: str) -> bool:
    """Refund the order's payment if the order is cancelled, once however often called; True if done now."""
    async with service.database.sessions() as session:
        order = await session.get(Order, order_id)
        payment = await session.scalar(select(Payment).where(Payment.order_id == order_id))
    if order is None or order.status != OrderStatus.CANCELLED or payment is None or payment.refund_id:
        return False
    # One key per payment: concurrent callers and retries get the first refund back, not a second one.
    refund_id = await gateway.refund(
        charge_id=payment.stripe_id, idempotency_key=f"ticketing-refund-{payment.id}"
    )
    async with service.transaction() as session:
        locked = await session.get(Payment, payment.id, with_for_update=True)
        if locked is None or locked.refund_id is not None:  # another caller recorded it first
            return False
        locked.refund_id = refund_id
        await service.publish(session, locked.refunded())
    await service.flush()
    logger.warning(
        "order %s was cancelled while it was paid: charge %s refunded", order_id, payment.stripe_id
    )
    return True
