"""The frame every ticketing service shares: settings, database, NATS, outbox relay, listeners, lifespan.

Needs the extras ``[fastapi,sqlalchemy]``. The original copied its NATS wrapper and start-up checks into
each service; here a service is its models, routes and listeners, and this::

    settings = ServiceSettings.from_env("tickets")  # refuses to start without JWT_KEY or NATS_URL
    service = Service(settings, Base.metadata, listeners=[OrderCreatedListener, OrderCancelledListener])
    app = FastAPI(lifespan=service.lifespan)
    service.install(app)  # error handlers, session user, and ServiceDep for the routes

    async with service.transaction() as session:  # in a route or a listener
        session.add(ticket)
        await service.publish(session, TicketCreatedEvent(...))  # committed with the ticket
    await service.flush()  # in JetStream before the route answers, unless NATS is down
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends
from nats.aio.client import Client
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from ticketing_common._connection import NatsWrapper
from ticketing_common._events import Event
from ticketing_common._listener import BaseListener
from ticketing_common._outbox import Outbox, OutboxRelay
from ticketing_common._session import SessionConfig
from ticketing_common._streams import ensure_stream
from ticketing_common.errors import ConfigurationError
from ticketing_common.fastapi import install_error_handlers, install_session
from ticketing_common.sqlalchemy import Database

__all__ = ["Service", "ServiceDep", "ServiceListener", "ServiceSettings", "current_service"]

logger = logging.getLogger(__name__)
E = TypeVar("E", bound=Event)


@dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    """A service's configuration, from ``JWT_KEY``, ``NATS_URL``, ``DATABASE_URL``, ``PORT`` and so on."""

    name: str
    nats_url: str | None
    """None for a service that neither publishes nor listens (auth)."""
    database_url: str
    host: str
    """The address to listen on: ``HOST``, default 127.0.0.1 (0.0.0.0 in a container)."""
    port: int
    session: SessionConfig

    @classmethod
    def from_env(
        cls,
        name: str,
        environ: Mapping[str, str] | None = None,
        *,
        default_port: int = 3000,
        secure_cookies: bool | None = None,
        uses_nats: bool = True,
    ) -> ServiceSettings:
        """Read the environment; raise ``ConfigurationError`` naming every missing variable at once.

        ``DATABASE_URL`` defaults to an SQLite file named after the service in the working directory;
        ``NATS_URL`` is required unless ``uses_nats`` is False. Session cookies are HTTPS-only unless
        ``secure_cookies`` is False or, when it is not given, ``SECURE_COOKIES`` is ``false`` (plain-HTTP
        local runs such as the demo).
        """
        env = os.environ if environ is None else environ
        required = ("JWT_KEY", "NATS_URL") if uses_nats else ("JWT_KEY",)
        missing = [variable for variable in required if not env.get(variable)]
        if missing:
            raise ConfigurationError(f"the {name} service cannot start: set {' and '.join(missing)}")
        try:
            port = int(env.get("PORT", default_port))
        except ValueError:
            raise ConfigurationError(f"PORT must be a number, not {env['PORT']!r}") from None
        return cls(
            name=name,
            nats_url=env["NATS_URL"] if uses_nats else None,
            database_url=env.get("DATABASE_URL") or f"sqlite+aiosqlite:///{name}.db",
            host=env.get("HOST") or "127.0.0.1",
            port=port,
            session=SessionConfig.from_env(
                env,
                secure=secure_cookies
                if secure_cookies is not None
                else env.get("SECURE_COOKIES", "true").lower() not in {"false", "0", "no"},
            ),
        )


class Service:
    """One running service: its database, NATS connection, outbox relay and listeners."""

    def __init__(
        self,
        settings: ServiceSettings,
        metadata: MetaData,
        *,
        listeners: Sequence[Callable[[Service], ServiceListener[Any]]] = (),
    ) -> None:
        self.settings = settings
        self.metadata = metadata
        self.database = Database(settings.database_url)
        self.outbox = Outbox(metadata)
        self.nats = NatsWrapper()
        self.listener_factories = listeners
        """Listener classes, or callables that make a listener of this service (a ``functools.partial``)."""
        self.listeners: list[ServiceListener[Any]] = []
        self._relay: OutboxRelay | None = None

    @property
    def client(self) -> Client:
        """The connected NATS client."""
        return self.nats.client

    def install(self, app: Starlette) -> None:
        """Make this the app's service (``ServiceDep``), with error handlers and session settings."""
        app.state.ticketing_service = self
        install_error_handlers(app)
        install_session(app, self.settings.session)

    @asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        """Start everything, serve, then stop listeners, relay, NATS (drained) and database, in that order."""
        await self.database.create_all(self.metadata)
        try:
            if self.settings.nats_url is not None:
                await self._start_messaging(self.settings.nats_url)
            elif self.listener_factories:
                raise ConfigurationError(f"the {self.settings.name} service listens, so it needs NATS_URL")
            logger.info("%s service started", self.settings.name)
            yield
        finally:
            for listener in self.listeners:
                await listener.close()
            self.listeners.clear()
            if self._relay is not None:
                await self._relay.close()
                await self._relay.flush()
            await self.nats.close()
            await self.database.dispose()

    async def _start_messaging(self, nats_url: str) -> None:
        await self.nats.connect(nats_url, name=f"{self.settings.name}-service")
        await ensure_stream(self.nats.jetstream)
        self._relay = OutboxRelay(self.database, self.outbox, self.client)
        self._relay.start()
        for make_listener in self.listener_factories:
            listener = make_listener(self)
            await listener.listen()
            self.listeners.append(listener)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A database transaction; see ``Database.transaction``."""
        async with self.database.transaction() as session:
            yield session

    async def publish(self, session: AsyncSession, event: Event) -> None:
        """Queue ``event`` in the outbox, in the session's transaction."""
        await self.outbox.add(session, event)

    async def flush(self) -> bool:
        """Publish the queued events now; False if NATS is unreachable (the relay retries)."""
        if self._relay is None:
            raise RuntimeError(f"the {self.settings.name} service is not started")
        return await self._relay.flush()


async def current_service(connection: HTTPConnection) -> Service:
    """The dependency behind ``ServiceDep``: the service installed on the app."""
    service: Service | None = getattr(connection.app.state, "ticketing_service", None)
    if service is None:
        raise RuntimeError("no service on this app: call service.install(app)")
    return service


ServiceDep = Annotated[Service, Depends(current_service)]


class ServiceListener(BaseListener[E]):
    """A listener of a ``Service``: ``self.service`` gives it the database and the outbox."""

    def __init__(self, service: Service) -> None:
        super().__init__(service.client)
        self.service = service
