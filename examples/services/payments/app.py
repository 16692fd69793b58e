"""The payments service's HTTP API: pay for an order, once."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ticketing_common import (
    BadRequestError,
    NotAuthorizedError,
    NotFoundError,
    OrderAction,
    OrderStatus,
    next_order_status,
)
from ticketing_common.fastapi import MAX_PRICE, MIN_PRICE, RequiredUser, error_responses, price_cents
from ticketing_common.service import Service, ServiceDep, ServiceListener, ServiceSettings

from .gateway import PaymentGateway, gateway_from_env
from .listeners import OrderCancelledListener, OrderCreatedListener, PaymentCreatedListener
from .models import Base, Order, Payment, PaymentIn, PaymentOut
from .refunds import refund_if_cancelled

MIGRATIONS = Path(__file__).parent / "migrations"
"""The Alembic revisions of this service's database (``python -m payments migrate``)."""

CURRENCY = "usd"
ALREADY_PAID = "Order has already been paid"
CANCELLED = "Cannot pay for a cancelled order"
EXPIRED = "Cannot pay for an expired order"
OUT_OF_RANGE = f"Cannot charge this order: its price must be from {MIN_PRICE:.2f} to {MAX_PRICE:.2f}"
router = APIRouter(prefix="/api/payments")
logger = logging.getLogger(__name__)


def create_app(settings: ServiceSettings, *, gateway: PaymentGateway | None = None) -> FastAPI:
    """The payments app; ``gateway`` defaults to Stripe with ``STRIPE_KEY``, else the fake gateway."""
    chosen = gateway if gateway is not None else gateway_from_env()
    listeners: list[Callable[[Service], ServiceListener[Any]]] = [
        OrderCreatedListener,
        partial(OrderCancelledListener, gateway=chosen),
        partial(PaymentCreatedListener, gateway=chosen),
    ]
    service = Service(settings, Base.metadata, listeners=listeners, migrations=MIGRATIONS)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service.lifespan(app):
            try:
                yield
            finally:
                await chosen.aclose()

    app = FastAPI(title="payments", lifespan=lifespan)
    service.install(app)
    app.state.gateway = chosen
    app.include_router(router)
    return app


def payable(order: Order) -> None:
    """Refuse (400) an order that is cancelled, whose time to pay has run out, or the gateway cannot charge.

    The tickets service only sells prices Stripe can charge; an order made from another seller (a Node
    tickets service, data from before the limits) may still carry one it cannot.
    """
    if next_order_status(order.status, OrderAction.PAY) is not OrderStatus.COMPLETE:
        raise BadRequestError(CANCELLED)
    if order.expires_at <= datetime.now(UTC):
        raise BadRequestError(EXPIRED)
    if not price_cents(MIN_PRICE) <= order.amount_cents() <= price_cents(MAX_PRICE):
        raise BadRequestError(OUT_OF_RANGE)


@router.post("", status_code=201, responses=error_responses(400, 404))
async def pay(body: PaymentIn, user: RequiredUser, service: ServiceDep, request: Request) -> PaymentOut:
    """Charge the user's open order once, save the payment and announce it (payment:created).

    If the order:cancelled of the order arrived while the charge went through, the charge is refunded
    at once and the answer is the 400 of a cancelled order.
    """
    async with service.database.sessions() as session:
        order = await session.get(Order, body.order_id)
        if order is None:
            raise NotFoundError
        if order.user_id != user.id:
            raise NotAuthorizedError
        payable(order)
        if await session.scalar(select(Payment.id).where(Payment.order_id == order.id)) is not None:
            raise BadRequestError(ALREADY_PAID)
    gateway: PaymentGateway = request.app.state.gateway
    # One key per order: a retry of this request, or a concurrent one, gets the first charge back.
    stripe_id = await gateway.charge(
        amount_cents=order.amount_cents(),
        currency=CURRENCY,
        token=body.token,
        idempotency_key=f"ticketing-order-{order.id}",
    )
    try:
        async with service.transaction() as session:
            # Locked, as the order:cancelled listener locks it: one of the two sees the other's change.
            current = await session.get(Order, order.id, with_for_update=True)
            payment = Payment(order_id=order.id, stripe_id=stripe_id)
            session.add(payment)
            await session.flush()
            await service.publish(session, payment.created())
    except IntegrityError:  # a concurrent request saved this order's payment first (same charge)
        raise BadRequestError(ALREADY_PAID) from None
    await service.flush()
    if current is None or current.status == OrderStatus.CANCELLED:
        try:
            await refund_if_cancelled(service, gateway, order.id)
        except Exception:  # the gateway is down: payments' payment:created listener retries the refund
            logger.exception("order %s: refunding charge %s failed; it will be retried", order.id, stripe_id)
        raise BadRequestError(CANCELLED)
    return PaymentOut(id=payment.id)
