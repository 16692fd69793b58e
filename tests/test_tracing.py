"""Traces: one trace from a request through every event it causes, handler after handler, outbox included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import MetaData

import orders.app
import tickets.app
from conftest import DatabaseUrl, eventually, ticket, wait_until
from orders.models import Ticket as TicketReplica
from publishers import ExpirationCompletePublisher, OrderCancelledPublisher, TicketCreatedPublisher
from services import running, service_of, settings, signed_in
from ticketing_common import (
    EVENTS_STREAM,
    BaseListener,
    ExpirationCompleteEvent,
    OrderCancelledEvent,
    OrderCancelledTicket,
    TicketCreatedEvent,
    _instruments,
    opentelemetry,
)
from ticketing_common.sqlalchemy import Database, Outbox, OutboxRelay
from ticketing_common.testing import NatsServer

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
"""An incoming trace context, as a caller of the API (or a gateway) would send it."""
TRACE_ID, CALLER_SPAN_ID = int("0af7651916cd43dd8448eb211c80319c", 16), int("b7ad6b7169203331", 16)


@pytest.fixture(autouse=True)
def default_tracing() -> Iterator[None]:
    """Each test starts, and leaves the process, with the tracing a process gets by itself."""
    opentelemetry.enable()
    yield
    opentelemetry.enable()


def named(spans: InMemorySpanExporter, name: str, **attributes: object) -> list[ReadableSpan]:
    """The ended spans called ``name`` whose attributes include ``attributes``."""
    return [
        span
        for span in spans.get_finished_spans()
        if span.name == name and all((span.attributes or {}).get(k) == v for k, v in attributes.items())
    ]


async def ended(spans: InMemorySpanExporter, name: str, **attributes: object) -> ReadableSpan:
    """The one span called ``name`` (with ``attributes``), once it has ended."""
    await wait_until(lambda: bool(named(spans, name, **attributes)), what=f"span {name!r} {attributes}")
    [span] = named(spans, name, **attributes)
    return span


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def descends(span: ReadableSpan, ancestor: ReadableSpan, spans: InMemorySpanExporter) -> bool:
    """Whether ``ancestor`` is ``span``'s parent, or its parent's, and so on (FastAPI nests its own)."""
    by_id = {each.context.span_id: each for each in spans.get_finished_spans()}
    current: ReadableSpan | None = span
    while current is not None and current.parent is not None:
        if current.parent.span_id == ancestor.context.span_id:
            return True
        current = by_id.get(current.parent.span_id)
    return False


class Relayed(BaseListener[TicketCreatedEvent]):
    """Handles ticket:created by publishing order:cancelled, as a service reacting to an event would."""

    queue_group_name = "relaying-service"

    async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:  # noqa: D102
        held = OrderCancelledTicket(id=data.id)
        await OrderCancelledPublisher(self.client).publish(
            OrderCancelledEvent(id=f"o-{data.id}", version=1, ticket=held)
        )
        await msg.ack()


class Received(BaseListener[OrderCancelledEvent]):
    """Keeps the order:cancelled events it gets, headers and all."""

    queue_group_name = "receiving-service"

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.received: list[Msg] = []

    async def on_message(self, data: OrderCancelledEvent, msg: Msg) -> None:  # noqa: D102
        self.received.append(msg)
        await msg.ack()


async def test_a_handler_runs_in_a_child_of_the_publish_and_what_it_publishes_stays_in_the_trace(
    nats_client: Client, jetstream: JetStreamContext, spans: InMemorySpanExporter
) -> None:
    """Send, process (CONSUMER), send, process: one trace, each span the next one's parent."""
    relayed, received = Relayed(nats_client), Received(nats_client)
    await relayed.listen()
    await received.listen()
    try:
        with trace.get_tracer("test").start_as_current_span("the test") as root:
            await TicketCreatedPublisher(nats_client).publish(ticket())
        await wait_until(lambda: len(received.received) == 1)
        chain = [
            await ended(spans, "send ticket:created"),
            await ended(
                spans, "process ticket:created", **{"messaging.consumer.group.name": "relaying-service"}
            ),
            await ended(spans, "send order:cancelled"),
            await ended(spans, "process order:cancelled"),
        ]
    finally:
        await relayed.close()
        await received.close()
    assert [span.kind for span in chain] == [
        SpanKind.PRODUCER,
        SpanKind.CONSUMER,
        SpanKind.PRODUCER,
        SpanKind.CONSUMER,
    ]
    assert {span.context.trace_id for span in chain} == {root.get_span_context().trace_id}
    parents = [root.get_span_context().span_id, *(span.context.span_id for span in chain[:-1])]
    assert [parent_of(span) for span in chain] == parents
    send, process = chain[0], chain[1]
    assert send.attributes is not None
    assert process.attributes is not None
    assert dict(send.attributes) == {
        "messaging.system": "nats",
        "messaging.destination.name": "ticket:created",
        "messaging.message.id": ticket().message_id(),
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
    }
    assert process.attributes["messaging.message.id"] == ticket().message_id()
    assert process.attributes["messaging.operation.type"] == "process"
    headers = received.received[0].headers or {}
    assert headers["traceparent"].split("-")[1:3] == [
        f"{chain[2].context.trace_id:032x}",
        f"{chain[2].context.span_id:016x}",
    ]


class Failing(BaseListener[OrderCancelledEvent]):
    """Fails on every delivery, then its events go to the dead letters."""

    queue_group_name = "failing-service"
    max_deliver = 1

    async def on_message(self, data: OrderCancelledEvent, msg: Msg) -> None:  # noqa: D102
        raise RuntimeError("the database is down")


async def test_a_failed_handling_is_an_error_span_and_its_dead_letter_stays_in_the_trace(
    nats_client: Client, jetstream: JetStreamContext, spans: InMemorySpanExporter
) -> None:
    """The CONSUMER span records the error; the dead letter's send span is a child of the event's send."""
    failing = Failing(nats_client)
    await failing.listen()
    try:
        event = OrderCancelledEvent(id="o1", version=1, ticket=OrderCancelledTicket(id="t1"))
        await OrderCancelledPublisher(nats_client).publish(event)
        sent = await ended(spans, "send order:cancelled")
        process = await ended(spans, "process order:cancelled")
        dead_letter = await ended(spans, "send dead-letter.failing-service.order:cancelled")
    finally:
        await failing.close()
    assert process.status.status_code == trace.StatusCode.ERROR
    assert (process.attributes or {})["error.type"] == "RuntimeError"
    assert [event.name for event in process.events] == ["exception"]
    assert parent_of(dead_letter) == sent.context.span_id


async def test_an_outbox_row_is_published_in_the_trace_of_the_transaction_that_wrote_it(
    nats_client: Client, jetstream: JetStreamContext, spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    """Written inside a span, published by the relay outside of it: the send span is that span's child."""
    metadata = MetaData()
    outbox = Outbox(metadata)
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    try:
        await database.create_all(metadata)
        with trace.get_tracer("test").start_as_current_span("the request") as request:
            async with database.transaction() as session:
                await outbox.add(session, ticket())
        assert await OutboxRelay(database, outbox, nats_client).publish_pending() == 1
    finally:
        await database.dispose()
    send = await ended(spans, "send ticket:created")
    assert send.context.trace_id == request.get_span_context().trace_id
    assert parent_of(send) == request.get_span_context().span_id
    stored = await jetstream.get_last_msg(EVENTS_STREAM, "ticket:created")
    assert (stored.headers or {})["traceparent"].split("-")[2] == f"{send.context.span_id:016x}"


async def test_each_event_of_publish_many_has_a_send_span_of_its_own(
    nats_client: Client, jetstream: JetStreamContext, spans: InMemorySpanExporter
) -> None:
    """Pipelined, each event's headers carry its own send span, a child of the caller's span."""
    with trace.get_tracer("test").start_as_current_span("the batch") as batch:
        acks = await TicketCreatedPublisher(nats_client).publish_many([ticket(1), ticket(2), ticket(3)])
    sent = named(spans, "send ticket:created")
    sends = {(span.attributes or {})["messaging.message.id"]: span for span in sent}
    assert len(sends) == 3
    for ack in acks:
        stored = await jetstream.get_msg(EVENTS_STREAM, ack.seq)
        headers = stored.headers or {}
        send = sends[headers["Nats-Msg-Id"]]
        assert parent_of(send) == batch.get_span_context().span_id
        assert headers["traceparent"].split("-")[2] == f"{send.context.span_id:016x}"


async def test_a_schedule_carries_its_trace_to_the_event_the_server_publishes(
    nats_client: Client, jetstream: JetStreamContext, spans: InMemorySpanExporter
) -> None:
    """The event JetStream publishes on time has the trace context of the span that scheduled it."""
    subscription = await jetstream.subscribe("expiration:complete", ordered_consumer=True)
    try:
        with trace.get_tracer("test").start_as_current_span("order:created handled") as handling:
            await ExpirationCompletePublisher(nats_client).schedule(
                ExpirationCompleteEvent(order_id="o-traced"),
                at=datetime.now(UTC) + timedelta(seconds=0.2),
                key="o-traced",
            )
        fired = await subscription.next_msg(timeout=10)
    finally:
        await subscription.unsubscribe()
    send = await ended(spans, "send schedule.expiration:complete.o-traced")
    assert parent_of(send) == handling.get_span_context().span_id
    assert (fired.headers or {})["traceparent"].split("-")[1:3] == [
        f"{send.context.trace_id:032x}",
        f"{send.context.span_id:016x}",
    ]


async def test_the_context_propagates_with_no_sdk_and_nothing_is_sent_once_disabled(
    nats_client: Client, jetstream: JetStreamContext
) -> None:
    """opentelemetry-api alone (no-op spans) still carries the caller's trace on; disable() sends none."""
    opentelemetry.enable(trace.NoOpTracerProvider())
    relayed, received = Relayed(nats_client), Received(nats_client)
    await relayed.listen()
    await received.listen()
    try:
        event = ticket()
        await jetstream.publish(
            "ticket:created", event.model_dump_json().encode(), headers={"traceparent": TRACEPARENT}
        )
        await wait_until(lambda: len(received.received) == 1)
        opentelemetry.disable()
        assert _instruments.TRACING is None
        await jetstream.publish("ticket:created", ticket(2).model_dump_json().encode())
        await wait_until(lambda: len(received.received) == 2)
    finally:
        await relayed.close()
        await received.close()
    first, second = ((msg.headers or {}).get("traceparent") for msg in received.received)
    assert first == TRACEPARENT  # no SDK: the handler's publish carries the caller's span on
    assert second is None


async def test_one_trace_from_post_api_orders_through_tickets_and_back_to_orders(
    nats_server: NatsServer,
    jetstream: JetStreamContext,
    database_url: DatabaseUrl,
    spans: InMemorySpanExporter,
) -> None:
    """POST /api/orders, order:created, tickets' listener, ticket:updated, orders' listener: linked."""
    tickets_app = tickets.app.create_app(settings("tickets", nats_server, database_url))
    orders_app = orders.app.create_app(settings("orders", nats_server, database_url))
    async with running(tickets_app) as tickets_api, running(orders_app) as orders_api:
        created = await tickets_api.post(
            "/api/tickets", json={"title": "gig", "price": 10}, headers=signed_in("seller")
        )
        ticket_id = created.json()["id"]

        async def replicated() -> bool:
            async with service_of(orders_app).database.sessions() as session:
                return await session.get(TicketReplica, ticket_id) is not None

        await eventually(replicated)
        headers = {**signed_in("buyer"), "traceparent": TRACEPARENT}
        order = await orders_api.post("/api/orders", json={"ticketId": ticket_id}, headers=headers)
        assert order.status_code == 201, order.text
        group = "messaging.consumer.group.name"
        server = await ended(spans, "POST /api/orders")
        sent = await ended(spans, "send order:created")
        reserved = await ended(spans, "process order:created", **{group: "tickets-service"})
        updated = await ended(spans, "send ticket:updated")
        replica = await ended(spans, "process ticket:updated", **{group: "orders-service"})
    assert server.kind == SpanKind.SERVER
    assert parent_of(server) == CALLER_SPAN_ID  # the incoming traceparent is honoured
    chain = [server, sent, reserved, updated, replica]
    assert {span.context.trace_id for span in chain} == {TRACE_ID}
    assert descends(sent, server, spans)  # through FastAPI's endpoint span
    assert parent_of(reserved) == sent.context.span_id
    assert parent_of(updated) == reserved.context.span_id
    assert parent_of(replica) == updated.context.span_id


def test_configure_from_env_exports_as_the_otel_variables_say(tmp_path: Path) -> None:
    """OTEL_TRACES_EXPORTER=console prints the spans with the service's name; unset, nothing is recorded."""
    code = (
        "from opentelemetry import trace; from ticketing_common.opentelemetry import configure_from_env; "
        "provider = configure_from_env('tickets'); "
        "print('configured' if provider else 'not configured', flush=True); "
        "trace.get_tracer('t').start_span('a span').end(); "
        "provider and provider.shutdown()"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}

    def run(**environ: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - this interpreter, fixed code
            [sys.executable, "-c", code],
            env={**clean, **environ},
            capture_output=True,
            text=True,
            check=False,
        )

    console = run(OTEL_TRACES_EXPORTER="console")
    assert console.returncode == 0, console.stderr
    first_line, printed = console.stdout.split("\n", 1)
    assert first_line == "configured"
    span = json.loads(printed)
    assert span["name"] == "a span"
    assert span["resource"]["attributes"]["service.name"] == "tickets"
    named_otherwise = run(OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="tickets-eu")
    assert json.loads(named_otherwise.stdout.split("\n", 1)[1])["resource"]["attributes"]["service.name"] == (
        "tickets-eu"
    )
    assert run().stdout == "not configured\n"
    assert run(OTEL_TRACES_EXPORTER="none").stdout == "not configured\n"
    assert run(OTEL_TRACES_EXPORTER="console", OTEL_SDK_DISABLED="true").stdout == "not configured\n"
    unknown = run(OTEL_TRACES_EXPORTER="zipkin-json")
    assert unknown.returncode == 1
    assert "ConfigurationError: OTEL_TRACES_EXPORTER names 'zipkin-json'" in unknown.stderr
