"""Run the reference services in the test process, on the session's nats-server and a test database."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats.js.errors
from fastapi import FastAPI
from nats.js import JetStreamContext

from conftest import DatabaseUrl, sqlite_in
from node_session import KEY, cookie_header, node_cookie, node_token
from payments.gateway import FakeGateway
from ticketing_common import EVENTS_STREAM
from ticketing_common.service import Service, ServiceSettings
from ticketing_common.testing import NatsServer


def settings(
    name: str, nats_server: NatsServer, database: DatabaseUrl | Path, *, uses_nats: bool = True
) -> ServiceSettings:
    """The service's settings, as its environment would give them; a folder means a SQLite file in it."""
    url = sqlite_in(database) if isinstance(database, Path) else database
    environ = {"JWT_KEY": KEY, "NATS_URL": nats_server.url, "DATABASE_URL": url(name)}
    return ServiceSettings.from_env(name, environ, uses_nats=uses_nats)


def session_cookie(response: httpx.Response) -> dict[str, str]:
    """The Cookie header a browser would send back after ``response`` set the session cookie."""
    set_cookie = response.headers["set-cookie"]
    name_value = set_cookie.split(";", 1)[0]
    return {"cookie": name_value}


class ServiceClient(httpx.AsyncClient):
    """An HTTP client on a running service's app, with the service itself for looking into its database."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        self.asgi_app = app
        self.service = service_of(app)


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[ServiceClient]:
    """Start the app's lifespan (database, NATS, listeners) and give an HTTP client on it."""
    async with app.router.lifespan_context(app), ServiceClient(app) as client:
        yield client


def service_of(app: FastAPI) -> Service:
    service: Service = app.state.ticketing_service
    return service


def signed_in(user_id: str, email: str | None = None) -> dict[str, str]:
    """The Cookie header of a user signed in by the (Node or Python) auth service."""
    # As the original's tests sign in: no exp, so the token expires a day after its iat.
    claims = {"id": user_id, "email": email or f"{user_id}@test.com", "iat": int(time.time())}
    return cookie_header(node_cookie({"jwt": node_token(claims)}))


async def published(js: JetStreamContext, subject: str | None = None) -> list[dict[str, Any]]:
    """The events in the stream, oldest first (only ``subject``'s if given), as their JSON."""
    info = await js.stream_info(EVENTS_STREAM)
    events: list[dict[str, Any]] = []
    if not info.state.messages:
        return events
    for sequence in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            message = await js.get_msg(EVENTS_STREAM, sequence)
        except nats.js.errors.NotFoundError:  # removed: a schedule that fired, a cancelled one
            continue
        if subject is None or message.subject == subject:
            events.append(json.loads(message.data or b""))
    return events


@dataclass
class ChargeWhile(FakeGateway):
    """A fake gateway that lets something happen while a charge is on its way, then charges."""

    meanwhile: Callable[[], Awaitable[None]] | None = None

    async def charge(self, *, amount_cents: int, currency: str, token: str, idempotency_key: str) -> str:
        """Run ``meanwhile``, then charge as the fake gateway does."""
        if self.meanwhile is not None:
            await self.meanwhile()
        return await super().charge(
            amount_cents=amount_cents, currency=currency, token=token, idempotency_key=idempotency_key
        )
