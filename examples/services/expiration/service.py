"""Make expiration:complete happen at each order's ``expiresAt``, durably, with JetStream's message schedules.

The original kept a Bull job per order in Redis. Here a schedule is a message of the events stream
(``schedule.expiration:complete.<orderId>``) that nats-server itself turns into expiration:complete at
``expiresAt``: a restart of this service or of the server neither loses nor repeats it, one schedule per
order replaces rather than adds to a previous one, and a past ``expiresAt`` fires at once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

from nats.aio.client import Client
from nats.aio.msg import Msg

from ticketing_common import (
    BaseListener,
    BasePublisher,
    ExpirationCompleteEvent,
    NatsWrapper,
    OrderCancelledEvent,
    OrderCreatedEvent,
    PaymentCreatedEvent,
    ensure_stream,
)

QUEUE_GROUP = "expiration-service"
logger = logging.getLogger(__name__)


class ExpirationCompletePublisher(BasePublisher[ExpirationCompleteEvent]):
    """Schedules expiration:complete."""


class OrderCreatedListener(BaseListener[OrderCreatedEvent]):
    """order:created: schedule the order's expiration:complete at its ``expiresAt``, then ack."""

    queue_group_name = QUEUE_GROUP

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.publisher = ExpirationCompletePublisher(client)

    async def on_message(self, data: OrderCreatedEvent, msg: Msg) -> None:
        """Ack only once the schedule is stored: a crash before that redelivers the order."""
        await self.publisher.schedule(
            ExpirationCompleteEvent(order_id=data.id), at=data.expires_at, key=data.id
        )
        logger.info("order %s expires at %s", data.id, data.expires_at.isoformat())
        await msg.ack()


class OrderCancelledListener(BaseListener[OrderCancelledEvent]):
    """order:cancelled: withdraw the order's pending expiration, which would change nothing any more."""

    queue_group_name = QUEUE_GROUP

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.publisher = ExpirationCompletePublisher(client)

    async def on_message(self, data: OrderCancelledEvent, msg: Msg) -> None:
        """Remove the schedule; if order:created comes later still, orders ignores its expiration."""
        await self.publisher.cancel_schedule(data.id)
        await msg.ack()


class PaymentCreatedListener(BaseListener[PaymentCreatedEvent]):
    """payment:created: withdraw the paid order's pending expiration (the original let it fire)."""

    queue_group_name = QUEUE_GROUP

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.publisher = ExpirationCompletePublisher(client)

    async def on_message(self, data: PaymentCreatedEvent, msg: Msg) -> None:
        """Remove the schedule; if order:created comes later still, orders ignores the expiration."""
        await self.publisher.cancel_schedule(data.order_id)
        await msg.ack()


class Running(NamedTuple):
    """The running service: its connection and its listeners."""

    nats: NatsWrapper
    listeners: list[BaseListener[Any]]


@asynccontextmanager
async def expiration_service(
    nats_url: str, wrapper: NatsWrapper | None = None, *, stream_replicas: int = 1
) -> AsyncIterator[Running]:
    """Connect, make sure of the streams, listen; on exit stop listening and drain the connection."""
    nats = wrapper if wrapper is not None else NatsWrapper()
    client = await nats.connect(nats_url, name="expiration-service")
    try:
        await ensure_stream(nats.jetstream, replicas=stream_replicas)
        listeners: list[BaseListener[Any]] = [
            OrderCreatedListener(client),
            OrderCancelledListener(client),
            PaymentCreatedListener(client),
        ]
        for listener in listeners:
            await listener.listen()
        logger.info("expiration service started")
        yield Running(nats, listeners)
    finally:
        await nats.close()
