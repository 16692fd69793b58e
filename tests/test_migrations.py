"""Alembic migrations of the reference services: they build what the models declare, on both databases."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect, text

from conftest import DatabaseUrl
from processes import SERVICES_DIR
from ticketing_common.alembic import config, difference, upgrade
from ticketing_common.sqlalchemy import Database

SERVICES = ["auth", "tickets", "orders", "payments"]


def of(name: str) -> tuple[Path, MetaData]:
    """The service's migrations folder and its models' metadata."""
    migrations: Path = import_module(f"{name}.app").MIGRATIONS
    metadata: MetaData = import_module(f"{name}.models").Base.metadata
    return migrations, metadata


def head(migrations: Path) -> str:
    """The newest revision in the folder, as Alembic reads it."""
    revision = ScriptDirectory.from_config(config(migrations)).get_current_head()
    assert revision is not None
    return revision


async def tables_and_revision(database: Database) -> tuple[set[str], str]:
    async with database.engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        revision = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
    return tables, revision


@pytest.mark.parametrize("name", SERVICES)
async def test_autogenerate_finds_no_difference_after_the_migrations(
    name: str, database_url: DatabaseUrl
) -> None:
    """Upgraded to head, the database is what the models (and the outbox) declare: nothing to generate."""
    migrations, metadata = of(name)
    database = Database(database_url(name))
    try:
        await upgrade(database, migrations)
        assert await difference(database, migrations, metadata) == []
        tables, revision = await tables_and_revision(database)
    finally:
        await database.dispose()
    assert tables == {*metadata.tables, "alembic_version"}
    assert "outbox" in tables
    assert revision == head(migrations)


async def test_a_model_change_without_a_revision_is_a_difference(database_url: DatabaseUrl) -> None:
    """The check can fail: a column the models have and the migrations lack is found."""
    migrations, _ = of("tickets")
    changed = MetaData()
    for table in of("tickets")[1].tables.values():
        table.to_metadata(changed)
    from sqlalchemy import Column, String  # noqa: PLC0415 - only this test builds a column

    changed.tables["tickets"].append_column(Column("venue", String(100)))
    database = Database(database_url("tickets"))
    try:
        await upgrade(database, migrations)
        found = await difference(database, migrations, changed)
    finally:
        await database.dispose()
    assert [(change[0], change[3].name) for change in found] == [("add_column", "venue")]


def migrate_command(name: str, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(SERVICES_DIR)}
    return subprocess.run(  # noqa: S603 - our interpreter and our module
        [sys.executable, "-m", name, *args],
        cwd=SERVICES_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("name", SERVICES)
def test_the_migrate_command_upgrades_database_url(name: str, tmp_path: Path) -> None:
    """``python -m <service> migrate`` needs only DATABASE_URL, upgrades it, and again is a no-op."""
    url = f"sqlite+aiosqlite:///{tmp_path / name}.db"
    first = migrate_command(name, url, "migrate")
    assert first.returncode == 0, first.stderr
    assert "Running upgrade  -> 0001" in first.stderr
    again = migrate_command(name, url, "migrate")
    assert again.returncode == 0, again.stderr
    assert "Running upgrade" not in again.stderr
    check = migrate_command(name, url, "check")
    assert check.returncode == 0, check.stderr


def test_replicas_upgrading_together_upgrade_once(database_url: DatabaseUrl) -> None:
    """Three ``migrate`` processes on one new database at once all succeed; the schema is made once."""
    url = database_url("orders")
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(SERVICES_DIR)}
    replicas = [
        subprocess.Popen(
            [sys.executable, "-m", "orders", "migrate"],
            cwd=SERVICES_DIR,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    logs = [replica.communicate(timeout=120)[1] for replica in replicas]
    assert [replica.returncode for replica in replicas] == [0, 0, 0], logs
    assert sum("Running upgrade  -> 0001" in log for log in logs) == 1, logs
    _, metadata = of("orders")

    async def read() -> tuple[set[str], str]:
        database = Database(url)
        try:
            return await tables_and_revision(database)
        finally:
            await database.dispose()

    assert asyncio.run(read()) == ({*metadata.tables, "alembic_version"}, head(of("orders")[0]))


def test_the_check_command_fails_on_a_database_behind_the_models(tmp_path: Path) -> None:
    """``check`` exits 1 when the database lacks what the models declare (here: no migration ran)."""
    check = migrate_command("tickets", f"sqlite+aiosqlite:///{tmp_path}/new.db", "check")
    assert check.returncode != 0
