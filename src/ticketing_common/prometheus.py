"""Prometheus metrics of the events a process publishes and consumes, ``GET /metrics`` (``[prometheus]``).

``Service.install`` serves them when prometheus-client is installed; without it there is no endpoint and
nothing is measured. The metrics (one set per process, in ``metrics().registry``):

- ``ticketing_events_published_total{subject}``, ``ticketing_events_duplicate_total{subject}``
- ``ticketing_events_consumed_total{subject,queue_group}``: handled without an error
- ``ticketing_events_failed_total{subject,queue_group}``: the handler raised (redelivered later)
- ``ticketing_events_redelivered_total{subject,queue_group}``
- ``ticketing_events_dead_lettered_total{subject,queue_group}``
- ``ticketing_handler_duration_seconds{subject,queue_group}``: histogram of ``on_message``
- ``ticketing_publish_duration_seconds{subject}``: histogram from publish to PubAck, retries included
- ``ticketing_outbox_rows{service}``: events committed and not yet in JetStream (and those published
  in the last ``delete_interval``, 0.1 s, whose rows the relay deletes together)
- ``ticketing_consumer_pending_events{queue_group,subject}``: stored, not yet delivered to the group

The two gauges are read from the database and from JetStream when ``/metrics`` is scraped, at most once
per ``refresh_interval`` seconds, so that a scraper cannot load either.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.errors
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ticketing_common._instruments import OBSERVERS, Outcome
from ticketing_common._listener import BaseListener
from ticketing_common.errors import DatabaseConnectionError

if TYPE_CHECKING:
    from ticketing_common.service import Service

__all__ = ["Metrics", "install_metrics", "metrics"]

_EVENT = ("subject", "queue_group")
# From a fast local ack to a publish that rode out a leader election (30 s retry deadline).
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The process's event metrics: an observer of every publish and delivery, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        registry = self.registry
        self.published_total = Counter(
            "ticketing_events_published", "Events stored", ["subject"], registry=registry
        )
        self.duplicate_total = Counter(
            "ticketing_events_duplicate", "Publishes JetStream de-duplicated", ["subject"], registry=registry
        )
        self.consumed_total = Counter(
            "ticketing_events_consumed", "Events handled", _EVENT, registry=registry
        )
        self.failed_total = Counter("ticketing_events_failed", "Handler errors", _EVENT, registry=registry)
        self.redelivered_total = Counter(
            "ticketing_events_redelivered", "Redeliveries", _EVENT, registry=registry
        )
        self.dead_lettered_total = Counter(
            "ticketing_events_dead_lettered", "Events given up to the dead letters", _EVENT, registry=registry
        )
        self.handler_seconds = Histogram(
            "ticketing_handler_duration_seconds",
            "Time in on_message",
            _EVENT,
            buckets=_BUCKETS,
            registry=registry,
        )
        self.publish_seconds = Histogram(
            "ticketing_publish_duration_seconds",
            "From publish to PubAck, retries included",
            ["subject"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.outbox_rows = Gauge(
            "ticketing_outbox_rows", "Outbox rows not yet in JetStream", ["service"], registry=registry
        )
        self.consumer_pending = Gauge(
            "ticketing_consumer_pending_events", "Events stored, not yet delivered", _EVENT, registry=registry
        )

    def published(self, subject: str, seconds: float, *, duplicate: bool) -> None:
        """Count a publish and its time to PubAck."""
        (self.duplicate_total if duplicate else self.published_total).labels(subject).inc()
        self.publish_seconds.labels(subject).observe(seconds)

    def delivered(self, subject: str, queue_group: str, seconds: float, outcome: Outcome) -> None:
        """Count a delivery by its outcome and time its handler."""
        if outcome == "handled":
            self.consumed_total.labels(subject, queue_group).inc()
        elif outcome == "failed":
            self.failed_total.labels(subject, queue_group).inc()
        self.handler_seconds.labels(subject, queue_group).observe(seconds)

    def redelivered(self, subject: str, queue_group: str) -> None:
        """Count a redelivery."""
        self.redelivered_total.labels(subject, queue_group).inc()

    def dead_lettered(self, subject: str, queue_group: str) -> None:
        """Count a dead letter."""
        self.dead_lettered_total.labels(subject, queue_group).inc()


_process_metrics: list[Metrics] = []


def metrics() -> Metrics:
    """The process's metrics, observing every publisher and listener from the first call on."""
    if not _process_metrics:
        _process_metrics.append(Metrics())
        OBSERVERS.append(_process_metrics[0])
    return _process_metrics[0]


def install_metrics(
    app: Starlette,
    *,
    service: Service | None = None,
    listeners: Callable[[], Sequence[BaseListener[Any]]] | None = None,
    refresh_interval: float = 5.0,
) -> Metrics:
    """Serve ``GET /metrics`` on ``app``; the gauges follow ``service`` (or only ``listeners``)."""
    measured = metrics()
    refreshed_at = -refresh_interval
    watched = listeners if listeners is not None else _listeners_of(service)

    async def refresh() -> None:
        nonlocal refreshed_at
        if time.monotonic() - refreshed_at < refresh_interval:
            return
        refreshed_at = time.monotonic()
        if service is not None:
            with contextlib.suppress(DatabaseConnectionError, SQLAlchemyError):  # /readyz says why
                rows = await service.outbox.count(service.database)
                measured.outbox_rows.labels(service.settings.name).set(rows)
        for listener in watched():
            try:
                info = await listener.consumer_info()
            except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
                continue  # NATS is down: the gauge keeps its last value, /readyz says why
            measured.consumer_pending.labels(listener.subject, listener.queue_group_name).set(
                info.num_pending or 0
            )

    async def endpoint(_request: Request) -> Response:
        await refresh()
        return Response(generate_latest(measured.registry), media_type=CONTENT_TYPE_LATEST)

    app.router.routes.append(Route("/metrics", endpoint, methods=["GET"], include_in_schema=False))
    return measured


def _listeners_of(service: Service | None) -> Callable[[], Sequence[BaseListener[Any]]]:
    if service is None:
        return tuple
    return lambda: service.listeners
