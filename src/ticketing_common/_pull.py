"""A continuous pull from a durable JetStream consumer: messages flow in as they are stored.

nats-py offers ``fetch(batch, timeout)``, whose lingering request returns only once the batch is full or
the timeout ends: a lone event would wait for the timeout. This keeps pull requests open instead (as the
``Consume`` of the newer NATS clients does): up to ``prefetch`` messages are requested, each is handed
on as soon as it arrives, more are asked for when half are done, and idle heartbeats tell a stalled
request (server restart, leader change, deleted consumer) from a quiet stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig

logger = logging.getLogger("ticketing_common.listener")

_STATUS = "Status"
_HEARTBEAT = "100"
_NO_RESPONDERS = "503"
_PENDING_MESSAGES = "Nats-Pending-Messages"


class _Direct(asyncio.Queue[Msg]):
    """Stands in for a nats-py subscription's queue: each message goes to ``receive`` as it is parsed.

    nats-py puts every message of a subscription into an ``asyncio.Queue`` that a task of the
    subscription empties into an async callback. The listener has a hand-off of its own (so that it can
    keep waiting events alive and nak them on close), so that queue, its task and a coroutine per
    message are a second hop: about 1 us of the 1.4 us an event by which the listener trailed raw push.
    """

    def __init__(self, receive: Callable[[Msg], None]) -> None:
        super().__init__()
        # An attribute, not a method that calls it: nats-py calls put_nowait once per message.
        self.put_nowait = receive  # type: ignore[method-assign, assignment]


def deliver_directly(subscription: Subscription, receive: Callable[[Msg], None]) -> bool:
    """Have a subscription made without a callback hand its messages to ``receive``; False if it cannot.

    It replaces a private attribute of nats-py (``Subscription._pending_queue``, there since 2.0), so it
    checks that the attribute is there and is what it replaces; ``start()`` falls back to a callback if not.
    """
    if not isinstance(getattr(subscription, "_pending_queue", None), asyncio.Queue):
        return False
    subscription._pending_queue = _Direct(receive)  # noqa: SLF001 - see the docstring
    return True


class ContinuousPull:
    """Keeps up to ``prefetch`` messages of one durable pull consumer on their way to ``deliver``.

    A message counts against ``prefetch`` from its request until it is finished with, so that no more is
    fetched than the listener can handle before ``ack_wait`` runs out: after each message delivered,
    ``if pull.finished(): await pull.refill()``. ``in_hand()`` says how many delivered messages are not
    finished yet; it is asked when a request ends early, not once per message.
    """

    def __init__(  # noqa: PLR0913 - the consumer, where messages go, and the three timings
        self,
        client: Client,
        js: JetStreamContext,
        stream: str,
        config: ConsumerConfig,
        *,
        deliver: Callable[[Msg], None],
        in_hand: Callable[[], int],
        prefetch: int,
        expires: float = 30.0,
        idle_heartbeat: float = 1.0,
    ) -> None:
        if config.durable_name is None:
            raise ValueError("a continuous pull needs a durable consumer")
        self._client = client
        self._js = js
        self._stream = stream
        self._config = config
        self._deliver = deliver
        self._in_hand = in_hand
        self._prefetch = prefetch
        self._refill_at = max(1, prefetch // 2)
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{config.durable_name}"
        self._request_template = {
            "expires": int(expires * 1e9),
            "idle_heartbeat": int(idle_heartbeat * 1e9),
        }
        self._idle_heartbeat = idle_heartbeat
        # Requested and not finished: on their way, or in hand. An arrival leaves it as it is, so the
        # only count per message is its finish.
        self._open = 0
        self._last_seen = time.monotonic()
        # The subscription's count of messages at the watchdog's last tick: a change is a sign of life
        # (nats-py counts them anyway; a clock read per message costs more).
        self._delivered_before = 0
        self._inbox = ""
        self._subscription: Subscription | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._stopping = False
        self._refills: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Create or update the consumer, then start pulling."""
        self._stopping = False
        self._open = self._in_hand()  # what an earlier start requested is not coming
        await self.ensure_consumer()
        self._inbox = self._client.new_inbox()
        # No byte limit: nothing stays in nats-py's queue (the window is bounded by prefetch instead).
        subscription = await self._client.subscribe(self._inbox, pending_bytes_limit=0)
        if not deliver_directly(subscription, self._receive):
            await subscription.unsubscribe()
            subscription = await self._client.subscribe(self._inbox, cb=self._on_inbox)
        self._subscription = subscription
        await self._refill()
        self._watchdog = asyncio.create_task(self._watch(), name=f"pull watchdog {self._config.durable_name}")

    async def stop(self) -> None:
        """Stop asking for messages; what is already on its way is redelivered after ``ack_wait``."""
        # Python 3.11's asyncio.wait_for (under nats-py's requests) can swallow a cancellation that
        # arrives as its reply does; the flag ends the watchdog's loop even then.
        self._stopping = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        if self._subscription is not None and not self._client.is_closed:
            with contextlib.suppress(nats.errors.Error):
                await self._subscription.unsubscribe()
        self._subscription = None

    @property
    def running(self) -> bool:
        """Whether it is subscribed and its watchdog is alive."""
        return self._subscription is not None and self._watchdog is not None and not self._watchdog.done()

    async def ensure_consumer(self) -> None:
        """Create the durable consumer, or update it to this configuration."""
        await self._js.add_consumer(self._stream, self._config)

    def finished(self) -> bool:
        """Count a delivered message as finished with; True if half the window is free: ``refill()`` then."""
        # Not a coroutine: it runs once per message and almost always answers False.
        self._open -= 1
        return self._prefetch - self._open >= self._refill_at

    async def refill(self) -> None:
        """Ask for as many messages as the window has room for, if that is at least half of it."""
        await self._refill()

    async def _refill(self) -> None:
        wanted = self._prefetch - self._open
        # Ask in halves: one request per message would cost a round trip each.
        if wanted < self._refill_at or self._subscription is None or not self._client.is_connected:
            return
        request = {"batch": wanted, **self._request_template}
        self._open += wanted
        await self._client.publish(self._next_subject, json.dumps(request).encode(), reply=self._inbox)

    def _on_the_way(self) -> int:
        return self._open - self._in_hand()

    async def _on_inbox(self, msg: Msg) -> None:
        self._receive(msg)

    def _receive(self, msg: Msg) -> None:
        # Called inside nats-py's parsing of what the server sent: it must not raise, nor wait.
        headers = msg.headers
        if headers is None or _STATUS not in headers:
            self._deliver(msg)
            return
        status = headers[_STATUS]
        if status == _HEARTBEAT:
            return
        pending = headers.get(_PENDING_MESSAGES)
        if status == _NO_RESPONDERS or pending is None:
            # The consumer is not there (deleted, or the server is still starting): the watchdog
            # recreates it and pulls again.
            logger.warning(
                "pull from %s/%s ended: %s %s",
                self._stream,
                self._config.durable_name,
                status,
                headers.get("Description", ""),
            )
            self._open = self._in_hand()
            self._last_seen = 0.0
            return
        # An expired or interrupted request: what it did not deliver is no longer coming.
        with contextlib.suppress(ValueError):
            self._open = max(self._in_hand(), self._open - int(pending))
        refill = asyncio.get_running_loop().create_task(self._refill_soon())
        self._refills.add(refill)  # a task the loop holds only weakly
        refill.add_done_callback(self._refills.discard)

    async def _refill_soon(self) -> None:
        # The watchdog pulls again later if this cannot (no connection now).
        with contextlib.suppress(nats.errors.Error):
            await self._refill()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._idle_heartbeat)
            if self._stopping or self._subscription is None:
                return
            delivered = self._subscription.delivered  # heartbeats included
            if delivered != self._delivered_before:
                self._delivered_before = delivered
                self._last_seen = time.monotonic()
            if self._on_the_way() <= 0:
                # No request is open, so no heartbeat is owed; a full window waits for finished().
                self._last_seen = time.monotonic()
                if self._in_hand() == 0:
                    await self._restart()
                continue
            if time.monotonic() - self._last_seen > 2 * self._idle_heartbeat:
                logger.info(
                    "no heartbeat from %s/%s for %.1f s: pulling again",
                    self._stream,
                    self._config.durable_name,
                    2 * self._idle_heartbeat,
                )
                self._open = self._in_hand()
                await self._restart()

    async def _restart(self) -> None:
        if not self._client.is_connected:
            return
        try:
            await self.ensure_consumer()
        except (TimeoutError, nats.errors.Error) as error:
            logger.warning(
                "cannot recreate consumer %s/%s yet: %r", self._stream, self._config.durable_name, error
            )
            return
        self._last_seen = time.monotonic()
        await self._refill()
