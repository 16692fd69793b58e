"""The tickets service's HTTP API: create, list, show and update tickets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Response
from sqlalchemy import select

from ticketing_common import BadRequestError, NotAuthorizedError, NotFoundError
from ticketing_common.fastapi import Identifier, RequiredUser, error_responses
from ticketing_common.service import Service, ServiceDep, ServiceListener, ServiceSettings

from .listeners import OrderCancelledListener, OrderCreatedListener
from .models import Base, Ticket, TicketIn, TicketOut

MIGRATIONS = Path(__file__).parent / "migrations"
"""The Alembic revisions of this service's database (``python -m tickets migrate``)."""

LISTENERS: list[type[ServiceListener[Any]]] = [OrderCreatedListener, OrderCancelledListener]
DEFAULT_PAGE = 50
MAX_PAGE = 200
router = APIRouter(prefix="/api/tickets")
_NEXT_PAGE = {
    "Link": {
        "description": 'The next page, `<url>; rel="next"` (RFC 8288), while there is one',
        "schema": {"type": "string"},
    }
}


def create_app(settings: ServiceSettings) -> FastAPI:
    """The tickets app; NATS, database and listeners start with its lifespan."""
    service = Service(settings, Base.metadata, listeners=LISTENERS, migrations=MIGRATIONS)
    app = FastAPI(title="tickets", lifespan=service.lifespan)
    service.install(app)
    app.include_router(router)
    return app


@router.post("", status_code=201)
async def create_ticket(body: TicketIn, user: RequiredUser, service: ServiceDep) -> TicketOut:
    """Put a ticket on sale and announce it (ticket:created)."""
    async with service.transaction() as session:
        ticket = Ticket(title=body.title, price=body.price, user_id=user.id)
        session.add(ticket)
        await session.flush()
        await service.publish(session, ticket.created())
    await service.flush()
    return TicketOut.model_validate(ticket)


@router.get("", responses={200: {"description": "A page of tickets", "headers": _NEXT_PAGE}})
async def list_tickets(
    service: ServiceDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Tickets per page")] = DEFAULT_PAGE,
    cursor: Annotated[
        Identifier | None, Query(description="Where the page starts: from a Link header")
    ] = None,
) -> list[TicketOut]:
    """The tickets no order holds, in pages of ``limit`` in id order; ``Link`` names the next page."""
    query = select(Ticket).where(Ticket.order_id.is_(None)).order_by(Ticket.id).limit(limit + 1)
    if cursor is not None:
        query = query.where(Ticket.id > cursor)
    async with service.database.sessions() as session:
        tickets = list(await session.scalars(query))
    if len(tickets) > limit:
        tickets = tickets[:limit]
        response.headers["Link"] = f'</api/tickets?limit={limit}&cursor={tickets[-1].id}>; rel="next"'
    return [TicketOut.model_validate(ticket) for ticket in tickets]


@router.get("/{ticket_id}")
async def show_ticket(ticket_id: Identifier, service: ServiceDep) -> TicketOut:
    """One ticket, or 404."""
    async with service.database.sessions() as session:
        ticket = await session.get(Ticket, ticket_id)
    if ticket is None:
        raise NotFoundError
    return TicketOut.model_validate(ticket)


@router.put("/{ticket_id}", responses=error_responses(400))
async def update_ticket(
    ticket_id: Identifier, body: TicketIn, user: RequiredUser, service: ServiceDep
) -> TicketOut:
    """Change the owner's unreserved ticket and announce it (ticket:updated).

    An edit that races an order the tickets service has not heard of yet is answered 200 and then
    undone when that order reserves the ticket: the order keeps the price its buyer saw (README).
    """
    async with service.transaction() as session:
        # Locked: a reservation being saved now makes this edit wait, then see the ticket reserved.
        ticket = await session.get(Ticket, ticket_id, with_for_update=True)
        if ticket is None:
            raise NotFoundError
        if ticket.user_id != user.id:
            raise NotAuthorizedError
        if ticket.order_id is not None:
            raise BadRequestError("Cannot edit a reserved ticket")
        ticket.title, ticket.price = body.title, body.price
        await session.flush()
        await service.publish(session, ticket.updated())
    await service.flush()
    return TicketOut.model_validate(ticket)
