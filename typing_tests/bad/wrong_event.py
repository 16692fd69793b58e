from __future__ import annotations

from ticketing_common import BaseListener, OrderStatus, TicketCreatedEvent


class NotAnEvent(BaseListener[int]):  # expect: type-var
    queue_group_name = "x"


def wrong_fields() -> None:
    TicketCreatedEvent(id="t", version="1", title="x", price=1, user_id="u")  # expect: arg-type
    TicketCreatedEvent(id="t", version=1, title="x", price=1)  # expect: call-arg


def immutable(event: TicketCreatedEvent) -> None:
    event.price = 3  # expect: misc


def status_is_an_enum() -> OrderStatus:
    return "created"  # expect: return-value
