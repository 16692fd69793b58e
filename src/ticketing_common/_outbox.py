"""The transactional outbox: an event is stored with the change it announces, then relayed to JetStream.

A route that saved a record and then published its event could lose the event (the process dies, NATS
is down) after the record is committed: the original's flaw 1. Here the event is a row written in the
same transaction as the record, so both are committed or neither is; the relay publishes rows in order,
with the event's ``Nats-Msg-Id``, and deletes them after the PubAck. A row published twice (a crash between
PubAck and delete) is de-duplicated by JetStream, and a late duplicate is ignored by replicas' versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
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
    delete,
    insert,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession

from ticketing_common._events import Event
from ticketing_common._jetstream import publish_acked
from ticketing_common.errors import PublishError

if TYPE_CHECKING:
    from ticketing_common.sqlalchemy import Database

logger = logging.getLogger("ticketing_common.outbox")


class Outbox:
    """The outbox table of one service, declared on the service's own ``MetaData``."""

    def __init__(self, metadata: MetaData, *, table_name: str = "outbox") -> None:
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
            # SQLite would give a deleted row's id to the next row: ids must name one event for good.
            sqlite_autoincrement=True,
        )

    async def add(self, session: AsyncSession, event: Event, *, msg_id: str | None = None) -> None:
        """Queue ``event`` in the session's transaction: it is published only if the transaction commits."""
        await session.execute(
            insert(self.table).values(
                subject=str(event.subject),
                msg_id=msg_id or event.message_id() or uuid.uuid4().hex,
                data=event.model_dump_json().encode(),
                created_at=datetime.now(UTC),
            )
        )


class OutboxRelay:
    """Publishes an outbox's rows in order: on ``flush()`` after a commit, and in the background.

    The background loop catches up after NATS was unreachable or the process restarted with rows left.
    """

    def __init__(  # noqa: PLR0913 - the relay's knobs, all keyword-only
        self,
        database: Database,
        outbox: Outbox,
        client: Client,
        *,
        poll_interval: float = 1.0,
        batch: int = 100,
        publish_deadline: float = 5.0,
    ) -> None:
        self.database = database
        self.outbox = outbox
        self.poll_interval = poll_interval
        self.batch = batch
        self.publish_deadline = publish_deadline
        self._js = client.jetstream()
        # One publisher at a time keeps the rows' order on the stream.
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def publish_pending(self) -> int:
        """Publish every queued row, oldest first; return how many. Stops at the first failure.

        Raises:
            PublishError: JetStream did not store a row; it and those after it stay queued.
        """
        table = self.outbox.table
        published = 0
        async with self._lock:
            while True:
                async with self.database.sessions() as session:
                    query = select(table.c.id, table.c.subject, table.c.msg_id, table.c.data)
                    rows = (await session.execute(query.order_by(table.c.id).limit(self.batch))).all()
                if not rows:
                    return published
                done: list[tuple[int, str]] = []
                try:
                    for row in rows:
                        await publish_acked(
                            self._js,
                            row.subject,
                            row.data,
                            msg_id=row.msg_id,
                            timeout=self.publish_deadline,
                            deadline=self.publish_deadline,
                        )
                        done.append((row.id, row.msg_id))
                finally:
                    if done:
                        # Another replica's relay may have published and deleted these rows already: only
                        # the rows as read are deleted, never a newer one (in an outbox made before ids
                        # were kept unique on SQLite, a new row could have one of their ids).
                        published_rows = tuple_(table.c.id, table.c.msg_id).in_(done)
                        async with self.database.transaction() as session:
                            await session.execute(delete(table).where(published_rows))
                        published += len(done)

    async def flush(self) -> bool:
        """Publish what is queued now; False (logged) if JetStream is unreachable and the loop must retry.

        A route calls it after its commit, so that its 201 normally means "the event is in JetStream"; when
        NATS is down the event is still safe in the outbox and goes out as soon as NATS is back.
        """
        try:
            await self.publish_pending()
        except PublishError as error:
            logger.warning("outbox: %s; the relay retries in the background", error)
            self._wake.set()
            return False
        return True

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
            try:
                await self.publish_pending()
            except Exception:
                logger.exception("outbox relay failed; retrying in %.1f s", self.poll_interval)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
