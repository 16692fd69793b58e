"""SQLAlchemy 2 (asyncio) for the services: the database, versioned records, and the transactional outbox.

Needs the extra ``ticketing-common[sqlalchemy]`` (and a driver: ``aiosqlite`` by default, ``asyncpg`` for
PostgreSQL, any async SQLAlchemy URL)::

    class Ticket(Versioned, Base):  # version 0 on insert, +1 on each save, VersionConflictError on a race
        ...

    class TicketReplica(Replica, Base):  # version copied from events; a racing update is a conflict too
        ...

    database = Database(os.environ["DATABASE_URL"])
    async with database.transaction() as session:
        ticket = await session.get(Ticket, ticket_id)
        ticket.price = 30
        await outbox.add(session, TicketUpdatedEvent(...))  # committed with the ticket, or not at all
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Self

from sqlalchemy import DateTime, Dialect, MetaData, TypeDecorator, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Mapped, declared_attr, mapped_column
from sqlalchemy.orm.exc import StaleDataError

from ticketing_common._events import VersionedEvent
from ticketing_common._outbox import Outbox
from ticketing_common._relay import OutboxRelay
from ticketing_common.errors import DatabaseConnectionError, VersionConflictError
from ticketing_common.versioning import should_apply

__all__ = ["Database", "Outbox", "OutboxRelay", "Replica", "UtcDateTime", "Versioned"]

logger = logging.getLogger(__name__)
SCHEMA_LOCK = 0x7469636B6574
"""The PostgreSQL advisory lock ("ticket") replicas take turns on while they create or migrate tables."""


def _next_version(current: int | None) -> int:
    # mongoose-update-if-current starts at 0; SQLAlchemy's default generator would start at 1.
    return 0 if current is None else current + 1


class Versioned:
    """Mixin for a record this service owns: ``version`` is 0 when inserted and grows by 1 on each update.

    SQLAlchemy's ``version_id_col`` adds ``WHERE version = <as read>`` to every UPDATE and DELETE, so a
    save over someone else's newer save matches no row: ``Database.transaction`` raises
    ``VersionConflictError`` instead of overwriting it.
    """

    version: Mapped[int] = mapped_column(nullable=False)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:  # noqa: N805 - a declared_attr takes the class
        """Bind the version column to SQLAlchemy's optimistic concurrency."""
        return {"version_id_col": cls.__table__.c.version, "version_id_generator": _next_version}  # type: ignore[attr-defined]


class Replica:
    """Mixin for a copy of another service's record: ``version`` is set from each applied event.

    The UPDATE still checks the version it read, so two replicas of a service applying the same event
    at once cannot both succeed: the loser raises ``VersionConflictError``, its event is redelivered and
    then ignored as already applied (``versioning.decide``).
    """

    version: Mapped[int] = mapped_column(nullable=False)

    @classmethod
    async def apply(
        cls, session: AsyncSession, event: VersionedEvent, *, lock: bool = False, **values: object
    ) -> Self | None:
        """Find-by-event: apply ``event``, whose record's new state is ``values``, to its replica.

        Version 0 inserts the replica; the replica's next version sets ``values`` on it; the past
        (a duplicate, an old event) returns None, to be acked and ignored; a gap raises ``OutOfOrder``,
        which ``BaseListener`` answers with a short nak. ``lock`` reads the replica ``FOR UPDATE``
        (PostgreSQL), so that a transaction reading it the same way waits for this one.

        Returns:
            The replica as inserted or updated (the session writes it), or None when nothing changed.
        """
        replica = await session.get(cls, event.id, with_for_update=lock)
        current = None if replica is None else replica.version
        if not should_apply(current, event.version, record=f"{cls.__name__.lower()} {event.id}"):
            return None
        if replica is None:  # should_apply only applies version 0 to no replica
            make: Callable[..., Self] = cls
            replica = make(id=event.id, version=event.version, **values)
            session.add(replica)
            return replica
        for name, value in values.items():
            setattr(replica, name, value)
        replica.version = event.version
        return replica

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:  # noqa: N805 - a declared_attr takes the class
        """Check the version on update, but let the event say what the new one is."""
        return {"version_id_col": cls.__table__.c.version, "version_id_generator": False}  # type: ignore[attr-defined]


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite's DATETIME would hand back a naive one)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        """Store UTC; refuse a naive datetime, whose zone nobody knows."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give it a timezone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        """Read back as aware UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Database:
    """One service's database: an async engine, its sessions, and transactions with clear errors.

    SQLite (the default for the reference services) gets what a multi-writer service needs from it:
    a busy timeout, foreign keys, WAL for files, and ``BEGIN IMMEDIATE`` so that concurrent writers queue
    instead of failing with "database is locked" when a reader becomes a writer.
    """

    def __init__(self, url: str, **engine_options: Any) -> None:  # noqa: ANN401 - passed to create_async_engine
        self.url = url
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            # Every SQLite transaction here is BEGIN IMMEDIATE, so only one connection works at a time
            # anyway; with one in the pool, requests queue in order instead of in SQLite's busy handler,
            # which sleeps up to 100 ms between tries and made 20 concurrent writes take 1.3 s, not 0.3.
            engine_options.setdefault("pool_size", 1)
            engine_options.setdefault("max_overflow", 0)
        self.engine = create_async_engine(url, **engine_options)
        event.listen(self.engine.sync_engine, "do_connect", _connect)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_connect)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def create_all(self, metadata: MetaData) -> None:
        """Create the missing tables of ``metadata`` (schema changes of existing ones need migrations).

        Replicas that start together create them once: on PostgreSQL they take turns (an advisory
        lock), on SQLite ``BEGIN IMMEDIATE`` already makes them; the later ones find the tables made.
        """
        async with self.engine.begin() as connection:
            if self.engine.dialect.name == "postgresql":
                # Checking for a table, then creating it, is not atomic: two replicas would both create.
                await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
            await connection.run_sync(metadata.create_all)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction, committed at the end of the block or rolled back on an exception.

        Raises:
            VersionConflictError: a versioned record was saved by someone else after it was read.
            DatabaseConnectionError: the database cannot be reached (the original's 500).
        """
        try:
            async with self.sessions.begin() as session:
                yield session
        except StaleDataError as error:
            raise VersionConflictError("The record") from error
        except OperationalError as error:
            if error.connection_invalidated or _is_unreachable(error):
                raise DatabaseConnectionError from error
            raise

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def _connect(dialect: Dialect, _record: object, cargs: Any, cparams: Any) -> Any:  # noqa: ANN401 - a DBAPI connection
    # asyncpg reports an unreachable server (refused, no socket, timeout) as a bare OSError, which
    # SQLAlchemy passes through unwrapped; an OSError here can only mean the database is out of reach.
    try:
        return dialect.connect(*cargs, **cparams)
    except OSError as error:
        raise DatabaseConnectionError from error


def _sqlite_connect(dbapi_connection: Any, _record: object) -> None:  # noqa: ANN401 - a DBAPI connection
    # Hand transaction control to the "begin" hook below instead of the driver's implicit BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 30000")
    cursor.execute("PRAGMA foreign_keys = ON")
    try:
        cursor.execute("PRAGMA journal_mode = WAL")
    except sqlite3.OperationalError:
        # Switching a new file to WAL needs it to itself, and SQLite does not wait for that: another
        # replica connecting now is switching it. WAL only adds concurrency (BEGIN IMMEDIATE and the busy
        # timeout hold in any mode) and stays set in the file, so this connection goes on as it is.
        logger.debug("SQLite is busy switching to WAL; this connection keeps its journal mode")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _is_unreachable(error: OperationalError) -> bool:
    message = str(error.orig).lower()
    signs = ("unable to open database", "could not connect", "connection refused")
    return any(sign in message for sign in signs)
