"""The payments service's HTTP API: pay for an order, once."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ticketing_common import BadRequestError, NotAuthorizedError, NotFoundError, OrderStatus
from ticketing_common.fastapi import RequiredUser
from ticketing_common.service import Service, ServiceDep, ServiceListener, ServiceSettings

from .gateway import PaymentGateway, gateway_from_env
from .listeners import OrderCancelledListener, OrderCreatedListener
from .models import Base, Order, Payment, PaymentIn, PaymentOut

LISTENERS: list[type[ServiceListener[Any]]] = [OrderCreatedListener, OrderCancelledListener]
CURRENCY = "usd"
ALREADY_PAID = "Order has already been paid"
router = APIRouter(prefix="/api/payments")


def create_app(settings: ServiceSettings, *, gateway: PaymentGateway | None = None) -> FastAPI:
    """The payments app; ``gateway`` defaults to Stripe with ``STRIPE_KEY``, else the fake gateway."""
    service = Service(settings, Base.metadata, listeners=LISTENERS)
    chosen = gateway if gateway is not None else gateway_from_env(os.environ)

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


@router.post("", status_code=201)
async def pay(body: PaymentIn, user: RequiredUser, service: ServiceDep, request: Request) -> PaymentOut:
    """Charge the user's open order once, save the payment and announce it (payment:created)."""
    async with service.database.sessions() as session:
        order = await session.get(Order, body.order_id)
        if order is None:
            raise NotFoundError
        if order.user_id != user.id:
            raise NotAuthorizedError
        if order.status == OrderStatus.CANCELLED:
            raise BadRequestError("Cannot pay for an cancelled order")
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
            payment = Payment(order_id=order.id, stripe_id=stripe_id)
            session.add(payment)
            await session.flush()
            await service.publish(session, payment.created())
    except IntegrityError:  # a concurrent request saved this order's payment first (same charge)
        raise BadRequestError(ALREADY_PAID) from None
    await service.flush()
    return PaymentOut(id=payment.id)
