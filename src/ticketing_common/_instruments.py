"""Where telemetry observes the events: what publishing and consuming report, to whoever listens.

Metrics (``ticketing_common.prometheus``) add an ``Observer``; traces (``ticketing_common.opentelemetry``)
set ``TRACING``. With neither, the hot paths only test that the list is empty and the hook is None, as
FastStream's middlewares hang off its broker instead of running through every module.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Literal, Protocol

from nats.aio.msg import Msg

Outcome = Literal["handled", "failed", "waiting"]
"""How a delivery ended: handled (the handler returned), failed (it raised), waiting (``OutOfOrder``)."""

TRACE_HEADERS = ("traceparent", "tracestate")
"""The W3C trace context headers: what a copy of an event (a dead letter) keeps of its trace."""


class Observer(Protocol):
    """Told of each publish and each delivery; must not block or raise."""

    def published(self, subject: str, seconds: float, *, duplicate: bool) -> None:
        """An event got its PubAck ``seconds`` after the publish began (retries included)."""

    def delivered(self, subject: str, queue_group: str, seconds: float, outcome: Outcome) -> None:
        """A queue group's handler took ``seconds`` over an event and ended as ``outcome``."""

    def redelivered(self, subject: str, queue_group: str) -> None:
        """An event came to a queue group again."""

    def dead_lettered(self, subject: str, queue_group: str) -> None:
        """A queue group gave an event up; a copy is in the dead letters."""


Sent = Callable[[BaseException | None], None]
"""Ends the span of one publish: with None once it is stored, or with the error it failed with."""


class Tracing(Protocol):
    """Carries a trace from each publish to each handling of the event, through the NATS headers."""

    def sending(self, subject: str, msg_id: str, headers: dict[str, str]) -> Sent:
        """Start the span of one publish (retries included) and write its trace context into ``headers``.

        Its parent is the trace context ``headers`` carry already (an outbox row's, written by the
        request that made the event), else the current one. It is not made current: publishes that are
        pipelined overlap.
        """

    def consuming(self, msg: Msg, queue_group: str) -> AbstractContextManager[None]:
        """Span one handling of ``msg``, a child of the trace context its headers carry."""

    def carrier(self) -> dict[str, str]:
        """The current trace context as headers, for an outbox row to keep until it is published."""


OBSERVERS: list[Observer] = []
"""The observers of this process; empty unless telemetry is installed."""

TRACING: Tracing | None = None
"""The tracing of this process: set once a publisher, listener or outbox is made, if opentelemetry-api
is installed (``ticketing_common.opentelemetry.enable``), else None."""

_looked_for_tracing = False


def look_for_tracing() -> None:
    """Enable tracing, once per process, if opentelemetry-api is installed and it was not disabled.

    Called where events are made or handled rather than at import, so that importing the package stays
    light and a process that calls ``ticketing_common.opentelemetry.disable()`` first pays nothing.
    """
    global _looked_for_tracing  # noqa: PLW0603 - one decision per process
    if _looked_for_tracing:
        return
    _looked_for_tracing = True
    if TRACING is None and _api_installed():
        from ticketing_common.opentelemetry import enable  # noqa: PLC0415 - only with opentelemetry-api

        enable()


def _api_installed() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.trace") is not None
    except ModuleNotFoundError:  # not even the opentelemetry namespace
        return False


def set_tracing(tracing: Tracing | None) -> None:
    """Replace the process's tracing (None: off); the automatic look for opentelemetry-api is then over."""
    global TRACING, _looked_for_tracing  # noqa: PLW0603 - the hook the hot paths read
    TRACING = tracing
    _looked_for_tracing = True
