"""The services' Database on SQLite and PostgreSQL: an unreachable database, replicas starting together."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import Column, MetaData, String, Table, text

from conftest import DatabaseUrl, aiosqlite_threads_ended, wait_until
from ticketing_common import DatabaseConnectionError
from ticketing_common.sqlalchemy import Database, Outbox


async def select_one(database: Database) -> int | None:
    async with database.transaction() as session:
        return (await session.execute(text("SELECT 1"))).scalar()


async def test_a_reachable_database_answers(database_url: DatabaseUrl) -> None:
    """The same code runs on both backends (the control for the tests below)."""
    database = Database(database_url("reachable"))
    try:
        assert await select_one(database) == 1
    finally:
        await database.dispose()


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("sqlite+aiosqlite:///{missing}/service.db", id="sqlite-missing-folder"),
        pytest.param("postgresql+asyncpg://postgres@/service?host={missing}", id="postgresql-no-socket"),
        pytest.param("postgresql+asyncpg://postgres@127.0.0.1:{port}/service", id="postgresql-refused"),
    ],
)
async def test_an_unreachable_database_is_a_database_connection_error(
    url: str, tmp_path: Path, unused_tcp_port: int
) -> None:
    """Whatever the driver reports (asyncpg: a bare OSError), the service gets the original's 500 error."""
    database = Database(url.format(missing=tmp_path / "missing", port=unused_tcp_port))
    try:
        with pytest.raises(DatabaseConnectionError) as raised:
            await select_one(database)
    finally:
        await database.dispose()
        await wait_until(aiosqlite_threads_ended, what="aiosqlite's worker threads ended")
    assert raised.value.serialize_errors() == [{"message": "Error connecting to database"}]


async def test_replicas_starting_together_create_the_tables_once(database_url: DatabaseUrl) -> None:
    """Three replicas run create_all on one new database at once: all start, the tables exist once."""
    for run in range(5):
        url = database_url(f"replicas{run}")
        replicas = [Database(url) for _ in range(3)]
        metadata = MetaData()
        Table("tickets", metadata, Column("id", String(32), primary_key=True), Column("title", String(200)))
        Outbox(metadata)
        try:
            await asyncio.gather(*(replica.create_all(metadata) for replica in replicas))
            async with replicas[0].transaction() as session:
                assert (await session.execute(text("SELECT count(*) FROM tickets"))).scalar() == 0
            if url.startswith("sqlite"):  # one of them switched the file to WAL, which the others share
                async with replicas[1].engine.connect() as connection:
                    assert (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        finally:
            for replica in replicas:
                await replica.dispose()
