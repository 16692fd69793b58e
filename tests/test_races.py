"""Races between services through HTTP: the five reference services as processes on one nats-server.

Each race runs ``RUNS`` times, its two requests apart by a random offset of up to 300 ms, either one
first (the seed is logged and named in failures; ``RACE_SEED=<seed>`` replays it). After each run the
test waits until every event is handled, then checks what every service and the gateway (the fake
Stripe server, which the payments processes call through the real ``stripe`` library) say of the order.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import count
from typing import Any, TypeVar

import httpx
import nats
import nats.js.errors
import pytest
from nats.js import JetStreamContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import processes
from conftest import consumer_is_settled, databases_on, eventually, sqlite_in
from fake_stripe import FakeStripe, fake_stripe_in_a_thread
from node_session import KEY
from ticketing_common import DEAD_LETTERS_STREAM, EVENTS_STREAM
from ticketing_common.testing import NatsServer

RUNS = 20
SEED = int(os.environ.get("RACE_SEED", str(random.randrange(2**32))))
WINDOW = 600.0
"""Seconds an order of the main orders instance waits for its payment: longer than any race."""
QUICK_WINDOW = 1.5
"""Seconds an order of the ``orders-quick`` instance (a second replica of orders) waits: the expiry race."""
SETTLE = 30.0
logger = logging.getLogger(__name__)
T = TypeVar("T")
U = TypeVar("U")
_emails = count()


@dataclass
class Stack:
    """The running services: their URLs, databases, the gateway, and the nats-server."""

    urls: dict[str, str]
    databases: Callable[[str], str]
    stripe: FakeStripe
    nats_url: str


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The five services, and a second orders replica whose orders expire quickly, as processes."""
    logs = tmp_path_factory.mktemp("races")
    new_database = (
        sqlite_in(logs)
        if request.param == "sqlite"
        else databases_on(request.getfixturevalue("postgres_server"))
    )
    databases = functools.cache(new_database)  # instances of one service share its database
    instances = [
        *processes.the_five(WINDOW),
        processes.Instance("orders-quick", "orders", {"EXPIRATION_WINDOW_SECONDS": str(QUICK_WINDOW)}),
    ]
    with NatsServer() as server, fake_stripe_in_a_thread() as stripe:
        gateway = {
            "STRIPE_KEY": "sk_test_races",
            "STRIPE_API_BASE": stripe.url,
            # Every race signs up its buyers from this one address, faster than a person would.
            "SIGNIN_RATE_LIMIT_PER_ADDRESS": "100000/minute",
        }
        with processes.running(
            instances, nats_url=server.url, jwt_key=KEY, database_url=databases, logs=logs, env=gateway
        ) as urls:
            processes.wait_until_answering(urls)
            asyncio.run(_expiration_listens(server.url))
            logger.info("races: RACE_SEED=%s; logs in %s", SEED, logs)
            yield Stack(urls, databases, stripe, server.url)


async def _expiration_listens(nats_url: str) -> None:
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()

        async def listens() -> bool:
            names = {info.config.durable_name for info in await js.consumers_info(EVENTS_STREAM)}
            return "expiration-service_order_created" in names

        await eventually(listens, timeout=SETTLE)
    finally:
        await client.close()


class Shop:
    """One test's view of the stack: signed-in users, the databases and JetStream, and the checks."""

    def __init__(self, stack: Stack, js: JetStreamContext, engines: dict[str, AsyncEngine]) -> None:
        self.stack = stack
        self.js = js
        self.engines = engines
        self.urls = stack.urls
        self.orders: set[str] = set()
        """The orders this test made."""
        self.users: list[httpx.AsyncClient] = []

    async def user(self) -> httpx.AsyncClient:
        """A new user, signed up through the auth service; the client keeps the session cookie."""
        client = httpx.AsyncClient(timeout=SETTLE)
        self.users.append(client)
        email = f"racer{next(_emails)}-{SEED}@test.com"
        response = await client.post(
            f"{self.urls['auth']}/api/users/signup", json={"email": email, "password": "secret1"}
        )
        assert response.status_code == 201, response.text
        return client

    async def sell(self, seller: httpx.AsyncClient, price: float) -> dict[str, Any]:
        """A new ticket, once the orders service has its replica."""
        response = await seller.post(
            f"{self.urls['tickets']}/api/tickets", json={"title": "gig", "price": price}
        )
        assert response.status_code == 201, response.text
        ticket: dict[str, Any] = response.json()
        await eventually(lambda: self.has("orders", "tickets", ticket["id"]), timeout=SETTLE)
        return ticket

    async def order(self, buyer: httpx.AsyncClient, ticket_id: str, orders: str = "orders") -> httpx.Response:
        """POST /api/orders on the instance named."""
        return await buyer.post(f"{self.urls[orders]}/api/orders", json={"ticketId": ticket_id})

    async def placed(
        self, buyer: httpx.AsyncClient, ticket_id: str, orders: str = "orders"
    ) -> dict[str, Any]:
        """A new order of the ticket, once the payments service has its replica."""
        response = await self.order(buyer, ticket_id, orders)
        assert response.status_code == 201, response.text
        order: dict[str, Any] = response.json()
        await eventually(lambda: self.has("payments", "orders", order["id"]), timeout=SETTLE)
        return order

    async def pay(self, buyer: httpx.AsyncClient, order_id: str) -> httpx.Response:
        """POST /api/payments for the order, with the test card."""
        return await buyer.post(
            f"{self.urls['payments']}/api/payments", json={"token": "tok_visa", "orderId": order_id}
        )

    async def cancel(self, buyer: httpx.AsyncClient, order_id: str) -> httpx.Response:
        """DELETE /api/orders/:id."""
        return await buyer.delete(f"{self.urls['orders']}/api/orders/{order_id}")

    async def has(self, service: str, table: str, record_id: str) -> bool:
        """The service's database holds the record."""
        async with self.engines[service].connect() as connection:
            query = text(f"SELECT count(*) FROM {table} WHERE id = :id")  # noqa: S608 - our table names
            return bool(await connection.scalar(query, {"id": record_id}))

    async def settled(self) -> bool:
        """Every event is stored (no outbox row left) and acked by every consumer."""
        for service in ("tickets", "orders", "payments"):
            async with self.engines[service].connect() as connection:
                if await connection.scalar(text("SELECT count(*) FROM outbox")):
                    return False
        infos = await self.js.consumers_info(EVENTS_STREAM)
        return all([await consumer_is_settled(self.js, info.name) for info in infos])

    async def settle(self) -> None:
        """Wait until ``settled``."""
        await eventually(self.settled, timeout=SETTLE)

    async def check(self, buyer: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
        """The order settled into one state that orders, tickets and the gateway agree on; return it."""
        order: dict[str, Any] = (await buyer.get(f"{self.urls['orders']}/api/orders/{order_id}")).json()
        ticket = (await buyer.get(f"{self.urls['tickets']}/api/tickets/{order['ticket']['id']}")).json()
        charged = self.stack.stripe.charged_cents(order_id)
        seen = f"order {order}, ticket {ticket}, charged {charged} cents (RACE_SEED={SEED})"
        assert order["status"] in {"complete", "cancelled"}, seen
        assert ticket["price"] == order["ticket"]["price"], seen
        if order["status"] == "complete":
            assert ticket["orderId"] == order_id, seen
            assert charged == round(order["ticket"]["price"] * 100), seen
        else:
            assert ticket["orderId"] != order_id, seen
            assert charged == 0, seen
        async with self.engines["orders"].connect() as connection:
            replica = (
                await connection.execute(
                    text("SELECT price, version FROM tickets WHERE id = :id"), {"id": ticket["id"]}
                )
            ).one()
        assert (replica.price, replica.version) == (ticket["price"], ticket["version"]), seen
        return order

    async def check_events(self, refunded: set[str]) -> None:
        """No dead letter; the gateway refunded exactly ``refunded``, each with one payment:refunded."""
        assert (await self.js.stream_info(DEAD_LETTERS_STREAM)).state.messages == 0
        info = await self.js.stream_info(EVENTS_STREAM)
        announced: list[str] = []
        for sequence in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                message = await self.js.get_msg(EVENTS_STREAM, sequence)
            except nats.js.errors.NotFoundError:  # a schedule that fired or was withdrawn
                continue
            if message.subject == "payment:refunded":
                announced.append(json.loads(message.data or b"")["orderId"])
        charges = self.stack.stripe.charges
        by_gateway = {
            order_id
            for order_id in self.orders
            if charges.get(f"ticketing-order-{order_id}", {}).get("amount_refunded")
        }
        mine = sorted(order_id for order_id in announced if order_id in self.orders)
        assert (by_gateway, mine) == (refunded, sorted(refunded)), f"RACE_SEED={SEED}"


@pytest.fixture
async def shop(stack: Stack) -> AsyncIterator[Shop]:
    client = await nats.connect(stack.nats_url)
    engines = {name: create_async_engine(stack.databases(name)) for name in ("tickets", "orders", "payments")}
    shop = Shop(stack, client.jetstream(), engines)
    try:
        yield shop
    finally:
        for user in shop.users:
            await user.aclose()
        for engine in engines.values():
            await engine.dispose()
        await client.close()


async def together(first: Awaitable[T], second: Awaitable[U], offset: float) -> tuple[T, U]:
    """Send ``first``, and ``second`` ``offset`` seconds later (or earlier, for a negative offset)."""

    async def after(delay: float, request: Awaitable[Any]) -> Any:  # noqa: ANN401 - either request's answer
        await asyncio.sleep(delay)
        return await request

    a, b = await asyncio.gather(after(max(0.0, -offset), first), after(max(0.0, offset), second))
    return a, b


def offsets(rng: random.Random) -> list[float]:
    """RUNS offsets between -300 and 300 ms, a few of them 0."""
    return [0.0, 0.0, *(rng.uniform(-0.3, 0.3) for _ in range(RUNS - 2))]


async def test_cancel_and_pay_together_settle_into_one_state(shop: Shop) -> None:
    """Cancel and pay one order together: it ends complete and charged, or cancelled, free and refunded."""
    rng = random.Random(SEED)
    seller, buyer, third = await shop.user(), await shop.user(), await shop.user()
    refunded: set[str] = set()
    outcomes: Counter[str] = Counter()
    for offset in offsets(rng):
        ticket = await shop.sell(seller, round(rng.uniform(1, 100), 2))
        order = await shop.placed(buyer, ticket["id"])
        shop.orders.add(order["id"])
        cancel, pay = await together(shop.cancel(buyer, order["id"]), shop.pay(buyer, order["id"]), offset)
        await shop.settle()
        final = await shop.check(buyer, order["id"])
        seen = f"offset {offset:.3f}: cancel {cancel.status_code} {cancel.text}"
        seen += f", pay {pay.status_code} {pay.text}"
        charged = f"ticketing-order-{order['id']}" in shop.stack.stripe.charges
        outcomes[
            f"cancel {cancel.status_code}, pay {pay.status_code}, {final['status']}, charged {charged}"
        ] += 1
        if final["status"] == "complete":
            assert (cancel.status_code, pay.status_code) == (400, 201), seen
            assert cancel.json() == {"errors": [{"message": "Cannot cancel a completed order"}]}, seen
            assert (await shop.order(third, ticket["id"])).status_code == 400, seen
            continue
        assert cancel.status_code == 204, seen
        if charged:
            refunded.add(order["id"])
        # The ticket is free: a third user can buy it, and it is sold once.
        again = await shop.placed(third, ticket["id"])
        shop.orders.add(again["id"])
        assert (await shop.pay(third, again["id"])).status_code == 201, seen
        await shop.settle()
        assert (await shop.check(third, again["id"]))["status"] == "complete", seen
    await shop.check_events(refunded)
    logger.info("cancel and pay, %s runs: %s", RUNS, dict(outcomes))


async def test_a_payment_racing_the_expiration_settles_into_one_state(shop: Shop) -> None:
    """Pay around ``expiresAt``: refused once it has passed; else complete, or cancelled and refunded."""
    rng = random.Random(SEED + 1)
    seller, buyer = await shop.user(), await shop.user()
    refunded: set[str] = set()
    outcomes: Counter[str] = Counter()

    async def run(offset: float) -> None:
        ticket = await shop.sell(seller, round(rng.uniform(1, 100), 2))
        order = await shop.placed(buyer, ticket["id"], orders="orders-quick")
        shop.orders.add(order["id"])
        expires_at = datetime.fromisoformat(order["expiresAt"]).timestamp()
        await asyncio.sleep(max(0.0, expires_at + offset - time.time()))
        sent = time.time()
        pay = await shop.pay(buyer, order["id"])
        seen = f"offset {offset:.3f}, sent {sent - expires_at:.3f} s after expiresAt"
        seen += f": {pay.status_code} {pay.text}"
        charged = f"ticketing-order-{order['id']}" in shop.stack.stripe.charges
        if sent > expires_at:  # refused before any charge
            assert (pay.status_code, charged) == (400, False), seen
        await eventually(lambda: _final(shop, buyer, order["id"]), timeout=SETTLE)
        await shop.settle()
        final = await shop.check(buyer, order["id"])
        after = "after" if sent > expires_at else "before"
        outcomes[f"sent {after} expiresAt, pay {pay.status_code}, {final['status']}, charged {charged}"] += 1
        if final["status"] == "cancelled" and charged:
            refunded.add(order["id"])

    # Five at a time: each waits for its own expiresAt, so running them one by one would only add waiting.
    runs = offsets(rng)
    for batch in range(0, RUNS, 5):
        await asyncio.gather(*(run(offset) for offset in runs[batch : batch + 5]))
    await shop.check_events(refunded)
    logger.info("payment and expiration, %s runs: %s", RUNS, dict(outcomes))


async def _final(shop: Shop, buyer: httpx.AsyncClient, order_id: str) -> bool:
    order = (await buyer.get(f"{shop.urls['orders']}/api/orders/{order_id}")).json()
    return bool(order["status"] in {"complete", "cancelled"})


async def test_an_order_racing_a_price_edit_is_charged_the_price_everyone_shows(shop: Shop) -> None:
    """Edit the price while ordering: the charge, the order, tickets and orders' replica show one price."""
    rng = random.Random(SEED + 2)
    seller, buyer = await shop.user(), await shop.user()
    for offset in offsets(rng):
        ticket = await shop.sell(seller, 10)
        edit, ordered = await together(
            seller.put(
                f"{shop.urls['tickets']}/api/tickets/{ticket['id']}", json={"title": "gig", "price": 25}
            ),
            shop.order(buyer, ticket["id"]),
            offset,
        )
        seen = f"offset {offset:.3f}: edit {edit.status_code} {edit.text}, order {ordered.status_code}"
        assert ordered.status_code == 201, seen
        assert edit.status_code in {200, 400}, seen
        order_id = ordered.json()["id"]
        shop.orders.add(order_id)
        await eventually(functools.partial(shop.has, "payments", "orders", order_id), timeout=SETTLE)
        shown = (await buyer.get(f"{shop.urls['orders']}/api/orders/{order_id}")).json()["ticket"]["price"]
        pay = await shop.pay(buyer, order_id)
        assert pay.status_code == 201, f"{seen}, pay {pay.text}"
        await shop.settle()
        assert (await shop.check(buyer, order_id))["status"] == "complete", seen
        assert shop.stack.stripe.charged_cents(order_id) == round(shown * 100), (
            f"{seen}: the buyer saw {shown}"
        )
    await shop.check_events(set())
