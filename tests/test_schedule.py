"""BasePublisher.schedule: events that JetStream itself publishes later, durably."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from ticketing_common import EVENTS_STREAM, BasePublisher, ExpirationCompleteEvent, ensure_stream
from ticketing_common.testing import NatsServer

WAIT = 10.0


class ExpirationCompletePublisher(BasePublisher[ExpirationCompleteEvent]):
    """Schedules expirations."""


async def pending_schedules(js: JetStreamContext) -> dict[str, int]:
    """The schedules waiting in the stream, by subject."""
    info = await js.stream_info(EVENTS_STREAM, subjects_filter="schedule.>")
    return dict(info.state.subjects or {})


async def fired(js: JetStreamContext, count: int) -> list[tuple[datetime, str]]:
    """Wait for ``count`` expiration:complete events; return when each arrived and its order id."""
    arrivals: list[tuple[datetime, str]] = []
    done = asyncio.Event()

    async def arrived(msg: Msg) -> None:
        arrivals.append((datetime.now(UTC), ExpirationCompleteEvent.model_validate_json(msg.data).order_id))
        await msg.ack()
        if len(arrivals) >= count:
            done.set()

    subscription = await js.subscribe("expiration:complete", cb=arrived, manual_ack=True)
    try:
        async with asyncio.timeout(WAIT):
            await done.wait()
    finally:
        await subscription.unsubscribe()
    return arrivals


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def test_a_scheduled_event_is_published_at_its_time_not_before(
    nats_client: Client, jetstream: JetStreamContext
) -> None:
    """The event arrives once its time has come, and its schedule is then gone."""
    at = soon(0.5)
    await ExpirationCompletePublisher(nats_client).schedule(
        ExpirationCompleteEvent(order_id="o1"), at=at, key="o1"
    )
    assert await pending_schedules(jetstream) == {"schedule.expiration:complete.o1": 1}
    [(arrival, order_id)] = await fired(jetstream, 1)
    assert order_id == "o1"
    assert arrival >= at - timedelta(milliseconds=50)  # the server's clock resolution, not a delay bound
    assert await pending_schedules(jetstream) == {}


async def test_a_past_time_fires_at_once(nats_client: Client, jetstream: JetStreamContext) -> None:
    """A time already gone is published straight away, not refused."""
    publisher = ExpirationCompletePublisher(nats_client)
    await publisher.schedule(ExpirationCompleteEvent(order_id="o1"), at=soon(-3600), key="o1")
    assert [order for _, order in await fired(jetstream, 1)] == ["o1"]


async def test_the_same_key_replaces_and_a_repeat_is_stored_once(
    nats_client: Client, jetstream: JetStreamContext
) -> None:
    """One schedule per key: the same call again is a duplicate, a new time replaces the old one."""
    publisher = ExpirationCompletePublisher(nats_client)
    event = ExpirationCompleteEvent(order_id="o1")
    later = soon(3600)
    assert (await publisher.schedule(event, at=later, key="o1")).duplicate is None
    assert (await publisher.schedule(event, at=later, key="o1")).duplicate is True
    await publisher.schedule(event, at=soon(0.2), key="o1")
    assert await pending_schedules(jetstream) == {"schedule.expiration:complete.o1": 1}
    assert [order for _, order in await fired(jetstream, 1)] == ["o1"]
    assert await pending_schedules(jetstream) == {}
    info = await jetstream.stream_info(EVENTS_STREAM, subjects_filter="expiration:complete")
    assert info.state.subjects == {"expiration:complete": 1}


async def test_a_cancelled_schedule_never_fires(nats_client: Client, jetstream: JetStreamContext) -> None:
    """Cancelling removes the schedule: a later one fires, the cancelled earlier one did not."""
    publisher = ExpirationCompletePublisher(nats_client)
    await publisher.schedule(ExpirationCompleteEvent(order_id="cancelled"), at=soon(0.3), key="cancelled")
    await publisher.schedule(ExpirationCompleteEvent(order_id="kept"), at=soon(0.6), key="kept")
    await publisher.cancel_schedule("cancelled")
    await publisher.cancel_schedule("never-scheduled")
    # The kept schedule is due after the cancelled one: had that fired, it would be in the stream first.
    assert [order for _, order in await fired(jetstream, 1)] == ["kept"]
    info = await jetstream.stream_info(EVENTS_STREAM, subjects_filter="expiration:complete")
    assert info.state.subjects == {"expiration:complete": 1}


@pytest.mark.parametrize("key", ["a.b", "a b", "*", ">", ""])
async def test_a_key_must_be_one_subject_token(nats_client: Client, key: str) -> None:
    """A key that would change the subject's shape is refused before anything is sent."""
    with pytest.raises(ValueError, match="one NATS subject token"):
        await ExpirationCompletePublisher(nats_client).schedule(
            ExpirationCompleteEvent(order_id="o1"), at=soon(1), key=key
        )


async def test_a_naive_time_is_refused(nats_client: Client) -> None:
    """A datetime without a zone is ambiguous: ValueError, not a guess."""
    with pytest.raises(ValueError, match="no time zone"):
        await ExpirationCompletePublisher(nats_client).schedule(
            ExpirationCompleteEvent(order_id="o1"),
            at=datetime(2030, 1, 1),  # noqa: DTZ001 - a naive datetime is the point
            key="o1",
        )


async def test_a_schedule_survives_a_server_restart() -> None:
    """The schedule is stored in the stream: a server stopped and started again before it is due fires it."""
    with NatsServer() as server:
        client = await nats.connect(server.url)
        await ensure_stream(client.jetstream())
        at = soon(1.5)
        await ExpirationCompletePublisher(client).schedule(
            ExpirationCompleteEvent(order_id="o1"), at=at, key="o1"
        )
        await client.close()
        server.restart()  # returns once the restarted server is ready
        client = await nats.connect(server.url)
        try:
            js = client.jetstream()
            [(arrival, order_id)] = await fired(js, 1)
            assert order_id == "o1"
            assert arrival >= at - timedelta(milliseconds=50)
            info = await js.stream_info(EVENTS_STREAM, subjects_filter="expiration:complete")
            assert info.state.subjects == {"expiration:complete": 1}
        finally:
            await client.close()
