"""The outbox relay: when NATS is down, and with several replicas' relays on one outbox."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy import MetaData, func, select

import tickets.app
from conftest import DatabaseUrl, eventually, ticket
from services import published, running, settings, signed_in
from ticketing_common.sqlalchemy import Database, Outbox, OutboxRelay
from ticketing_common.testing import NatsServer


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
