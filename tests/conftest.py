"""Shared helpers; the server fixtures come from the package's pytest plugin, ticketing_common.testing."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import uuid4

import pytest
from nats.js import JetStreamContext
from sqlalchemy.engine import make_url

from ticketing_common import EVENTS_STREAM, TicketCreatedEvent

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

WAIT = 10.0
"""Seconds any test waits for an event it expects before failing."""


def ticket(number: int = 1, *, version: int = 0) -> TicketCreatedEvent:
    return TicketCreatedEvent(
        id=f"t{number}", version=version, title=f"concert {number}", price=10.5, user_id="u1"
    )


async def wait_until(
    condition: Callable[[], bool], *, timeout: float = WAIT, what: str = "condition"
) -> None:
    """Wait until ``condition()`` holds, checked every few milliseconds, or fail after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)
    assert condition(), what


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float = WAIT) -> None:
    """Wait until the async ``check()`` is true, or fail after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def consumer_is_settled(js: JetStreamContext, consumer: str) -> bool:
    """Every event the consumer was given is acked (or terminated) and none is waiting."""
    info = await js.consumer_info(EVENTS_STREAM, consumer)
    return bool(info.num_ack_pending == 0 and info.num_pending == 0)


NOW = datetime(2026, 11, 23, 12, 30, 15, 123000, tzinfo=UTC)


DatabaseUrl = Callable[[str], str]
"""Gives the URL of a new, empty database for the service named."""


def sqlite_in(folder: Path) -> DatabaseUrl:
    """SQLite files in ``folder``, one per service."""
    return lambda name: f"sqlite+aiosqlite:///{folder / name}.db"


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session (the pgserver wheel), on a Unix socket in a temporary folder."""
    # pgserver has wheels for CPython 3.9 to 3.12 only; elsewhere the PostgreSQL runs are skipped.
    pgserver = pytest.importorskip(
        "pgserver", reason="pgserver (PostgreSQL binaries) has no wheel for this Python"
    )
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset (as in CI) and falls back to /tmp: fine here.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        server = pgserver.get_server(tmp_path_factory.mktemp("postgres"), cleanup_mode="stop")
    yield server
    server.cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseUrl:
    """Each service test runs on SQLite, the default, and on PostgreSQL, what production uses."""
    if request.param == "sqlite":
        return sqlite_in(tmp_path)
    server: PostgresServer = request.getfixturevalue("postgres_server")

    def new_database(name: str) -> str:
        database = f"{name}_{uuid4().hex}"
        server.psql(f'CREATE DATABASE "{database}";')
        url = make_url(server.get_uri(database)).set(drivername="postgresql+asyncpg")
        return url.render_as_string(hide_password=False)

    return new_database
