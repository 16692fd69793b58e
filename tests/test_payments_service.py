"""The payments reference service: order replica, one charge per order, payment:created."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import httpx
import pytest
import stripe
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy import select

from conftest import DatabaseUrl, consumer_is_settled, eventually
from fake_stripe import DECLINED_TOKEN, fake_stripe
from node_session import KEY
from payments.app import create_app
from payments.gateway import FakeGateway, PaymentDeclinedError, StripeGateway, gateway_from_env
from payments.models import Order, Payment
from publishers import OrderCancelledPublisher, OrderCreatedPublisher, PaymentCreatedPublisher
from services import ChargeWhile, ServiceClient, published, running, settings, signed_in
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


def created(
    order_id: str = "o1", user_id: str = "alice", price: float = 20.1, expires_in: float = 900
) -> OrderCreatedEvent:
    return OrderCreatedEvent(
        id=order_id,
        version=0,
        status=OrderStatus.CREATED,
        user_id=user_id,
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
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


async def is_cancelled(client: ServiceClient, order_id: str) -> bool:
    order = await replica(client, order_id)
    return order is not None and order.status == OrderStatus.CANCELLED


async def test_a_cancelled_order_cannot_be_paid(
    client: ServiceClient, nats_client: Client, gateway: FakeGateway
) -> None:
    """400 "Cannot pay for a cancelled order", and no charge."""
    order_id = await an_order(client, nats_client)
    await OrderCancelledPublisher(nats_client).publish(cancelled(order_id))
    await eventually(lambda: is_cancelled(client, order_id))
    response = await pay(client, order_id)
    assert response.json() == {"errors": [{"message": "Cannot pay for a cancelled order"}]}
    assert gateway.charges == {}


async def test_an_expired_order_cannot_be_paid(
    client: ServiceClient, nats_client: Client, gateway: FakeGateway
) -> None:
    """Once expiresAt has passed, 400 "Cannot pay for an expired order", before its expiration arrives."""
    order_id = await an_order(client, nats_client, created(expires_in=-0.001))
    response = await pay(client, order_id)
    assert (response.status_code, response.json()) == (
        400,
        {"errors": [{"message": "Cannot pay for an expired order"}]},
    )
    assert gateway.charges == {}


async def test_a_paid_order_cancelled_by_orders_is_refunded_once(
    client: ServiceClient, nats_client: Client, jetstream: JetStreamContext, gateway: FakeGateway
) -> None:
    """order:cancelled of a paid order (orders cancelled first): refunded once, payment:refunded says so."""
    order_id = await an_order(client, nats_client)
    paid = await pay(client, order_id)
    assert paid.status_code == 201
    cancel = OrderCancelledPublisher(nats_client)
    await cancel.publish(cancelled(order_id))
    await cancel.publish(cancelled(order_id), msg_id="replayed")
    await eventually(partial(consumer_is_settled, jetstream, "payments-service_order_cancelled"))
    [(stripe_id, _, _)] = gateway.charges.values()
    [(refund_id, refunded_charge)] = gateway.refunds.values()
    assert refunded_charge == stripe_id
    assert gateway.charged_cents(f"ticketing-order-{order_id}") == 0
    async with client.service.database.sessions() as session:
        payment = await session.scalar(select(Payment))
    assert payment is not None
    assert (payment.id, payment.refund_id) == (paid.json()["id"], refund_id)
    assert await published(jetstream, "payment:refunded") == [
        {"id": payment.id, "orderId": order_id, "stripeId": stripe_id, "refundId": refund_id}
    ]
    again = await pay(client, order_id)
    assert again.json() == {"errors": [{"message": "Cannot pay for a cancelled order"}]}


async def pay_while_cancelled(api: ServiceClient, nats_client: Client, gateway: ChargeWhile) -> str:
    """An order whose order:cancelled is applied while its charge is on its way; 400 as cancelled."""
    order_id = await an_order(api, nats_client)

    async def cancel() -> None:
        await OrderCancelledPublisher(nats_client).publish(cancelled(order_id))
        await eventually(lambda: is_cancelled(api, order_id))

    gateway.meanwhile = cancel
    response = await pay(api, order_id)
    assert response.json() == {"errors": [{"message": "Cannot pay for a cancelled order"}]}
    return order_id


async def test_an_order_cancelled_during_its_charge_is_refunded_before_the_answer(
    nats_server: NatsServer, nats_client: Client, jetstream: JetStreamContext, database_url: DatabaseUrl
) -> None:
    """order:cancelled applied between the route's check and its save: 400 as cancelled, charge refunded."""
    gateway = ChargeWhile()
    async with running(create_app(settings("payments", nats_server, database_url), gateway=gateway)) as api:
        order_id = await pay_while_cancelled(api, nats_client, gateway)
        assert gateway.charged_cents(f"ticketing-order-{order_id}") == 0
        # Its own payment:created reaches the payments service too, which may have recorded the refund
        # first (then its payment:refunded comes a moment after the answer): one refund, one event.
        await eventually(partial(consumer_is_settled, jetstream, "payments-service_payment_created"))
        assert len(gateway.refunds) == 1
        assert len(await published(jetstream, "payment:refunded")) == 1


@dataclass
class RefundFailsOnce(ChargeWhile):
    """A gateway out of reach for the first refund asked of it."""

    refusals: int = 0

    async def refund(self, *, charge_id: str, idempotency_key: str) -> str:
        """Fail the first time, then refund as the fake gateway does."""
        if not self.refusals:
            self.refusals += 1
            raise ConnectionError("the gateway is out of reach")
        return await super().refund(charge_id=charge_id, idempotency_key=idempotency_key)


async def test_a_refund_the_gateway_fails_is_retried_and_the_answer_stays_a_400(
    nats_server: NatsServer, nats_client: Client, jetstream: JetStreamContext, database_url: DatabaseUrl
) -> None:
    """The route's refund fails: still 400 (not 500); its payment:created listener refunds on redelivery."""
    gateway = RefundFailsOnce()
    async with running(create_app(settings("payments", nats_server, database_url), gateway=gateway)) as api:
        order_id = await pay_while_cancelled(api, nats_client, gateway)
        await eventually(partial(consumer_is_settled, jetstream, "payments-service_payment_created"))
        assert (gateway.refusals, gateway.charged_cents(f"ticketing-order-{order_id}")) == (1, 0)
        assert len(await published(jetstream, "payment:refunded")) == 1


async def test_a_payment_saved_for_a_cancelled_order_is_refunded_on_its_payment_created(
    client: ServiceClient, nats_client: Client, jetstream: JetStreamContext, gateway: FakeGateway
) -> None:
    """Had the route's process died between saving and refunding, its payment:created would refund it."""
    order_id = await an_order(client, nats_client)
    await OrderCancelledPublisher(nats_client).publish(cancelled(order_id))
    await eventually(lambda: is_cancelled(client, order_id))
    key = f"ticketing-order-{order_id}"
    stripe_id = await gateway.charge(amount_cents=2010, currency="usd", token="tok_visa", idempotency_key=key)
    async with client.service.transaction() as session:
        payment = Payment(order_id=order_id, stripe_id=stripe_id)
        session.add(payment)
    await PaymentCreatedPublisher(nats_client).publish(payment.created())
    await eventually(partial(consumer_is_settled, jetstream, "payments-service_payment_created"))
    assert gateway.charged_cents(key) == 0
    assert [event["orderId"] for event in await published(jetstream, "payment:refunded")] == [order_id]


async def test_the_fake_gateway_refunds_a_charge_once() -> None:
    """One refund per key and per charge, as Stripe; an unknown charge is refused."""
    gateway = FakeGateway()
    charge_id = await gateway.charge(amount_cents=500, currency="usd", token="tok_visa", idempotency_key="k")
    assert gateway.charged_cents("k") == 500
    first = await gateway.refund(charge_id=charge_id, idempotency_key="r")
    assert await gateway.refund(charge_id=charge_id, idempotency_key="r") == first
    assert gateway.charged_cents("k") == 0
    with pytest.raises(RuntimeError, match="already refunded"):
        await gateway.refund(charge_id=charge_id, idempotency_key="other")
    with pytest.raises(LookupError, match="no charge ch_nope"):
        await gateway.refund(charge_id="ch_nope", idempotency_key="r2")


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


async def test_the_stripe_gateway_refunds_once_per_key_through_stripe() -> None:
    """The refund names the charge and carries its key; a retry gets the same refund, a second key fails."""
    async with fake_stripe() as server:
        gateway = StripeGateway("sk_test_123", api_base=server.url)
        charge_id = await gateway.charge(
            amount_cents=700, currency="usd", token="tok_visa", idempotency_key="k1"
        )
        first = await gateway.refund(charge_id=charge_id, idempotency_key="r1")
        assert await gateway.refund(charge_id=charge_id, idempotency_key="r1") == first
        [refund] = server.refunds.values()
        assert (refund["id"], refund["amount"], refund["charge"]) == (first, 700, charge_id)
        request = server.requests[1]
        assert (request["path"], request["form"], request["idempotency_key"]) == (
            "/v1/refunds",
            {"charge": charge_id},
            "r1",
        )
        with pytest.raises(stripe.InvalidRequestError, match="has already been refunded"):
            await gateway.refund(charge_id=charge_id, idempotency_key="r2")
        await gateway.aclose()


async def test_the_service_pays_through_stripe_when_configured(
    nats_server: NatsServer, nats_client: Client, jetstream: JetStreamContext, tmp_path: Path
) -> None:
    """With a StripeGateway the route charges the order's price with its key, and refunds it if cancelled."""
    async with fake_stripe() as server:
        gateway = StripeGateway("sk_test_123", api_base=server.url)
        app = create_app(settings("payments", nats_server, tmp_path), gateway=gateway)
        async with running(app) as api:
            order_id = await an_order(api, nats_client, created(price=12.34))
            response = await pay(api, order_id)
            assert response.status_code == 201
            declined = await pay(api, order_id, token=DECLINED_TOKEN)
            await OrderCancelledPublisher(nats_client).publish(cancelled(order_id))
            await eventually(partial(consumer_is_settled, jetstream, "payments-service_order_cancelled"))
        assert declined.json() == {"errors": [{"message": "Order has already been paid"}]}
        [charge] = server.charges.values()
        assert charge["amount"] == 1234
        assert server.requests[0]["idempotency_key"] == f"ticketing-order-{order_id}"
        assert server.charged_cents(order_id) == 0
        assert server.refunds.keys() == {f"ticketing-refund-{response.json()['id']}"}


async def test_the_gateway_follows_stripe_key() -> None:
    """STRIPE_KEY selects Stripe; without it the fake gateway."""
    stripe_gateway = gateway_from_env({"STRIPE_KEY": "sk_test_1", "JWT_KEY": KEY})
    assert isinstance(stripe_gateway, StripeGateway)
    await stripe_gateway.aclose()
    assert isinstance(gateway_from_env({}), FakeGateway)
