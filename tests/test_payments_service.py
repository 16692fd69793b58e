"""The payments reference service: order replica, one charge per order, payment:created."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy import select

from conftest import DatabaseUrl, consumer_is_settled, eventually
from fake_stripe import DECLINED_TOKEN, fake_stripe
from node_session import KEY
from payments.app import create_app
from payments.gateway import FakeGateway, PaymentDeclinedError, StripeGateway, gateway_from_env
from payments.models import Order, Payment
from publishers import OrderCancelledPublisher, OrderCreatedPublisher
from services import ServiceClient, published, running, settings, signed_in
from ticketing_common import (
    OrderCancelledEvent,
    OrderCancelledTicket,
    OrderCreatedEvent,
    OrderCreatedTicket,
    OrderStatus,
)
from ticketing_common.testing import NatsServer

ALICE, BOB = signed_in("alice"), signed_in("bob")


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
async def client(
    nats_server: NatsServer, jetstream: JetStreamContext, database_url: DatabaseUrl, gateway: FakeGateway
) -> AsyncIterator[ServiceClient]:
    async with running(
        create_app(settings("payments", nats_server, database_url), gateway=gateway)
    ) as client:
        yield client


async def replica(client: ServiceClient, order_id: str) -> Order | None:
    async with client.service.database.sessions() as session:
        return await session.get(Order, order_id)


def created(order_id: str = "o1", user_id: str = "alice", price: float = 20.1) -> OrderCreatedEvent:
    return OrderCreatedEvent(
        id=order_id,
        version=0,
        status=OrderStatus.CREATED,
        user_id=user_id,
        expires_at=datetime.now(UTC) + timedelta(minutes=15),
        ticket=OrderCreatedTicket(id="t1", price=price),
    )


def cancelled(order_id: str = "o1", version: int = 1) -> OrderCancelledEvent:
    return OrderCancelledEvent(id=order_id, version=version, ticket=OrderCancelledTicket(id="t1"))


async def an_order(client: ServiceClient, nats_client: Client, event: OrderCreatedEvent | None = None) -> str:
    """Publish order:created as the orders service would, and wait for the replica."""
    event = event or created()
    await OrderCreatedPublisher(nats_client).publish(event)

    async def replicated() -> bool:
        return await replica(client, event.id) is not None

    await eventually(replicated)
    return event.id


async def pay(
    client: ServiceClient, order_id: str, user: dict[str, str] = ALICE, token: str = "tok_visa"
) -> httpx.Response:
    return await client.post("/api/payments", json={"token": token, "orderId": order_id}, headers=user)


async def test_paying_an_unknown_order_is_404(client: ServiceClient) -> None:
    """No replica, no payment."""
    response = await pay(client, "nope")
    assert (response.status_code, response.json()) == (404, {"errors": [{"message": "Not Found"}]})


async def test_paying_needs_a_user_who_owns_the_order(client: ServiceClient, nats_client: Client) -> None:
    """401 signed out, 401 for another user's order."""
    order_id = await an_order(client, nats_client)
    assert (
        await client.post("/api/payments", json={"token": "tok_visa", "orderId": order_id})
    ).status_code == 401
    response = await pay(client, order_id, user=BOB)
    assert (response.status_code, response.json()) == (401, {"errors": [{"message": "Not authorized"}]})


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"orderId": "o1"}, {"message": "Field required", "field": "token"}),
        ({"token": "", "orderId": "o1"}, {"message": "Token must be provided", "field": "token"}),
        ({"token": "tok_visa"}, {"message": "Field required", "field": "orderId"}),
        ({"token": "tok_visa", "orderId": " "}, {"message": "OrderId must be provided", "field": "orderId"}),
    ],
    ids=["no token", "empty token", "no order", "blank order"],
)
async def test_an_invalid_body_is_400(client: ServiceClient, body: object, error: object) -> None:
    """Each missing field is named, as sent."""
    response = await client.post("/api/payments", json=body, headers=ALICE)
    assert (response.status_code, response.json()) == (400, {"errors": [error]})


async def test_a_cancelled_order_cannot_be_paid(
    client: ServiceClient, nats_client: Client, gateway: FakeGateway
) -> None:
    """400 "Cannot pay for an cancelled order", and no charge."""
    order_id = await an_order(client, nats_client)
    await OrderCancelledPublisher(nats_client).publish(cancelled(order_id))

    async def is_cancelled() -> bool:
        order = await replica(client, order_id)
        return order is not None and order.status == OrderStatus.CANCELLED

    await eventually(is_cancelled)
    response = await pay(client, order_id)
    assert response.json() == {"errors": [{"message": "Cannot pay for an cancelled order"}]}
    assert gateway.charges == {}


async def test_paying_charges_saves_and_publishes(
    client: ServiceClient, nats_client: Client, jetstream: JetStreamContext, gateway: FakeGateway
) -> None:
    """201 {id}; the price is charged in cents; the payment is stored and payment:created is in the stream."""
    order_id = await an_order(client, nats_client, created(price=20.1))
    response = await pay(client, order_id)
    assert response.status_code == 201
    [(stripe_id, amount, currency)] = gateway.charges.values()
    assert (amount, currency) == (2010, "usd")
    async with client.service.database.sessions() as session:
        payment = await session.scalar(select(Payment))
    assert payment is not None
    assert (payment.id, payment.order_id, payment.stripe_id) == (response.json()["id"], order_id, stripe_id)
    assert await published(jetstream, "payment:created") == [
        {"id": payment.id, "orderId": order_id, "stripeId": stripe_id}
    ]


async def test_an_order_is_charged_once(
    client: ServiceClient, nats_client: Client, jetstream: JetStreamContext, gateway: FakeGateway
) -> None:
    """A second payment is 400 "Order has already been paid"; five at once give one 201 and one charge."""
    order_id = await an_order(client, nats_client)
    responses = await asyncio.gather(*(pay(client, order_id) for _ in range(5)))
    assert sorted(response.status_code for response in responses) == [201, 400, 400, 400, 400]
    again = await pay(client, order_id)
    assert again.json() == {"errors": [{"message": "Order has already been paid"}]}
    assert len(gateway.charges) == 1
    assert len(await published(jetstream, "payment:created")) == 1


async def test_a_declined_card_is_400_and_changes_nothing(
    client: ServiceClient, nats_client: Client, jetstream: JetStreamContext
) -> None:
    """The gateway's reason comes back as a 400; no payment, no event; a good card then pays."""
    order_id = await an_order(client, nats_client)
    declined = await pay(client, order_id, token="tok_chargeDeclined")
    assert declined.status_code == 400
    assert "declined" in declined.json()["errors"][0]["message"]
    assert await published(jetstream, "payment:created") == []
    assert (await pay(client, order_id)).status_code == 201


async def test_the_listeners_replicate_orders_and_ack(
    client: ServiceClient, nats_client: Client, jetstream: JetStreamContext
) -> None:
    """order:created makes the replica at version 0, order:cancelled moves it to 1, both acked."""
    await an_order(client, nats_client, created(price=5))
    await OrderCancelledPublisher(nats_client).publish(cancelled())

    async def settled() -> bool:
        order = await replica(client, "o1")
        return order is not None and order.version == 1

    await eventually(settled)
    order = await replica(client, "o1")
    assert order is not None
    assert (order.user_id, order.price, order.status) == ("alice", 5, OrderStatus.CANCELLED)
    for consumer in ("payments-service_order_created", "payments-service_order_cancelled"):
        await eventually(partial(consumer_is_settled, jetstream, consumer))


async def test_a_cancellation_before_its_order_waits_for_it(
    client: ServiceClient, nats_client: Client, jetstream: JetStreamContext
) -> None:
    """order:cancelled seen first is not acked until order:created has made the replica."""
    await OrderCancelledPublisher(nats_client).publish(cancelled())
    await OrderCreatedPublisher(nats_client).publish(created())

    async def cancelled_replica() -> bool:
        order = await replica(client, "o1")
        return order is not None and order.status == OrderStatus.CANCELLED

    await eventually(cancelled_replica)


async def test_the_stripe_gateway_charges_once_per_key_through_stripe() -> None:
    """The stripe library sends amount, currency, token and idempotency key; a retry gets the same charge."""
    async with fake_stripe() as server:
        gateway = StripeGateway("sk_test_123", api_base=server.url)
        first = await gateway.charge(
            amount_cents=2010, currency="usd", token="tok_visa", idempotency_key="k1"
        )
        again = await gateway.charge(
            amount_cents=2010, currency="usd", token="tok_visa", idempotency_key="k1"
        )
        assert first == again
        assert len(server.charges) == 1
        request = server.requests[0]
        assert request["form"] == {"amount": "2010", "currency": "usd", "source": "tok_visa"}
        assert (request["idempotency_key"], request["auth"]) == ("k1", "Bearer sk_test_123")
        with pytest.raises(PaymentDeclinedError, match=r"Your card was declined\."):
            await gateway.charge(amount_cents=100, currency="usd", token=DECLINED_TOKEN, idempotency_key="k2")
        await gateway.aclose()


async def test_the_service_pays_through_stripe_when_configured(
    nats_server: NatsServer, nats_client: Client, jetstream: JetStreamContext, tmp_path: Path
) -> None:
    """With a StripeGateway the route charges the order's price with the order's idempotency key."""
    async with fake_stripe() as server:
        gateway = StripeGateway("sk_test_123", api_base=server.url)
        app = create_app(settings("payments", nats_server, tmp_path), gateway=gateway)
        async with running(app) as api:
            order_id = await an_order(api, nats_client, created(price=12.34))
            response = await pay(api, order_id)
            assert response.status_code == 201
            declined = await pay(api, order_id, token=DECLINED_TOKEN)
        assert declined.json() == {"errors": [{"message": "Order has already been paid"}]}
        [charge] = server.charges.values()
        assert charge["amount"] == 1234
        assert server.requests[0]["idempotency_key"] == f"ticketing-order-{order_id}"


async def test_the_gateway_follows_stripe_key() -> None:
    """STRIPE_KEY selects Stripe; without it the fake gateway."""
    stripe_gateway = gateway_from_env({"STRIPE_KEY": "sk_test_1", "JWT_KEY": KEY})
    assert isinstance(stripe_gateway, StripeGateway)
    await stripe_gateway.aclose()
    assert isinstance(gateway_from_env({}), FakeGateway)
