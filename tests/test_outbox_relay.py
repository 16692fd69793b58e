"""The outbox relay: when NATS is down, and with several replicas' relays on one outbox."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from sqlalchemy import MetaData, func, select

import tickets.app
from conftest import DatabaseUrl, databases_on, eventually, ticket, wait_until
from services import published, running, settings, signed_in
from ticketing_common.sqlalchemy import Database, Outbox, OutboxRelay
from ticketing_common.testing import NatsServer

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer


async def test_an_event_committed_while_nats_is_down_is_published_when_it_is_back(
    tmp_path: Path,
) -> None:
    """201 while the server is down (the ticket is kept); ticket:created reaches JetStream once it is back."""
    with NatsServer() as server:
        app = tickets.app.create_app(settings("tickets", server, tmp_path))
        async with running(app) as api:
            server.stop()
            response = await api.post(
                "/api/tickets", json={"title": "gig", "price": 5}, headers=signed_in("a")
            )
            assert response.status_code == 201, response.text
            outbox = api.service.outbox.table
            async with api.service.database.sessions() as session:
                assert await session.scalar(select(func.count()).select_from(outbox)) == 1
            server.start()
            client = await nats.connect(server.url)
            try:
                js = client.jetstream()

                async def delivered() -> bool:
                    return [event["id"] for event in await published(js, "ticket:created")] == [
                        response.json()["id"]
                    ]

                await eventually(delivered, timeout=30)
            finally:
                await client.close()

            # The relay deletes the row after the PubAck, a moment after the event is in the stream.
            async def outbox_emptied() -> bool:
                async with api.service.database.sessions() as session:
                    return await session.scalar(select(func.count()).select_from(outbox)) == 0

            await eventually(outbox_emptied)


async def test_writes_answer_promptly_while_nats_is_down_and_each_event_is_published_once(
    tmp_path: Path,
) -> None:
    """20 POSTs at once with NATS stopped all get 201 within 2 s; then each event is stored once."""
    with NatsServer() as server:
        app = tickets.app.create_app(settings("tickets", server, tmp_path))
        async with running(app) as api:
            server.stop()

            async def create(number: int) -> str:
                body = {"title": f"gig {number}", "price": 5}
                response = await api.post("/api/tickets", json=body, headers=signed_in("a"))
                assert response.status_code == 201, response.text
                ticket_id: str = response.json()["id"]
                return ticket_id

            async with asyncio.timeout(2):
                created = await asyncio.gather(*(create(number) for number in range(20)))
            server.start()
            client = await nats.connect(server.url)
            try:
                js = client.jetstream()

                async def all_delivered() -> bool:
                    return len(await published(js, "ticket:created")) >= len(created)

                await eventually(all_delivered, timeout=30)
                await eventually(lambda: outbox_is_empty(api.service.database, api.service.outbox))
                stored = [event["id"] for event in await published(js, "ticket:created")]
                assert sorted(stored) == sorted(created)
            finally:
                await client.close()


async def outbox_is_empty(database: Database, outbox: Outbox) -> bool:
    async with database.sessions() as session:
        return await session.scalar(select(func.count()).select_from(outbox.table)) == 0


async def test_three_relays_on_postgresql_never_publish_one_row_twice(
    nats_client: Client, jetstream: JetStreamContext, postgres_server: PostgresServer
) -> None:
    """1,000 rows, three started relays woken together: every row is published exactly once, not 3 times.

    A plain NATS subscription sees every publish, also those JetStream's de-duplication drops; each row's
    claim (FOR UPDATE SKIP LOCKED) is what keeps the other relays off it.
    """
    url = databases_on(postgres_server)("relays")
    databases = [Database(url) for _ in range(3)]
    metadata = MetaData()
    outbox = Outbox(metadata)
    await databases[0].create_all(metadata)
    seen: list[str] = []

    async def count(message: Msg) -> None:
        seen.append(message.headers["Nats-Msg-Id"] if message.headers else "")

    subscription = await nats_client.subscribe("ticket:created", cb=count)
    async with databases[0].transaction() as session:
        for number in range(1000):
            await outbox.add(session, ticket(number))
    relays = [OutboxRelay(database, outbox, nats_client, batch=50) for database in databases]
    try:
        for relay in relays:
            relay.start()
        await asyncio.gather(*(relay.flush() for relay in relays))
        await eventually(lambda: outbox_is_empty(databases[0], outbox), timeout=60)
        await nats_client.flush()
        await wait_until(lambda: len(seen) >= 1000)
        assert len(seen) == 1000
        assert sorted(seen) == sorted(f"ticket:created:t{number}:0" for number in range(1000))
        assert len(await published(jetstream, "ticket:created")) == 1000
    finally:
        await subscription.unsubscribe()
        for relay in relays:
            await relay.close()
        for database in databases:
            await database.dispose()


async def test_two_relays_on_one_outbox_lose_no_event(
    nats_client: Client, jetstream: JetStreamContext, database_url: DatabaseUrl
) -> None:
    """Two replicas' relays on one outbox, events queued and flushed at once: every event reaches JetStream.

    Each relay deletes the rows it published. SQLite gives a deleted row's id to the next row unless told
    not to, and a relay used to delete by id alone: a slower relay then removed a new, unpublished row.
    """
    url = database_url("relays")
    databases = [Database(url), Database(url)]
    metadata = MetaData()
    outbox = Outbox(metadata)
    await databases[0].create_all(metadata)
    relays = [OutboxRelay(database, outbox, nats_client) for database in databases]

    async def queue_and_flush(number: int) -> None:
        relay = relays[number % 2]
        async with relay.database.transaction() as session:
            await outbox.add(session, ticket(number))
        await relay.flush()

    try:
        for batch in range(0, 200, 20):
            await asyncio.gather(*(queue_and_flush(number) for number in range(batch, batch + 20)))
        for relay in relays:
            await relay.flush()
        assert sorted(event["id"] for event in await published(jetstream, "ticket:created")) == sorted(
            ticket(number).id for number in range(200)
        )
    finally:
        for database in databases:
            await database.dispose()
