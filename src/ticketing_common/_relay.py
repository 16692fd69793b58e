"""The outbox relay: publishes an outbox's committed rows to JetStream, then deletes them.

A row reaches the relay one of two ways. A transaction of this process hands its rows over as it commits
(``Outbox.hand_to``): the relay publishes them from memory and deletes the published ones a moment later
(``delete_interval``), one DELETE for the rows of many requests, instead of a read and a write per pass
that on SQLite queue behind every request's transaction. Everything else (rows of other processes, of a
run that crashed, of savepoints, those a failed publish left behind) it reads from the table: a scan,
oldest first, when it starts, after a failure, and at least every ``poll_interval``.

A row published twice (a crash between its PubAck and its delete) is de-duplicated by JetStream, and a
late duplicate is ignored by replicas' versions. Routes never publish themselves: they wake the relay and
wait for it a bounded time, so an outage of NATS makes them answer late by at most that time, not queue
behind each other's publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from nats.aio.client import Client
from sqlalchemy import ColumnElement, Engine, delete, select, tuple_

from ticketing_common._outbox import Committed, Outbox
from ticketing_common._pipeline import Outgoing, publish_acked_many
from ticketing_common.errors import PublishError, PublishManyError

if TYPE_CHECKING:
    from ticketing_common.sqlalchemy import Database

logger = logging.getLogger("ticketing_common.outbox")

AllPublished = Callable[[], Awaitable[None]]


class OutboxRelay:
    """Publishes an outbox's rows: in a background loop, which ``flush()`` wakes after each commit.

    On PostgreSQL a scan claims its rows (``SELECT ... FOR UPDATE SKIP LOCKED``) until it has published
    and deleted them, so several replicas' relays share what is left in the table instead of each
    publishing all of it; a scan of the loop's own accord leaves the rows younger than ``poll_interval``
    to the replica that wrote them, which has them in memory. Rows reach the stream in id order within a
    pass, not across replicas (listeners order by version). SQLite has no row locks: one replica per
    SQLite file (a second relay's copies are de-duplicated by JetStream within its duplicate window).

    Args:
        poll_interval: the longest time between two scans of the table.
        batch: rows per scan's read and claim, published with that many PubAcks outstanding.
        publish_deadline: seconds a pass's rows may take to get their PubAcks (retries included) before
            the pass gives up and leaves those not stored for the next scan.
        flush_timeout: the longest ``flush()`` waits; a route answers after at most this long when NATS is
            down, its event safe in the outbox.
        delete_interval: how long published rows wait to be deleted together.
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
        delete_interval: float = 0.1,
    ) -> None:
        self.database = database
        self.outbox = outbox
        self.poll_interval = poll_interval
        self.batch = batch
        self.publish_deadline = publish_deadline
        self.flush_timeout = flush_timeout
        self.delete_interval = delete_interval
        self._js = client.jetstream()
        self._engine = database.engine.sync_engine
        self._claims = database.engine.dialect.name == "postgresql"
        # One pass at a time in this process keeps its rows' order on the stream.
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # flush() takes a number; a pass that starts after it and ends settles it (and succeeds or not).
        self._requested = 0
        self._succeeded = 0
        self._flushes: deque[tuple[int, asyncio.Future[bool]]] = deque()
        self._handed: list[Committed] = []
        self._scan_due = True  # rows may wait in the table that were not handed over
        self._scanned_at = -float("inf")
        self._published: list[tuple[int, str]] = []  # in JetStream, not deleted yet
        self._deleting = asyncio.Lock()
        self._deleter: asyncio.Task[None] | None = None

    def receive(self, engine: Engine | None, rows: Sequence[Committed], *, complete: bool) -> None:
        """Take the rows a transaction of this process committed (``Outbox.hand_to``)."""
        if engine is self._engine:
            self._handed.extend(rows)
        elif engine is not None:
            return  # another database's rows: its own relay has them
        if not complete or engine is None:
            self._scan_due = True

    async def publish_pending(self, all_published: AllPublished | None = None) -> int:
        """Publish the rows in the table not claimed by another relay, oldest first; return how many.

        ``all_published`` is awaited once the last rows have their PubAcks, before they are deleted.

        Raises:
            PublishError: JetStream did not store a row; it and those after it stay queued.
        """
        async with self._lock:
            return await self._scan(all_published, everything=True)

    async def _scan(self, all_published: AllPublished | None, *, everything: bool) -> int:
        self._scan_due = False
        self._scanned_at = time.monotonic()
        if everything:
            # Committed, so in the table: the scan reads them (those handed while it reads are dropped
            # below). A scan with a cutoff leaves young rows out, so the handed ones stay handed.
            self._handed.clear()
        ids: set[int] = set()
        try:
            await self._delete_published()  # else the scan would read them again
            cutoff = None if everything else datetime.now(UTC) - timedelta(seconds=self.poll_interval)
            while True:
                rows_done = await self._publish_batch(all_published, ids, cutoff)
                # A short batch was all there was: one more SELECT would find nothing, and a route's
                # flush waits for it (rows committed since then have flushes of their own coming).
                if rows_done < self.batch:
                    return len(ids)
        except BaseException:
            self._scan_due = True
            raise
        finally:
            if ids and self._handed:
                self._handed = [row for row in self._handed if row[0] not in ids]

    async def _publish_batch(
        self, all_published: AllPublished | None, ids: set[int], cutoff: datetime | None
    ) -> int:
        table = self.outbox.table
        query = select(table.c.id, table.c.subject, table.c.msg_id, table.c.data, table.c.trace_context)
        if cutoff is not None:
            query = query.where(table.c.created_at < cutoff)
        query = query.order_by(table.c.id).limit(self.batch)
        done: list[tuple[int, str]] = []
        if not self._claims:
            async with self.database.sessions() as session:
                rows = (await session.execute(query)).all()
            try:
                await self._publish(rows, done, all_published)
            finally:
                if done:
                    async with self.database.transaction() as session:
                        await session.execute(delete(table).where(self._as_published(done)))
                    ids.update(row_id for row_id, _ in done)
            return len(done)
        async with self.database.transaction() as session:
            rows = (await session.execute(query.with_for_update(skip_locked=True))).all()
            try:
                await self._publish(rows, done, all_published)
            finally:
                # The published rows go even when a later one failed: the claim ends with this transaction.
                if done:
                    await session.execute(delete(table).where(self._as_published(done)))
        ids.update(row_id for row_id, _ in done)
        return len(done)

    async def _publish(
        self,
        rows: Sequence[tuple[int, str, str, bytes, str | None]],
        done: list[tuple[int, str]],
        all_published: AllPublished | None,
    ) -> None:
        committed = [
            (row_id, Outgoing(subject, data, msg_id, json.loads(context) if context else None))
            for row_id, subject, msg_id, data, context in rows
        ]
        await self._publish_rows(committed, done)
        if all_published is not None and len(rows) < self.batch:  # the pass's last rows
            await all_published()

    async def _publish_handed(self, all_published: AllPublished | None) -> None:
        rows, self._handed = self._handed, []
        rows.sort(key=lambda row: row[0])  # id order, as a scan would read them
        try:
            await self._publish_rows(rows, self._published)
        except BaseException:
            self._scan_due = True  # those not stored wait in the table
            raise
        if all_published is not None:
            await all_published()

    async def _publish_rows(self, rows: Sequence[Committed], done: list[tuple[int, str]]) -> None:
        """Publish ``rows``; add to ``done`` (id, msg_id) those stored, also when some were not."""
        if not rows:
            return
        try:
            await publish_acked_many(
                self._js,
                [message for _, message in rows],
                window=self.batch,
                timeout=self.publish_deadline,
                deadline=self.publish_deadline,
            )
        except PublishManyError as error:
            done.extend((rows[index][0], rows[index][1].msg_id) for index in error.stored)
            raise
        done.extend((row_id, message.msg_id) for row_id, message in rows)

    def _as_published(self, rows: list[tuple[int, str]]) -> ColumnElement[bool]:
        # Another relay on this SQLite file may have deleted these rows and a new row reused an id
        # (outboxes made before AUTOINCREMENT): delete the rows as published, never newer ones.
        table = self.outbox.table
        return tuple_(table.c.id, table.c.msg_id).in_(rows)

    async def _delete_published(self) -> None:
        async with self._deleting:
            rows, self._published = self._published, []
            if not rows:
                return
            try:
                async with self.database.transaction() as session:
                    for start in range(0, len(rows), self.batch):
                        chunk = rows[start : start + self.batch]
                        await session.execute(delete(self.outbox.table).where(self._as_published(chunk)))
            except BaseException:
                self._published[:0] = rows
                raise

    async def _delete_soon(self) -> None:
        while self._published:
            await asyncio.sleep(self.delete_interval)  # gathers the rows of the passes until then
            try:
                await self._delete_published()
            except Exception:
                logger.exception("outbox relay: published rows not deleted; the next scan tries again")
                return

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
        settled: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._flushes.append((self._requested, settled))
        self._wake.set()
        try:
            async with asyncio.timeout(self.flush_timeout):
                return await settled
        except TimeoutError:
            logger.warning(
                "outbox: events not in JetStream after %g s; the relay publishes them once it can",
                self.flush_timeout,
            )
            return False

    def start(self) -> None:
        """Start the background loop; from now on this process's transactions hand it their rows."""
        if self._task is None:
            self._scan_due = True
            self.outbox.hand_to(self)
            self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox-relay")

    async def close(self) -> None:
        """Stop the background loop; rows not yet published stay for the next start."""
        self.outbox.stop_handing_to(self)
        self._handed.clear()
        for task in (self._task, self._deleter):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._deleter = None
        if self._published:
            try:
                await self._delete_published()
            except Exception as error:  # noqa: BLE001 - a shutdown goes on; JetStream drops the copies
                logger.warning("outbox: published rows not deleted at close (%r): published again", error)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            covers = self._requested

            async def published(covers: int = covers) -> None:
                # The flushes this pass covers are answered at the PubAcks, not after the rows' delete.
                self._succeeded = max(self._succeeded, covers)
                self._settle(covers)

            try:
                async with self._lock:
                    if self._scan_due:
                        await self._scan(published, everything=True)
                    elif time.monotonic() - self._scanned_at >= self.poll_interval:
                        await self._publish_handed(published)
                        await self._scan(None, everything=False)
                    else:
                        await self._publish_handed(published)
            except Exception:
                logger.exception("outbox relay failed; retrying in %.1f s", self.poll_interval)
            else:
                self._succeeded = max(self._succeeded, covers)
            self._settle(covers)
            if self._published and (self._deleter is None or self._deleter.done()):
                self._deleter = asyncio.get_running_loop().create_task(self._delete_soon())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    def _settle(self, covers: int) -> None:
        # Numbers only grow, so the flushes a pass covers are the oldest ones waiting.
        flushes = self._flushes
        while flushes and flushes[0][0] <= covers:
            ticket, settled = flushes.popleft()
            if not settled.done():  # else it timed out
                settled.set_result(self._succeeded >= ticket)
