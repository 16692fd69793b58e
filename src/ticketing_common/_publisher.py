"""BasePublisher: publish one kind of event to JetStream and return once it is stored."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import ClassVar, Generic, TypeVar

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck

from ticketing_common._binding import bind_event_type
from ticketing_common._events import Event
from ticketing_common._instruments import look_for_tracing
from ticketing_common._jetstream import RIDE_OUT_DEADLINE, publish_acked
from ticketing_common._pipeline import Outgoing, publish_acked_many
from ticketing_common._streams import EVENTS_STREAM, SCHEDULE_SUBJECT_PREFIX

E = TypeVar("E", bound=Event)

logger = logging.getLogger("ticketing_common.publisher")

# One subject token: no separator, no wildcard, no whitespace.
_KEY = re.compile(r"[^.*>\s]+")


class BasePublisher(Generic[E]):
    """Publishes events of type ``E`` on ``E``'s subject, one subclass per event type.

    Example::

        class TicketCreatedPublisher(BasePublisher[TicketCreatedEvent]):
            pass

        await TicketCreatedPublisher(nats_wrapper.client).publish(event)

    Class options:
        timeout: seconds to wait for one PubAck.
        retry_deadline: seconds to keep retrying transient failures (no responders, timeouts while a
            server restarts or a cluster elects a leader) before raising ``PublishError``; 30 s, about
            three times the longest election measured here.
    """

    event_type: ClassVar[type[Event]]
    subject: ClassVar[StrEnum]
    timeout: ClassVar[float] = 2.0
    retry_deadline: ClassVar[float] = RIDE_OUT_DEADLINE

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        event_type = bind_event_type(cls, BasePublisher)
        if event_type is not None:
            cls.event_type = event_type
            cls.subject = event_type.subject

    def __init__(self, client: Client, *, js: JetStreamContext | None = None) -> None:
        if not hasattr(type(self), "event_type"):
            raise TypeError(
                f"{type(self).__qualname__} is not bound to an event type: "
                "subclass BasePublisher[SomeEvent] and instantiate that"
            )
        look_for_tracing()
        self.client = client
        self._js = js if js is not None else client.jetstream()

    async def publish(self, event: E, *, msg_id: str | None = None) -> PubAck:
        """Publish ``event`` and return the PubAck once JetStream has stored it.

        ``msg_id`` (``Nats-Msg-Id``) defaults to the event's own id (``subject:id:version`` for versioned
        events) so that publishing the same event twice stores it once; events without one get a
        random id, shared by the retries of this call.

        Raises:
            TypeError: ``event`` is not of this publisher's event type.
            PublishError: the stream refused the event or did not acknowledge it in time.
        """
        self._check_type(event)
        if msg_id is None:
            msg_id = event.message_id() or uuid.uuid4().hex
        return await publish_acked(
            self._js,
            self.subject,
            event.model_dump_json().encode(),
            msg_id=msg_id,
            timeout=self.timeout,
            deadline=self.retry_deadline,
        )

    async def publish_many(self, events: Sequence[E], *, window: int = 1024) -> list[PubAck]:
        """Publish ``events`` with up to ``window`` PubAcks outstanding; return their PubAcks, in order.

        Each event has the message id ``publish`` would give it, so de-duplication is the same; one that
        fails transiently is published again, alone, until ``retry_deadline``. They reach the stream in
        the order given, except those that needed a retry. nats-py's own bound on outstanding
        publishes (``publish_async_max_pending``, 4,000 by default) holds too. A smaller window waits
        for PubAcks more often, in smaller writes both ways (``benchmarks/README.md``).

        Raises:
            TypeError: an event is not of this publisher's event type (nothing is published then).
            PublishManyError: some events were not stored: ``acks`` says which were (they stay stored).
        """
        event_type = self.event_type
        for event in events:
            if type(event) is not event_type:  # the check inline: it runs once per event
                self._check_type(event)
        messages = [
            Outgoing(self.subject, event.model_dump_json().encode(), event.message_id() or uuid.uuid4().hex)
            for event in events
        ]
        return await publish_acked_many(
            self._js, messages, window=window, timeout=self.timeout, deadline=self.retry_deadline
        )

    async def schedule(self, event: E, *, at: datetime, key: str) -> PubAck:
        """Have JetStream publish ``event`` at ``at`` (at once if ``at`` is past); return once stored.

        The schedule is a message of the events stream (``schedule.<subject>.<key>``), so it survives a
        restart of this process or of the server, and the server itself publishes the event on time.
        One schedule per ``key``: scheduling the same key again replaces it, and the same key and time
        within the stream's duplicate window is stored once, so a redelivered trigger schedules once.

        Raises:
            TypeError: ``event`` is not of this publisher's event type.
            ValueError: ``key`` is not one NATS subject token, or ``at`` has no time zone.
            PublishError: the stream refused the schedule (nats-server older than 2.12) or did not
                acknowledge it in time.
        """
        self._check_type(event)
        subject = self.schedule_subject(key)
        if at.tzinfo is None:
            raise ValueError(f"schedule time {at!r} has no time zone")
        when = at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        ack = await publish_acked(
            self._js,
            subject,
            event.model_dump_json().encode(),
            msg_id=f"{subject}@{when}",
            headers={"Nats-Schedule": f"@at {when}", "Nats-Schedule-Target": self.subject},
            timeout=self.timeout,
            deadline=self.retry_deadline,
        )
        logger.debug("event scheduled on %s for %s, stream sequence %d", subject, when, ack.seq)
        return ack

    async def cancel_schedule(self, key: str) -> None:
        """Remove the schedule of ``key``, if it has not fired yet; a missing one is not an error."""
        await self._js.purge_stream(EVENTS_STREAM, subject=self.schedule_subject(key))

    @classmethod
    def schedule_subject(cls, key: str) -> str:
        """The subject a schedule of this publisher's events under ``key`` is kept on."""
        if not _KEY.fullmatch(key):
            raise ValueError(
                f"schedule key {key!r} must be one NATS subject token (no '.', '*', '>', spaces)"
            )
        return f"{SCHEDULE_SUBJECT_PREFIX}.{cls.subject}.{key}"

    def _check_type(self, event: Event) -> None:
        if type(event) is not self.event_type:
            raise TypeError(
                f"{type(self).__qualname__} publishes {self.event_type.__qualname__}, not {event!r}"
            )
