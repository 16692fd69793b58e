"""The subjects events travel on and the order states they carry, as `@sgtickets/common` spells them.

One subject is ours: ``payment:refunded``; the original never gave money back.
"""

from __future__ import annotations

from enum import StrEnum


class Subjects(StrEnum):
    """Every NATS subject an event of the ticketing app is published on."""

    TICKET_CREATED = "ticket:created"
    TICKET_UPDATED = "ticket:updated"
    ORDER_CREATED = "order:created"
    ORDER_CANCELLED = "order:cancelled"
    EXPIRATION_COMPLETE = "expiration:complete"
    PAYMENT_CREATED = "payment:created"
    # Not in @sgtickets/common: the charge of an order that was cancelled first was given back.
    PAYMENT_REFUNDED = "payment:refunded"


class OrderStatus(StrEnum):
    """The life cycle of an order."""

    # The order is created but the ticket it reserves is not yet known to be free.
    CREATED = "created"
    # The ticket was already reserved, the user cancelled, or the order expired before payment.
    CANCELLED = "cancelled"
    # The ticket is reserved for this order.
    AWAITING_PAYMENT = "awaiting:payment"
    # The order is paid.
    COMPLETE = "complete"
