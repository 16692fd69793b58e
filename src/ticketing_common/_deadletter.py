"""Dead letters: events a listener could not handle, kept in a stream with the reason, never lost."""

from __future__ import annotations

import logging

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import Header

from ticketing_common._event_log import event_fields
from ticketing_common._instruments import TRACE_HEADERS
from ticketing_common._jetstream import publish_acked
from ticketing_common._streams import DEAD_LETTER_SUBJECT_PREFIX

logger = logging.getLogger("ticketing_common.listener")

REASON_HEADER = "Ticketing-Dead-Letter-Reason"
"""Why the event was given up on: invalid JSON, an invalid event, or the handler's last error."""
SUBJECT_HEADER = "Ticketing-Subject"
"""The subject the event was published on; replay by publishing the body there again."""
QUEUE_GROUP_HEADER = "Ticketing-Queue-Group"
"""The queue group (service) that could not handle it."""
SEQUENCE_HEADER = "Ticketing-Stream-Sequence"
"""The event's sequence in the events stream."""
DELIVERIES_HEADER = "Ticketing-Deliveries"
"""How many times it was delivered to that queue group."""
ORIGINAL_MSG_ID_HEADER = "Ticketing-Original-Msg-Id"
"""The ``Nats-Msg-Id`` it was published with, if any."""

_MAX_REASON = 1024


def dead_letter_subject(queue_group: str, subject: str) -> str:
    """Return the subject on which ``queue_group``'s dead letters of ``subject`` are published."""
    return f"{DEAD_LETTER_SUBJECT_PREFIX}.{queue_group}.{subject}"


async def send_to_dead_letters(
    js: JetStreamContext,
    msg: Msg,
    *,
    queue_group: str,
    reason: str,
    deadline: float,
) -> None:
    """Store a copy of ``msg`` and the reason on the dead-letter subject, then terminate it.

    The copy is stored (PubAck) before the original is terminated, so a failure in between leaves the
    original to be redelivered rather than lost.
    """
    metadata = msg.metadata
    # Header values are single lines.
    one_line_reason = " ".join(reason.split())[:_MAX_REASON]
    headers = {
        REASON_HEADER: one_line_reason,
        SUBJECT_HEADER: msg.subject,
        QUEUE_GROUP_HEADER: queue_group,
        SEQUENCE_HEADER: str(metadata.sequence.stream),
        DELIVERIES_HEADER: str(metadata.num_delivered),
    }
    original = msg.headers or {}
    original_id = original.get(Header.MSG_ID)
    if original_id is not None:
        headers[ORIGINAL_MSG_ID_HEADER] = original_id
    # The copy stays in the event's trace: its send span is a child of the original publish.
    headers.update((name, original[name]) for name in TRACE_HEADERS if name in original)
    await publish_acked(
        js,
        dead_letter_subject(queue_group, msg.subject),
        msg.data,
        # Two copies of one dead letter (a retried term, two replicas racing) are stored once.
        msg_id=f"{metadata.stream}:{metadata.consumer}:{metadata.sequence.stream}",
        headers=headers,
        timeout=2.0,
        deadline=deadline,
    )
    await msg.term()
    logger.error(
        "dead letter: %s stream sequence %d, delivery %d, queue group %s: %s",
        msg.subject,
        metadata.sequence.stream,
        metadata.num_delivered,
        queue_group,
        one_line_reason,
        extra={**event_fields(msg, queue_group), "reason": one_line_reason},
    )
