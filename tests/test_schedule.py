"""BasePublisher.schedule: events that JetStream itself publishes later, durably.

Every test uses order ids of its own (``unique``): the streams are re-created for each test, and an
event of a previous test that the server publishes late must not pass for this test's.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from publishers import ExpirationCompletePublisher
from services import published
from ticketing_common import EVENTS_STREAM, ExpirationCompleteEvent, ensure_stream
from ticketing_common.testing import NatsServer

WAIT = 10.0


def unique(name: str) -> str:
    """An order id, and schedule key, that no other test uses."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def pending(js: JetStreamContext, *keys: str) -> dict[str, int]:
    """The schedules waiting in the stream for these keys, by key."""
    info = await js.stream_info(EVENTS_STREAM, subjects_filter="schedule.>")
    waiting = {subject.rsplit(".", 1)[-1]: count for subject, count in (info.state.subjects or {}).items()}
    return {key: waiting[key] for key in keys if key in waiting}


async def expirations(js: JetStreamContext, order_id: str) -> int:
    """How many expiration:complete events for this order the stream holds."""
    return sum(event["orderId"] == order_id for event in await published(js, "expiration:complete"))


async def fired(js: JetStreamContext, *order_ids: str, count: int = 1) -> list[tuple[datetime, str]]:
    """Wait for ``count`` expiration:complete events of these orders; return when each came and its order."""
    arrivals: list[tuple[datetime, str]] = []
    done = asyncio.Event()

    async def arrived(msg: Msg) -> None:
        order_id = ExpirationCompleteEvent.model_validate_json(msg.data).order_id
        if order_id in order_ids:
            arrivals.append((datetime.now(UTC), order_id))
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
    order = unique("o")
    at = soon(0.5)
    await ExpirationCompletePublisher(nats_client).schedule(
        ExpirationCompleteEvent(order_id=order), at=at, key=order
    )
    assert await pending(jetstream, order) == {order: 1}
    [(arrival, _)] = await fired(jetstream, order)
    assert arrival >= at - timedelta(milliseconds=50)  # the server's clock resolution, not a delay bound
    assert await pending(jetstream, order) == {}


async def test_a_past_time_fires_at_once(nats_client: Client, jetstream: JetStreamContext) -> None:
    """A time already gone is published straight away, not refused."""
    order = unique("o")
    publisher = ExpirationCompletePublisher(nats_client)
    await publisher.schedule(ExpirationCompleteEvent(order_id=order), at=soon(-3600), key=order)
    assert [arrived for _, arrived in await fired(jetstream, order)] == [order]


async def test_the_same_key_replaces_and_a_repeat_is_stored_once(
    nats_client: Client, jetstream: JetStreamContext
) -> None:
    """One schedule per key: the same call again is a duplicate, a new time replaces the old one."""
    order = unique("o")
    publisher = ExpirationCompletePublisher(nats_client)
    event = ExpirationCompleteEvent(order_id=order)
    later = soon(3600)
    assert (await publisher.schedule(event, at=later, key=order)).duplicate is None
    assert (await publisher.schedule(event, at=later, key=order)).duplicate is True
    await publisher.schedule(event, at=soon(0.2), key=order)
    assert await pending(jetstream, order) == {order: 1}
    await fired(jetstream, order)
    assert await pending(jetstream, order) == {}
    assert await expirations(jetstream, order) == 1


async def test_a_cancelled_schedule_never_fires(nats_client: Client, jetstream: JetStreamContext) -> None:
    """Cancelling removes the schedule: a later one fires, the cancelled earlier one did not."""
    cancelled, kept = unique("cancelled"), unique("kept")
    publisher = ExpirationCompletePublisher(nats_client)
    await publisher.schedule(ExpirationCompleteEvent(order_id=cancelled), at=soon(1), key=cancelled)
    await publisher.schedule(ExpirationCompleteEvent(order_id=kept), at=soon(1.4), key=kept)
    await publisher.cancel_schedule(cancelled)
    await publisher.cancel_schedule(unique("never-scheduled"))
    # The kept schedule is due after the cancelled one: had that fired, it would have come first.
    assert [order for _, order in await fired(jetstream, cancelled, kept)] == [kept]
    assert await expirations(jetstream, cancelled) == 0


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
    order = unique("o")
    with NatsServer() as server:
        client = await nats.connect(server.url)
        await ensure_stream(client.jetstream())
        at = soon(3)  # a restart takes well under a second
        await ExpirationCompletePublisher(client).schedule(
            ExpirationCompleteEvent(order_id=order), at=at, key=order
        )
        await client.close()
        server.restart()  # returns once the restarted server is ready
        client = await nats.connect(server.url)
        try:
            js = client.jetstream()
            assert await pending(js, order) == {order: 1}
            [(arrival, _)] = await fired(js, order)
            assert arrival >= at - timedelta(milliseconds=50)
            assert await expirations(js, order) == 1
        finally:
            await client.close()
