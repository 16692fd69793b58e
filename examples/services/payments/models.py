"""The replica of the orders service's orders, and the payments made for them."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field, ValidationInfo, field_validator
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ticketing_common import PaymentCreatedEvent, PaymentRefundedEvent
from ticketing_common.fastapi import Identifier, PlainText, price_cents
from ticketing_common.sqlalchemy import Replica, UtcDateTime


class Base(DeclarativeBase):
    """The payments database."""


class Order(Replica, Base):
    """The orders service's order, as order:created and order:cancelled tell it."""

    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    price: Mapped[float]
    status: Mapped[str] = mapped_column(String(32))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)

    def amount_cents(self) -> int:
        """The price in cents, never less than the order shows (0.1 + 0.2 dollars is 30 cents)."""
        return price_cents(self.price)


class Payment(Base):
    """A charge for an order; an order has at most one, which the unique order_id guarantees."""

    __tablename__ = "payments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: uuid.uuid4().hex)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), unique=True)
    stripe_id: Mapped[str] = mapped_column(String(255))
    refund_id: Mapped[str | None] = mapped_column(String(255), default=None)
    """The gateway's refund, once the charge was given back because the order was cancelled first."""

    def created(self) -> PaymentCreatedEvent:
        """The payment:created event of this (flushed) payment."""
        return PaymentCreatedEvent(id=self.id, order_id=self.order_id, stripe_id=self.stripe_id)

    def refunded(self) -> PaymentRefundedEvent:
        """The payment:refunded event of this payment, once ``refund_id`` is set."""
        if self.refund_id is None:
            raise ValueError(f"payment {self.id} is not refunded")
        return PaymentRefundedEvent(
            id=self.id, order_id=self.order_id, stripe_id=self.stripe_id, refund_id=self.refund_id
        )


class PaymentIn(BaseModel):
    """The body of POST /api/payments."""

    token: PlainText = Field(max_length=255)
    order_id: Identifier = Field(alias="orderId")

    @field_validator("token", "order_id", mode="before")
    @classmethod
    def _given(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError(_REQUIRED[info.field_name or ""])
        return value


_REQUIRED = {"token": "Token must be provided", "order_id": "OrderId must be provided"}


class PaymentOut(BaseModel):
    """The answer of POST /api/payments: the payment's id."""

    id: str
