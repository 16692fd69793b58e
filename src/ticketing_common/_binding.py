"""Binding a publisher or listener class to its event type through its generic argument."""

from __future__ import annotations

import typing
from typing import Any

from ticketing_common._events import Event


def bind_event_type(cls: type[Any], generic_base: type[Any]) -> type[Event] | None:
    """Return the event type ``cls`` binds ``generic_base`` to, checking any ``subject`` it declares.

    ``class P(BasePublisher[TicketCreatedEvent])`` binds ``TicketCreatedEvent``. A class whose argument is
    still a type variable stays generic (None); a class with no argument of its own inherits its parent's.

    Raises:
        TypeError: the argument is not an event model, or the class declares a ``subject`` that is not
            the event's.
    """
    event_type: type[Event] | None = None
    for base in cls.__dict__.get("__orig_bases__", ()):
        origin = typing.get_origin(base)
        if isinstance(origin, type) and issubclass(origin, generic_base):
            (argument,) = typing.get_args(base)
            if isinstance(argument, typing.TypeVar):
                return None
            if not (
                isinstance(argument, type) and issubclass(argument, Event) and hasattr(argument, "subject")
            ):
                raise TypeError(f"{cls.__qualname__}: {argument!r} is not an event model with a subject")
            event_type = argument
    if event_type is None:
        event_type = getattr(cls, "event_type", None)
        if event_type is None:
            return None
    declared = cls.__dict__.get("subject")
    if declared is not None and declared != event_type.subject:
        raise TypeError(
            f"{cls.__qualname__} declares subject {declared!r} but handles {event_type.__qualname__}, "
            f"whose subject is {event_type.subject.value!r}"
        )
    return event_type
