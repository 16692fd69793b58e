"""The order's state machine: created goes to complete or cancelled, and nothing leaves either."""

from __future__ import annotations

import pytest

from ticketing_common import OrderAction, OrderStatus, next_order_status

OPEN = [OrderStatus.CREATED, OrderStatus.AWAITING_PAYMENT]
FINAL = [OrderStatus.COMPLETE, OrderStatus.CANCELLED]


@pytest.mark.parametrize("status", OPEN)
@pytest.mark.parametrize(
    ("action", "after"),
    [
        (OrderAction.PAY, OrderStatus.COMPLETE),
        (OrderAction.CANCEL, OrderStatus.CANCELLED),
        (OrderAction.EXPIRE, OrderStatus.CANCELLED),
    ],
)
def test_an_open_order_is_paid_or_cancelled(
    status: OrderStatus, action: OrderAction, after: OrderStatus
) -> None:
    """Paying completes an open order; its user or its expiration cancels it."""
    assert next_order_status(status, action) is after


@pytest.mark.parametrize("status", FINAL)
@pytest.mark.parametrize("action", list(OrderAction))
def test_nothing_leaves_a_final_status(status: OrderStatus, action: OrderAction) -> None:
    """A complete order is never cancelled, a cancelled one never completed: the first to apply wins."""
    assert next_order_status(status, action) is status


def test_the_status_may_come_from_the_database_as_text() -> None:
    """A stored status string is read as its OrderStatus; anything else is refused."""
    assert next_order_status("created", OrderAction.PAY) is OrderStatus.COMPLETE
    with pytest.raises(ValueError, match="'paid' is not a valid OrderStatus"):
        next_order_status("paid", OrderAction.PAY)
