"""Version rules for records replicated by events: apply the next version, wait for a gap, ignore the past.

A service that owns a record increments its ``version`` on every save, starting at 0, and publishes each
new state with it (``ticketing_common.sqlalchemy.Versioned`` does this with SQLAlchemy). A service that
keeps a replica applies an event only when it is the replica's next version::

    replica     incoming     decision
    none        0            APPLY   (the record's first event)
    none        > 0          WAIT    (its creation has not arrived yet)
    v           v + 1        APPLY
    v           <= v         IGNORE  (a duplicate or an old event: ack it, change nothing)
    v           > v + 1      WAIT    (a predecessor is missing: do not ack, let JetStream redeliver)

``should_apply`` turns WAIT into ``OutOfOrder``, which ``BaseListener`` answers with a short nak.
"""

from __future__ import annotations

from enum import StrEnum

from ticketing_common.errors import OutOfOrder

__all__ = ["Decision", "OutOfOrder", "decide", "should_apply"]


class Decision(StrEnum):
    """What a replica does with an incoming version."""

    APPLY = "apply"
    WAIT = "wait"
    IGNORE = "ignore"


def decide(current: int | None, incoming: int) -> Decision:
    """Decide from the replica's version (None when there is no replica yet) and the event's."""
    expected = 0 if current is None else current + 1
    if incoming == expected:
        return Decision.APPLY
    if current is not None and incoming <= current:
        return Decision.IGNORE
    return Decision.WAIT


def should_apply(current: int | None, incoming: int, *, record: str = "record") -> bool:
    """True to apply, False to ack and ignore; raise ``OutOfOrder`` when the event must wait.

    ``record`` names the record in the ``OutOfOrder`` message (e.g. ``"ticket 5f8d..."``).
    """
    decision = decide(current, incoming)
    if decision is Decision.WAIT:
        raise OutOfOrder(record=record, current=current, incoming=incoming)
    return decision is Decision.APPLY
