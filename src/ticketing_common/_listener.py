"""BaseListener: consume one kind of event from a durable JetStream consumer shared by a queue group."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import re
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

import nats.errors
import nats.js.errors
import pydantic
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy

from ticketing_common import _instruments
from ticketing_common._binding import bind_event_type
from ticketing_common._deadletter import send_to_dead_letters
from ticketing_common._event_log import event_fields
from ticketing_common._events import Event
from ticketing_common._handoff import Handoff
from ticketing_common._instruments import OBSERVERS, Outcome, look_for_tracing
from ticketing_common._jetstream import RIDE_OUT_DEADLINE
from ticketing_common._pull import ContinuousPull
from ticketing_common._streams import EVENTS_STREAM
from ticketing_common.errors import OutOfOrder

E = TypeVar("E", bound=Event)

logger = logging.getLogger("ticketing_common.listener")
_MAX_WAITING = 10_000
_DEBUG = logging.DEBUG
_NOT_IN_NAMES = re.compile(r"[.:*>]")

# Listeners that are consuming, so that closing the connection holder can stop them first.
_listening: weakref.WeakSet[BaseListener[Any]] = weakref.WeakSet()


def listening_on(client: Client) -> list[BaseListener[Any]]:
    """Return the listeners consuming through ``client``."""
    return [listener for listener in _listening if listener.client is client]


_V1_ACK_TOKENS = 9


def delivery_count(msg: Msg) -> int:
    """Return how many times JetStream delivered ``msg``, read from its ack subject.

    ``msg.metadata`` parses the whole subject into dataclasses and a datetime: a quarter of the
    listener's own time per event, for one number.
    """
    # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending> (9 tokens),
    # or the newer form with <domain>.<account hash> after ACK, whose positions nats-py's Msg.Ack names.
    tokens = (msg.reply or "").split(".")
    return int(tokens[4] if len(tokens) == _V1_ACK_TOKENS else tokens[Msg.Ack.NumDelivered])


class BaseListener(abc.ABC, Generic[E]):
    """Consumes events of type ``E`` with a durable consumer that all replicas of a service share.

    Example::

        class OrderCreatedListener(BaseListener[OrderCreatedEvent]):
            queue_group_name = "tickets-service"

            async def on_message(self, data: OrderCreatedEvent, msg: Msg) -> None:
                ...  # apply the event
                await msg.ack()

    ``on_message`` acks itself (manual acks). If it raises, the event is nak'ed and redelivered after a
    growing delay; an event whose body is not a valid ``E`` never reaches it and goes to the dead
    letters at once; an event that failed ``max_deliver`` times goes there too.

    Class options:
        queue_group_name: the service's name; each event reaches one replica of each queue group.
        ack_wait: seconds JetStream waits for the ack of a delivery before redelivering it (original: 5).
        max_deliver: deliveries of one event before it is given up on and dead-lettered.
        concurrency: events handled at once by this replica; 1 keeps the stream's order.
        prefetch: events requested ahead of the handlers (default 256, or 8 per handler if more); those
            waiting are kept alive too, so a deep window costs no redeliveries.
        redelivery_delay / max_redelivery_delay: the nak delay after the first failure, doubled after
            each further one, up to the maximum.
        out_of_order_delay: the first nak delay for an event that raised ``OutOfOrder`` (default 0.05 s:
            its predecessor is usually being handled right now), doubled likewise.
    """

    event_type: ClassVar[type[Event]]
    subject: ClassVar[StrEnum]
    queue_group_name: ClassVar[str]
    ack_wait: ClassVar[float] = 5.0
    max_deliver: ClassVar[int] = 10
    concurrency: ClassVar[int] = 1
    prefetch: ClassVar[int | None] = None
    redelivery_delay: ClassVar[float] = 1.0
    max_redelivery_delay: ClassVar[float] = 60.0
    out_of_order_delay: ClassVar[float] = 0.05
    stream: ClassVar[str] = EVENTS_STREAM
    dead_letter_deadline: ClassVar[float] = RIDE_OUT_DEADLINE

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        event_type = bind_event_type(cls, BaseListener)
        if event_type is not None:
            cls.event_type = event_type
            cls.subject = event_type.subject

    def __init__(self, client: Client, *, js: JetStreamContext | None = None) -> None:
        cls = type(self)
        if not hasattr(cls, "event_type"):
            raise TypeError(
                f"{cls.__qualname__} is not bound to an event type: subclass BaseListener[SomeEvent]"
            )
        if not getattr(cls, "queue_group_name", ""):
            raise TypeError(f"{cls.__qualname__} must set queue_group_name")
        if cls.concurrency < 1 or cls.max_deliver < 1 or cls.ack_wait <= 0:
            raise ValueError(f"{cls.__qualname__}: concurrency and max_deliver must be >= 1, ack_wait > 0")
        look_for_tracing()
        self.client = client
        self._js = js if js is not None else client.jetstream()
        # Delivered and not finished, kept alive with in-progress acks until handled: those waiting in
        # the hand-off, and the one each worker handles (its slot).
        self._queue: Handoff[Msg | None] = Handoff()
        self._handling: list[Msg | None] = [None] * cls.concurrency
        # Stream sequences this replica nak'ed to wait for a predecessor: their redelivery is expected.
        self._waiting: OrderedDict[int, None] = OrderedDict()
        self._pull = ContinuousPull(
            client,
            self._js,
            cls.stream,
            self.consumer_config(),
            deliver=self._queue.put,
            in_hand=lambda: len(self._in_hand()),
            prefetch=cls.prefetch or max(256, 8 * cls.concurrency),
        )
        self._tasks: list[asyncio.Task[None]] = []
        # A first delivery's ack subject starts so (in the form without a domain): no parse needed.
        self._first_delivery = f"$JS.ACK.{cls.stream}.{self.durable_name}.1."
        # Looked up once, not per event; the class binds event_type to E, which a ClassVar cannot spell.
        self._validate: Callable[[bytes], E] = cls.event_type.model_validate_json  # type: ignore[assignment]

    @property
    def durable_name(self) -> str:
        """The durable consumer's name: the queue group, and the subject (a group consumes several)."""
        # A consumer's name may not hold "." (nor "*", ">"), which a service's own subjects may.
        return f"{self.queue_group_name}_{_NOT_IN_NAMES.sub('_', self.subject.value)}"

    def consumer_config(self) -> ConsumerConfig:
        """Return the durable consumer's configuration; override to tune what the options do not cover."""
        return ConsumerConfig(
            durable_name=self.durable_name,
            description=f"{self.queue_group_name} listening to {self.subject.value}",
            filter_subject=self.subject.value,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            # One delivery more than the handler gets: a last attempt that never finished (the process
            # died, the handler never acked) is then dead-lettered instead of dropped by the server.
            max_deliver=self.max_deliver + 1,
        )

    @abc.abstractmethod
    async def on_message(self, data: E, msg: Msg) -> None:
        """Handle one event, then ``await msg.ack()``; raise to have it redelivered."""

    async def listen(self) -> None:
        """Create or update the durable consumer and start consuming; return once it is active.

        Raises:
            nats.js.errors.NotFoundError: the stream does not exist (call ``ensure_stream`` first).
        """
        if self._tasks:
            raise RuntimeError(f"{type(self).__qualname__} is already listening")
        try:
            await self._pull.start()
        except nats.js.errors.NotFoundError as error:
            error.add_note(f"Does stream {self.stream!r} exist? Call ensure_stream(js) at start-up.")
            raise
        name = type(self).__qualname__
        self._tasks = [
            asyncio.create_task(self._work(slot), name=f"{name} worker") for slot in range(self.concurrency)
        ]
        self._tasks.append(asyncio.create_task(self._keep_alive(), name=f"{name} keep-alive"))
        _listening.add(self)
        logger.info("listening to %s as %s", self.subject, self.durable_name)

    async def consumer_info(self) -> ConsumerInfo:
        """The durable consumer's state on the server (pending, acked), as JetStream reports it."""
        info: ConsumerInfo = await self._js.consumer_info(self.stream, self.durable_name)
        return info

    @property
    def consuming(self) -> bool:
        """Whether it listens with every task alive and its pull subscribed (a readiness check)."""
        return bool(self._tasks) and not any(task.done() for task in self._tasks) and self._pull.running

    async def close(self, timeout: float | None = None) -> None:
        """Stop consuming: let the events being handled finish (up to ``timeout``, default ``ack_wait``).

        Events fetched but not started are nak'ed, so another replica gets them at once.
        """
        if not self._tasks:
            return
        _listening.discard(self)
        await self._pull.stop()
        for msg in self._queue.take_all():
            if msg is not None:
                await self._release(msg)
        workers, keep_alive = self._tasks[:-1], self._tasks[-1]
        self._tasks = []
        for _ in workers:
            self._queue.put(None)
        _done, unfinished = await asyncio.wait(workers, timeout=self.ack_wait if timeout is None else timeout)
        for task in (*unfinished, keep_alive):
            task.cancel()
        await asyncio.gather(*unfinished, keep_alive, return_exceptions=True)
        for msg in self._in_hand():  # handlers that did not finish in time
            await self._release(msg)
        self._handling[:] = [None] * len(self._handling)

    def _in_hand(self) -> list[Msg]:
        """The events delivered and not finished: waiting for a worker, or being handled."""
        return [msg for msg in (*self._queue.items, *self._handling) if msg is not None]

    async def _work(self, slot: int) -> None:
        # Locals: this loop runs once per event, and attribute look-ups are a measurable part of it.
        queue, handling, pull, handle = self._queue, self._handling, self._pull, self._handle
        waiting = queue.items
        while (msg := queue.take() if waiting else await queue.get()) is not None:
            handling[slot] = msg
            try:
                await handle(msg)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Only the connection can fail here (ack/nak/dead letter): JetStream redelivers.
                logger.exception("could not settle %s: it will be redelivered", msg.subject)
            handling[slot] = None
            if pull.finished():
                await pull.refill()

    async def _handle(self, msg: Msg) -> None:
        try:
            data = self._validate(msg.data)
        except pydantic.ValidationError as error:
            await self._dead_letter(msg, f"invalid {self.event_type.__qualname__}: {error}")
            return
        deliveries = 1 if msg.reply.startswith(self._first_delivery) else delivery_count(msg)
        if deliveries > 1:
            self._log_redelivery(msg)
        if deliveries > self.max_deliver:
            await self._dead_letter(
                msg, f"not settled after {self.max_deliver} deliveries (ack_wait ran out)"
            )
            return
        started = time.perf_counter() if OBSERVERS else 0.0
        outcome: Outcome = "handled"
        tracing = _instruments.TRACING
        try:
            if tracing is None:
                await self.on_message(data, msg)
            else:
                with tracing.consuming(msg, self.queue_group_name):
                    await self.on_message(data, msg)
            if logger.isEnabledFor(_DEBUG):  # the fields cost time on the hot path
                logger.debug("event handled", extra=self._fields(msg))
        except OutOfOrder as early:
            outcome = "waiting"
            await self._wait_for_predecessor(msg, early, deliveries)
        except Exception as error:  # noqa: BLE001 - any handler error: redelivered, or dead-lettered
            outcome = "failed"
            await self._failed(msg, error, deliveries)
        if OBSERVERS:
            seconds = time.perf_counter() - started
            for observer in OBSERVERS:
                observer.delivered(msg.subject, self.queue_group_name, seconds, outcome)

    async def _failed(self, msg: Msg, error: Exception, deliveries: int) -> None:
        if msg.is_acked:
            logger.error("%s raised after settling %s", type(self).__qualname__, msg.subject, exc_info=error)
        elif deliveries >= self.max_deliver:
            await self._dead_letter(msg, f"handler failed {deliveries} times, last: {error!r}")
        else:
            delay = self._backoff(self.redelivery_delay, deliveries)
            logger.warning(
                "%s failed on %s stream sequence %d, delivery %d: %r; redelivery in %.1f s",
                type(self).__qualname__,
                msg.subject,
                msg.metadata.sequence.stream,
                deliveries,
                error,
                delay,
                exc_info=error,
                extra=self._fields(msg),
            )
            await msg.nak(delay=delay)

    def _log_redelivery(self, msg: Msg) -> None:
        for observer in OBSERVERS:
            observer.redelivered(msg.subject, self.queue_group_name)
        sequence = msg.metadata.sequence.stream
        if sequence in self._waiting:  # a wait for its predecessor, not a failure
            del self._waiting[sequence]
            logger.debug("redelivered event, its predecessor awaited", extra=self._fields(msg))
        else:
            logger.warning("redelivered event", extra=self._fields(msg))

    def _fields(self, msg: Msg) -> dict[str, object]:
        """What a log line of this event carries (structured logs show them as fields)."""
        return event_fields(msg, self.queue_group_name)

    def _backoff(self, first_delay: float, deliveries: int) -> float:
        # Doubling after each delivery, capped: a busy dependency gets room, a short wait stays short.
        return min(first_delay * 2.0 ** (deliveries - 1), self.max_redelivery_delay)

    async def _wait_for_predecessor(self, msg: Msg, early: OutOfOrder, deliveries: int) -> None:
        if msg.is_acked:
            logger.error("%s acked %s, then raised %s", type(self).__qualname__, msg.subject, early)
        elif deliveries >= self.max_deliver:
            await self._dead_letter(msg, f"out of order after {deliveries} deliveries: {early}")
        else:
            delay = self._backoff(self.out_of_order_delay, deliveries)
            logger.debug("%s: %s; redelivery in %.2f s", msg.subject, early, delay)
            self._waiting[msg.metadata.sequence.stream] = None
            if len(self._waiting) > _MAX_WAITING:  # bounded: a redelivery to another replica never comes here
                self._waiting.popitem(last=False)
            await msg.nak(delay=delay)

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        try:
            await send_to_dead_letters(
                self._js,
                msg,
                queue_group=self.queue_group_name,
                reason=reason,
                deadline=self.dead_letter_deadline,
            )
            for observer in OBSERVERS:
                observer.dead_lettered(msg.subject, self.queue_group_name)
        except Exception:
            logger.exception("could not dead-letter %s (%s); it stays to be redelivered", msg.subject, reason)
            if not msg.is_acked:
                await msg.nak(delay=self.max_redelivery_delay)

    async def _keep_alive(self) -> None:
        # Half of ack_wait leaves a round trip of margin before JetStream would redeliver.
        while True:
            await asyncio.sleep(self.ack_wait / 2)
            for msg in self._in_hand():
                if not msg.is_acked:
                    with contextlib.suppress(nats.errors.Error):
                        await msg.in_progress()

    async def _release(self, msg: Msg) -> None:
        if not msg.is_acked and self.client.is_connected:
            with contextlib.suppress(nats.errors.Error):
                await msg.nak()
