from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Literal, assert_type

from ticketing_common import (
    BasePublisher,
    Event,
    OrderCreatedEvent,
    OrderStatus,
    Subjects,
    TicketCreatedEvent,
    TicketUpdatedEvent,
)
from ticketing_common.versioning import Decision, decide, should_apply


def events(order: OrderCreatedEvent, ticket: TicketUpdatedEvent) -> None:
    assert_type(TicketCreatedEvent.subject, Literal[Subjects.TICKET_CREATED])
    assert_type(order.expires_at, datetime)
    assert_type(order.status, OrderStatus)
    assert_type(order.ticket.price, float)
    assert_type(order.version, int)
    assert_type(ticket.order_id, str | None)
    assert_type(order.message_id(), str)
    assert_type(OrderCreatedEvent.model_validate_json(b"{}"), OrderCreatedEvent)


def versions(current: int | None) -> None:
    assert_type(decide(current, 1), Decision)
    assert_type(should_apply(current, 1, record="ticket t1"), bool)


class ReviewSubjects(StrEnum):
    REVIEW_POSTED = "reviews.review:posted"


class ReviewPostedEvent(Event):
    subject: ClassVar[Literal[ReviewSubjects.REVIEW_POSTED]] = ReviewSubjects.REVIEW_POSTED

    stars: int


class ReviewPostedPublisher(BasePublisher[ReviewPostedEvent]):
    pass


async def an_event_of_a_services_own(publisher: ReviewPostedPublisher) -> None:
    assert_type(ReviewPostedEvent.subject, Literal[ReviewSubjects.REVIEW_POSTED])
    await publisher.publish(ReviewPostedEvent(stars=5))
