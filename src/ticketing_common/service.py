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

import importlib.util
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends
from nats.aio.client import Client
from pydantic import Field
from sqlalchemy import MetaData
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from ticketing_common._connection import NatsWrapper
from ticketing_common._events import Event
from ticketing_common._listener import BaseListener
from ticketing_common._outbox import Outbox
from ticketing_common._relay import OutboxRelay
from ticketing_common._session import SessionConfig
from ticketing_common._settings import EnvironmentSettings, InvalidEnvironment, read_environment
from ticketing_common._streams import ensure_stream
from ticketing_common.errors import ConfigurationError, DatabaseConnectionError
from ticketing_common.fastapi import (
    DEFAULT_MAX_BODY_BYTES,
    install_body_limit,
    install_error_handlers,
    install_session,
)
from ticketing_common.health import Health, database_checks, listener_checks, nats_checks
from ticketing_common.sqlalchemy import Database

__all__ = [
    "EnvironmentSettings",
    "Service",
    "ServiceDep",
    "ServiceListener",
    "ServiceSettings",
    "current_service",
    "database_url_from_env",
    "read_environment",
]

logger = logging.getLogger(__name__)
E = TypeVar("E", bound=Event)


class _ServiceEnvironment(EnvironmentSettings):
    nats_url: str | None = Field(default=None, validation_alias="NATS_URL")
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    host: str = Field(default="127.0.0.1", validation_alias="HOST")
    port: int | None = Field(default=None, ge=1, le=65535, validation_alias="PORT")
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=0, validation_alias="MAX_BODY_BYTES")
    flush_timeout: float = Field(default=1.0, gt=0, le=60, validation_alias="OUTBOX_FLUSH_TIMEOUT")
    stream_replicas: int = Field(default=1, ge=1, le=5, validation_alias="NATS_STREAM_REPLICAS")


class _MessagingServiceEnvironment(_ServiceEnvironment):
    nats_url: str = Field(validation_alias="NATS_URL")


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
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """The largest request body answered (``MAX_BODY_BYTES``); a larger one gets 413 before it is read."""
    flush_timeout: float = 1.0
    """The longest a write waits for its event's PubAck (``OUTBOX_FLUSH_TIMEOUT``, seconds) before it
    answers anyway, the event safe in the outbox: while NATS is down, writes answer promptly."""
    stream_replicas: int = 1
    """Copies of each event the streams keep (``NATS_STREAM_REPLICAS``): 3 on a three-node cluster."""

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
        """Read the environment (pydantic-settings); raise ``ConfigurationError`` naming every bad variable.

        ``DATABASE_URL`` defaults to an SQLite file named after the service in the working directory;
        ``NATS_URL`` is required unless ``uses_nats`` is False. Session cookies are HTTPS-only unless
        ``secure_cookies`` is False or, when it is not given, ``SECURE_COOKIES`` is false (``false``,
        ``0``, ``no``, ``off``: plain-HTTP local runs such as the demo); any other non-boolean is an error.
        """
        who = f"the {name} service"
        problems: list[str] = []
        env = session = None
        try:
            session = SessionConfig.from_env(environ, secure=secure_cookies)
        except InvalidEnvironment as error:
            problems += error.problems
        try:
            kind = _MessagingServiceEnvironment if uses_nats else _ServiceEnvironment
            env = read_environment(kind, environ, who=who)
        except InvalidEnvironment as error:
            problems += error.problems
        if problems or env is None or session is None:
            raise InvalidEnvironment(who, problems)
        return cls(
            name=name,
            nats_url=env.nats_url if uses_nats else None,
            database_url=env.database_url or default_database_url(name),
            host=env.host,
            port=env.port or default_port,
            session=session,
            max_body_bytes=env.max_body_bytes,
            flush_timeout=env.flush_timeout,
            stream_replicas=env.stream_replicas,
        )


def default_database_url(name: str) -> str:
    """The database of a service without ``DATABASE_URL``: an SQLite file named after it, here."""
    return f"sqlite+aiosqlite:///{name}.db"


def database_url_from_env(name: str, environ: Mapping[str, str] | None = None) -> str:
    """``DATABASE_URL``, or the default of the service ``name``: all its ``migrate`` command needs."""
    env = read_environment(_ServiceEnvironment, environ, who=f"the {name} service")
    return env.database_url or default_database_url(name)


class Service:
    """One running service: its database, NATS connection, outbox relay and listeners."""

    def __init__(
        self,
        settings: ServiceSettings,
        metadata: MetaData,
        *,
        listeners: Sequence[Callable[[Service], ServiceListener[Any]]] = (),
        migrations: str | Path | None = None,
    ) -> None:
        self.settings = settings
        self.metadata = metadata
        self.database = Database(settings.database_url)
        self.outbox = Outbox(metadata)
        self.nats = NatsWrapper()
        self.listener_factories = listeners
        """Listener classes, or callables that make a listener of this service (a ``functools.partial``)."""
        self.listeners: list[ServiceListener[Any]] = []
        self.migrations = migrations
        """The service's Alembic revisions, applied up to the newest at start-up (extra ``[alembic]``);
        None creates the missing tables instead, which cannot change an existing one."""
        self._relay: OutboxRelay | None = None

    @property
    def client(self) -> Client:
        """The connected NATS client."""
        return self.nats.client

    def install(self, app: Starlette) -> None:
        """Make this the app's service (``ServiceDep``), with error handlers, body limit, session, probes.

        The probes are ``/healthz`` and ``/readyz``: the database, and NATS, JetStream and the listeners
        if the service uses NATS. With the ``[prometheus]`` extra, ``/metrics`` too.
        """
        app.state.ticketing_service = self
        install_error_handlers(app)
        install_body_limit(app, self.settings.max_body_bytes)
        install_session(app, self.settings.session)
        checks = database_checks(self.database)
        if self.settings.nats_url is not None:
            checks |= nats_checks(self.nats) | listener_checks(lambda: self.listeners)
        Health(checks).install(app)
        if importlib.util.find_spec("prometheus_client") is not None:  # the [prometheus] extra
            from ticketing_common.prometheus import install_metrics  # noqa: PLC0415 - only with the extra

            install_metrics(app, service=self)

    @asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        """Start everything, serve, then stop listeners, relay, NATS (drained) and database, in that order."""
        try:
            await self._prepare_database()
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
                if self.client.is_connected:  # else the rows wait for the next start, not the shutdown
                    await _flush_at_shutdown(self._relay)
                self._relay = None
            await self.nats.close()
            await self.database.dispose()

    async def _prepare_database(self) -> None:
        if self.migrations is None:
            await self.database.create_all(self.metadata)
            return
        from ticketing_common.alembic import upgrade  # noqa: PLC0415 - the [alembic] extra, only if used

        await upgrade(self.database, self.migrations)

    async def _start_messaging(self, nats_url: str) -> None:
        await self.nats.connect(nats_url, name=f"{self.settings.name}-service")
        await ensure_stream(self.nats.jetstream, replicas=self.settings.stream_replicas)
        self._relay = OutboxRelay(
            self.database, self.outbox, self.client, flush_timeout=self.settings.flush_timeout
        )
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


async def _flush_at_shutdown(relay: OutboxRelay) -> None:
    try:
        await relay.flush()
    except (DatabaseConnectionError, SQLAlchemyError, OSError) as error:
        # Committed rows are safe in the outbox: the next start publishes them. A shutdown goes on.
        logger.warning("outbox not flushed at shutdown (%r); its rows wait for the next start", error)


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
