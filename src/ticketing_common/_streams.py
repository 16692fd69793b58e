"""The JetStream streams the events and their dead letters are kept in."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig, StreamInfo

from ticketing_common._jetstream import RIDE_OUT_DEADLINE, ride_out
from ticketing_common._subjects import Subjects

EVENTS_STREAM = "TICKETING"
"""The stream every subject of ``Subjects`` is stored in (and a service's own, see ``ensure_stream``)."""

DEAD_LETTERS_STREAM = "TICKETING_DEAD_LETTERS"
"""The stream dead letters are stored in, to inspect and replay."""

DEAD_LETTER_SUBJECT_PREFIX = "dead-letter"
"""Dead letters of queue group G for subject S are published on ``dead-letter.G.S``."""

SCHEDULE_SUBJECT_PREFIX = "schedule"
"""An event on subject S scheduled under key K waits on ``schedule.S.K`` (``BasePublisher.schedule``)."""

_STREAM_NAME_IN_USE = (
    10058  # JetStream's error code for "stream name already in use with a different configuration"
)


@dataclass(frozen=True, slots=True)
class Streams:
    """What ``ensure_stream`` made sure of."""

    events: StreamInfo
    dead_letters: StreamInfo


async def ensure_stream(  # noqa: PLR0913 - each knob is one stream setting an operator may need
    js: JetStreamContext,
    *,
    replicas: int = 1,
    duplicate_window: float = 120.0,
    storage: StorageType = StorageType.FILE,
    max_age: float | None = None,
    dead_letter_max_age: float | None = None,
    deadline: float = RIDE_OUT_DEADLINE,
    extra_subjects: Iterable[str] = (),
) -> Streams:
    """Create, or update to this configuration, the streams the ticketing events need. Idempotent.

    An update never removes a subject: a service on an older version of this package (which does not
    know a newer event's subject) or without a service's own subjects keeps them in the stream, so a
    rolling deploy cannot take a subject away from the services that publish on it.

    Args:
        js: the JetStream context to use.
        replicas: copies of each message; 1 for development, 3 for a production cluster (one node may
            fail without losing an acknowledged event).
        duplicate_window: seconds during which a re-published ``Nats-Msg-Id`` is dropped as a duplicate;
            it bounds how long a publisher may retry one event.
        storage: file (survives restarts) or memory.
        max_age: seconds an event is kept; None keeps events until limits are changed, which lets a new
            service replay the whole history, as the original's "deliver all available" expects.
        dead_letter_max_age: seconds a dead letter is kept; None keeps them until inspected and purged.
        deadline: seconds to retry while JetStream does not answer (a cluster electing its leaders).
        extra_subjects: subjects of a service's own events, beside those of ``Subjects`` (e.g. a
            ``StrEnum`` of them), stored in the same stream.
    """
    events = StreamConfig(
        name=EVENTS_STREAM,
        description="Events of the ticketing services (ticketing-common)",
        subjects=[
            *(subject.value for subject in Subjects),
            *(str(subject) for subject in extra_subjects),
            f"{SCHEDULE_SUBJECT_PREFIX}.>",
        ],
        retention=RetentionPolicy.LIMITS,
        storage=storage,
        num_replicas=replicas,
        duplicate_window=duplicate_window,
        max_age=max_age,
        discard=DiscardPolicy.OLD,
        # Delayed events (BasePublisher.schedule) live in the stream itself: no Redis, no timer process,
        # and they survive a restart of any service or of the server. Needs nats-server 2.12 or later.
        allow_msg_schedules=True,
    )
    dead_letters = StreamConfig(
        name=DEAD_LETTERS_STREAM,
        description="Events a ticketing listener could not handle, with the reason in their headers",
        subjects=[f"{DEAD_LETTER_SUBJECT_PREFIX}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=storage,
        num_replicas=replicas,
        duplicate_window=duplicate_window,
        max_age=dead_letter_max_age,
    )
    return Streams(
        events=await _create_or_update(js, events, deadline),
        dead_letters=await _create_or_update(js, dead_letters, deadline),
    )


async def _create_or_update(js: JetStreamContext, config: StreamConfig, deadline: float) -> StreamInfo:
    async def create_or_update() -> StreamInfo:
        try:
            return await js.add_stream(config)
        except nats.js.errors.BadRequestError as error:
            if error.err_code != _STREAM_NAME_IN_USE:
                raise
        # An update keeps the subjects the stream has beyond ours (see ensure_stream).
        ours = config.subjects or []
        stored = (await js.stream_info(config.name or "")).config.subjects or []
        kept = [subject for subject in stored if subject not in ours]
        return await js.update_stream(replace(config, subjects=[*ours, *kept]))

    # A service that starts while the cluster elects a leader waits for it instead of failing to start.
    return await ride_out(create_or_update, deadline=deadline, what=f"making stream {config.name}")
