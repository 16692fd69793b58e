"""How long the outbox relay takes to drain a backlog: rows committed while NATS was away, then published.

Each repeat commits ``--rows`` events to a fresh SQLite outbox, then times one ``publish_pending()``
(which publishes and deletes every row, ``batch`` rows per pass) against a fresh stream on an embedded
nats-server. Run: ``nox -s bench`` runs it after bench.py (``-- --quick`` for a short run).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import nats
from nats.aio.client import Client
from sqlalchemy import MetaData

from ticketing_common import EVENTS_STREAM, TicketCreatedEvent, ensure_stream
from ticketing_common import opentelemetry as event_tracing
from ticketing_common.sqlalchemy import Database, Outbox, OutboxRelay
from ticketing_common.testing import NatsServer


async def drain_once(client: Client, folder: Path, rows: int, repeat: int) -> float:
    """Commit ``rows`` events to a new outbox, then return the seconds one relay pass took to drain it."""
    metadata = MetaData()
    outbox = Outbox(metadata)
    database = Database(f"sqlite+aiosqlite:///{folder / f'outbox-{repeat}.db'}")
    try:
        await database.create_all(metadata)
        async with database.transaction() as session:
            for number in range(rows):
                event = TicketCreatedEvent(
                    id=f"r{repeat}-t{number}", version=0, title="concert", price=10, user_id="u1"
                )
                await outbox.add(session, event)
        relay = OutboxRelay(database, outbox, client)
        started = time.perf_counter()
        published = await relay.publish_pending()
        elapsed = time.perf_counter() - started
    finally:
        await database.dispose()
    if published != rows:
        raise RuntimeError(f"drained {published} rows of {rows}")
    return elapsed


async def main(rows: int, repeats: int) -> None:
    logging.basicConfig(level=logging.ERROR)
    event_tracing.disable()  # the relay's own cost, as in bench.py's plain contenders
    with NatsServer() as server, tempfile.TemporaryDirectory() as tmp:
        client = await nats.connect(server.url)
        js = client.jetstream()
        await ensure_stream(js)
        times = []
        for repeat in range(repeats):
            await js.purge_stream(EVENTS_STREAM)
            times.append(await drain_once(client, Path(tmp), rows, repeat))
        await client.close()
    median = statistics.median(times)
    print(
        f"\noutbox drain, {rows} rows on SQLite, ticketing-common {version('ticketing-common')}: "
        f"median {median:.2f} s ({rows / median:,.0f} rows/s), min {min(times):.2f} s, max {max(times):.2f} s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run, to check the benchmark works")
    parser.add_argument("--rows", type=int, default=10_000, help="the backlog's size (default 10,000)")
    arguments = parser.parse_args()
    if arguments.quick:
        asyncio.run(main(rows=500, repeats=1))
    else:
        asyncio.run(main(rows=arguments.rows, repeats=3))
