"""The contracts: subjects, statuses and event models as @sgtickets/common@1.0.24 defines them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pydantic
import pytest

from conftest import NOW
from ticketing_common import (
    Event,
    ExpirationCompleteEvent,
    OrderCancelledEvent,
    OrderCancelledTicket,
    OrderCreatedEvent,
    OrderCreatedTicket,
    OrderStatus,
    PaymentCreatedEvent,
    PaymentRefundedEvent,
    Subjects,
    TicketCreatedEvent,
    TicketUpdatedEvent,
)

# What a Node service using @sgtickets/common sends: JSON.stringify(data) of each event's data.
NODE_JSON: dict[type[Event], str] = {
    TicketCreatedEvent: '{"id":"t1","version":0,"title":"concert","price":20,"userId":"u1"}',
    TicketUpdatedEvent: '{"id":"t1","version":1,"title":"concert","price":20.5,"userId":"u1","orderId":"o1"}',
    OrderCreatedEvent: (
        '{"id":"o1","version":0,"status":"created","userId":"u2","expiresAt":"2026-11-23T12:30:15.123Z",'
        '"ticket":{"id":"t1","price":20}}'
    ),
    OrderCancelledEvent: '{"id":"o1","version":1,"ticket":{"id":"t1"}}',
    ExpirationCompleteEvent: '{"orderId":"o1"}',
    PaymentCreatedEvent: '{"id":"p1","orderId":"o1","stripeId":"ch_1"}',
    PaymentRefundedEvent: '{"id":"p1","orderId":"o1","stripeId":"ch_1","refundId":"re_1"}',
}


def test_subjects_are_the_original_strings() -> None:
    """Every subject of the original enum has exactly its string; payment:refunded is the one we added."""
    assert {s.name: s.value for s in Subjects} == {
        "TICKET_CREATED": "ticket:created",
        "TICKET_UPDATED": "ticket:updated",
        "ORDER_CREATED": "order:created",
        "ORDER_CANCELLED": "order:cancelled",
        "EXPIRATION_COMPLETE": "expiration:complete",
        "PAYMENT_CREATED": "payment:created",
        "PAYMENT_REFUNDED": "payment:refunded",
    }
    assert str(Subjects.TICKET_CREATED) == "ticket:created"


def test_order_statuses_are_the_original_strings() -> None:
    """Every order status has exactly the string of the original enum."""
    assert [s.value for s in OrderStatus] == ["created", "cancelled", "awaiting:payment", "complete"]


@pytest.mark.parametrize(
    ("model", "subject"),
    [
        (TicketCreatedEvent, Subjects.TICKET_CREATED),
        (TicketUpdatedEvent, Subjects.TICKET_UPDATED),
        (OrderCreatedEvent, Subjects.ORDER_CREATED),
        (OrderCancelledEvent, Subjects.ORDER_CANCELLED),
        (ExpirationCompleteEvent, Subjects.EXPIRATION_COMPLETE),
        (PaymentCreatedEvent, Subjects.PAYMENT_CREATED),
        (PaymentRefundedEvent, Subjects.PAYMENT_REFUNDED),
    ],
)
def test_each_model_is_bound_to_its_subject(model: type[Event], subject: Subjects) -> None:
    """Each event model names the subject it travels on."""
    assert model.subject is subject


@pytest.mark.parametrize("model", list(NODE_JSON), ids=lambda m: m.__name__)
def test_node_json_parses_and_serialises_to_the_same_keys(model: type[Event]) -> None:
    """What a Node service sends parses, and serialising gives back the same camelCase JSON values."""
    event = model.model_validate_json(NODE_JSON[model])
    assert json.loads(event.model_dump_json()) == json.loads(NODE_JSON[model])


def test_fields_are_snake_case_in_python() -> None:
    """Python code reads snake_case attributes of camelCase wire fields, nested models included."""
    order = OrderCreatedEvent.model_validate_json(NODE_JSON[OrderCreatedEvent])
    assert order == OrderCreatedEvent(
        id="o1",
        version=0,
        status=OrderStatus.CREATED,
        user_id="u2",
        expires_at=NOW,
        ticket=OrderCreatedTicket(id="t1", price=20),
    )
    assert OrderCancelledEvent(id="o1", version=1, ticket=OrderCancelledTicket(id="t1")).ticket.id == "t1"


def test_order_id_of_ticket_updated_is_optional_and_omitted_when_absent() -> None:
    """A ticket without an order has no orderId key, as JSON.stringify writes the original's undefined."""
    released = TicketUpdatedEvent(id="t1", version=2, title="x", price=1, user_id="u1")
    assert released.order_id is None
    assert "orderId" not in json.loads(released.model_dump_json())
    with_null = '{"id":"t","version":2,"title":"x","price":1,"userId":"u","orderId":null}'
    assert TicketUpdatedEvent.model_validate_json(with_null).order_id is None
    assert TicketUpdatedEvent.model_validate_json(
        '{"id":"t","version":2,"title":"x","price":1,"userId":"u"}'
    ) == (TicketUpdatedEvent(id="t", version=2, title="x", price=1, user_id="u"))


def test_expires_at_is_written_as_javascript_to_iso_string() -> None:
    """ExpiresAt is UTC with milliseconds and a Z, exactly as Date.prototype.toISOString() writes it."""
    plus_two = timezone(timedelta(hours=2))
    order = OrderCreatedEvent(
        id="o1",
        version=0,
        status=OrderStatus.CREATED,
        user_id="u",
        expires_at=datetime(2026, 1, 2, 5, 4, 5, 7891, tzinfo=plus_two),
        ticket=OrderCreatedTicket(id="t", price=1),
    )
    assert json.loads(order.model_dump_json())["expiresAt"] == "2026-01-02T03:04:05.007Z"
    assert order.expires_at == datetime(2026, 1, 2, 3, 4, 5, 7000, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw",
    [
        '{"id":"t1","version":"1","title":"c","price":20,"userId":"u"}',
        '{"id":"t1","version":1.5,"title":"c","price":20,"userId":"u"}',
        '{"id":"t1","version":-1,"title":"c","price":20,"userId":"u"}',
        '{"id":1,"version":1,"title":"c","price":20,"userId":"u"}',
        '{"id":"","version":1,"title":"c","price":20,"userId":"u"}',
        '{"id":"t1","version":1,"title":"c","price":"20","userId":"u"}',
        '{"id":"t1","version":1,"title":"c","price":20}',
        '{"id":"t1","version":1,"title":null,"price":20,"userId":"u"}',
        "[]",
    ],
)
@pytest.mark.parametrize("given_as", ["JSON text", "json.loads"])
def test_wrong_types_are_rejected(raw: str, given_as: str) -> None:
    """A string version, a fraction, a negative version, a number id, a missing field: all rejected."""
    with pytest.raises(pydantic.ValidationError):
        validate(TicketCreatedEvent, raw, given_as)


@pytest.mark.parametrize(
    "raw",
    [
        (
            '{"id":"o","version":0,"status":"paid","userId":"u","expiresAt":"2026-01-01T00:00:00.000Z",'
            '"ticket":{"id":"t","price":1}}'
        ),
        (
            '{"id":"o","version":0,"status":"created","userId":"u","expiresAt":"2026-01-01T00:00:00",'
            '"ticket":{"id":"t","price":1}}'
        ),
        '{"id":"o","version":0,"status":"created","userId":"u","expiresAt":"tomorrow","ticket":{"id":"t","price":1}}',
        '{"id":"o","version":0,"status":"created","userId":"u","expiresAt":"2026-01-01T00:00:00Z","ticket":{"id":"t"}}',
    ],
)
@pytest.mark.parametrize("given_as", ["JSON text", "json.loads"])
def test_wrong_order_created_is_rejected(raw: str, given_as: str) -> None:
    """An unknown status, a time without a zone, a non-time, a nested ticket without price: all rejected."""
    with pytest.raises(pydantic.ValidationError):
        validate(OrderCreatedEvent, raw, given_as)


def validate(model: type[Event], raw: str, given_as: str) -> Event:
    if given_as == "JSON text":
        return model.model_validate_json(raw)
    return model.model_validate(json.loads(raw))


@pytest.mark.parametrize(
    ("field", "value"),
    [("version", "0"), ("version", True), ("expiresAt", 1767225600), ("status", 1), ("userId", 5)],
)
def test_the_wire_form_as_python_objects_is_read_and_wrong_types_are_not(field: str, value: object) -> None:
    """Parsed JSON (an ISO time, a status string) validates as the text does; "0", true or a number do not."""
    wire = {
        "id": "o",
        "version": 0,
        "status": "created",
        "userId": "u",
        "expiresAt": "2026-01-01T00:00:00.000Z",
        "ticket": {"id": "t", "price": 1},
    }
    event = OrderCreatedEvent.model_validate(wire)
    assert (event.status, event.expires_at) == (OrderStatus.CREATED, datetime(2026, 1, 1, tzinfo=UTC))
    assert event == OrderCreatedEvent.model_validate_json(json.dumps(wire))
    with pytest.raises(pydantic.ValidationError, match=field):
        OrderCreatedEvent.model_validate({**wire, field: value})


def test_unknown_fields_from_newer_producers_are_ignored() -> None:
    """A tolerant reader: fields this version does not know are dropped, at any depth."""
    event = OrderCancelledEvent.model_validate_json(
        '{"id":"o1","version":1,"reason":"expired","ticket":{"id":"t1","venue":"x"}}'
    )
    assert event == OrderCancelledEvent(id="o1", version=1, ticket=OrderCancelledTicket(id="t1"))
    assert "reason" not in event.model_dump_json()


def test_events_are_immutable() -> None:
    """An event is a fact: assigning to a field fails."""
    event = PaymentCreatedEvent(id="p", order_id="o", stripe_id="s")
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        event.order_id = "other"  # type: ignore[misc]


def test_message_ids_identify_each_event_once() -> None:
    """De-duplication ids: subject, id and version for versioned events; the natural key for the others."""
    assert (
        TicketCreatedEvent.model_validate_json(NODE_JSON[TicketCreatedEvent]).message_id()
        == "ticket:created:t1:0"
    )
    assert (
        OrderCancelledEvent.model_validate_json(NODE_JSON[OrderCancelledEvent]).message_id()
        == "order:cancelled:o1:1"
    )
    assert ExpirationCompleteEvent(order_id="o1").message_id() == "expiration:complete:o1"
    assert PaymentCreatedEvent(id="p1", order_id="o1", stripe_id="s").message_id() == "payment:created:p1"
    refunded = PaymentRefundedEvent.model_validate_json(NODE_JSON[PaymentRefundedEvent])
    assert refunded.message_id() == "payment:refunded:p1"
