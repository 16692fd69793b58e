"""The orders service's HTTP API: order a ticket, list, show and cancel orders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ticketing_common import BadRequestError, NotAuthorizedError, NotFoundError, OrderAction, OrderStatus
from ticketing_common.fastapi import Identifier, RequiredUser, error_responses
from ticketing_common.service import Service, ServiceDep, ServiceListener, ServiceSettings

from .listeners import (
    ExpirationCompleteListener,
    PaymentCreatedListener,
    TicketCreatedListener,
    TicketUpdatedListener,
)
from .models import Base, Order, OrderIn, OrderOut, Ticket

MIGRATIONS = Path(__file__).parent / "migrations"
"""The Alembic revisions of this service's database (``python -m orders migrate``)."""

DEFAULT_WINDOW = timedelta(minutes=15)
LISTENERS: list[type[ServiceListener[Any]]] = [
    TicketCreatedListener,
    TicketUpdatedListener,
    ExpirationCompleteListener,
    PaymentCreatedListener,
]
router = APIRouter(prefix="/api/orders")


def create_app(settings: ServiceSettings, *, expiration_window: timedelta = DEFAULT_WINDOW) -> FastAPI:
    """The orders app; an order not paid within ``expiration_window`` expires."""
    service = Service(settings, Base.metadata, listeners=LISTENERS, migrations=MIGRATIONS)
    app = FastAPI(title="orders", lifespan=service.lifespan)
    service.install(app)
    app.state.expiration_window = expiration_window
    app.include_router(router)
    return app


async def owned_order(order_id: Identifier, user: RequiredUser, service: ServiceDep) -> Order:
    """The user's order: 404 if there is none, 401 if it is someone else's."""
    async with service.database.sessions() as session:
        order = await session.get(Order, order_id)
    if order is None:
        raise NotFoundError
    if order.user_id != user.id:
        raise NotAuthorizedError
    return order


OwnedOrder = Annotated[Order, Depends(owned_order)]


@router.post("", status_code=201, responses=error_responses(400, 404))
async def create_order(body: OrderIn, user: RequiredUser, service: ServiceDep, request: Request) -> OrderOut:
    """Reserve a free ticket until the order expires, and announce it (order:created)."""
    async with service.transaction() as session:
        ticket = await session.get(Ticket, body.ticket_id)
        if ticket is None:
            raise NotFoundError
        holder = select(Order.id).where(Order.ticket_id == ticket.id, Order.status != OrderStatus.CANCELLED)
        if await session.scalar(holder) is not None:
            raise BadRequestError("Ticket is already reserved")
        window: timedelta = request.app.state.expiration_window
        order = Order(
            user_id=user.id,
            status=OrderStatus.CREATED,
            expires_at=datetime.now(UTC) + window,
            ticket=ticket,
            price=ticket.price,
        )
        session.add(order)
        try:
            await session.flush()
        except IntegrityError:  # another order got the ticket between our check and our insert
            raise BadRequestError("Ticket is already reserved") from None
        await service.publish(session, order.created())
    await service.flush()
    return OrderOut.of(order)


@router.get("")
async def list_orders(user: RequiredUser, service: ServiceDep) -> list[OrderOut]:
    """The user's orders, with their tickets."""
    async with service.database.sessions() as session:
        orders = await session.scalars(
            select(Order).where(Order.user_id == user.id).order_by(Order.expires_at)
        )
        return [OrderOut.of(order) for order in orders]


@router.get("/{order_id}")
async def show_order(order: OwnedOrder) -> OrderOut:
    """One of the user's orders."""
    return OrderOut.of(order)


@router.delete("/{order_id}", status_code=204, responses=error_responses(400))
async def cancel_order(order: OwnedOrder, service: ServiceDep) -> Response:
    """Cancel the order, releasing its ticket (order:cancelled); cancelling twice changes nothing.

    A paid order stays complete: 400, whether its payment:created came before this request or during it.
    """
    async with service.transaction() as session:
        current = await Order.locked(session, order.id)
        if current is None:
            raise NotFoundError
        changed = current.transition(OrderAction.CANCEL)
        if current.status != OrderStatus.CANCELLED:
            raise BadRequestError("Cannot cancel a completed order")
        if changed:
            await session.flush()
            await service.publish(session, current.cancelled())
    await service.flush()
    return Response(status_code=204)
