"""tickets and orders together on one nats-server: the ticket's story, replicated by events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from nats.js import JetStreamContext

import orders.app
import tickets.app
from conftest import DatabaseUrl, eventually
from orders.models import Ticket as TicketReplica
from services import running, service_of, settings, signed_in
from ticketing_common import ConfigurationError
from ticketing_common.service import ServiceSettings
from ticketing_common.testing import NatsServer

SELLER, BUYER = signed_in("seller"), signed_in("buyer")


async def test_reserve_edit_cancel_edit_keeps_the_replica_in_step(
    nats_server: NatsServer, jetstream: JetStreamContext, database_url: DatabaseUrl
) -> None:
    """Create in tickets, see it in orders, reserve (edit 400), cancel (edit 200): replica ends as source."""
    tickets_app = tickets.app.create_app(settings("tickets", nats_server, database_url))
    orders_app = orders.app.create_app(settings("orders", nats_server, database_url))
    async with running(tickets_app) as tickets_api, running(orders_app) as orders_api:

        def replica_at(version: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                async with service_of(orders_app).database.sessions() as session:
                    replica = await session.get(TicketReplica, ticket["id"])
                return replica is not None and replica.version == version

            return check

        def reserved(order_id: str | None) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                shown = (await tickets_api.get(f"/api/tickets/{ticket['id']}")).json()
                return bool(shown.get("orderId") == order_id)

            return check

        ticket = (
            await tickets_api.post("/api/tickets", json={"title": "gig", "price": 10}, headers=SELLER)
        ).json()
        await eventually(replica_at(0))

        order = await orders_api.post("/api/orders", json={"ticketId": ticket["id"]}, headers=BUYER)
        assert order.status_code == 201
        await eventually(reserved(order.json()["id"]))
        await eventually(replica_at(1))
        edit = await tickets_api.put(
            f"/api/tickets/{ticket['id']}", json={"title": "x", "price": 5}, headers=SELLER
        )
        assert edit.json() == {"errors": [{"message": "Cannot edit a reserved ticket"}]}

        assert (
            await orders_api.delete(f"/api/orders/{order.json()['id']}", headers=BUYER)
        ).status_code == 204
        await eventually(reserved(None))
        edit = await tickets_api.put(
            f"/api/tickets/{ticket['id']}", json={"title": "x", "price": 5}, headers=SELLER
        )
        assert edit.status_code == 200
        assert edit.json()["version"] == 3

        await eventually(replica_at(3))
        async with service_of(orders_app).database.sessions() as session:
            replica = await session.get(TicketReplica, ticket["id"])
        assert replica is not None
        assert (replica.title, replica.price, replica.version) == ("x", 5, 3)
        again = await orders_api.post("/api/orders", json={"ticketId": ticket["id"]}, headers=BUYER)
        assert again.status_code == 201


def test_a_service_refuses_to_start_without_its_environment() -> None:
    """JWT_KEY and NATS_URL are named together, before anything starts; DATABASE_URL defaults to SQLite."""
    with pytest.raises(
        ConfigurationError, match="the tickets service cannot start: set JWT_KEY and NATS_URL"
    ):
        ServiceSettings.from_env("tickets", {})
    with pytest.raises(ConfigurationError, match="PORT is invalid"):
        ServiceSettings.from_env("tickets", {"JWT_KEY": "k" * 32, "NATS_URL": "nats://x", "PORT": "http"})
    ready = ServiceSettings.from_env(
        "tickets", {"JWT_KEY": "k" * 32, "NATS_URL": "nats://x"}, default_port=3001
    )
    assert (ready.database_url, ready.port) == ("sqlite+aiosqlite:///tickets.db", 3001)
