"""/healthz and /readyz: ready only while NATS, JetStream, the database and every listener work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

import auth.app
import expiration.app
import tickets.app
from conftest import aiosqlite_threads_ended, eventually, wait_until
from services import ServiceClient, running, service_of, settings
from ticketing_common.health import Health, database_checks
from ticketing_common.sqlalchemy import Database
from ticketing_common.testing import NatsServer


async def ready(client: httpx.AsyncClient) -> tuple[int, Any]:
    answer = await client.get("/readyz")
    return answer.status_code, answer.json()


def down(body: Any) -> set[str]:  # noqa: ANN401 - JSON
    """The parts a 503 body names."""
    return {error["field"] for error in body["errors"]}


@asynccontextmanager
async def tickets_on(server: NatsServer, folder: Path) -> AsyncIterator[ServiceClient]:
    async with running(tickets.app.create_app(settings("tickets", server, folder))) as api:
        yield api


async def test_a_started_service_is_alive_and_ready(tmp_path: Path) -> None:
    """Both probes answer 200 while everything works; the probes are not in the OpenAPI document."""
    with NatsServer() as server:
        async with tickets_on(server, tmp_path) as api:
            healthz = await api.get("/healthz")
            assert (healthz.status_code, healthz.json()) == (200, {"status": "ok"})
            assert await ready(api) == (200, {"status": "ready"})
            paths = (await api.get("/openapi.json")).json()["paths"]
            assert "/readyz" not in paths
            assert "/healthz" not in paths


async def test_with_nats_stopped_it_is_alive_but_not_ready_until_nats_is_back(tmp_path: Path) -> None:
    """NATS stopped: /readyz 503 naming nats and jetstream, /healthz still 200; back: ready again."""
    with NatsServer() as server:
        async with tickets_on(server, tmp_path) as api:
            server.stop()
            assert (await ready(api))[0] == 503  # JetStream gives no answer at once

            async def both_down() -> bool:  # the client notices the lost connection a moment later
                status, body = await ready(api)
                return status == 503 and down(body) == {"nats", "jetstream"}

            await eventually(both_down)
            assert all(error["message"] for error in (await ready(api))[1]["errors"])
            assert (await api.get("/healthz")).status_code == 200
            server.start()

            async def ready_again() -> bool:
                return (await ready(api))[0] == 200

            await eventually(ready_again)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("sqlite+aiosqlite:///{missing}/service.db", id="sqlite-missing-folder"),
        pytest.param("postgresql+asyncpg://postgres@127.0.0.1:{port}/service", id="postgresql-refused"),
    ],
)
async def test_an_unreachable_database_is_named(url: str, tmp_path: Path, unused_tcp_port: int) -> None:
    """The database check of the probe: a database out of reach is down, with the driver's error kind."""
    database = Database(url.format(missing=tmp_path / "missing", port=unused_tcp_port))
    try:
        problems = await Health(database_checks(database)).problems()
    finally:
        await database.dispose()
        await wait_until(aiosqlite_threads_ended, what="aiosqlite's worker threads ended")
    assert list(problems) == ["database"]
    assert problems["database"].startswith("the database does not answer")


async def test_a_closed_listener_makes_the_service_not_ready(tmp_path: Path) -> None:
    """One listener closed: 503 naming the listeners and which one stopped consuming."""
    with NatsServer() as server:
        async with tickets_on(server, tmp_path) as api:
            listener = service_of(api.asgi_app).listeners[0]
            await listener.close()
            status, body = await ready(api)
            assert (status, down(body)) == (503, {"listeners"})
            assert listener.durable_name in body["errors"][0]["message"]


async def test_a_service_without_nats_is_ready_with_its_database(tmp_path: Path) -> None:
    """The auth service checks only its database."""
    with NatsServer() as server:
        app = auth.app.create_app(settings("auth", server, tmp_path, uses_nats=False))
        async with running(app) as api:
            assert await ready(api) == (200, {"status": "ready"})


async def test_the_expiration_service_serves_the_same_probes() -> None:
    """The expiration service's app: ready with NATS, 503 naming nats and jetstream without it."""
    with NatsServer() as server:
        app = expiration.app.create_app(server.url)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as api,
        ):
            assert (await api.get("/healthz")).status_code == 200
            assert await ready(api) == (200, {"status": "ready"})
            server.stop()

            async def both_down() -> bool:
                status, body = await ready(api)
                return status == 503 and down(body) == {"nats", "jetstream"}

            await eventually(both_down)


async def test_a_check_that_hangs_counts_as_down() -> None:
    """A check slower than the timeout is reported as giving no answer, not waited for."""

    async def hangs() -> str | None:
        await asyncio.Event().wait()
        return None

    health = Health({"slow": hangs}, timeout=0.05)
    assert await health.problems() == {"slow": "no answer within 0.05 s"}
