"""ensure_stream across versions of a service, and an event of a service's own beside the shared ones."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from conftest import wait_until
from ticketing_common import EVENTS_STREAM, BaseListener, BasePublisher, Event, Subjects, ensure_stream


class ReviewSubjects(StrEnum):
    """The subjects of a reviews service's own events (not in Subjects)."""

    REVIEW_POSTED = "reviews.review:posted"


class ReviewPostedEvent(Event):
    """A review of a ticket was posted: an event only the reviews service and its readers know."""

    subject: ClassVar[Literal[ReviewSubjects.REVIEW_POSTED]] = ReviewSubjects.REVIEW_POSTED

    ticket_id: str
    stars: int


class ReviewPostedPublisher(BasePublisher[ReviewPostedEvent]):
    """Publishes reviews."""


class ReviewPostedListener(BaseListener[ReviewPostedEvent]):
    """Records the reviews it is handed."""

    queue_group_name = "ratings-service"

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.stars: list[int] = []

    async def on_message(self, data: ReviewPostedEvent, msg: Msg) -> None:
        """Record and ack."""
        self.stars.append(data.stars)
        await msg.ack()


async def stream_subjects(js: JetStreamContext) -> list[str]:
    return (await js.stream_info(EVENTS_STREAM)).config.subjects or []


async def test_an_update_keeps_the_subjects_another_version_added(jetstream: JetStreamContext) -> None:
    """A service that lacks a subject (older package, another's event) updating the stream leaves it."""
    await ensure_stream(jetstream, extra_subjects=ReviewSubjects)
    assert ReviewSubjects.REVIEW_POSTED.value in await stream_subjects(jetstream)
    await ensure_stream(jetstream)  # another service, which knows only Subjects
    subjects = await stream_subjects(jetstream)
    assert ReviewSubjects.REVIEW_POSTED.value in subjects
    assert {subject.value for subject in Subjects} <= set(subjects)


async def test_a_service_event_of_its_own_is_published_and_consumed(
    nats_client: Client, jetstream: JetStreamContext
) -> None:
    """Its own StrEnum subject, in the shared stream by extra_subjects: publisher and listener as usual."""
    await ensure_stream(jetstream, extra_subjects=ReviewSubjects)
    listener = ReviewPostedListener(nats_client)
    await listener.listen()
    await ReviewPostedPublisher(nats_client).publish(ReviewPostedEvent(ticket_id="t1", stars=4))
    await wait_until(lambda: listener.stars == [4])
    await listener.close()
    assert listener.durable_name == "ratings-service_reviews_review_posted"
