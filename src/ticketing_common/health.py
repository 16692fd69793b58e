"""Liveness and readiness endpoints for Kubernetes probes (``GET /healthz``, ``GET /readyz``) on Starlette.

``/healthz`` answers 200 while the process serves at all. ``/readyz`` answers 200 only while every check
passes, else 503 with the standard error body, one entry per part that is down::

    {"errors": [{"message": "NATS is not connected", "field": "nats"}]}

``Service.install`` installs both with the checks of its parts (NATS, JetStream, database, listeners); a
service without HTTP routes of its own (the expiration service) serves them alone::

    health = Health({**nats_checks(wrapper), **listener_checks(lambda: listeners)})
    app = Starlette(routes=health.routes(), lifespan=...)  # or health.install(app)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.errors
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ticketing_common._connection import NatsWrapper
from ticketing_common._listener import BaseListener
from ticketing_common.errors import DatabaseConnectionError, NotReadyError

if TYPE_CHECKING:
    from ticketing_common.sqlalchemy import Database

__all__ = [
    "Check",
    "Health",
    "database_checks",
    "listener_checks",
    "nats_checks",
]

Check = Callable[[], Awaitable[str | None]]
"""A readiness check: None when its part is fine, else what is wrong, said for an operator."""

DEFAULT_TIMEOUT = 2.0
"""Seconds a check may take; one that takes longer counts as down (a probe must answer promptly)."""


class Health:
    """Named readiness checks, run together on each ``/readyz``."""

    def __init__(self, checks: Mapping[str, Check], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.checks = dict(checks)
        self.timeout = timeout

    async def problems(self) -> dict[str, str]:
        """What is down, by part; empty when ready."""
        names = list(self.checks)
        found = await asyncio.gather(*(self._run(name) for name in names))
        return {name: problem for name, problem in zip(names, found, strict=True) if problem is not None}

    async def _run(self, name: str) -> str | None:
        try:
            async with asyncio.timeout(self.timeout):
                return await self.checks[name]()
        except TimeoutError:
            return f"no answer within {self.timeout:g} s"

    async def healthz(self, _request: Request) -> JSONResponse:
        """200 while the process serves."""
        return JSONResponse({"status": "ok"})

    async def readyz(self, _request: Request) -> JSONResponse:
        """200 when every check passes, else 503 naming each part that is down."""
        problems = await self.problems()
        if not problems:
            return JSONResponse({"status": "ready"})
        error = NotReadyError(problems)
        return JSONResponse({"errors": error.serialize_errors()}, status_code=error.status_code)

    def routes(self) -> list[Route]:
        """``GET /healthz`` and ``GET /readyz``, outside the OpenAPI document."""
        return [
            Route("/healthz", self.healthz, methods=["GET"], include_in_schema=False),
            Route("/readyz", self.readyz, methods=["GET"], include_in_schema=False),
        ]

    def install(self, app: Starlette) -> None:
        """Add the two routes to ``app``."""
        app.router.routes.extend(self.routes())


def nats_checks(wrapper: NatsWrapper) -> dict[str, Check]:
    """``nats``: the connection is up (not closed, not reconnecting); ``jetstream``: JetStream answers."""

    async def connected() -> str | None:
        if not wrapper.is_connected:
            return "NATS is not connected"
        if wrapper.client.is_reconnecting or not wrapper.client.is_connected:
            return "NATS is reconnecting"
        return None

    async def jetstream() -> str | None:
        if not wrapper.is_connected or not wrapper.client.is_connected:
            return "JetStream is out of reach: NATS is not connected"
        try:
            await wrapper.jetstream.account_info()
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as error:
            return f"JetStream does not answer: {error!r}"
        return None

    return {"nats": connected, "jetstream": jetstream}


def database_checks(database: Database) -> dict[str, Check]:
    """``database``: a ``SELECT 1`` gets its answer (extra ``[sqlalchemy]``)."""
    from sqlalchemy import text  # noqa: PLC0415 - only services with a database have the extra
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    async def answers() -> str | None:
        try:
            async with database.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (SQLAlchemyError, DatabaseConnectionError, OSError) as error:
            return f"the database does not answer: {type(error).__name__}"
        return None

    return {"database": answers}


def listener_checks(listeners: Callable[[], Sequence[BaseListener[Any]]]) -> dict[str, Check]:
    """``listeners``: every listener ``listeners()`` gives is consuming (none closed, none crashed)."""

    async def consuming() -> str | None:
        stopped = [listener.durable_name for listener in listeners() if not listener.consuming]
        return f"not consuming: {', '.join(stopped)}" if stopped else None

    return {"listeners": consuming}
