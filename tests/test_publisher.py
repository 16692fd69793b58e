"""BasePublisher on a real JetStream: stored before it returns, de-duplicated, retried, refused clearly."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import nats
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck

from conftest import ticket
from publishers import TicketCreatedPublisher
from ticketing_common import (
    EVENTS_STREAM,
    BasePublisher,
    OrderCancelledEvent,
    PublishError,
    PublishManyError,
    TicketCreatedEvent,
    ensure_stream,
)
from ticketing_common._jetstream import ride_out
from ticketing_common.testing import NatsServer

T = TypeVar("T")


class Impatient(TicketCreatedPublisher):
    """Gives up after 0.3 s of transient failures, for the tests of what a publish does then."""

    retry_deadline = 0.3


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


async def test_a_message_id_still_in_process_is_asked_again_not_refused() -> None:
    """JetStream's 10158 (an earlier attempt still being stored) is retried until the PubAck; 10071 is not.

    A real server answers 10158 only while a stream leader is proposing the first attempt (seen once in
    the kill -9 fault run), which no test can time; the answers are scripted here.
    """
    in_process = nats.js.errors.APIError(
        code=409, err_code=10158, description="duplicate message id is in process"
    )
    stored_first = PubAck(stream="E", seq=7, duplicate=True)
    answers: list[Exception | PubAck] = [in_process, in_process, stored_first]

    async def publish() -> PubAck:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    ack = await ride_out(publish, deadline=5, what="publish")
    assert (ack.seq, ack.duplicate, answers) == (7, True, [])

    async def refused() -> PubAck:
        raise nats.js.errors.APIError(code=400, err_code=10071, description="wrong last sequence: 5")

    with pytest.raises(nats.js.errors.APIError, match="wrong last sequence"):
        await ride_out(refused, deadline=5, what="publish")


def test_a_subject_that_disagrees_with_the_event_is_rejected_at_class_definition() -> None:
    """Declaring another subject than the event's raises TypeError when the class is made."""
    with pytest.raises(TypeError, match="declares subject 'order:created'"):

        class Confused(BasePublisher[TicketCreatedEvent]):
            subject = "order:created"  # type: ignore[assignment]


def test_an_unbound_publisher_cannot_be_made() -> None:
    """BasePublisher without an event type argument has nothing to publish."""
    with pytest.raises(TypeError, match="not bound to an event type"):
        BasePublisher(None)  # type: ignore[arg-type]


async def across_a_restart(
    publish: Callable[[Client], Coroutine[Any, Any, T]], *, timeout: float
) -> tuple[T, int]:
    """Start ``publish`` while the server is down, start the server; its result, and the events stored."""
    with NatsServer() as server:
        client = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
        try:
            js = client.jetstream()
            await ensure_stream(js)
            server.stop()
            publishing = asyncio.create_task(publish(client))
            await asyncio.to_thread(server.start)
            result = await asyncio.wait_for(publishing, timeout=timeout)
            return result, (await js.stream_info(EVENTS_STREAM)).state.messages
        finally:
            await client.close()


async def test_publish_rides_out_a_server_restart() -> None:
    """A publish made while the server is down completes, stored once, when the server is back."""
    ack, stored = await across_a_restart(
        lambda client: TicketCreatedPublisher(client).publish(ticket(7)), timeout=15
    )
    assert not ack.duplicate
    assert stored == 1


async def test_publish_many_stores_in_order_with_the_ids_publish_would_give(
    jetstream: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    """500 events through a window of 64: PubAcks in order, the ids publish gives; duplicates logged."""
    publisher = TicketCreatedPublisher(jetstream._nc)
    events = [ticket(number) for number in range(1, 501)]
    acks = await publisher.publish_many(events, window=64)
    assert [ack.seq for ack in acks] == list(range(acks[0].seq, acks[0].seq + 500))
    for ack, event in zip(acks[::50], events[::50], strict=True):
        stored = await jetstream.get_msg(EVENTS_STREAM, ack.seq)
        assert (stored.headers or {})["Nats-Msg-Id"] == event.message_id()
        assert TicketCreatedEvent.model_validate_json(stored.data or b"") == event
    with caplog.at_level(logging.INFO, logger="ticketing_common.publisher"):
        again = await publisher.publish_many(events[:10])
    assert [ack.duplicate for ack in again] == [True] * 10
    duplicates = [record for record in caplog.records if record.getMessage().startswith("duplicate")]
    logged = [getattr(record, "msg_id", None) for record in duplicates]
    assert logged == [event.message_id() for event in events[:10]]
    assert (await jetstream.stream_info(EVENTS_STREAM)).state.messages == 500


async def test_publish_many_says_which_events_were_stored(jetstream: JetStreamContext) -> None:
    """A refused event among good ones: PublishManyError names it; the others are stored, once."""
    info = await jetstream.stream_info(EVENTS_STREAM)
    info.config.max_msg_size = 256
    await jetstream.update_stream(info.config)
    too_large = TicketCreatedEvent(id="big", version=0, title="x" * 200, price=1, user_id="u1")
    events = [ticket(1), too_large, ticket(3)]
    with pytest.raises(PublishManyError, match="1 of 3 events not stored") as caught:
        await TicketCreatedPublisher(jetstream._nc).publish_many(events)
    error = caught.value
    assert error.stored == [0, 2]
    assert list(error.errors) == [1]
    assert (error.subject, error.msg_id) == ("ticket:created", "ticket:created:big:0")
    assert (await jetstream.stream_info(EVENTS_STREAM)).state.messages == 2


async def test_publish_many_gives_up_at_the_deadline_and_says_nothing_was_stored(
    nats_client: Client, jetstream: JetStreamContext
) -> None:
    """With no stream, every event fails transiently, is retried until the deadline, and is reported."""
    await jetstream.delete_stream(EVENTS_STREAM)
    with pytest.raises(PublishManyError) as caught:
        await Impatient(nats_client).publish_many([ticket(1), ticket(2)])
    assert caught.value.stored == []
    assert sorted(caught.value.errors) == [0, 1]


async def test_publish_many_checks_every_type_before_publishing(jetstream: JetStreamContext) -> None:
    """One event of another type: TypeError, and none of the list is stored."""
    other = OrderCancelledEvent.model_validate_json('{"id": "o1", "version": 1, "ticket": {"id": "t1"}}')
    with pytest.raises(TypeError):
        await TicketCreatedPublisher(jetstream._nc).publish_many([ticket(1), other])  # type: ignore[list-item]
    assert (await jetstream.stream_info(EVENTS_STREAM)).state.messages == 0


async def test_publish_many_rides_out_a_server_restart() -> None:
    """Events published while the server is down are stored, once each, when it is back."""
    events = [ticket(number) for number in range(1, 21)]
    acks, stored = await across_a_restart(
        lambda client: TicketCreatedPublisher(client).publish_many(events), timeout=30
    )
    assert len(acks) == 20
    assert stored == 20
