"""The tickets reference service: its routes and listeners, on a real nats-server and SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy import select

from conftest import DatabaseUrl, consumer_is_settled, eventually
from publishers import OrderCancelledPublisher, OrderCreatedPublisher
from services import ServiceClient, published, running, settings, signed_in
from ticketing_common import (
    OrderCancelledEvent,
    OrderCancelledTicket,
    OrderCreatedEvent,
    OrderCreatedTicket,
    OrderStatus,
    VersionConflictError,
)
from ticketing_common.testing import NatsServer
from tickets.app import create_app
from tickets.models import Ticket

ALICE, BOB = signed_in("alice"), signed_in("bob")


@pytest.fixture
async def client(
    nats_server: NatsServer, jetstream: JetStreamContext, database_url: DatabaseUrl
) -> AsyncIterator[ServiceClient]:
    async with running(create_app(settings("tickets", nats_server, database_url))) as client:
        yield client


async def create(client: ServiceClient, title: str = "concert", price: float = 20) -> dict[str, object]:
    response = await client.post("/api/tickets", json={"title": title, "price": price}, headers=ALICE)
    assert response.status_code == 201, response.text
    ticket: dict[str, object] = response.json()
    return ticket


async def test_the_create_route_exists_and_needs_a_user(client: ServiceClient) -> None:
    """POST /api/tickets is routed (not 404) and answers 401 when signed out, not when signed in."""
    assert (await client.post("/api/tickets", json={})).status_code == 401
    assert (await client.post("/api/tickets", json={}, headers=ALICE)).status_code == 400


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"title": "", "price": 10}, {"message": "Title is required", "field": "title"}),
        ({"price": 10}, {"message": "Field required", "field": "title"}),
        ({"title": "t", "price": -10}, {"message": "Price must be greater than 0", "field": "price"}),
        ({"title": "t"}, {"message": "Field required", "field": "price"}),
    ],
    ids=["empty title", "no title", "negative price", "no price"],
)
async def test_an_invalid_ticket_is_400(client: ServiceClient, body: object, error: object) -> None:
    """The original's validation messages, one entry per field."""
    response = await client.post("/api/tickets", json=body, headers=ALICE)
    assert (response.status_code, response.json()) == (400, {"errors": [error]})


async def test_create_saves_and_publishes_after_the_pub_ack(
    client: ServiceClient, jetstream: JetStreamContext
) -> None:
    """201 with the ticket at version 0, and ticket:created is already in the stream when it returns."""
    ticket = await create(client)
    assert ticket == {
        "id": ticket["id"],
        "title": "concert",
        "price": 20.0,
        "userId": "alice",
        "version": 0,
        "orderId": None,
    }
    assert await published(jetstream, "ticket:created") == [
        {"id": ticket["id"], "version": 0, "title": "concert", "price": 20.0, "userId": "alice"}
    ]


async def test_show_and_list(client: ServiceClient) -> None:
    """GET one (404 if unknown) and GET all."""
    assert (await client.get("/api/tickets/nope")).json() == {"errors": [{"message": "Not Found"}]}
    first, second = await create(client, "a"), await create(client, "b")
    assert (await client.get(f"/api/tickets/{first['id']}")).json() == first
    assert sorted(t["title"] for t in (await client.get("/api/tickets")).json()) == ["a", "b"]
    assert second["title"] == "b"


async def test_update_checks_existence_user_owner_and_body(client: ServiceClient) -> None:
    """404 unknown, 401 signed out, 401 not the owner, 400 invalid; nothing changes."""
    ticket = await create(client)
    url = f"/api/tickets/{ticket['id']}"
    body = {"title": "new", "price": 30}
    assert (await client.put("/api/tickets/nope", json=body, headers=ALICE)).status_code == 404
    assert (await client.put(url, json=body)).status_code == 401
    assert (await client.put(url, json=body, headers=BOB)).json() == {
        "errors": [{"message": "Not authorized"}]
    }
    assert (await client.put(url, json={"title": "", "price": 30}, headers=ALICE)).status_code == 400
    assert (await client.get(url)).json() == ticket


async def test_update_saves_the_next_version_and_publishes_it(
    client: ServiceClient, jetstream: JetStreamContext
) -> None:
    """200 with version 1; ticket:updated carries it."""
    ticket = await create(client)
    response = await client.put(
        f"/api/tickets/{ticket['id']}", json={"title": "new", "price": 30}, headers=ALICE
    )
    assert response.status_code == 200
    assert response.json()["version"] == 1
    assert await published(jetstream, "ticket:updated") == [
        {"id": ticket["id"], "version": 1, "title": "new", "price": 30.0, "userId": "alice"}
    ]


async def test_saving_a_stale_copy_is_a_version_conflict(client: ServiceClient) -> None:
    """Optimistic concurrency: a copy read at version 0 cannot overwrite version 1; versions go 0, 1, 2."""
    ticket_id = str((await create(client))["id"])
    service = client.service
    async with service.database.sessions() as session:
        stale = await session.get(Ticket, ticket_id)
    async with service.transaction() as session:
        fresh = await session.get(Ticket, ticket_id)
        assert fresh is not None
        fresh.price = 10
    assert (fresh.version, stale.version if stale else None) == (1, 0)
    stale.price = 15  # type: ignore[union-attr]
    with pytest.raises(VersionConflictError):
        async with service.transaction() as session:
            await session.merge(stale)
    async with service.transaction() as session:
        fresh = await session.merge(fresh)
        fresh.price = 12
    assert (fresh.version, fresh.price) == (2, 12)


def order_created(ticket_id: str, order_id: str = "o1", price: float = 20) -> OrderCreatedEvent:
    return OrderCreatedEvent(
        id=order_id,
        version=0,
        status=OrderStatus.CREATED,
        user_id="bob",
        expires_at=datetime.now(UTC) + timedelta(minutes=15),
        ticket=OrderCreatedTicket(id=ticket_id, price=price),
    )


async def ticket_row(client: ServiceClient, ticket_id: str) -> Ticket:
    async with client.service.database.sessions() as session:
        return (await session.scalars(select(Ticket).where(Ticket.id == ticket_id))).one()


async def test_order_created_reserves_acks_and_publishes(
    client: ServiceClient, nats_client: Client, jetstream: JetStreamContext
) -> None:
    """The ticket gets the order id, ticket:updated announces it at version 1, the event is acked."""
    ticket_id = str((await create(client))["id"])
    await OrderCreatedPublisher(nats_client).publish(order_created(ticket_id))
    await eventually(lambda: consumer_is_settled(jetstream, "tickets-service_order_created"))
    assert (await ticket_row(client, ticket_id)).order_id == "o1"
    updated = await published(jetstream, "ticket:updated")
    assert [(event["version"], event["orderId"]) for event in updated] == [(1, "o1")]
    edit = await client.put(f"/api/tickets/{ticket_id}", json={"title": "x", "price": 1}, headers=ALICE)
    assert edit.json() == {"errors": [{"message": "Cannot edit a reserved ticket"}]}
    assert ticket_id not in [t["id"] for t in (await client.get("/api/tickets")).json()]


async def test_order_cancelled_releases_only_its_own_reservation(
    client: ServiceClient, nats_client: Client, jetstream: JetStreamContext
) -> None:
    """A late order:cancelled of order A leaves the ticket to order B; B's cancellation releases it."""
    ticket_id = str((await create(client))["id"])
    await OrderCreatedPublisher(nats_client).publish(order_created(ticket_id, "B"))
    await eventually(lambda: consumer_is_settled(jetstream, "tickets-service_order_created"))
    cancel = OrderCancelledPublisher(nats_client)
    await cancel.publish(OrderCancelledEvent(id="A", version=1, ticket=OrderCancelledTicket(id=ticket_id)))
    await eventually(lambda: consumer_is_settled(jetstream, "tickets-service_order_cancelled"))
    assert (await ticket_row(client, ticket_id)).order_id == "B"
    await cancel.publish(OrderCancelledEvent(id="B", version=1, ticket=OrderCancelledTicket(id=ticket_id)))
    await eventually(lambda: consumer_is_settled(jetstream, "tickets-service_order_cancelled"))
    assert (await ticket_row(client, ticket_id)).order_id is None
    updated = await published(jetstream, "ticket:updated")
    assert [(event["version"], event.get("orderId")) for event in updated] == [(1, "B"), (2, None)]


async def test_a_cancellation_seen_before_its_creation_reserves_nothing(
    client: ServiceClient, nats_client: Client, jetstream: JetStreamContext
) -> None:
    """order:created and order:cancelled have separate consumers: if the cancel wins, the create is void."""
    ticket_id = str((await create(client))["id"])
    cancelled = OrderCancelledEvent(id="o1", version=1, ticket=OrderCancelledTicket(id=ticket_id))
    await OrderCancelledPublisher(nats_client).publish(cancelled)
    await eventually(lambda: consumer_is_settled(jetstream, "tickets-service_order_cancelled"))
    await OrderCreatedPublisher(nats_client).publish(order_created(ticket_id, "o1"))
    await eventually(lambda: consumer_is_settled(jetstream, "tickets-service_order_created"))
    assert (await ticket_row(client, ticket_id)).order_id is None
    assert await published(jetstream, "ticket:updated") == []


async def test_an_order_made_before_a_price_edit_reached_orders_keeps_its_price(
    client: ServiceClient, nats_client: Client, jetstream: JetStreamContext
) -> None:
    """An edit the order did not see is undone by the reservation: the ticket shows what the buyer pays."""
    ticket_id = str((await create(client, price=20))["id"])
    edit = await client.put(f"/api/tickets/{ticket_id}", json={"title": "new", "price": 35}, headers=ALICE)
    assert (edit.status_code, edit.json()["price"]) == (200, 35)
    await OrderCreatedPublisher(nats_client).publish(order_created(ticket_id, price=20))
    await eventually(lambda: consumer_is_settled(jetstream, "tickets-service_order_created"))
    ticket = await ticket_row(client, ticket_id)
    assert (ticket.order_id, ticket.price, ticket.title, ticket.version) == ("o1", 20, "new", 2)
    updated = await published(jetstream, "ticket:updated")
    assert [(e["version"], e["price"], e.get("orderId")) for e in updated] == [(1, 35, None), (2, 20, "o1")]


async def test_an_order_of_a_ticket_another_order_holds_waits_for_a_cancellation(
    client: ServiceClient, nats_client: Client, jetstream: JetStreamContext
) -> None:
    """order:created of B while A holds the ticket waits (not acked) until A's cancellation releases it."""
    ticket_id = str((await create(client))["id"])
    created = OrderCreatedPublisher(nats_client)
    await created.publish(order_created(ticket_id, "A"))
    await eventually(lambda: consumer_is_settled(jetstream, "tickets-service_order_created"))
    await created.publish(order_created(ticket_id, "B"))
    await eventually(lambda: _redelivered(jetstream, "tickets-service_order_created"))
    assert (await ticket_row(client, ticket_id)).order_id == "A"
    cancelled = OrderCancelledEvent(id="A", version=1, ticket=OrderCancelledTicket(id=ticket_id))
    await OrderCancelledPublisher(nats_client).publish(cancelled)
    await eventually(lambda: consumer_is_settled(jetstream, "tickets-service_order_created"))
    assert (await ticket_row(client, ticket_id)).order_id == "B"
    updated = await published(jetstream, "ticket:updated")
    assert [(event["version"], event.get("orderId")) for event in updated] == [(1, "A"), (2, None), (3, "B")]


async def _redelivered(js: JetStreamContext, consumer: str) -> bool:
    return bool((await js.consumer_info("TICKETING", consumer)).num_redelivered >= 1)
