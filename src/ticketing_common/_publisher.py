"""BasePublisher: publish one kind of event to JetStream and return once it is stored."""

from __future__ import annotations

import logging
import uuid
from typing import ClassVar, Generic, TypeVar

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck

from ticketing_common._binding import bind_event_type
from ticketing_common._events import Event
from ticketing_common._jetstream import publish_acked
from ticketing_common._subjects import Subjects

E = TypeVar("E", bound=Event)

logger = logging.getLogger("ticketing_common.publisher")


class BasePublisher(Generic[E]):
    """Publishes events of type ``E`` on ``E``'s subject, one subclass per event type.

    Example::

        class TicketCreatedPublisher(BasePublisher[TicketCreatedEvent]):
            pass

        await TicketCreatedPublisher(nats_wrapper.client).publish(event)

    Class options:
        timeout: seconds to wait for one PubAck.
        retry_deadline: seconds to keep retrying transient failures (no responders, timeouts while a
            server restarts or a cluster elects a leader) before raising ``PublishError``.
    """

    event_type: ClassVar[type[Event]]
    subject: ClassVar[Subjects]
    timeout: ClassVar[float] = 2.0
    retry_deadline: ClassVar[float] = 10.0

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
        if type(event) is not self.event_type:
            raise TypeError(
                f"{type(self).__qualname__} publishes {self.event_type.__qualname__}, not {event!r}"
            )
        if msg_id is None:
            msg_id = event.message_id() or uuid.uuid4().hex
        ack = await publish_acked(
            self._js,
            self.subject,
            event.model_dump_json().encode(),
            msg_id=msg_id,
            timeout=self.timeout,
            deadline=self.retry_deadline,
        )
        logger.debug("event published to %s, stream sequence %d", self.subject, ack.seq)
        return ack
