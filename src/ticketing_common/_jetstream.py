"""A JetStream publish that waits for the PubAck and rides out server restarts and leader elections."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import Header, PubAck

from ticketing_common import _instruments
from ticketing_common._instruments import OBSERVERS
from ticketing_common.errors import PublishError

logger = logging.getLogger("ticketing_common.publisher")
T = TypeVar("T")

# What a restarting server, a cluster electing a stream leader or a reconnecting client look like from
# here: the same publish, with the same message id, succeeds a moment later.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    asyncio.TimeoutError,  # nats.errors.TimeoutError is one too
    nats.errors.NoRespondersError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
)

RIDE_OUT_DEADLINE = 30.0
"""How long a publish, or making the streams, retries by default: a leader election with margin.

On the 2-core test machine a three-node cluster took up to 10.3 s to elect a stream leader after every
node was killed at once (4.5 to 9.1 s after one node): 30 s is about three times that, and well inside
the 120 s duplicate window within which a retried message id is still de-duplicated."""

# JetStream's answers that are not its decision on a publish: "duplicate message id is in process" (a
# stream leader still proposing an earlier attempt with this message id, which may yet be stored; a
# retry gets its PubAck, marked duplicate, once it is).
_UNDECIDED = frozenset({10158})


def transient(error: BaseException) -> bool:
    """Whether the same operation may succeed a moment later: one of ``TRANSIENT_ERRORS``, or undecided."""
    if isinstance(error, TRANSIENT_ERRORS):
        return True
    return isinstance(error, nats.js.errors.APIError) and error.err_code in _UNDECIDED


_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 1.0


async def ride_out(operation: Callable[[], Awaitable[T]], *, deadline: float, what: str) -> T:
    """Return ``operation()``, retried with back-off while it fails transiently, for up to ``deadline`` s.

    Raises:
        Exception: the last transient error once the deadline has passed; any other error at once.
    """
    give_up_at = time.monotonic() + deadline
    backoff = _FIRST_BACKOFF
    attempt = 0
    while True:
        attempt += 1
        try:
            return await operation()
        except Exception as error:
            if not transient(error):
                raise
            remaining = give_up_at - time.monotonic()
            if remaining <= 0:
                error.add_note(f"{what}: gave up after {attempt} attempts in {deadline:g} s")
                raise
            logger.warning("%s failed with %r; retry %d in %.2f s", what, error, attempt, backoff)
            await asyncio.sleep(min(backoff, remaining))
            backoff = min(backoff * 2, _MAX_BACKOFF)


async def publish_acked(  # noqa: PLR0913 - every argument is one knob of one publish
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    *,
    msg_id: str,
    headers: dict[str, str] | None = None,
    timeout: float,
    deadline: float,
) -> PubAck:
    """Publish ``payload`` and return JetStream's PubAck, retrying transient failures until ``deadline`` s.

    Every attempt carries the same ``Nats-Msg-Id``, so an attempt that was stored but whose PubAck got
    lost is de-duplicated by the server instead of stored twice. With tracing on, the headers carry the
    trace context too: that of ``headers``' own ``traceparent`` if given (an outbox row's), else the current.

    Raises:
        PublishError: the stream refused the message, or no attempt was acknowledged in time.
    """
    all_headers: dict[str, str] = {**(headers or {}), Header.MSG_ID: msg_id}
    tracing = _instruments.TRACING
    if tracing is None:
        return await publish_stored(js, subject, payload, all_headers, timeout=timeout, deadline=deadline)
    sent = tracing.sending(subject, msg_id, all_headers)
    try:
        ack = await publish_stored(js, subject, payload, all_headers, timeout=timeout, deadline=deadline)
    except BaseException as error:
        sent(error)
        raise
    sent(None)
    return ack


async def publish_stored(  # noqa: PLR0913 - publish_acked's arguments, its headers complete
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    all_headers: dict[str, str],
    *,
    timeout: float,
    deadline: float,
) -> PubAck:
    """``publish_acked`` with its headers complete (``Nats-Msg-Id``, trace context) and no span of its own."""
    msg_id = all_headers[Header.MSG_ID]

    async def publish() -> PubAck:
        return await js.publish(subject, payload, timeout=timeout, headers=all_headers)

    started = time.perf_counter()
    try:
        ack = await ride_out(publish, deadline=deadline, what=f"publish to {subject} (Nats-Msg-Id {msg_id})")
    except Exception as error:
        if transient(error):
            raise PublishError(
                f"JetStream gave no PubAck for {subject!r} (Nats-Msg-Id {msg_id!r}) in {deadline:g} s; "
                f"last error: {error!r}. Is a stream bound to this subject (ensure_stream; extra_subjects "
                "for a service's own events) and is the server reachable?",
                subject=subject,
                msg_id=msg_id,
            ) from error
        if isinstance(error, nats.js.errors.APIError):
            raise PublishError(
                f"JetStream refused {subject!r} (Nats-Msg-Id {msg_id!r}): {error}",
                subject=subject,
                msg_id=msg_id,
            ) from error
        raise
    stored(subject, msg_id, ack, time.perf_counter() - started)
    return ack


def told_of_every_publish() -> bool:
    """Whether ``stored()`` has someone to tell of a publish that is not a duplicate: observers, a debug log.

    A duplicate is always told (logged); a caller that settles many PubAcks at once asks this once and
    calls ``stored()`` only for those.
    """
    return bool(OBSERVERS) or logger.isEnabledFor(logging.DEBUG)


def stored(subject: str, msg_id: str, ack: PubAck, seconds: float) -> None:
    """Report an event JetStream acknowledged ``seconds`` after its publish began: observers, logs."""
    for observer in OBSERVERS:
        observer.published(subject, seconds, duplicate=bool(ack.duplicate))
    if not ack.duplicate and not logger.isEnabledFor(logging.DEBUG):  # the fields cost time on the hot path
        return
    fields = {"subject": subject, "stream_sequence": ack.seq, "msg_id": msg_id}
    if ack.duplicate:
        # A retry, a replayed outbox row, a second relay: stored once, said so.
        logger.info("duplicate publish: JetStream already holds this event, not stored again", extra=fields)
    else:
        logger.debug("event published", extra=fields)
