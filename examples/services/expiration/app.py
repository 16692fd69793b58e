"""The expiration service's process: its listeners, ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette

from ticketing_common import BaseListener, NatsWrapper
from ticketing_common.health import Health, listener_checks, nats_checks
from ticketing_common.prometheus import install_metrics

from .service import expiration_service


def create_app(nats_url: str, *, stream_replicas: int = 1) -> Starlette:
    """An app whose lifespan runs the service and whose only routes are its health endpoints."""
    nats = NatsWrapper()
    listeners: list[BaseListener[Any]] = []

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with expiration_service(nats_url, nats, stream_replicas=stream_replicas) as running:
            listeners[:] = running.listeners
            yield

    health = Health({**nats_checks(nats), **listener_checks(lambda: listeners)})
    app = Starlette(routes=health.routes(), lifespan=lifespan)
    install_metrics(app, listeners=lambda: listeners)
    return app
