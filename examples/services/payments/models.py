"""The replica of the orders service's orders, and the payments made for them."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ticketing_common import PaymentCreatedEvent, PaymentRefundedEvent
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
        """The price in cents, rounded as money is (0.1 + 0.2 dollars is 30 cents)."""
        return int((Decimal(str(self.price)) * 100).quantize(Decimal(1)))


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

    token: str = Field(max_length=255)
    order_id: str = Field(alias="orderId", max_length=64)

    @field_validator("token")
    @classmethod
    def _token_given(cls, token: str) -> str:
        if not token.strip():
            raise ValueError("Token must be provided")
        return token

    @field_validator("order_id")
    @classmethod
    def _order_id_given(cls, order_id: str) -> str:
        if not order_id.strip():
            raise ValueError("OrderId must be provided")
        return order_id


class PaymentOut(BaseModel):
    """The answer of POST /api/payments: the payment's id."""

    id: str
