"""The marketplace as a test drives it: tickets, orders and payments in this process, the test as the bus.

The services run with their real routes, listeners and databases on a real nats-server, but their
listeners do not consume by themselves: each has a consumer of its own that the test fetches from, and
the test decides which fetched event is handled next, which ones come again, when an expiration fires,
and what is handled while a payment's charge is on its way. An event whose handler raises
``OutOfOrder`` stays unacked and comes again later, as JetStream would redeliver it; any other exception
is a failure (it would end in the dead letters). ``check_settled`` says whether every service agrees.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nats
import nats.js.errors
from fastapi import FastAPI
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import func, select

import orders.app
import orders.models
import payments.app
import payments.models
import tickets.app
import tickets.models
from conftest import WAIT
from publishers import ExpirationCompletePublisher
from services import ChargeWhile, service_of, settings, signed_in
from ticketing_common import (
    EVENTS_STREAM,
    Event,
    ExpirationCompleteEvent,
    OrderStatus,
    OutOfOrder,
    PaymentRefundedEvent,
)
from ticketing_common.service import Service, ServiceListener
from ticketing_common.testing import NatsServer

USERS = {name: signed_in(name) for name in ("ann", "ben")}
SELLER = signed_in("seller")
FINAL = {OrderStatus.COMPLETE, OrderStatus.CANCELLED}
T = TypeVar("T")
SEEN: Counter[str] = Counter()
"""What the runs went through, to print: the paths the tests are meant to reach."""


@dataclass
class Inbox:
    """One listener's consumer, owned by the test."""

    listener: ServiceListener[Any]
    subscription: JetStreamContext.PullSubscription

    @property
    def name(self) -> str:
        """How the tests name it: the service and the subject, e.g. "payments order:cancelled"."""
        return f"{self.listener.queue_group_name.removesuffix('-service')} {self.listener.subject}"


@dataclass
class Delivery:
    """An event fetched by an inbox, not acked yet."""

    inbox: Inbox
    msg: Msg


class Marketplace:
    """Three services, two buyers and a seller; ``run`` drives one step on the marketplace's event loop."""

    def __init__(self, nats_server: NatsServer, folder: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.stack = AsyncExitStack()
        self.gateway = ChargeWhile()
        self.pool: list[Delivery] = []
        """Fetched and not acked: handled in any order, some of them more than once."""
        self.handled: list[tuple[str, bytes]] = []
        self.seen: dict[str, str] = {}
        """Each order's status as last seen, to check that a final one never changes."""
        folder = folder / uuid.uuid4().hex  # one tmp_path serves every run of a hypothesis test
        folder.mkdir()
        self.run(self._start(nats_server, folder))

    def run(self, step: Awaitable[T]) -> T:
        """Run one step on the marketplace's own event loop, within a deadline."""
        return self.loop.run_until_complete(asyncio.wait_for(step, WAIT * 3))

    async def _start(self, nats_server: NatsServer, folder: Path) -> None:
        self.apps: dict[str, FastAPI] = {
            "tickets": tickets.app.create_app(settings("tickets", nats_server, folder)),
            "orders": orders.app.create_app(settings("orders", nats_server, folder)),
            "payments": payments.app.create_app(
                settings("payments", nats_server, folder), gateway=self.gateway
            ),
        }
        factories: dict[str, list[Callable[[Service], ServiceListener[Any]]]] = {}
        for name, app in self.apps.items():
            factories[name] = list(service_of(app).listener_factories)
            service_of(app).listener_factories = ()  # the test delivers their events
            await self.stack.enter_async_context(app.router.lifespan_context(app))
        self.http = {
            name: await self.stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
            )
            for name, app in self.apps.items()
        }
        self.client: Client = await nats.connect(nats_server.url)
        self.stack.push_async_callback(self.client.close)
        self.js = self.client.jetstream()
        # Earlier runs' events are in the stream too: every consumer starts after them.
        self.start = (await self.js.stream_info(EVENTS_STREAM)).state.last_seq
        self.inboxes = [
            Inbox(listener, await self._subscribe(listener.subject))
            for name, made in factories.items()
            for listener in (factory(service_of(self.apps[name])) for factory in made)
        ]
        self.refunds = await self._subscribe("payment:refunded")  # no service listens: the test reads it
        self.refunded: list[str] = []

    async def _subscribe(self, subject: str) -> JetStreamContext.PullSubscription:
        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=3600,  # only the test redelivers
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.start + 1,
            max_ack_pending=-1,
        )
        return await self.js.pull_subscribe(subject, stream=EVENTS_STREAM, config=config)

    def close(self) -> None:
        """Handle everything left, check that every service agrees, and stop."""
        try:
            self.run(self.settle())
            self.run(self.check_settled())
        finally:
            self.run(self.stack.aclose())
            self.loop.close()

    def inbox(self, name: str) -> Inbox:
        """The inbox named "<service> <subject>", e.g. "payments order:cancelled"."""
        [inbox] = [inbox for inbox in self.inboxes if inbox.name == name]
        return inbox

    # The bus.

    async def fetch(self) -> None:
        """Move every event stored for an inbox and not fetched yet into the pool."""
        for inbox in self.inboxes:
            while await self._unread(inbox.subscription, inbox.listener.subject):
                self.pool += [
                    Delivery(inbox, msg) for msg in await inbox.subscription.fetch(64, timeout=WAIT)
                ]

    async def _unread(self, subscription: JetStreamContext.PullSubscription, subject: str) -> bool:
        try:
            last = await self.js.get_last_msg(EVENTS_STREAM, subject)
        except nats.js.errors.NotFoundError:
            return False
        delivered = (await subscription.consumer_info()).delivered
        return (last.seq or 0) > max(self.start, (delivered.stream_seq if delivered else None) or 0)

    async def deliver(self, index: int) -> bool:
        """Handle the pool's event at ``index``; True if it was acked, False if it must come again."""
        delivery = self.pool.pop(index)
        listener = delivery.inbox.listener
        event: Event = listener.event_type.model_validate_json(delivery.msg.data)
        try:
            await listener.on_message(event, delivery.msg)
        except OutOfOrder:
            self.pool.append(delivery)  # unacked: JetStream would redeliver it after a short delay
            SEEN[f"{delivery.inbox.name} waited"] += 1
            return False
        self.handled.append((delivery.msg.subject, delivery.msg.data))
        return True

    async def deliver_all(self, name: str) -> None:
        """One inbox handles its whole backlog, as a service that runs ahead of the others."""
        await self.fetch()
        for delivery in [delivery for delivery in self.pool if delivery.inbox.name == name]:
            await self.deliver(self.pool.index(delivery))

    async def deliver_one(self, name: str, about: str) -> None:
        """The inbox named handles the first fetched event whose body names ``about`` (an id)."""
        await self.fetch()
        [index, *_] = [
            index
            for index, delivery in enumerate(self.pool)
            if delivery.inbox.name == name and about.encode() in delivery.msg.data
        ]
        await self.deliver(index)

    def shown_price(self, order_id: str, user: str) -> float:
        """The order's price as its buyer sees it (GET /api/orders/:id)."""
        response = self.run(self.http["orders"].get(f"/api/orders/{order_id}", headers=USERS[user]))
        return float(response.json()["ticket"]["price"])

    async def settle(self) -> None:
        """Handle everything, oldest first, until nothing is in flight; fail if events could never apply."""
        await self.fetch()
        while self.pool:
            progressed = False
            for _ in range(len(self.pool)):
                progressed |= await self.deliver(0)
                await self.fetch()
            assert progressed, f"these events could never be applied: {[d.msg.data for d in self.pool]}"

    async def in_flight(self) -> bool:
        """Some event is fetched and not acked, or stored and not fetched."""
        unread = [await self._unread(inbox.subscription, inbox.listener.subject) for inbox in self.inboxes]
        return bool(self.pool) or any(unread)

    def replay(self, subject: str, body: bytes) -> None:
        """An event comes again (a redelivery whose ack was lost, a replay): a new message, same body."""
        self.run(self.js.publish(subject, body, stream=EVENTS_STREAM))

    # What users and the expiration service do.

    def sell(self, price: float) -> str:
        """The seller puts a ticket on sale; its id."""
        body = {"title": "t", "price": price}
        response = self.run(self.http["tickets"].post("/api/tickets", json=body, headers=SELLER))
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def edit(self, ticket: str, price: float) -> int:
        """The seller changes the ticket's price; the answer's status."""
        body = {"title": "edited", "price": price}
        response = self.run(self.http["tickets"].put(f"/api/tickets/{ticket}", json=body, headers=SELLER))
        assert response.status_code in {200, 400}, response.text
        return response.status_code

    def order(self, ticket: str, user: str) -> str | None:
        """The user orders the ticket; the order's id, or None if refused."""
        response = self.run(
            self.http["orders"].post("/api/orders", json={"ticketId": ticket}, headers=USERS[user])
        )
        assert response.status_code in {201, 400, 404}, response.text
        return str(response.json()["id"]) if response.status_code == 201 else None

    def cancel(self, order_id: str, user: str) -> int:
        """The user cancels the order; the answer's status."""
        response = self.run(self.http["orders"].delete(f"/api/orders/{order_id}", headers=USERS[user]))
        assert response.status_code in {204, 400, 404}, response.text
        SEEN[f"cancel {response.status_code}"] += 1
        return response.status_code

    def pay(
        self,
        order_id: str,
        user: str,
        *,
        known: bool = True,
        meanwhile: Callable[[], Awaitable[None]] | None = None,
    ) -> int:
        """Pay; ``known``: once payments has heard of the order (a client retries the 404 until then).

        ``meanwhile`` runs while the charge is on its way.
        """
        if known:
            self.run(self.deliver_all("payments order:created"))
        self.gateway.meanwhile = meanwhile
        body = {"token": "tok_visa", "orderId": order_id}
        response = self.run(self.http["payments"].post("/api/payments", json=body, headers=USERS[user]))
        assert response.status_code in {201, 400, 404}, response.text
        SEEN[f"pay {response.status_code}"] += 1
        return response.status_code

    def expire(self, order_id: str) -> None:
        """expiration:complete, as the expiration service publishes it at the order's expiresAt."""
        publisher = ExpirationCompletePublisher(self.client)
        self.run(publisher.publish(ExpirationCompleteEvent(order_id=order_id), msg_id=uuid.uuid4().hex))

    # What must hold.

    def check_always(self) -> None:
        """What holds after every step: final statuses stay, one holder per ticket, money follows."""
        statuses = self.run(self.statuses())
        for order_id, status in statuses.items():
            before = self.seen.get(order_id)
            assert before not in FINAL or before == status, f"order {order_id}: {before} -> {status}"
            key = f"ticketing-order-{order_id}"
            if status == OrderStatus.COMPLETE:
                assert self.gateway.charged_cents(key) > 0, f"order {order_id} is complete but not paid"
            if key in self.gateway.charges and self.gateway.charged_cents(key) == 0:
                assert status == OrderStatus.CANCELLED, f"order {order_id} was refunded but is {status}"
        self.seen = statuses
        assert self.run(self._most_holders()) <= 1, "a ticket is held by two orders"
        if not self.run(self.in_flight()):
            self.run(self.check_settled())

    async def statuses(self) -> dict[str, str]:
        """Every order's status, as the orders service has it."""
        async with service_of(self.apps["orders"]).database.sessions() as session:
            rows = await session.execute(select(orders.models.Order.id, orders.models.Order.status))
            return {row.id: row.status for row in rows}

    async def _most_holders(self) -> int:
        async with service_of(self.apps["orders"]).database.sessions() as session:
            query = (
                select(func.count())
                .where(orders.models.Order.status != OrderStatus.CANCELLED)
                .group_by(orders.models.Order.ticket_id)
            )
            return max(await session.scalars(query), default=0)

    async def refunds_announced(self) -> list[str]:
        """The payment ids of every payment:refunded so far."""
        while await self._unread(self.refunds, "payment:refunded"):
            for msg in await self.refunds.fetch(64, timeout=WAIT):
                self.refunded.append(PaymentRefundedEvent.model_validate_json(msg.data).id)
                SEEN["refunded"] += 1
                await msg.ack()
        return self.refunded

    async def check_settled(self) -> None:
        """Per order: orders, tickets, payments and the gateway tell one story, with money following it."""
        async with (
            service_of(self.apps["orders"]).database.sessions() as in_orders,
            service_of(self.apps["tickets"]).database.sessions() as in_tickets,
            service_of(self.apps["payments"]).database.sessions() as in_payments,
        ):
            for order in await in_orders.scalars(select(orders.models.Order)):
                ticket = await in_tickets.get(tickets.models.Ticket, order.ticket_id)
                copy = await in_payments.get(payments.models.Order, order.id)
                assert ticket is not None
                assert copy is not None
                net = self.gateway.charged_cents(f"ticketing-order-{order.id}")
                story = f"order {order.id} {order.status} at {order.price}"
                story += f", ticket held by {ticket.order_id} at {ticket.price}"
                assert (copy.status == OrderStatus.CANCELLED) == (order.status == OrderStatus.CANCELLED), (
                    story
                )
                assert copy.price == order.price, story
                if order.status == OrderStatus.CANCELLED:
                    assert (net, ticket.order_id != order.id) == (0, True), story
                else:
                    assert (ticket.order_id, ticket.price) == (order.id, order.price), story
                    assert net == (round(order.price * 100) if order.status == OrderStatus.COMPLETE else 0), (
                        story
                    )
            for ticket in await in_tickets.scalars(select(tickets.models.Ticket)):
                replica = await in_orders.get(orders.models.Ticket, ticket.id)
                assert replica is not None
                assert (replica.version, replica.price, replica.title) == (
                    ticket.version,
                    ticket.price,
                    ticket.title,
                )
            refunded = await in_payments.scalars(
                select(payments.models.Payment.id).where(payments.models.Payment.refund_id.is_not(None))
            )
            announced = await self.refunds_announced()
            assert sorted(refunded) == sorted(announced), "one payment:refunded per refunded payment"
