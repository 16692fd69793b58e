"""A JetStream publish that waits for the PubAck and rides out server restarts and leader elections."""

from __future__ import annotations

import asyncio
import logging
import time

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import Header, PubAck

from ticketing_common.errors import PublishError

logger = logging.getLogger("ticketing_common.publisher")

# What a restarting server, a cluster electing a stream leader or a reconnecting client look like from
# here: the same publish, with the same message id, succeeds a moment later.
_TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    asyncio.TimeoutError,  # nats.errors.TimeoutError is one too
    nats.errors.NoRespondersError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
)

_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 1.0


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
    lost is de-duplicated by the server instead of stored twice.

    Raises:
        PublishError: the stream refused the message, or no attempt was acknowledged in time.
    """
    all_headers: dict[str, str] = {**(headers or {}), Header.MSG_ID: msg_id}
    give_up_at = time.monotonic() + deadline
    backoff = _FIRST_BACKOFF
    attempt = 0
    while True:
        attempt += 1
        try:
            return await js.publish(subject, payload, timeout=timeout, headers=all_headers)
        except _TRANSIENT_ERRORS as error:
            remaining = give_up_at - time.monotonic()
            if remaining <= 0:
                raise PublishError(
                    f"JetStream gave no PubAck for {subject!r} (Nats-Msg-Id {msg_id!r}) in {deadline:g} s "
                    f"over {attempt} attempts; last error: {error!r}. Is a stream bound to this subject "
                    "(ensure_stream) and is the server reachable?",
                    subject=subject,
                    msg_id=msg_id,
                ) from error
            logger.warning(
                "publish to %s (Nats-Msg-Id %s) failed with %r; retry %d in %.2f s",
                subject,
                msg_id,
                error,
                attempt,
                backoff,
            )
            await asyncio.sleep(min(backoff, remaining))
            backoff = min(backoff * 2, _MAX_BACKOFF)
        except nats.js.errors.APIError as error:
            raise PublishError(
                f"JetStream refused {subject!r} (Nats-Msg-Id {msg_id!r}): {error}",
                subject=subject,
                msg_id=msg_id,
            ) from error
