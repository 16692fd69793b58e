"""Find-by-event and the order's state machine, as a service's listener uses them."""

from __future__ import annotations

from typing import assert_type

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ticketing_common import OrderAction, OrderCancelledEvent, OrderStatus, next_order_status
from ticketing_common.sqlalchemy import Replica


class Base(DeclarativeBase):
    pass


class Order(Replica, Base):
    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(primary_key=True)
    status: Mapped[str]


async def on_cancelled(session: AsyncSession, event: OrderCancelledEvent) -> None:
    order = await Order.apply(session, event, lock=True, status=OrderStatus.CANCELLED)
    assert_type(order, Order | None)
    if order is not None:
        assert_type(next_order_status(order.status, OrderAction.PAY), OrderStatus)
