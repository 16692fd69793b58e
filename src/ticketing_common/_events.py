"""The event contracts: one immutable pydantic model per subject, camelCase on the wire.

Each model *is* the ``data`` of the original ``{subject, data}`` event interfaces and names its
subject in a class variable, so a publisher or listener bound to a model knows where it travels.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    Field,
    PlainSerializer,
    TypeAdapter,
)
from pydantic.alias_generators import to_camel

from ticketing_common._subjects import OrderStatus, Subjects

__all__ = [
    "Event",
    "ExpirationCompleteEvent",
    "JsDatetime",
    "OrderCancelledEvent",
    "OrderCancelledTicket",
    "OrderCreatedEvent",
    "OrderCreatedTicket",
    "PaymentCreatedEvent",
    "PaymentRefundedEvent",
    "TicketCreatedEvent",
    "TicketUpdatedEvent",
    "VersionedEvent",
]


def _to_js_precision(value: datetime) -> datetime:
    # A JavaScript Date holds milliseconds in UTC: keeping only that makes a Python event equal to
    # itself after a round trip through a Node service.
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _to_iso_string(value: datetime) -> str:
    # Byte for byte what Date.prototype.toISOString() writes: 2024-01-31T12:00:00.000Z.
    # Formatted by hand: strftime("%Y") does not pad years below 1000 on every platform.
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond // 1000:03d}Z"
    )


def _text_as_on_the_wire(adapter: TypeAdapter[object]) -> BeforeValidator:
    """Read a string given as a Python object as the JSON text it is, with the same strict rules.

    Strict mode takes only a datetime or an enum member from Python objects, so the wire's own form as
    ``json.loads`` or ``model_dump(mode="json")`` gives it (an ISO string, a status string) would be refused.
    Only strings for these types are read so: "20" stays no version, and ``true`` no number.
    """

    def parse(value: object) -> object:
        # JSON input too: past a before-validator, the JSON string is a Python one to the strict type.
        if isinstance(value, str):
            return adapter.validate_strings(value, strict=True)
        return value

    return BeforeValidator(parse)


JsDatetime = Annotated[
    AwareDatetime,
    _text_as_on_the_wire(TypeAdapter(AwareDatetime)),
    AfterValidator(_to_js_precision),
    PlainSerializer(_to_iso_string, return_type=str, when_used="json"),
]
"""An aware datetime that travels as JavaScript's ``Date.toISOString()`` writes it (UTC, ms, ``Z``)."""

_Id = Annotated[str, Field(min_length=1)]
_Version = Annotated[int, Field(ge=0)]
_Price = Annotated[float, Field(allow_inf_nan=False)]
_Status = Annotated[OrderStatus, _text_as_on_the_wire(TypeAdapter(OrderStatus))]


class _WireModel(
    BaseModel,
    alias_generator=to_camel,
    validate_by_alias=True,
    validate_by_name=True,
    serialize_by_alias=True,
    # Events are facts: nobody may change one after it is made.
    frozen=True,
    # Tolerant reader: a newer producer may add fields that this version does not know yet.
    extra="ignore",
    # A contract shared with Node services: "5" is not a version and 1.5 is not an id.
    strict=True,
):
    # The configuration is given as class keywords, not model_config, so that type checkers see it.
    pass


class Event(_WireModel):
    """Base of every event: the data of one message, bound to one subject.

    The shared events' subjects are ``Subjects``; a service's own event names one of its own ``StrEnum``.
    """

    subject: ClassVar[StrEnum]

    def message_id(self) -> str | None:
        """Return the JetStream de-duplication id of this event, or None when it has no natural one."""
        return None


class VersionedEvent(Event):
    """An event about a record replicated between services, ordered by its version."""

    id: _Id
    version: _Version

    def message_id(self) -> str:
        """Return ``subject:id:version``: each version of a record is published once."""
        return f"{self.subject}:{self.id}:{self.version}"


class TicketCreatedEvent(VersionedEvent):
    """A ticket was put on sale."""

    subject: ClassVar[Literal[Subjects.TICKET_CREATED]] = Subjects.TICKET_CREATED

    title: str
    price: _Price
    user_id: _Id


class TicketUpdatedEvent(VersionedEvent):
    """A ticket changed: its title or price, or the order that reserves it."""

    subject: ClassVar[Literal[Subjects.TICKET_UPDATED]] = Subjects.TICKET_UPDATED

    title: str
    price: _Price
    user_id: _Id
    # Omitted when absent, as JSON.stringify omits the original's undefined orderId.
    order_id: _Id | None = Field(default=None, exclude_if=lambda value: value is None)


class OrderCreatedTicket(_WireModel):
    """The ticket an order reserves, as order:created carries it."""

    id: _Id
    price: _Price


class OrderCreatedEvent(VersionedEvent):
    """An order reserved a ticket until ``expires_at``."""

    subject: ClassVar[Literal[Subjects.ORDER_CREATED]] = Subjects.ORDER_CREATED

    status: _Status
    user_id: _Id
    expires_at: JsDatetime
    ticket: OrderCreatedTicket


class OrderCancelledTicket(_WireModel):
    """The ticket a cancelled order releases, as order:cancelled carries it."""

    id: _Id


class OrderCancelledEvent(VersionedEvent):
    """An order was cancelled: by its user, or because it expired."""

    subject: ClassVar[Literal[Subjects.ORDER_CANCELLED]] = Subjects.ORDER_CANCELLED

    ticket: OrderCancelledTicket


class ExpirationCompleteEvent(Event):
    """The time to pay for an order ran out."""

    subject: ClassVar[Literal[Subjects.EXPIRATION_COMPLETE]] = Subjects.EXPIRATION_COMPLETE

    order_id: _Id

    def message_id(self) -> str:
        """Return ``subject:orderId``: an order expires once."""
        return f"{self.subject}:{self.order_id}"


class PaymentCreatedEvent(Event):
    """An order was paid."""

    subject: ClassVar[Literal[Subjects.PAYMENT_CREATED]] = Subjects.PAYMENT_CREATED

    id: _Id
    order_id: _Id
    stripe_id: _Id

    def message_id(self) -> str:
        """Return ``subject:id``: a payment is announced once."""
        return f"{self.subject}:{self.id}"


class PaymentRefundedEvent(Event):
    """An order's charge was given back in full: the order was cancelled before its payment counted."""

    subject: ClassVar[Literal[Subjects.PAYMENT_REFUNDED]] = Subjects.PAYMENT_REFUNDED

    id: _Id
    """The payment's id, as payment:created gave it."""
    order_id: _Id
    stripe_id: _Id
    """The gateway's id of the charge given back."""
    refund_id: _Id
    """The gateway's id of the refund."""

    def message_id(self) -> str:
        """Return ``subject:id``: a payment is refunded once."""
        return f"{self.subject}:{self.id}"
