"""Where telemetry observes the events: what publishing and consuming report, to whoever listens.

Metrics (``ticketing_common.prometheus``) add an ``Observer``; with none, the hot paths only test that
the list is empty, as FastStream's middlewares hang off its broker instead of running through every module.
"""

from __future__ import annotations

from typing import Literal, Protocol

Outcome = Literal["handled", "failed", "waiting"]
"""How a delivery ended: handled (the handler returned), failed (it raised), waiting (``OutOfOrder``)."""


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


OBSERVERS: list[Observer] = []
"""The observers of this process; empty unless telemetry is installed."""
