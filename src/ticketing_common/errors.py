"""Exceptions raised by ticketing-common, and the HTTP errors services raise to answer a request.

The whole tree::

    TicketingError
    ├── NotConnectedError (also a RuntimeError): the NATS client was used before connect() or after close()
    ├── PublishError: JetStream did not store an event (refused it, or gave no PubAck before the deadline)
    │   └── PublishManyError: some events of a publish_many were not stored; it says which were
    ├── ConfigurationError (also a ValueError): a setting a service needs at start-up is missing or invalid
    ├── OutOfOrder: raised by a listener for an event whose predecessor has not been applied yet
    └── CustomError (abstract): an error answered to an HTTP client as {"errors": [{"message", "field"?}]}
        ├── BadRequestError(message)           400  [{message}]
        ├── NotAuthorizedError()               401  [{"message": "Not authorized"}]
        ├── NotFoundError()                    404  [{"message": "Not Found"}]
        ├── PayloadTooLargeError(limit)        413  the request body is over the service's limit
        ├── TooManyRequestsError(retry_after)  429  too many attempts; Retry-After says when to try again
        ├── RequestValidationError(errors)     400  one {message, field} per invalid field
        ├── DatabaseConnectionError()          500  [{"message": "Error connecting to database"}]
        ├── NotReadyError(problems)            503  one {message, field} per part that is down (/readyz)
        └── VersionConflictError(record)       409  someone else saved the record since it was read

The ``CustomError`` family carries the status codes and bodies of ``@sgtickets/common``, so a client cannot
tell a Python service from a Node one by its errors. ``ticketing_common.fastapi.install_error_handlers``
turns them into responses; nothing here depends on a web framework.

Validation of an event is pydantic's own ``pydantic.ValidationError``: it is raised unchanged when an
event model is built from bad data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, NotRequired, Self, TypedDict

from nats.js.api import PubAck
from pydantic import ValidationError

__all__ = [
    "BadRequestError",
    "ConfigurationError",
    "CustomError",
    "DatabaseConnectionError",
    "ErrorDetail",
    "NotAuthorizedError",
    "NotConnectedError",
    "NotFoundError",
    "NotReadyError",
    "OutOfOrder",
    "PayloadTooLargeError",
    "PublishError",
    "PublishManyError",
    "RequestValidationError",
    "TicketingError",
    "TooManyRequestsError",
    "VersionConflictError",
]


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


class PublishManyError(PublishError):
    """Some events of a pipelined publish were not stored; the others were, and stay stored.

    Attributes:
        acks: one entry per event, in the order given: its PubAck, or None if it is not stored.
        errors: why each event that is not stored failed, by its index.
        subject, msg_id: those of the first event not stored.
    """

    def __init__(
        self,
        message: str,
        *,
        acks: Sequence[PubAck | None],
        errors: Mapping[int, BaseException],
        subject: str,
        msg_id: str,
    ) -> None:
        super().__init__(message, subject=subject, msg_id=msg_id)
        self.acks = list(acks)
        self.errors = dict(errors)

    @property
    def stored(self) -> list[int]:
        """The indexes of the events that are stored."""
        return [index for index, ack in enumerate(self.acks) if ack is not None]


class ConfigurationError(TicketingError, ValueError):
    """A service's configuration (usually an environment variable) is missing or invalid."""


class OutOfOrder(TicketingError):  # noqa: N818 - a signal to the listener, like StopIteration, not a failure
    """An event arrived before its predecessor: leave it unapplied and unacked, to be redelivered soon.

    Raised from ``BaseListener.on_message`` (``versioning.should_apply`` raises it), it makes the listener
    nak the event with a short delay that doubles, without logging an error; after ``max_deliver``
    deliveries the event goes to the dead letters, so one lost predecessor never blocks a record forever.
    """

    def __init__(
        self,
        *,
        record: str,
        current: int | None = None,
        incoming: int | None = None,
        waiting_for: str | None = None,
    ) -> None:
        """``current`` and ``incoming`` are versions (``should_apply``); ``waiting_for`` names an event."""
        if waiting_for is not None:
            super().__init__(f"{record}: waiting for {waiting_for}")
        else:
            state = "no replica yet" if current is None else f"replica at version {current}"
            super().__init__(f"{record}: version {incoming} arrived with {state}")
        self.record = record
        self.current = current
        self.incoming = incoming
        self.waiting_for = waiting_for


class ErrorDetail(TypedDict):
    """One entry of the ``errors`` list of an error body; ``field`` names the offending input, if any."""

    message: str
    field: NotRequired[str]


class CustomError(TicketingError, ABC):
    """An error that answers an HTTP request with ``status_code`` and ``{"errors": serialize_errors()}``."""

    status_code: ClassVar[int]

    def __new__(cls, *args: object, **kwargs: object) -> Self:
        """Refuse an abstract subclass: ``BaseException.__new__`` skips ABC's own check."""
        if cls.__abstractmethods__:
            missing = ", ".join(sorted(cls.__abstractmethods__))
            raise TypeError(f"Can't instantiate abstract class {cls.__name__} without {missing}")
        return super().__new__(cls, *args, **kwargs)

    @abstractmethod
    def serialize_errors(self) -> list[ErrorDetail]:
        """The entries of the response's ``errors`` list."""

    def headers(self) -> dict[str, str]:
        """Headers the response carries beside the body; none unless the status needs one."""
        return {}


class BadRequestError(CustomError):
    """The request cannot be served as asked (400), e.g. "Email in use"; the client sees the message."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def serialize_errors(self) -> list[ErrorDetail]:
        """``[{"message": message}]``."""
        return [{"message": self.message}]


class NotAuthorizedError(CustomError):
    """No signed-in user, or one who may not touch this resource (401)."""

    status_code = 401

    def __init__(self) -> None:
        super().__init__("Not Authorized")

    def serialize_errors(self) -> list[ErrorDetail]:
        """``[{"message": "Not authorized"}]``."""
        return [{"message": "Not authorized"}]


class NotFoundError(CustomError):
    """No such route or resource (404)."""

    status_code = 404

    def __init__(self) -> None:
        super().__init__("Route not found")

    def serialize_errors(self) -> list[ErrorDetail]:
        """``[{"message": "Not Found"}]``."""
        return [{"message": "Not Found"}]


class PayloadTooLargeError(CustomError):
    """The request body is larger than the service accepts (413), as Express's body-parser answers."""

    status_code = 413

    def __init__(self, limit: int | None = None) -> None:
        detail = "" if limit is None else f" (at most {limit} bytes)"
        super().__init__(f"Request body is too large{detail}")

    def serialize_errors(self) -> list[ErrorDetail]:
        """``[{"message": "Request body is too large (at most <limit> bytes)"}]``."""
        return [{"message": str(self)}]


class TooManyRequestsError(CustomError):
    """Too many attempts in the window of a rate limit (429); ``Retry-After`` gives the seconds to wait."""

    status_code = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__("Too many attempts, try again later")
        self.retry_after = max(1, retry_after)

    def serialize_errors(self) -> list[ErrorDetail]:
        """``[{"message": "Too many attempts, try again later"}]``."""
        return [{"message": str(self)}]

    def headers(self) -> dict[str, str]:
        """``Retry-After``, in whole seconds (at least 1)."""
        return {"Retry-After": str(self.retry_after)}


class DatabaseConnectionError(CustomError):
    """The service's database cannot be reached (500)."""

    status_code = 500
    reason = "Error connecting to database"

    def __init__(self) -> None:
        super().__init__("Error connecting to db")

    def serialize_errors(self) -> list[ErrorDetail]:
        """``[{"message": "Error connecting to database"}]``."""
        return [{"message": self.reason}]


class NotReadyError(CustomError):
    """The service cannot serve now (503): the parts that are down, each named, e.g. ``nats``."""

    status_code = 503

    def __init__(self, problems: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{part}: {problem}" for part, problem in problems.items()))
        self.problems = dict(problems)

    def serialize_errors(self) -> list[ErrorDetail]:
        """``[{"message": "<what is wrong>", "field": "<part>"}, ...]``."""
        return [{"message": problem, "field": part} for part, problem in self.problems.items()]


class VersionConflictError(CustomError):
    """Another writer saved the record after it was read (409): re-read it and try again."""

    status_code = 409

    def __init__(self, record: str) -> None:
        super().__init__(f"{record} was changed by another request")
        self.record = record

    def serialize_errors(self) -> list[ErrorDetail]:
        """``[{"message": "<record> was changed by another request"}]``."""
        return [{"message": str(self)}]


class RequestValidationError(CustomError):
    """Some fields of the request are invalid (400): one ``{message, field}`` entry per problem."""

    status_code = 400

    def __init__(self, errors: Iterable[ErrorDetail]) -> None:
        super().__init__("Invalid request parameters")
        self.errors = list(errors)

    def serialize_errors(self) -> list[ErrorDetail]:
        """The entries given at construction."""
        return list(self.errors)

    @classmethod
    def from_pydantic(cls, errors: ValidationError | Iterable[Mapping[str, Any]]) -> Self:
        """Build from pydantic's error details, naming each field as the client spelled it.

        A location ``("ticket", "price")`` becomes ``"ticket.price"`` and ``("seats", 0)`` ``"seats[0]"``, the
        notation of express-validator. A message raised by a validator (``ValueError("Title is required")``)
        is passed on without pydantic's ``"Value error, "`` prefix.
        """
        details = errors.errors() if isinstance(errors, ValidationError) else errors
        return cls(_entry(detail) for detail in details)


def _entry(detail: Mapping[str, Any]) -> ErrorDetail:
    entry: ErrorDetail = {"message": _message(detail)}
    if field := _field_path(detail.get("loc", ())):
        entry["field"] = field
    return entry


def _message(detail: Mapping[str, Any]) -> str:
    context = detail.get("ctx") or {}
    if detail.get("type") in {"value_error", "assertion_error"} and "error" in context:
        return str(context["error"])
    return str(detail.get("msg", "Invalid value"))


def _field_path(location: Sequence[str | int]) -> str:
    """Render a pydantic location as express-validator names a field: ``a.b[0].c``."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path
