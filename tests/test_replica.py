"""Replica.apply, find-by-event in one call, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from conftest import DatabaseUrl
from ticketing_common import OutOfOrder, TicketCreatedEvent, TicketUpdatedEvent
from ticketing_common.sqlalchemy import Database, Replica


class Base(DeclarativeBase):
    """A database of one replicated table."""


class Ticket(Replica, Base):
    """A replica of another service's ticket."""

    __tablename__ = "tickets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))


@pytest.fixture
async def database(database_url: DatabaseUrl) -> AsyncIterator[Database]:
    database = Database(database_url("replica"))
    await database.create_all(Base.metadata)
    yield database
    await database.dispose()


def updated(version: int, title: str) -> TicketUpdatedEvent:
    return TicketUpdatedEvent(id="t1", version=version, title=title, price=1, user_id="u")


async def title(database: Database) -> tuple[str, int] | None:
    async with database.sessions() as session:
        ticket = await session.get(Ticket, "t1")
        return None if ticket is None else (ticket.title, ticket.version)


async def test_version_zero_inserts_and_the_next_version_updates(database: Database) -> None:
    """The first event makes the replica, the next one sets the values given; both return the replica."""
    created = TicketCreatedEvent(id="t1", version=0, title="a", price=1, user_id="u")
    async with database.transaction() as session:
        inserted = await Ticket.apply(session, created, title="a")
        assert inserted is not None
    assert await title(database) == ("a", 0)
    async with database.transaction() as session:
        assert await Ticket.apply(session, updated(1, "b"), lock=True, title="b") is not None
    assert await title(database) == ("b", 1)


async def test_the_past_is_ignored_and_a_gap_waits(database: Database) -> None:
    """A duplicate returns None and changes nothing; a version ahead raises OutOfOrder naming the record."""
    async with database.transaction() as session:
        await Ticket.apply(
            session, TicketCreatedEvent(id="t1", version=0, title="a", price=1, user_id="u"), title="a"
        )
    async with database.transaction() as session:
        assert await Ticket.apply(session, updated(0, "old"), title="old") is None
    with pytest.raises(OutOfOrder, match="ticket t1: version 2 arrived with replica at version 0"):
        async with database.transaction() as session:
            await Ticket.apply(session, updated(2, "c"), title="c")
    with pytest.raises(OutOfOrder, match="ticket t2: version 1 arrived with no replica yet"):
        async with database.transaction() as session:
            await Ticket.apply(session, updated(1, "c").model_copy(update={"id": "t2"}), title="c")
    assert await title(database) == ("a", 0)
