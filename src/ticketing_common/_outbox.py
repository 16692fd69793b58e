"""The transactional outbox: an event is stored with the change it announces, then relayed to JetStream.

A route that saved a record and then published its event could lose the event (the process dies, NATS
is down) after the record is committed: the original's flaw 1. Here the event is a row written in the
same transaction as the record, so both are committed or neither is; the relay publishes rows in order,
with the event's ``Nats-Msg-Id``, and deletes them after the PubAck. A row published twice (a crash between
PubAck and delete) is de-duplicated by JetStream, and a late duplicate is ignored by replicas' versions.
Routes never publish themselves: they wake the relay and wait for it a bounded time, so an outage of NATS
makes them answer late by at most that time, not queue behind each other's publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from nats.aio.client import Client
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession

from ticketing_common import _instruments
from ticketing_common._events import Event
from ticketing_common._instruments import look_for_tracing
from ticketing_common._pipeline import Outgoing, publish_acked_many
from ticketing_common.errors import PublishError, PublishManyError

if TYPE_CHECKING:
    from ticketing_common.sqlalchemy import Database

logger = logging.getLogger("ticketing_common.outbox")


class Outbox:
    """The outbox table of one service, declared on the service's own ``MetaData``."""

    def __init__(self, metadata: MetaData, *, table_name: str = "outbox") -> None:
        look_for_tracing()
        if table_name in metadata.tables:  # a second app of the same service (tests, workers)
            self.table = metadata.tables[table_name]
            return
        self.table = Table(
            table_name,
            metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("subject", String(255), nullable=False),
            Column("msg_id", String(255), nullable=False),
            Column("data", LargeBinary, nullable=False),
            Column("created_at", DateTime(timezone=True), nullable=False),
            # The W3C trace context of the transaction that wrote the row, as JSON headers (or NULL):
            # the relay publishes in the request's trace, however late it runs.
            Column("trace_context", Text, nullable=True),
            # SQLite would give a deleted row's id to the next row: ids must name one event for good.
            sqlite_autoincrement=True,
        )

    async def count(self, database: Database) -> int:
        """How many rows wait to be published."""
        async with database.sessions() as session:
            return int((await session.execute(select(func.count()).select_from(self.table))).scalar_one())

    async def add(self, session: AsyncSession, event: Event, *, msg_id: str | None = None) -> None:
        """Queue ``event`` in the session's transaction: it is published only if the transaction commits."""
        tracing = _instruments.TRACING
        carrier = tracing.carrier() if tracing is not None else None
        await session.execute(
            insert(self.table).values(
                subject=str(event.subject),
                msg_id=msg_id or event.message_id() or uuid.uuid4().hex,
                data=event.model_dump_json().encode(),
                created_at=datetime.now(UTC),
                trace_context=json.dumps(carrier) if carrier else None,
            )
        )


class OutboxRelay:
    """Publishes an outbox's rows: in a background loop, which ``flush()`` wakes after each commit.

    On PostgreSQL each pass claims its rows (``SELECT ... FOR UPDATE SKIP LOCKED``) until it has published
    and deleted them, so several replicas' relays share the rows instead of each publishing all of them;
    rows reach the stream in id order within a pass, not across replicas (listeners order by version).
    SQLite has no row locks: one replica per SQLite file (a second relay's copies are de-duplicated by
    JetStream within its duplicate window, not beyond).

    Args:
        poll_interval: seconds between passes when nothing wakes the loop (rows left after an outage).
        batch: rows per pass and per claim, published with that many PubAcks outstanding.
        publish_deadline: seconds a pass's rows may take to get their PubAcks (retries included) before
            the pass gives up and leaves those not stored for the next one.
        flush_timeout: the longest ``flush()`` waits; a route answers after at most this long when NATS is
            down, its event safe in the outbox.
    """

    def __init__(  # noqa: PLR0913 - the relay's knobs, all keyword-only
        self,
        database: Database,
        outbox: Outbox,
        client: Client,
        *,
        poll_interval: float = 1.0,
        batch: int = 500,
        publish_deadline: float = 5.0,
        flush_timeout: float = 1.0,
    ) -> None:
        self.database = database
        self.outbox = outbox
        self.poll_interval = poll_interval
        self.batch = batch
        self.publish_deadline = publish_deadline
        self.flush_timeout = flush_timeout
        self._js = client.jetstream()
        self._claims = database.engine.dialect.name == "postgresql"
        # One pass at a time in this process keeps its rows' order on the stream.
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # flush() takes a number; a pass that starts after it and ends settles it (and succeeds or not).
        self._requested = 0
        self._settled = 0
        self._succeeded = 0
        self._progress = asyncio.Condition()

    async def publish_pending(self, all_published: Callable[[], Awaitable[None]] | None = None) -> int:
        """Publish the rows not claimed by another relay, oldest first; return how many. Stops at a failure.

        ``all_published`` is awaited once the last rows have their PubAcks, before they are deleted.

        Raises:
            PublishError: JetStream did not store a row; it and those after it stay queued.
        """
        published = 0
        async with self._lock:
            while True:
                rows_done = await self._publish_batch(all_published)
                published += rows_done
                # A short batch was all there was: one more SELECT would find nothing, and a route's
                # flush waits for it (rows committed since then have flushes of their own coming).
                if rows_done < self.batch:
                    return published

    async def _publish_batch(self, all_published: Callable[[], Awaitable[None]] | None) -> int:
        table = self.outbox.table
        query = select(table.c.id, table.c.subject, table.c.msg_id, table.c.data, table.c.trace_context)
        query = query.order_by(table.c.id)
        query = query.limit(self.batch)
        done: list[tuple[int, str]] = []
        if not self._claims:
            async with self.database.sessions() as session:
                rows = (await session.execute(query)).all()
            try:
                await self._publish(rows, done, all_published)
            finally:
                if done:
                    # Another relay on this SQLite file may have deleted these rows and a new row reused
                    # an id (outboxes made before AUTOINCREMENT): delete the rows as read, never newer.
                    async with self.database.transaction() as session:
                        as_read = tuple_(table.c.id, table.c.msg_id).in_(done)
                        await session.execute(delete(table).where(as_read))
            return len(done)
        async with self.database.transaction() as session:
            rows = (await session.execute(query.with_for_update(skip_locked=True))).all()
            try:
                await self._publish(rows, done, all_published)
            finally:
                # The published rows go even when a later one failed: the claim ends with this transaction.
                if done:
                    await session.execute(delete(table).where(table.c.id.in_([row_id for row_id, _ in done])))
        return len(done)

    async def _publish(
        self,
        rows: Sequence[tuple[int, str, str, bytes, str | None]],
        done: list[tuple[int, str]],
        all_published: Callable[[], Awaitable[None]] | None,
    ) -> None:
        messages = [
            Outgoing(subject, data, msg_id, json.loads(trace_context) if trace_context else None)
            for _, subject, msg_id, data, trace_context in rows
        ]
        try:
            await publish_acked_many(
                self._js,
                messages,
                window=self.batch,
                timeout=self.publish_deadline,
                deadline=self.publish_deadline,
            )
        except PublishManyError as error:
            done.extend((rows[index][0], rows[index][2]) for index in error.stored)
            raise
        done.extend((row_id, msg_id) for row_id, _, msg_id, _, _ in rows)
        if all_published is not None and len(rows) < self.batch:  # the pass's last rows
            await all_published()

    async def flush(self) -> bool:
        """Have what is committed now published; False (logged) if it is not in JetStream within the timeout.

        A route calls it after its commit, so that its 201 normally means "the event is in JetStream". When
        NATS is down it answers after ``flush_timeout`` at most, without waiting behind other requests: the
        event is safe in the outbox and goes out as soon as NATS is back. Without a running loop (``start``)
        it publishes in place.
        """
        if self._task is None:
            try:
                await self.publish_pending()
            except PublishError as error:
                logger.warning("outbox: %s; rows stay queued", error)
                return False
            return True
        self._requested += 1
        ticket = self._requested
        self._wake.set()
        try:
            async with asyncio.timeout(self.flush_timeout), self._progress:
                await self._progress.wait_for(lambda: self._settled >= ticket)
        except TimeoutError:
            logger.warning(
                "outbox: events not in JetStream after %g s; the relay publishes them once it can",
                self.flush_timeout,
            )
            return False
        return self._succeeded >= ticket

    def start(self) -> None:
        """Start the background loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox-relay")

    async def close(self) -> None:
        """Stop the background loop; queued rows stay for the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            covers = self._requested

            async def published(covers: int = covers) -> None:
                # The flushes this pass covers are answered at the PubAcks, not after the rows' delete.
                self._succeeded = max(self._succeeded, covers)
                await self._settle(covers)

            try:
                await self.publish_pending(published)
            except Exception:
                logger.exception("outbox relay failed; retrying in %.1f s", self.poll_interval)
            else:
                self._succeeded = max(self._succeeded, covers)
            await self._settle(covers)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def _settle(self, covers: int) -> None:
        async with self._progress:
            self._settled = max(self._settled, covers)
            self._progress.notify_all()
