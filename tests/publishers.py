"""One publisher per event, for the tests that play the service which would publish it."""

from __future__ import annotations

from ticketing_common import (
    BasePublisher,
    ExpirationCompleteEvent,
    OrderCancelledEvent,
    OrderCreatedEvent,
    PaymentCreatedEvent,
    TicketCreatedEvent,
    TicketUpdatedEvent,
)


class TicketCreatedPublisher(BasePublisher[TicketCreatedEvent]):
    """Plays the tickets service."""


class TicketUpdatedPublisher(BasePublisher[TicketUpdatedEvent]):
    """Plays the tickets service."""


class OrderCreatedPublisher(BasePublisher[OrderCreatedEvent]):
    """Plays the orders service."""


class OrderCancelledPublisher(BasePublisher[OrderCancelledEvent]):
    """Plays the orders service."""


class ExpirationCompletePublisher(BasePublisher[ExpirationCompleteEvent]):
    """Plays the expiration service."""


class PaymentCreatedPublisher(BasePublisher[PaymentCreatedEvent]):
    """Plays the payments service."""
