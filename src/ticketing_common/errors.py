"""Exceptions raised by ticketing-common.

The whole tree::

    TicketingError
    ├── NotConnectedError (also a RuntimeError): the NATS client was used before connect() or after close()
    └── PublishError: JetStream did not store an event (refused it, or gave no PubAck before the deadline)

Validation of an event is pydantic's own ``pydantic.ValidationError``: it is raised unchanged when an
event model is built from bad data.
"""

from __future__ import annotations

__all__ = ["NotConnectedError", "PublishError", "TicketingError"]


class TicketingError(Exception):
    """Base of every exception this package raises on its own."""


class NotConnectedError(TicketingError, RuntimeError):
    """The NATS client holder was used while it holds no open connection."""


class PublishError(TicketingError):
    """JetStream did not acknowledge an event: it is not stored, and the caller must not assume it is.

    Attributes:
        subject: the subject the event was published on.
        msg_id: the ``Nats-Msg-Id`` it was sent with; publishing again with it cannot store it twice.
    """

    def __init__(self, message: str, *, subject: str, msg_id: str) -> None:
        super().__init__(message)
        self.subject = subject
        self.msg_id = msg_id
