"""Orders, owned here, and the replica of the tickets service's tickets they reserve."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ticketing_common import (
    JsDatetime,
    OrderAction,
    OrderCancelledEvent,
    OrderCancelledTicket,
    OrderCreatedEvent,
    OrderCreatedTicket,
    OrderStatus,
    next_order_status,
)
from ticketing_common.fastapi import Identifier
from ticketing_common.sqlalchemy import Replica, UtcDateTime, Versioned

ACTIVE = text("status != 'cancelled'")


class Base(DeclarativeBase):
    """The orders database."""


class Ticket(Replica, Base):
    """The tickets service's ticket, as its events tell it (find-by-event keeps the versions in step)."""

    __tablename__ = "tickets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    price: Mapped[float]


class Order(Versioned, Base):
    """An order of one ticket by one user."""

    __tablename__ = "orders"
    # At most one order that is not cancelled per ticket: two concurrent orders cannot both reserve it.
    __table_args__ = (
        Index(
            "one_active_order_per_ticket",
            "ticket_id",
            unique=True,
            sqlite_where=ACTIVE,
            postgresql_where=ACTIVE,
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: uuid.uuid4().hex)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(32))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id"))
    ticket: Mapped[Ticket] = relationship(lazy="joined")
    price: Mapped[float]
    """The ticket's price when the order was made: what its payment charges, whatever the ticket costs now."""

    @classmethod
    async def locked(cls, session: AsyncSession, order_id: str) -> Order | None:
        """The order, read FOR UPDATE: its cancellation, expiration and payment apply one after another."""
        # "OF orders": the joined ticket is an outer join, which PostgreSQL cannot lock.
        return await session.get(cls, order_id, with_for_update={"of": cls})

    def transition(self, action: OrderAction) -> bool:
        """Move to the status ``action`` leads to (``next_order_status``); False if that changes nothing."""
        status = next_order_status(self.status, action)
        changed = status != self.status
        self.status = status
        return changed

    def created(self) -> OrderCreatedEvent:
        """The order:created event of this (flushed) order."""
        return OrderCreatedEvent(
            id=self.id,
            version=self.version,
            status=OrderStatus(self.status),
            user_id=self.user_id,
            expires_at=self.expires_at,
            ticket=OrderCreatedTicket(id=self.ticket_id, price=self.price),
        )

    def cancelled(self) -> OrderCancelledEvent:
        """The order:cancelled event of this (flushed) order."""
        return OrderCancelledEvent(
            id=self.id, version=self.version, ticket=OrderCancelledTicket(id=self.ticket_id)
        )


class OrderIn(BaseModel):
    """The body of POST /api/orders."""

    ticket_id: Identifier = Field(alias="ticketId")

    @field_validator("ticket_id", mode="before")
    @classmethod
    def _ticket_id_required(cls, ticket_id: object) -> object:
        if isinstance(ticket_id, str) and not ticket_id.strip():
            raise ValueError("TicketId must be provided")
        return ticket_id


class TicketOut(BaseModel):
    """The ticket inside an order, as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    title: str
    price: float
    version: int


class OrderOut(BaseModel):
    """An order as the API shows it (camelCase, as the original's JSON)."""

    model_config = ConfigDict(serialize_by_alias=True, from_attributes=True)

    id: str
    status: OrderStatus
    user_id: str = Field(serialization_alias="userId")
    expires_at: JsDatetime = Field(serialization_alias="expiresAt")
    version: int
    ticket: TicketOut

    @classmethod
    def of(cls, order: Order) -> OrderOut:
        """The order with its ticket, at the order's own price: the price its payment charges."""
        shown = cls.model_validate(order)
        shown.ticket.price = order.price
        return shown
