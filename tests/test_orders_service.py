"""The orders reference service: routes, ticket replica, expiration and payment, on real NATS and SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy.exc import IntegrityError

from conftest import DatabaseUrl, consumer_is_settled, eventually
from orders.app import create_app
from orders.models import Order, Ticket
from publishers import (
    ExpirationCompletePublisher,
    PaymentCreatedPublisher,
    TicketCreatedPublisher,
    TicketUpdatedPublisher,
)
from services import ServiceClient, published, running, settings, signed_in
from ticketing_common import (
    DEAD_LETTERS_STREAM,
    ExpirationCompleteEvent,
    OrderStatus,
    PaymentCreatedEvent,
    TicketCreatedEvent,
    TicketUpdatedEvent,
)
from ticketing_common.testing import NatsServer

ALICE, BOB = signed_in("alice"), signed_in("bob")


@pytest.fixture
async def client(
    nats_server: NatsServer, jetstream: JetStreamContext, database_url: DatabaseUrl
) -> AsyncIterator[ServiceClient]:
    async with running(create_app(settings("orders", nats_server, database_url))) as client:
        yield client


async def replica(client: ServiceClient, ticket_id: str) -> Ticket | None:
    async with client.service.database.sessions() as session:
        return await session.get(Ticket, ticket_id)


async def a_ticket(client: ServiceClient, nats_client: Client, ticket_id: str = "t1") -> str:
    """Publish ticket:created as the tickets service would, and wait for the replica."""
    event = TicketCreatedEvent(id=ticket_id, version=0, title="concert", price=20, user_id="seller")
    await TicketCreatedPublisher(nats_client).publish(event)
    await eventually(lambda: _exists(client, ticket_id))
    return ticket_id


async def _exists(client: ServiceClient, ticket_id: str) -> bool:
    return await replica(client, ticket_id) is not None


async def order(client: ServiceClient, ticket_id: str, user: dict[str, str] = BOB) -> httpx.Response:
    return await client.post("/api/orders", json={"ticketId": ticket_id}, headers=user)


async def test_ordering_an_unknown_ticket_is_404(client: ServiceClient) -> None:
    """No replica, no order."""
    assert (await order(client, "nope")).json() == {"errors": [{"message": "Not Found"}]}


async def test_an_order_needs_a_ticket_id(client: ServiceClient) -> None:
    """Missing or blank ticketId is 400 naming the field as sent."""
    for body in ({}, {"ticketId": " "}):
        response = await client.post("/api/orders", json=body, headers=BOB)
        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == "ticketId"


async def test_an_order_reserves_and_publishes(
    client: ServiceClient, nats_client: Client, jetstream: JetStreamContext
) -> None:
    """201 with the ticket and expiresAt; order:created is in the stream; a second order is 400."""
    ticket_id = await a_ticket(client, nats_client)
    created = await order(client, ticket_id)
    assert created.status_code == 201
    body = created.json()
    assert (body["status"], body["userId"], body["version"], body["ticket"]["id"]) == (
        "created",
        "bob",
        0,
        "t1",
    )
    [event] = await published(jetstream, "order:created")
    assert event == {
        "id": body["id"],
        "version": 0,
        "status": "created",
        "userId": "bob",
        "expiresAt": body["expiresAt"],
        "ticket": {"id": "t1", "price": 20.0},
    }
    again = await order(client, ticket_id, ALICE)
    assert again.json() == {"errors": [{"message": "Ticket is already reserved"}]}


async def test_twenty_concurrent_orders_reserve_the_ticket_once(
    client: ServiceClient, nats_client: Client, jetstream: JetStreamContext
) -> None:
    """Exactly one 201; the others 400 "Ticket is already reserved"; one order:created."""
    ticket_id = await a_ticket(client, nats_client)
    users = [signed_in(f"user{n}") for n in range(20)]
    responses = await asyncio.gather(*(order(client, ticket_id, user) for user in users))
    assert sorted(response.status_code for response in responses) == [201] + [400] * 19
    assert len(await published(jetstream, "order:created")) == 1


async def test_list_and_show_only_the_users_orders(client: ServiceClient, nats_client: Client) -> None:
    """GET /api/orders lists the user's own; GET one is 401 for another user, 404 unknown."""
    first, second = await a_ticket(client, nats_client, "t1"), await a_ticket(client, nats_client, "t2")
    bobs = (await order(client, first)).json()
    await order(client, second, ALICE)
    assert [o["id"] for o in (await client.get("/api/orders", headers=BOB)).json()] == [bobs["id"]]
    assert (await client.get(f"/api/orders/{bobs['id']}", headers=BOB)).json() == bobs
    assert (await client.get(f"/api/orders/{bobs['id']}", headers=ALICE)).status_code == 401
    assert (await client.get("/api/orders/nope", headers=BOB)).status_code == 404


async def test_cancel_sets_cancelled_and_publishes_once(
    client: ServiceClient, nats_client: Client, jetstream: JetStreamContext
) -> None:
    """DELETE: 204, status cancelled, order:cancelled at version 1; again: 204 and no second event."""
    ticket_id = await a_ticket(client, nats_client)
    order_id = (await order(client, ticket_id)).json()["id"]
    assert (await client.delete(f"/api/orders/{order_id}", headers=ALICE)).status_code == 401
    for _ in range(2):
        assert (await client.delete(f"/api/orders/{order_id}", headers=BOB)).status_code == 204
    assert (await client.get(f"/api/orders/{order_id}", headers=BOB)).json()["status"] == "cancelled"
    assert await published(jetstream, "order:cancelled") == [
        {"id": order_id, "version": 1, "ticket": {"id": "t1"}}
    ]
    assert (await order(client, ticket_id, ALICE)).status_code == 201


async def test_ticket_updates_apply_in_version_order(
    client: ServiceClient, nats_client: Client, jetstream: JetStreamContext
) -> None:
    """Version 2 before 1 waits until 1 arrives; both apply in order; replays are ignored."""
    ticket_id = await a_ticket(client, nats_client)
    update = TicketUpdatedPublisher(nats_client)

    def version(number: int) -> TicketUpdatedEvent:
        return TicketUpdatedEvent(
            id=ticket_id, version=number, title=f"v{number}", price=number, user_id="seller"
        )

    await update.publish(version(2))
    await eventually(lambda: _redelivered(jetstream))
    assert (await replica(client, ticket_id)).version == 0  # type: ignore[union-attr]
    await update.publish(version(1))
    await eventually(lambda: consumer_is_settled(jetstream, "orders-service_ticket_updated"))
    ticket = await replica(client, ticket_id)
    assert ticket is not None
    assert (ticket.version, ticket.title, ticket.price) == (2, "v2", 2)
    await update.publish(version(1), msg_id="replayed")
    await eventually(lambda: consumer_is_settled(jetstream, "orders-service_ticket_updated"))
    assert (await replica(client, ticket_id)).title == "v2"  # type: ignore[union-attr]


async def _redelivered(js: JetStreamContext) -> bool:
    info = await js.consumer_info("TICKETING", "orders-service_ticket_updated")
    return bool(info.num_redelivered >= 1)


async def test_expiration_cancels_an_unpaid_order_once(
    client: ServiceClient, nats_client: Client, jetstream: JetStreamContext
) -> None:
    """expiration:complete cancels and publishes order:cancelled; a second one is acked with no event."""
    order_id = (await order(client, await a_ticket(client, nats_client))).json()["id"]
    expire = ExpirationCompletePublisher(nats_client)
    await expire.publish(ExpirationCompleteEvent(order_id=order_id))
    await expire.publish(ExpirationCompleteEvent(order_id=order_id), msg_id="again")
    await eventually(lambda: consumer_is_settled(jetstream, "orders-service_expiration_complete"))
    assert (await client.get(f"/api/orders/{order_id}", headers=BOB)).json()["status"] == "cancelled"
    assert len(await published(jetstream, "order:cancelled")) == 1


async def test_a_paid_order_is_complete_and_does_not_expire(
    client: ServiceClient, nats_client: Client, jetstream: JetStreamContext
) -> None:
    """payment:created completes the order; a later expiration leaves it complete and publishes nothing."""
    order_id = (await order(client, await a_ticket(client, nats_client))).json()["id"]
    await PaymentCreatedPublisher(nats_client).publish(
        PaymentCreatedEvent(id="p1", order_id=order_id, stripe_id="ch_1")
    )
    await eventually(lambda: consumer_is_settled(jetstream, "orders-service_payment_created"))
    await ExpirationCompletePublisher(nats_client).publish(ExpirationCompleteEvent(order_id=order_id))
    await eventually(lambda: consumer_is_settled(jetstream, "orders-service_expiration_complete"))
    assert (await client.get(f"/api/orders/{order_id}", headers=BOB)).json()["status"] == "complete"
    assert await published(jetstream, "order:cancelled") == []
    assert (await client.delete(f"/api/orders/{order_id}", headers=BOB)).status_code == 400


async def test_a_payment_that_reaches_a_cancelled_order_changes_nothing(
    client: ServiceClient, nats_client: Client, jetstream: JetStreamContext
) -> None:
    """payment:created after the cancellation: acked (no dead letter), the order stays cancelled, no event."""
    order_id = (await order(client, await a_ticket(client, nats_client))).json()["id"]
    assert (await client.delete(f"/api/orders/{order_id}", headers=BOB)).status_code == 204
    await PaymentCreatedPublisher(nats_client).publish(
        PaymentCreatedEvent(id="p1", order_id=order_id, stripe_id="ch_1")
    )
    await eventually(lambda: consumer_is_settled(jetstream, "orders-service_payment_created"))
    assert (await client.get(f"/api/orders/{order_id}", headers=BOB)).json()["status"] == "cancelled"
    assert len(await published(jetstream, "order:cancelled")) == 1
    assert (await jetstream.stream_info(DEAD_LETTERS_STREAM)).state.messages == 0


async def test_an_order_shows_the_price_it_was_made_at(
    client: ServiceClient, nats_client: Client, jetstream: JetStreamContext
) -> None:
    """The ticket's price may change after the order: the order shows (and charges) its own."""
    ticket_id = await a_ticket(client, nats_client)
    made = (await order(client, ticket_id)).json()
    assert made["ticket"]["price"] == 20
    await TicketUpdatedPublisher(nats_client).publish(
        TicketUpdatedEvent(id=ticket_id, version=1, title="concert", price=99, user_id="seller")
    )
    await eventually(lambda: consumer_is_settled(jetstream, "orders-service_ticket_updated"))
    assert (await replica(client, ticket_id)).price == 99  # type: ignore[union-attr]
    shown = (await client.get(f"/api/orders/{made['id']}", headers=BOB)).json()
    assert (shown["ticket"]["price"], shown["ticket"]["version"]) == (20, 1)
    [created] = await published(jetstream, "order:created")
    assert created["ticket"]["price"] == 20


async def test_the_database_refuses_a_second_active_order_for_a_ticket(
    client: ServiceClient, nats_client: Client
) -> None:
    """The partial unique index holds even for writers that skip the route's check (PostgreSQL's guard)."""
    ticket_id = await a_ticket(client, nats_client)
    expires = datetime.now(UTC)
    async with client.service.transaction() as session:
        for user_id, status in (("a", OrderStatus.CANCELLED), ("b", OrderStatus.CREATED)):
            session.add(
                Order(user_id=user_id, status=status, expires_at=expires, ticket_id=ticket_id, price=20)
            )
    with pytest.raises(IntegrityError):
        async with client.service.transaction() as session:
            session.add(
                Order(
                    user_id="c", status=OrderStatus.CREATED, expires_at=expires, ticket_id=ticket_id, price=20
                )
            )
