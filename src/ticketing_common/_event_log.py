"""The fields a log line about a delivered event carries, the same wherever it is logged."""

from __future__ import annotations

from nats.aio.msg import Msg
from nats.js.api import Header


def event_fields(msg: Msg, queue_group: str) -> dict[str, object]:
    """A delivered event's log fields: subject, stream sequence, deliveries, queue group, message id."""
    metadata = msg.metadata
    return {
        "subject": msg.subject,
        "stream_sequence": metadata.sequence.stream,
        "deliveries": metadata.num_delivered,
        "queue_group": queue_group,
        "msg_id": (msg.headers or {}).get(Header.MSG_ID),
    }
