"""A ticket, owned by this service: versioned, announced by ticket:created and ticket:updated."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ticketing_common import TicketCreatedEvent, TicketUpdatedEvent
from ticketing_common.fastapi import PlainText, Price
from ticketing_common.sqlalchemy import Versioned


class Base(DeclarativeBase):
    """The tickets database."""


class Ticket(Versioned, Base):
    """A ticket on sale; ``order_id`` is set while an order reserves it."""

    __tablename__ = "tickets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: uuid.uuid4().hex)
    title: Mapped[str] = mapped_column(String(200))
    price: Mapped[float]
    user_id: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str | None] = mapped_column(String(64), default=None)

    def created(self) -> TicketCreatedEvent:
        """The ticket:created event of this (flushed) ticket."""
        return TicketCreatedEvent(
            id=self.id, version=self.version, title=self.title, price=self.price, user_id=self.user_id
        )

    def updated(self) -> TicketUpdatedEvent:
        """The ticket:updated event of this (flushed) ticket, with ``orderId`` while reserved."""
        return TicketUpdatedEvent(
            id=self.id,
            version=self.version,
            title=self.title,
            price=self.price,
            user_id=self.user_id,
            order_id=self.order_id,
        )


class CancelledOrder(Base):
    """An order seen cancelled: its order:created, if it comes late (another consumer), reserves nothing."""

    __tablename__ = "cancelled_orders"

    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class TicketIn(BaseModel):
    """The body of POST and PUT /api/tickets, with the original's messages."""

    title: PlainText = Field(max_length=200)
    price: Price

    @field_validator("title", mode="before")
    @classmethod
    def _title_required(cls, title: object) -> object:
        if isinstance(title, str) and not title.strip():
            raise ValueError("Title is required")
        return title


class TicketOut(BaseModel):
    """A ticket as the API shows it (camelCase, as the original's JSON)."""

    model_config = ConfigDict(serialize_by_alias=True, from_attributes=True)

    id: str
    title: str
    price: float
    user_id: str = Field(serialization_alias="userId")
    version: int
    order_id: str | None = Field(default=None, serialization_alias="orderId")
