"""The demo's trace collector: the services export their spans over OTLP/HTTP here, the demo prints a tree.

A real deployment sends them to an OpenTelemetry Collector, Jaeger or Tempo; none of those is a Python
package, so the demo receives OTLP itself: a loopback HTTP server that decodes the protobuf export
requests with opentelemetry-proto (what the OTLP exporter is built on) and keeps the spans in memory.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto
from opentelemetry.proto.trace.v1.trace_pb2 import Status

_KINDS = {
    SpanProto.SPAN_KIND_SERVER: "server",
    SpanProto.SPAN_KIND_CLIENT: "client",
    SpanProto.SPAN_KIND_PRODUCER: "producer",
    SpanProto.SPAN_KIND_CONSUMER: "consumer",
}


@dataclass(frozen=True)
class Span:
    """One span as the demo shows it."""

    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    start_ns: int
    end_ns: int
    error: bool


class Collector:
    """The spans the services exported, by trace id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[Span] = []

    def receive(self, body: bytes) -> None:
        """Keep the spans of one OTLP export request."""
        request = ExportTraceServiceRequest.FromString(body)
        received: list[Span] = []
        for resource_spans in request.resource_spans:
            attributes = {item.key: item.value.string_value for item in resource_spans.resource.attributes}
            service = attributes.get("service.name", "?")
            for scope_spans in resource_spans.scope_spans:
                received.extend(
                    Span(
                        service=service,
                        name=span.name,
                        kind=_KINDS.get(span.kind, "internal"),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        error=span.status.code == Status.STATUS_CODE_ERROR,
                    )
                    for span in scope_spans.spans
                )
        with self._lock:
            self._spans.extend(received)

    def trace(self, trace_id: str) -> list[Span]:
        """The spans of one trace received so far, oldest first."""
        with self._lock:
            spans = [span for span in self._spans if span.trace_id == trace_id]
        return sorted(spans, key=lambda span: span.start_ns)


def traceparent(trace_id: str) -> dict[str, str]:
    """Headers that start a request in ``trace_id``, as a caller's own span (a new one each call)."""
    return {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}


def new_trace_id() -> str:
    """A random W3C trace id."""
    return secrets.token_hex(16)


def tree(spans: list[Span]) -> str:
    """The trace as an indented tree: each span under its parent, with its service and duration."""
    ids = {span.span_id for span in spans}
    children: dict[str, list[Span]] = {}
    for span in spans:
        children.setdefault(span.parent_id if span.parent_id in ids else "", []).append(span)
    lines: list[str] = []

    def show(span: Span, depth: int) -> None:
        took = (span.end_ns - span.start_ns) / 1e6
        mark = "  ERROR" if span.error else ""
        lines.append(f"{'  ' * depth}{span.name}  [{span.service}, {span.kind}, {took:.1f} ms]{mark}")
        for child in children.get(span.span_id, []):
            show(child, depth + 1)

    for root in children.get("", []):
        show(root, 0)
    return "\n".join(lines)


@contextmanager
def collecting() -> Iterator[tuple[Collector, Mapping[str, str]]]:
    """Run a collector on a free loopback port; yield it and the ``OTEL_*`` variables that export to it."""
    collector = Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            collector.receive(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            """Quiet: the demo prints the trace, not each export."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="otlp-collector", daemon=True)
    thread.start()
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{server.server_port}/v1/traces",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # milliseconds: the demo waits for the spans, briefly
    }
    try:
        yield collector, env
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
