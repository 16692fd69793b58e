"""The transactional outbox: an event is stored with the change it announces, then relayed to JetStream.

A route that saved a record and then published its event could lose the event (the process dies, NATS
is down) after the record is committed: the original's flaw 1. Here the event is a row written in the
same transaction as the record, so both are committed or neither is; the relay (``_relay.py``) publishes
the rows with the event's ``Nats-Msg-Id`` and deletes them after the PubAck.

The rows a transaction added are also handed to this process's relay when it commits, so that the relay
can publish them without reading them back: on SQLite every read waits its turn behind the requests'
writes. Only what certainly committed is handed over (a session event after the database's COMMIT);
a row added inside a savepoint, which may yet be rolled back, only tells the relay to read the table.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import (
    Column,
    DateTime,
    Dialect,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from ticketing_common import _instruments
from ticketing_common._events import Event
from ticketing_common._instruments import look_for_tracing
from ticketing_common._pipeline import Outgoing

if TYPE_CHECKING:
    from ticketing_common.sqlalchemy import Database

Committed = tuple[int, Outgoing]
"""A committed outbox row as its relay publishes it: its id and its message."""


class Receiver(Protocol):
    """What an outbox hands its committed rows to: a started relay of this process."""

    def receive(self, engine: Engine | None, rows: Sequence[Committed], *, complete: bool) -> None:
        """Rows committed on ``engine`` (None: unknown); ``complete`` False means some were not handed."""


@dataclass(slots=True)
class _Added:
    """What a session's transaction added to each outbox, until it commits or rolls back."""

    rows: dict[Outbox, list[Committed]] = field(default_factory=dict)
    # Outboxes that got a row inside a savepoint: it may be rolled back while the transaction commits.
    unlisted: set[Outbox] = field(default_factory=set)


_ADDED = "ticketing_common.outbox"


class Outbox:
    """The outbox table of one service, declared on the service's own ``MetaData``."""

    def __init__(self, metadata: MetaData, *, table_name: str = "outbox") -> None:
        look_for_tracing()
        _listen_to_sessions()
        self._receivers: list[Receiver] = []
        # The INSERT as aiosqlite takes it, and each value's conversion (made on first use).
        self._aiosqlite_insert: tuple[str, list[tuple[str, Any]]] | None = None
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
        """How many rows wait to be published (or, for a moment after their PubAck, to be deleted)."""
        async with database.sessions() as session:
            return int((await session.execute(select(func.count()).select_from(self.table))).scalar_one())

    async def add(self, session: AsyncSession, event: Event, *, msg_id: str | None = None) -> None:
        """Queue ``event`` in the session's transaction: it is published only if the transaction commits."""
        tracing = _instruments.TRACING
        carrier = tracing.carrier() if tracing is not None else None
        message = Outgoing(
            str(event.subject),
            event.model_dump_json().encode(),
            msg_id or event.message_id() or uuid.uuid4().hex,
            carrier or None,
        )
        values = {
            "subject": message.subject,
            "msg_id": message.msg_id,
            "data": message.payload,
            "created_at": datetime.now(UTC),
            "trace_context": json.dumps(carrier) if carrier else None,
        }
        connection = await session.connection()
        aiosqlite = connection.dialect.driver == "aiosqlite"
        driver = (await connection.get_raw_connection()).driver_connection if aiosqlite else None
        if driver is not None:
            row = await driver.execute_insert(*self._for_aiosqlite(connection.dialect, values))
            row_id = None if row is None else int(row[0])
        else:
            result = await session.execute(insert(self.table).values(values))
            key = cast("CursorResult[Any]", result).inserted_primary_key
            row_id = None if key is None else int(key[0])
        added: _Added = session.info.setdefault(_ADDED, _Added())
        if row_id is None or session.in_nested_transaction():
            added.unlisted.add(self)
        else:
            added.rows.setdefault(self, []).append((row_id, message))

    def _for_aiosqlite(self, dialect: Dialect, values: dict[str, Any]) -> tuple[str, list[Any]]:
        # SQLAlchemy's aiosqlite adapter takes three trips to aiosqlite's thread per statement (cursor,
        # execute, close), each waiting for a turn of the event loop while the request holds SQLite's only
        # write connection; on the write path of every request that made the outbox's INSERT cost as much
        # as the rest of the transaction. aiosqlite's execute_insert is one trip. The statement and the
        # values' conversions are SQLAlchemy's; engine events (echo, SQL tracing) do not see this one.
        if self._aiosqlite_insert is None:
            columns = [column for column in self.table.c if column.name in values]
            statement = insert(self.table).values({column: bindparam(column.name) for column in columns})
            compiled = statement.compile(dialect=dialect)
            types = {column.name: column.type.dialect_impl(dialect) for column in columns}
            binds = [(name, types[name].bind_processor(dialect)) for name in compiled.positiontup or []]
            self._aiosqlite_insert = (compiled.string, binds)
        sql, binds = self._aiosqlite_insert
        return sql, [values[name] if process is None else process(values[name]) for name, process in binds]

    def hand_to(self, receiver: Receiver) -> None:
        """Hand ``receiver`` the rows each transaction of this process adds, once it has committed."""
        self._receivers.append(receiver)

    def stop_handing_to(self, receiver: Receiver) -> None:
        """Undo ``hand_to``."""
        if receiver in self._receivers:
            self._receivers.remove(receiver)

    def _committed(self, engine: Engine | None, rows: Sequence[Committed], *, complete: bool) -> None:
        for receiver in self._receivers:
            receiver.receive(engine, rows, complete=complete)


def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint released: its rows are not committed yet
        return
    added: _Added | None = session.info.pop(_ADDED, None)
    if added is None:
        return
    engine = session.bind if isinstance(session.bind, Engine) else None
    for outbox, rows in added.rows.items():
        outbox._committed(engine, rows, complete=outbox not in added.unlisted)  # noqa: SLF001 - this module's
    for outbox in added.unlisted - added.rows.keys():
        outbox._committed(engine, (), complete=False)  # noqa: SLF001 - this module's


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # rolled back (a commit has taken them already)
        session.info.pop(_ADDED, None)


_listening: list[bool] = []


def _listen_to_sessions() -> None:
    # Every Session of the process: the outbox cannot know which sessionmaker its rows are added through.
    # A session that added no row pays one dictionary lookup per commit.
    if not _listening:
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_transaction_end", _after_transaction_end)
        _listening.append(True)
