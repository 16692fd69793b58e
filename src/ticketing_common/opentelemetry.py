"""OpenTelemetry traces that follow an event from the request that made it to each handling of it.

With opentelemetry-api installed (FastAPI depends on it), tracing is on without a call: every publish
carries the W3C ``traceparent`` and ``tracestate`` of its trace in the NATS headers, in a PRODUCER span
``send <subject>``; an outbox row keeps the trace context of the transaction that wrote it, so the relay's
publish joins the request's trace however late it runs; a schedule carries it to the event the server
publishes on time; and a listener handles each event in a CONSUMER span ``process <subject>``, a child of
the publisher's, so that whatever the handler publishes stays in the same trace. None of this needs the
SDK: without one no span is recorded, and the context still propagates. FastAPI (0.142 and later) makes
each request's SERVER span itself and honours an incoming ``traceparent``.

``configure_from_env(service)`` (the SDK, extra ``[otel]``) records spans and exports them as the standard
``OTEL_*`` variables say: ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``, ``none`` or any installed
exporter's name; comma-separated), ``OTEL_EXPORTER_OTLP_*`` (endpoint, headers, protocol, timeout),
``OTEL_SERVICE_NAME`` (default: the service's name), ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*`` and ``OTEL_SDK_DISABLED``.

Span attributes follow the messaging semantic conventions: ``messaging.system`` (``nats``),
``messaging.destination.name`` (the subject), ``messaging.message.id`` (``Nats-Msg-Id``),
``messaging.consumer.group.name`` (the queue group), ``messaging.operation.type`` and ``.name``,
``messaging.message.body.size``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from nats.aio.msg import Msg
from nats.js.api import Header
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue

from ticketing_common._instruments import Sent, set_tracing
from ticketing_common._version import __version__
from ticketing_common.errors import ConfigurationError, OutOfOrder

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["EventTracing", "configure_from_env", "disable", "enable"]

# The messaging semantic conventions' names, spelled out: opentelemetry-semantic-conventions keeps them
# in an _incubating module, and propagation must work with opentelemetry-api alone.
_SYSTEM = "messaging.system"
_DESTINATION = "messaging.destination.name"
_MESSAGE_ID = "messaging.message.id"
_CONSUMER_GROUP = "messaging.consumer.group.name"
_OPERATION_TYPE = "messaging.operation.type"
_OPERATION_NAME = "messaging.operation.name"
_BODY_SIZE = "messaging.message.body.size"
_TRACEPARENT = "traceparent"


class EventTracing:
    """Spans and trace context for events, from ``tracer_provider`` (default: the global provider)."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("ticketing_common", __version__, tracer_provider)

    def sending(self, subject: str, msg_id: str, headers: dict[str, str]) -> Sent:
        """Start a PRODUCER span for one publish, its context in ``headers``; the result ends it."""
        # An outbox row's stored context: the request's trace, not the relay's.
        parent = propagate.extract(headers) if _TRACEPARENT in headers else None
        attributes = {
            _SYSTEM: "nats",
            _DESTINATION: subject,
            _MESSAGE_ID: msg_id,
            _OPERATION_TYPE: "send",
            _OPERATION_NAME: "publish",
        }
        span = self._tracer.start_span(
            f"send {subject}", context=parent, kind=SpanKind.PRODUCER, attributes=attributes
        )
        propagate.inject(headers, context=trace.set_span_in_context(span, parent))

        def sent(error: BaseException | None) -> None:
            if error is not None:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__qualname__}: {error}"))
                span.set_attribute("error.type", type(error).__qualname__)
            span.end()

        return sent

    @contextmanager
    def consuming(self, msg: Msg, queue_group: str) -> Iterator[None]:
        """A CONSUMER span around one handling, a child of the span that published ``msg``."""
        headers = msg.headers or {}
        # Never the worker task's own context: each event starts from what it carries.
        parent = propagate.extract(headers)
        attributes: dict[str, AttributeValue] = {
            _SYSTEM: "nats",
            _DESTINATION: msg.subject,
            _CONSUMER_GROUP: queue_group,
            _OPERATION_TYPE: "process",
            _OPERATION_NAME: "process",
            _BODY_SIZE: len(msg.data),
        }
        if (msg_id := headers.get(Header.MSG_ID)) is not None:
            attributes[_MESSAGE_ID] = msg_id
        span = self._tracer.start_span(
            f"process {msg.subject}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        )
        with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
            try:
                yield
            except OutOfOrder as early:  # not a failure: it comes again after its predecessor
                span.add_event("waiting for its predecessor", {"reason": str(early)})
                raise
            except Exception as error:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__qualname__}: {error}"))
                span.set_attribute("error.type", type(error).__qualname__)
                raise

    def carrier(self) -> dict[str, str]:
        """The current trace context as W3C headers (empty outside any trace)."""
        headers: dict[str, str] = {}
        propagate.inject(headers)
        return headers


def enable(tracer_provider: TracerProvider | None = None) -> None:
    """Trace the events of this process with ``tracer_provider`` (default: the global one).

    Done without a call when opentelemetry-api is installed; call it to use a provider of your own.
    """
    set_tracing(EventTracing(tracer_provider))


def disable() -> None:
    """Stop tracing the events of this process: no span, no trace context in the headers."""
    set_tracing(None)


def configure_from_env(service: str) -> SdkTracerProvider | None:
    """Record and export spans as the ``OTEL_*`` variables say, as the global provider; None if none asked.

    With ``OTEL_TRACES_EXPORTER`` unset, spans are exported over OTLP when an ``OTEL_EXPORTER_OTLP_ENDPOINT``
    (or ``..._TRACES_ENDPOINT``) is set, and not recorded otherwise: unlike the SDK's default, a service
    with no collector does not log an export error every few seconds. The trace context propagates either way.

    Raises:
        ConfigurationError: an exporter is named that is not installed.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = _exporter_names()
    if not names:
        return None
    # The SDK is the extra's: propagation alone needs only the API.
    from opentelemetry.sdk import trace as sdk_trace  # noqa: PLC0415
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service}))
    provider = sdk_trace.TracerProvider(resource=resource)  # OTEL_TRACES_SAMPLER
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))  # OTEL_BSP_*
    trace.set_tracer_provider(provider)
    return provider


def _exporter_names() -> list[str]:
    value = os.environ.get("OTEL_TRACES_EXPORTER")
    if value is None:
        endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        return ["otlp"] if any(os.environ.get(variable) for variable in endpoints) else []
    names = [name.strip().lower() for name in value.split(",")]
    return [name for name in names if name and name != "none"]


def _exporter(name: str) -> SpanExporter:
    if name == "otlp":
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        # The SDK's own names of the two OTLP exporters' entry points.
        name = "otlp_proto_grpc" if protocol == "grpc" else "otlp_proto_http"
    elif name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter  # noqa: PLC0415

        return ConsoleSpanExporter()
    found = entry_points(group="opentelemetry_traces_exporter", name=name)
    if not found:
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER names {name!r}, which no installed package provides: "
            "install ticketing-common[otel] for otlp (http/protobuf) and console, or the exporter's package"
        )
    exporter: SpanExporter = next(iter(found)).load()()
    return exporter
