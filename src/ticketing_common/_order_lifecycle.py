"""The order's life cycle: what each thing that can happen to an order does to its status.

The orders service is the only authority on an order's status; every other service learns it from
order:created and order:cancelled. The machine::

    created ──pay──────────> complete      (payment:created)
       │
       ├──cancel──> cancelled              (DELETE /api/orders/:id)
       └──expire──> cancelled              (expiration:complete)

``complete`` and ``cancelled`` are final: nothing moves an order out of them. So when a cancellation
and a payment race, the first one the orders service applies wins, and the other changes nothing: a
payment that lost is refunded by the payments service, a cancellation that lost is refused with a 400.
``awaiting:payment`` (the original's, set by no service) behaves as ``created``.
"""

from __future__ import annotations

from enum import StrEnum

from ticketing_common._subjects import OrderStatus

__all__ = ["OrderAction", "next_order_status"]


class OrderAction(StrEnum):
    """What can happen to an order."""

    PAY = "pay"
    """payment:created: the order's charge went through."""
    CANCEL = "cancel"
    """Its user cancelled it."""
    EXPIRE = "expire"
    """expiration:complete: the time to pay ran out."""


_OPEN = (OrderStatus.CREATED, OrderStatus.AWAITING_PAYMENT)
_NEXT = {
    **{(status, OrderAction.PAY): OrderStatus.COMPLETE for status in _OPEN},
    **{(status, OrderAction.CANCEL): OrderStatus.CANCELLED for status in _OPEN},
    **{(status, OrderAction.EXPIRE): OrderStatus.CANCELLED for status in _OPEN},
}


def next_order_status(status: OrderStatus | str, action: OrderAction) -> OrderStatus:
    """The status of an order in ``status`` after ``action``; the same status when it changes nothing.

    Raises:
        ValueError: ``status`` is not an order status.
    """
    current = OrderStatus(status)
    return _NEXT.get((current, action), current)
