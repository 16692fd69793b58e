"""Shared helpers; the server fixtures come from the package's pytest plugin, ticketing_common.testing."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import warnings
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import uuid4

import nats.js.errors
import pytest
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
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
    """Every event stored for the consumer so far was handed to it and acked (or terminated)."""
    info = await js.consumer_info(EVENTS_STREAM, consumer)
    if info.num_ack_pending or info.num_pending:
        return False
    # A consumer learns of a stored event a moment after its PubAck, and its counts are zero until then
    # (seen under load): so also ask that it was handed the last event of its subject.
    subject = info.config.filter_subject
    try:
        last = await js.get_last_msg(EVENTS_STREAM, subject) if subject else None
    except nats.js.errors.NotFoundError:
        return True
    return last is None or (info.delivered.stream_seq or 0) >= (last.seq or 0)


def aiosqlite_threads_ended() -> bool:
    # When a connect fails, aiosqlite stops its worker thread without waiting for it; the thread then
    # reports to this test's event loop, which must still be open (else pytest sees a thread error).
    return not any(thread.name.endswith("(_connection_worker_thread)") for thread in threading.enumerate())


NOW = datetime(2026, 11, 23, 12, 30, 15, 123000, tzinfo=UTC)


DatabaseUrl = Callable[[str], str]
"""Gives the URL of a new, empty database for the service named."""


def sqlite_in(folder: Path) -> DatabaseUrl:
    """SQLite files in ``folder``, one per service."""
    return lambda name: f"sqlite+aiosqlite:///{folder / name}.db"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session (the pgserver wheel), on a Unix socket in a temporary folder."""
    # pgserver has wheels for CPython 3.9 to 3.12 only; elsewhere the PostgreSQL runs are skipped.
    pgserver = pytest.importorskip(
        "pgserver", reason="pgserver (PostgreSQL binaries) has no wheel for this Python"
    )
    # Not under pytest's temporary root: run as root, pgserver hands the folder to a "pgserver" user and
    # opens its parents to it, which another pytest session resets to 0700 at its start.
    folder = Path(tempfile.mkdtemp(prefix="ticketing-postgres-"))
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset (as in CI) and falls back to /tmp: fine here.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        server = pgserver.get_server(folder, cleanup_mode="stop")
    yield server
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseUrl:
    """Each service test runs on SQLite, the default, and on PostgreSQL, what production uses."""
    if request.param == "sqlite":
        return sqlite_in(tmp_path)
    return databases_on(request.getfixturevalue("postgres_server"))


def databases_on(server: PostgresServer) -> DatabaseUrl:
    """New PostgreSQL databases on ``server``, one per call, named after the service."""

    def new_database(name: str) -> str:
        database = f"{name}_{uuid4().hex}"
        server.psql(f'CREATE DATABASE "{database}";')
        url = make_url(server.get_uri(database)).set(drivername="postgresql+asyncpg")
        return url.render_as_string(hide_password=False)

    return new_database


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    """The process's global tracer provider, the SDK's, recording into memory (the API allows one)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


@pytest.fixture
def spans(span_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    """The spans ended during this test, by FastAPI, the package and the test itself."""
    span_exporter.clear()
    yield span_exporter
    span_exporter.clear()
