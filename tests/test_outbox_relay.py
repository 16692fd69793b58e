"""The outbox relay: NATS down, several replicas' relays on one outbox, the rows commits hand it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from sqlalchemy import MetaData, event, func, select

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


class Statements:
    """The SQL statements an engine runs on the outbox table, by their first word."""

    def __init__(self, database: Database, table: str = "outbox") -> None:
        self.words: list[str] = []
        self.table = table
        event.listen(database.engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, *arguments: object) -> None:
        statement = str(arguments[2])
        if f" {self.table}" in statement:
            self.words.append(statement.split(maxsplit=1)[0].upper())


@asynccontextmanager
async def started_relay(
    database_url: DatabaseUrl,
    nats_client: Client,
    *,
    poll_interval: float = 1.0,
    delete_interval: float = 0.1,
) -> AsyncIterator[tuple[Database, Outbox, OutboxRelay]]:
    """A database with an outbox, and its relay started (its first scan over); closed after."""
    database = Database(database_url("handoff"))
    outbox = Outbox(MetaData())
    await database.create_all(outbox.table.metadata)
    relay = OutboxRelay(
        database, outbox, nats_client, poll_interval=poll_interval, delete_interval=delete_interval
    )
    relay.start()
    try:
        assert await relay.flush()
        yield database, outbox, relay
    finally:
        await relay.close()
        await database.dispose()


async def test_committed_rows_are_published_from_memory_and_deleted_together_later(
    nats_client: Client, jetstream: JetStreamContext, database_url: DatabaseUrl
) -> None:
    """Each flush publishes its transaction's row without a SELECT of the outbox; one DELETE removes all."""
    async with started_relay(database_url, nats_client, delete_interval=60) as (database, outbox, relay):
        statements = Statements(database)
        for number in range(5):
            async with database.transaction() as session:
                await outbox.add(session, ticket(number))
            assert await relay.flush()
        assert [event["id"] for event in await published(jetstream, "ticket:created")] == [
            f"t{number}" for number in range(5)
        ]
        assert "SELECT" not in statements.words
        assert await outbox.count(database) == 5  # published, their delete not due for a minute
        await relay.close()
        assert await outbox.count(database) == 0
        assert statements.words.count("DELETE") == 1


async def test_a_row_of_a_rolled_back_savepoint_or_transaction_is_never_published(
    nats_client: Client, jetstream: JetStreamContext, database_url: DatabaseUrl
) -> None:
    """Only what committed goes out: the savepoint's row was rolled back, the transaction around it kept."""
    async with started_relay(database_url, nats_client) as (database, outbox, relay):
        async with database.transaction() as session:
            await outbox.add(session, ticket(1))
            savepoint = await session.begin_nested()
            await outbox.add(session, ticket(2))
            await savepoint.rollback()
            async with session.begin_nested():
                await outbox.add(session, ticket(3))  # released: committed with the transaction

        async def add_then_fail() -> None:
            async with database.transaction() as session:
                await outbox.add(session, ticket(4))
                raise LookupError("rolled back")

        with pytest.raises(LookupError):
            await add_then_fail()
        assert await relay.flush()
        assert sorted(event["id"] for event in await published(jetstream, "ticket:created")) == ["t1", "t3"]
        await eventually(lambda: outbox_is_empty(database, outbox))


async def test_rows_another_process_committed_are_found_by_the_relays_own_scans(
    nats_client: Client, jetstream: JetStreamContext, database_url: DatabaseUrl
) -> None:
    """A row written through another engine (another process) is never handed over: a scan publishes it."""
    async with started_relay(database_url, nats_client, poll_interval=0.2) as (database, outbox, _relay):
        other = Database(database.url)
        try:
            async with other.transaction() as session:
                await outbox.add(session, ticket(7))
        finally:
            await other.dispose()

        async def delivered() -> bool:
            return [event["id"] for event in await published(jetstream, "ticket:created")] == ["t7"]

        await eventually(delivered)
        await eventually(lambda: outbox_is_empty(database, outbox))


async def test_a_row_is_stored_as_sqlalchemy_would_store_it(database_url: DatabaseUrl) -> None:
    """The outbox's INSERT (one trip to aiosqlite's thread on SQLite) reads back as SQLAlchemy wrote it."""
    database = Database(database_url("row"))
    outbox = Outbox(MetaData())
    await database.create_all(outbox.table.metadata)
    try:
        before = datetime.now(UTC)
        async with database.transaction() as session:
            await outbox.add(session, ticket(1), msg_id="m-1")
            await outbox.add(session, ticket(2))
        async with database.sessions() as session:
            rows = (await session.execute(select(outbox.table).order_by(outbox.table.c.id))).all()
        assert [(row.subject, row.msg_id, row.data) for row in rows] == [
            ("ticket:created", "m-1", ticket(1).model_dump_json().encode()),
            ("ticket:created", "ticket:created:t2:0", ticket(2).model_dump_json().encode()),
        ]
        assert rows[0].id < rows[1].id
        created = rows[0].created_at.replace(tzinfo=rows[0].created_at.tzinfo or UTC)
        assert before <= created <= datetime.now(UTC)
    finally:
        await database.dispose()


async def test_every_flush_that_succeeds_finds_its_event_in_the_stream_while_the_relay_scans_often(
    nats_client: Client, jetstream: JetStreamContext, database_url: DatabaseUrl
) -> None:
    """Scans every 50 ms among concurrent writers: a flush's True still means "in JetStream".

    A scan of the loop's own accord leaves rows younger than ``poll_interval`` to the memory of the relay;
    it once also forgot the rows handed to it meanwhile, and their flushes answered True unpublished.
    """
    async with started_relay(database_url, nats_client, poll_interval=0.05) as (database, outbox, relay):

        async def write_and_flush(number: int) -> None:
            async with database.transaction() as session:
                await outbox.add(session, ticket(number))
            assert await relay.flush()
            stored = {event["id"] for event in await published(jetstream, "ticket:created")}
            assert ticket(number).id in stored

        for start in range(0, 120, 20):
            await asyncio.gather(*(write_and_flush(number) for number in range(start, start + 20)))
