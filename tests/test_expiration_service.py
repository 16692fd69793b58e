"""The expiration reference service: expiration:complete at expiresAt, durably, exactly once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from conftest import consumer_is_settled, eventually
from expiration.service import expiration_service
from publishers import OrderCancelledPublisher, OrderCreatedPublisher, PaymentCreatedPublisher
from test_schedule import expirations, fired, pending, unique
from ticketing_common import (
    NatsWrapper,
    OrderCancelledEvent,
    OrderCancelledTicket,
    OrderCreatedEvent,
    OrderCreatedTicket,
    OrderStatus,
    PaymentCreatedEvent,
)
from ticketing_common.testing import NatsServer

CONSUMER = "expiration-service_order_created"


def created(order_id: str, expires_in: float) -> OrderCreatedEvent:
    return OrderCreatedEvent(
        id=order_id,
        version=0,
        status=OrderStatus.CREATED,
        user_id="buyer",
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
        ticket=OrderCreatedTicket(id="t1", price=10),
    )


@pytest.fixture
async def service(nats_server: NatsServer, jetstream: JetStreamContext) -> AsyncIterator[NatsWrapper]:
    async with expiration_service(nats_server.url) as running:
        yield running.nats


async def test_an_order_expires_at_its_expires_at(
    service: NatsWrapper, nats_client: Client, jetstream: JetStreamContext
) -> None:
    """expiration:complete {orderId} comes once expiresAt has passed, and order:created is acked."""
    event = created(unique("o"), expires_in=0.5)
    await OrderCreatedPublisher(nats_client).publish(event)
    [(arrival, _)] = await fired(jetstream, event.id)
    assert arrival >= event.expires_at - timedelta(milliseconds=50)
    await eventually(lambda: consumer_is_settled(jetstream, CONSUMER))


async def test_an_order_already_past_expires_at_once(
    service: NatsWrapper, nats_client: Client, jetstream: JetStreamContext
) -> None:
    """An expiresAt in the past (the service was down, the order is old) fires straight away."""
    event = created(unique("o"), expires_in=-600)
    await OrderCreatedPublisher(nats_client).publish(event)
    assert [order for _, order in await fired(jetstream, event.id)] == [event.id]


async def test_a_redelivered_order_expires_once(
    service: NatsWrapper, nats_client: Client, jetstream: JetStreamContext
) -> None:
    """The same order:created delivered twice (two message ids) schedules one expiration."""
    publisher = OrderCreatedPublisher(nats_client)
    event = created(unique("o"), expires_in=0.5)
    await publisher.publish(event, msg_id="first delivery")
    await publisher.publish(event, msg_id="second delivery")
    await eventually(lambda: consumer_is_settled(jetstream, CONSUMER))
    await fired(jetstream, event.id)
    assert await pending(jetstream, event.id) == {}
    assert await expirations(jetstream, event.id) == 1


async def cancel(client: Client, order_id: str) -> str:
    """Play the orders service cancelling the order; return the consumer that hears it."""
    event = OrderCancelledEvent(id=order_id, version=1, ticket=OrderCancelledTicket(id="t1"))
    await OrderCancelledPublisher(client).publish(event)
    return "expiration-service_order_cancelled"


async def pay(client: Client, order_id: str) -> str:
    """Play the payments service charging the order; return the consumer that hears it."""
    event = PaymentCreatedEvent(id=unique("payment"), order_id=order_id, stripe_id="ch_1")
    await PaymentCreatedPublisher(client).publish(event)
    return "expiration-service_payment_created"


@pytest.mark.parametrize("withdraw", [cancel, pay], ids=["order:cancelled", "payment:created"])
async def test_a_cancelled_or_paid_order_does_not_expire(
    service: NatsWrapper,
    nats_client: Client,
    jetstream: JetStreamContext,
    withdraw: Callable[[Client, str], Awaitable[str]],
) -> None:
    """order:cancelled or payment:created withdraws the expiration; an order due later expires, alone."""
    # 1.5 s leaves the withdrawal time to arrive first even on a loaded machine.
    withdrawn, kept = created(unique("withdrawn"), expires_in=1.5), created(unique("kept"), expires_in=2)
    await OrderCreatedPublisher(nats_client).publish(withdrawn)
    await OrderCreatedPublisher(nats_client).publish(kept)
    await eventually(lambda: consumer_is_settled(jetstream, CONSUMER))
    consumer = await withdraw(nats_client, withdrawn.id)
    await eventually(lambda: consumer_is_settled(jetstream, consumer))
    assert [order for _, order in await fired(jetstream, withdrawn.id, kept.id)] == [kept.id]
    assert await expirations(jetstream, withdrawn.id) == 0


async def test_an_expiration_survives_a_restart_of_the_service(
    nats_server: NatsServer, nats_client: Client, jetstream: JetStreamContext
) -> None:
    """Scheduled, service stopped, due while it is down, service started again: one expiration."""
    event = created(unique("o"), expires_in=2)  # time to start the service and store the schedule
    async with expiration_service(nats_server.url):
        await OrderCreatedPublisher(nats_client).publish(event)
        await eventually(lambda: consumer_is_settled(jetstream, CONSUMER))
    assert await pending(jetstream, event.id) == {event.id: 1}
    await fired(jetstream, event.id)  # while the service is down
    async with expiration_service(nats_server.url):
        await eventually(lambda: consumer_is_settled(jetstream, CONSUMER))
    assert await pending(jetstream, event.id) == {}
    assert await expirations(jetstream, event.id) == 1


async def test_an_expiration_survives_a_restart_of_nats_server() -> None:
    """The service keeps running while its server restarts; the order expires once, on time."""
    with NatsServer() as server:
        async with expiration_service(server.url):
            client = await nats.connect(server.url)
            event = created(unique("o"), expires_in=3)  # a restart takes well under a second
            await OrderCreatedPublisher(client).publish(event)
            await eventually(lambda: consumer_is_settled(client.jetstream(), CONSUMER))
            await client.close()
            server.restart()
            client = await nats.connect(server.url)
            try:
                js = client.jetstream()
                assert await pending(js, event.id) == {event.id: 1}
                [(arrival, _)] = await fired(js, event.id)
                assert arrival >= event.expires_at - timedelta(milliseconds=50)
                assert await expirations(js, event.id) == 1
            finally:
                await client.close()
