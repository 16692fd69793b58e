"""BasePublisher on a real JetStream: stored before it returns, de-duplicated, retried, refused clearly."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from conftest import ticket
from publishers import TicketCreatedPublisher
from ticketing_common import (
    EVENTS_STREAM,
    BasePublisher,
    OrderCancelledEvent,
    PublishError,
    TicketCreatedEvent,
    ensure_stream,
)
from ticketing_common.testing import NatsServer


async def test_publish_returns_once_the_event_is_stored(jetstream: JetStreamContext) -> None:
    """After publish() returns, the stream holds the event's camelCase JSON on its subject."""
    publisher = TicketCreatedPublisher(jetstream._nc)
    ack = await publisher.publish(ticket(1))
    stored = await jetstream.get_msg(EVENTS_STREAM, ack.seq)
    assert stored.subject == "ticket:created"
    assert json.loads(stored.data or b"") == {
        "id": "t1",
        "version": 0,
        "title": "concert 1",
        "price": 10.5,
        "userId": "u1",
    }
    assert (stored.headers or {})["Nats-Msg-Id"] == "ticket:created:t1:0"


async def test_republishing_an_event_stores_it_once(jetstream: JetStreamContext) -> None:
    """A retried publish of the same event is de-duplicated by the server through its Nats-Msg-Id."""
    publisher = TicketCreatedPublisher(jetstream._nc)
    first = await publisher.publish(ticket(1))
    again = await publisher.publish(ticket(1))
    next_version = await publisher.publish(ticket(1, version=1))
    assert (bool(first.duplicate), again.duplicate, bool(next_version.duplicate)) == (False, True, False)
    assert again.seq == first.seq
    assert (await jetstream.stream_info(EVENTS_STREAM)).state.messages == 2


async def test_an_explicit_message_id_overrides_the_derived_one(jetstream: JetStreamContext) -> None:
    """publish(msg_id=...) de-duplicates on the caller's id instead of the event's."""
    publisher = TicketCreatedPublisher(jetstream._nc)
    first = await publisher.publish(ticket(1), msg_id="request-42")
    second = await publisher.publish(ticket(2), msg_id="request-42")
    assert second.duplicate
    stored = await jetstream.get_msg(EVENTS_STREAM, first.seq)
    assert (stored.headers or {})["Nats-Msg-Id"] == "request-42"


async def test_publishing_another_event_type_is_a_type_error(jetstream: JetStreamContext) -> None:
    """At run time too, a publisher refuses an event of another type (mypy refuses it earlier)."""
    publisher = TicketCreatedPublisher(jetstream._nc)
    wrong = OrderCancelledEvent.model_validate({"id": "o", "version": 0, "ticket": {"id": "t"}})
    with pytest.raises(TypeError, match="publishes TicketCreatedEvent"):
        await publisher.publish(wrong)  # type: ignore[arg-type]


async def test_no_stream_gives_a_clear_publish_error(
    nats_client: Client, jetstream: JetStreamContext
) -> None:
    """With no stream for the subject, publish() raises PublishError naming subject, id and the fix."""
    await jetstream.delete_stream(EVENTS_STREAM)

    class Impatient(TicketCreatedPublisher):
        retry_deadline = 0.3

    with pytest.raises(PublishError, match=r"'ticket:created'.*ensure_stream") as caught:
        await Impatient(nats_client).publish(ticket(1))
    assert caught.value.msg_id == "ticket:created:t1:0"
    assert caught.value.subject == "ticket:created"


async def test_a_refusal_by_the_stream_is_a_publish_error(jetstream: JetStreamContext) -> None:
    """A stream that refuses the message (here: too large) gives PublishError at once, with the reason."""
    info = await jetstream.stream_info(EVENTS_STREAM)
    info.config.max_msg_size = 64
    await jetstream.update_stream(info.config)
    with pytest.raises(PublishError, match="refused"):
        await TicketCreatedPublisher(jetstream._nc).publish(ticket(1))


def test_a_subject_that_disagrees_with_the_event_is_rejected_at_class_definition() -> None:
    """Declaring another subject than the event's raises TypeError when the class is made."""
    with pytest.raises(TypeError, match="declares subject 'order:created'"):

        class Confused(BasePublisher[TicketCreatedEvent]):
            subject = "order:created"  # type: ignore[assignment]


def test_an_unbound_publisher_cannot_be_made() -> None:
    """BasePublisher without an event type argument has nothing to publish."""
    with pytest.raises(TypeError, match="not bound to an event type"):
        BasePublisher(None)  # type: ignore[arg-type]


async def test_publish_rides_out_a_server_restart() -> None:
    """A publish made while the server is down completes, stored once, when the server is back."""
    with NatsServer() as server:
        client = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
        try:
            js = client.jetstream()
            await ensure_stream(js)
            server.stop()
            publishing = asyncio.create_task(TicketCreatedPublisher(client).publish(ticket(7)))
            await asyncio.to_thread(server.start)
            ack = await asyncio.wait_for(publishing, timeout=15)
            assert not ack.duplicate
            assert (await js.stream_info(EVENTS_STREAM)).state.messages == 1
        finally:
            await client.close()
