"""The order's state machine takes an OrderAction, not its string."""

from __future__ import annotations

from ticketing_common import OrderAction, OrderStatus, next_order_status

next_order_status(OrderStatus.CREATED, OrderAction.PAY)
next_order_status(OrderStatus.CREATED, "pay")  # expect: arg-type
