"""Typed event contracts and JetStream publisher/listener bases for the ticketing microservices."""

from __future__ import annotations

from ticketing_common._connection import NatsWrapper, nats_wrapper
from ticketing_common._deadletter import dead_letter_subject
from ticketing_common._events import (
    Event,
    ExpirationCompleteEvent,
    JsDatetime,
    OrderCancelledEvent,
    OrderCancelledTicket,
    OrderCreatedEvent,
    OrderCreatedTicket,
    PaymentCreatedEvent,
    PaymentRefundedEvent,
    TicketCreatedEvent,
    TicketUpdatedEvent,
    VersionedEvent,
)
from ticketing_common._listener import BaseListener
from ticketing_common._order_lifecycle import OrderAction, next_order_status
from ticketing_common._publisher import BasePublisher
from ticketing_common._signals import run_until_stopped
from ticketing_common._streams import (
    DEAD_LETTERS_STREAM,
    EVENTS_STREAM,
    Streams,
    ensure_stream,
)
from ticketing_common._subjects import OrderStatus, Subjects
from ticketing_common._version import __version__
from ticketing_common.errors import (
    BadRequestError,
    ConfigurationError,
    CustomError,
    DatabaseConnectionError,
    ErrorDetail,
    NotAuthorizedError,
    NotConnectedError,
    NotFoundError,
    NotReadyError,
    OutOfOrder,
    PayloadTooLargeError,
    PublishError,
    PublishManyError,
    RequestValidationError,
    TicketingError,
    TooManyRequestsError,
    VersionConflictError,
)

__all__ = [
    "DEAD_LETTERS_STREAM",
    "EVENTS_STREAM",
    "BadRequestError",
    "BaseListener",
    "BasePublisher",
    "ConfigurationError",
    "CustomError",
    "DatabaseConnectionError",
    "ErrorDetail",
    "Event",
    "ExpirationCompleteEvent",
    "JsDatetime",
    "NatsWrapper",
    "NotAuthorizedError",
    "NotConnectedError",
    "NotFoundError",
    "NotReadyError",
    "OrderAction",
    "OrderCancelledEvent",
    "OrderCancelledTicket",
    "OrderCreatedEvent",
    "OrderCreatedTicket",
    "OrderStatus",
    "OutOfOrder",
    "PayloadTooLargeError",
    "PaymentCreatedEvent",
    "PaymentRefundedEvent",
    "PublishError",
    "PublishManyError",
    "RequestValidationError",
    "Streams",
    "Subjects",
    "TicketCreatedEvent",
    "TicketUpdatedEvent",
    "TicketingError",
    "TooManyRequestsError",
    "VersionConflictError",
    "VersionedEvent",
    "__version__",
    "dead_letter_subject",
    "ensure_stream",
    "nats_wrapper",
    "next_order_status",
    "run_until_stopped",
]
