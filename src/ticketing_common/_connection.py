"""The NATS connection holder every service shares: connect, reconnect, drain on shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

from ticketing_common._listener import listening_on
from ticketing_common.errors import NotConnectedError

logger = logging.getLogger("ticketing_common.nats")

_Callback = Callable[[], Awaitable[None]]


class NatsWrapper:
    """Holds the one NATS connection of a process, as the original services' ``natsWrapper`` did.

    Example::

        await nats_wrapper.connect(os.environ["NATS_URL"], name="tickets")
        nats_wrapper.install_signal_handlers()
        ...
        await nats_wrapper.wait_closed()
    """

    def __init__(self) -> None:
        self._client: Client | None = None
        self._jetstream: JetStreamContext | None = None
        # Made per connection: an asyncio.Event belongs to the loop that first waits on it.
        self._closed: asyncio.Event | None = None
        self._closing = False

    @property
    def client(self) -> Client:
        """The connected client.

        Raises:
            NotConnectedError: ``connect()`` was not called (a ``RuntimeError``).
        """
        if self._client is None:
            raise NotConnectedError(
                "Cannot access the NATS client before connecting: await nats_wrapper.connect()"
            )
        return self._client

    @property
    def jetstream(self) -> JetStreamContext:
        """The JetStream context of the connected client."""
        if self._jetstream is None:
            self._jetstream = self.client.jetstream()
        return self._jetstream

    @property
    def is_connected(self) -> bool:
        """Whether a connection is open (possibly reconnecting)."""
        return self._client is not None and not self._client.is_closed

    async def connect(self, servers: str | list[str] = "nats://127.0.0.1:4222", **options: Any) -> Client:  # noqa: ANN401 - nats-py's own options, passed through
        """Connect to NATS; every nats-py option passes through (auth, TLS, name, reconnect settings).

        ``servers`` is a URL, several comma-separated (a cluster's nodes, as ``NATS_URL`` may give them),
        or a list of them.

        Unless told otherwise it reconnects forever, logging each disconnect and reconnect: a service
        outlives a restart of its NATS server.
        """
        if self.is_connected:
            raise RuntimeError("nats_wrapper is already connected; close() it first")
        if isinstance(servers, str):  # NATS_URL may list a cluster's nodes, comma-separated
            servers = [url.strip() for url in servers.split(",") if url.strip()]
        options.setdefault("max_reconnect_attempts", -1)
        options.setdefault("connect_timeout", 2)
        options.setdefault("reconnect_time_wait", 0.5)
        options["disconnected_cb"] = self._logged(
            "disconnected from NATS", logging.WARNING, options.get("disconnected_cb")
        )
        options["reconnected_cb"] = self._logged(
            "reconnected to NATS", logging.INFO, options.get("reconnected_cb")
        )
        options["closed_cb"] = self._logged("NATS connection closed", logging.INFO, options.get("closed_cb"))
        options.setdefault("error_cb", _log_error)
        self._closing = False
        self._client = await nats.connect(servers, **options)
        self._jetstream = None
        self._closed = asyncio.Event()
        logger.info(
            "connected to NATS at %s",
            self._client.connected_url.netloc if self._client.connected_url else "?",
        )
        return self._client

    async def close(self) -> None:
        """Stop the listeners consuming through this client, then drain it: nothing in flight is dropped."""
        client = self._client
        if client is None:
            return
        self._closing = True
        for listener in listening_on(client):
            await listener.close()
        if client.is_reconnecting:
            # Nothing can be drained through a connection that is down; drain() would refuse.
            await client.close()
        elif not client.is_closed:
            await client.drain()
        self._client = None
        self._jetstream = None
        if self._closed is not None:
            self._closed.set()

    async def wait_closed(self) -> None:
        """Wait until ``close()`` has finished, e.g. after a signal handled by ``install_signal_handlers``."""
        if self._closed is not None:
            await self._closed.wait()

    def install_signal_handlers(
        self, signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
    ) -> None:
        """Close (drain) the connection when the process receives one of ``signals``."""
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        logger.info("%s received: draining the NATS connection", sig.name)
        task = asyncio.get_running_loop().create_task(self.close())
        # Held until done: the loop keeps only weak references to tasks.
        _pending_closes.add(task)
        task.add_done_callback(_pending_closes.discard)

    def _logged(self, message: str, level: int, then: _Callback | None) -> _Callback:
        async def callback() -> None:
            # A disconnect we asked for is no news.
            logger.log(logging.DEBUG if self._closing else level, message)
            if then is not None:
                await then()

        return callback


_pending_closes: set[asyncio.Task[None]] = set()


async def _log_error(error: Exception) -> None:
    logger.warning("NATS error: %r", error)


nats_wrapper = NatsWrapper()
"""The process-wide NATS connection holder."""
