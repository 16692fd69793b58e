"""Logs: one format for every logger (text or JSON), and event lines that say what happened to an event."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conftest import eventually, ticket, wait_until
from node_session import KEY
from processes import SERVICES_DIR, free_port, wait_until_answering
from publishers import OrderCancelledPublisher, TicketCreatedPublisher
from services import signed_in
from ticketing_common import BaseListener, OrderCancelledEvent, OrderCancelledTicket, TicketCreatedEvent
from ticketing_common.structlog import configure_logging
from ticketing_common.testing import NatsServer

FIELDS = {"subject", "stream_sequence", "deliveries", "queue_group", "msg_id"}


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """configure_logging changes the root logger and uvicorn's: put them back after the test."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    names = ("uvicorn", "uvicorn.error", "uvicorn.access")
    uvicorn = [(logging.getLogger(name).handlers[:], logging.getLogger(name).propagate) for name in names]
    yield
    root.handlers[:], root.level = saved
    for name, (handlers, propagate) in zip(names, uvicorn, strict=True):
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate


def test_json_lines_carry_time_level_logger_service_and_extra_fields(restored_logging: None) -> None:
    """Each JSON line: timestamp, level, logger, service, message, and what the caller passed as extra."""
    out = io.StringIO()
    configure_logging("tickets", level="DEBUG", log_format="json", stream=out)
    logging.getLogger("third.party").info("hello %s", "world", extra={"subject": "ticket:created"})
    try:
        raise ValueError("boom")  # noqa: TRY301 - a real exception, with its traceback
    except ValueError:
        logging.getLogger("ticketing_common.listener").exception("failed")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert {key: first[key] for key in ("level", "logger", "service", "message", "subject")} == {
        "level": "info",
        "logger": "third.party",
        "service": "tickets",
        "message": "hello world",
        "subject": "ticket:created",
    }
    assert first["timestamp"].endswith("Z")
    assert second["level"] == "error"
    assert second["exception"][0]["exc_type"] == "ValueError"


def test_a_line_logged_inside_a_span_carries_its_trace_and_span_ids(
    restored_logging: None, spans: InMemorySpanExporter
) -> None:
    """Inside a recorded span a line names the trace and span (to find it in the traces); outside, not."""
    out = io.StringIO()
    configure_logging("orders", log_format="json", stream=out)
    with trace.get_tracer("test").start_as_current_span("handling") as span:
        logging.getLogger("orders").info("inside")
    logging.getLogger("orders").info("outside")
    inside, outside = (json.loads(line) for line in out.getvalue().splitlines())
    context = span.get_span_context()
    assert (inside["trace_id"], inside["span_id"]) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert "trace_id" not in outside


def test_text_lines_are_one_per_record_with_level_logger_and_service(restored_logging: None) -> None:
    """The text form: a line per record with the time, level, logger, service; below the level, none."""
    out = io.StringIO()
    configure_logging("orders", level="INFO", log_format="text", stream=out)
    logging.getLogger("ticketing_common.publisher").warning("slow", extra={"msg_id": "m1"})
    logging.getLogger("ticketing_common.publisher").debug("not shown")
    [line] = out.getvalue().splitlines()
    for part in ("warning", "slow", "ticketing_common.publisher", "service=orders", "msg_id=m1"):
        assert part in line


class Failing(BaseListener[TicketCreatedEvent]):
    """Fails the first delivery of each event, acks the second."""

    queue_group_name = "logs-test"
    redelivery_delay = 0.05

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.acked = 0

    async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
        """Raise on the first delivery."""
        if msg.metadata.num_delivered == 1:
            raise RuntimeError("first try fails")
        await msg.ack()
        self.acked += 1


def records(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.getMessage().startswith(message)]


async def test_event_lines_say_handled_redelivered_and_duplicate(
    nats_client: Client, jetstream: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    """Handled at DEBUG, a redelivery at WARNING, a duplicate said so; each with the event's fields."""
    caplog.set_level(logging.DEBUG)
    listener = Failing(nats_client)
    await listener.listen()
    publisher = TicketCreatedPublisher(nats_client)
    ack = await publisher.publish(ticket(1))
    again = await publisher.publish(ticket(1))  # the same message id: JetStream keeps one
    await wait_until(lambda: listener.acked == 1)
    await listener.close()
    assert again.duplicate
    [published] = records(caplog, "event published")
    [duplicate] = records(caplog, "duplicate publish")
    assert (published.levelno, duplicate.levelno) == (logging.DEBUG, logging.INFO)
    assert published.stream_sequence == duplicate.stream_sequence == ack.seq  # type: ignore[attr-defined]
    [redelivered] = records(caplog, "redelivered event")
    [handled] = records(caplog, "event handled")
    assert (redelivered.levelno, handled.levelno) == (logging.WARNING, logging.DEBUG)
    for record in (redelivered, handled):
        fields = {name: getattr(record, name) for name in FIELDS}
        assert fields == {
            "subject": "ticket:created",
            "stream_sequence": ack.seq,
            "deliveries": 2,
            "queue_group": "logs-test",
            "msg_id": ticket(1).message_id(),
        }


def test_a_service_process_logs_every_line_as_json(tmp_path: Path) -> None:
    """LOG_FORMAT=json: every line of a service, uvicorn's access log too, is JSON with the service's name."""
    port = free_port()
    with NatsServer() as server:
        env = {
            **os.environ,
            "JWT_KEY": KEY,
            "NATS_URL": server.url,
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/tickets.db",
            "PORT": str(port),
            "PYTHONPATH": str(SERVICES_DIR),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "DEBUG",
        }
        with (tmp_path / "tickets.log").open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "tickets"], cwd=SERVICES_DIR, env=env, stdout=log, stderr=log
            )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_answering({"tickets": url})
            created = httpx.post(
                f"{url}/api/tickets", json={"title": "gig", "price": 10}, headers=signed_in("seller")
            ).json()
            cancelled = OrderCancelledEvent(id="o1", version=1, ticket=OrderCancelledTicket(id=created["id"]))

            async def play_orders() -> None:
                client = await nats.connect(server.url)
                await OrderCancelledPublisher(client).publish(cancelled)
                await client.close()

                async def handled() -> bool:
                    return any(line.get("message") == "event handled" for line in lines(tmp_path))

                await eventually(handled)

            asyncio.run(play_orders())  # this test is sync: the service is another process
        finally:
            process.terminate()
            process.wait(timeout=15)
    parsed = lines(tmp_path)
    assert parsed
    assert all({"timestamp", "level", "logger", "service", "message"} <= line.keys() for line in parsed)
    assert {line["service"] for line in parsed} == {"tickets"}
    assert any(
        line["logger"] == "uvicorn.access" and "POST /api/tickets" in line["message"] for line in parsed
    )
    [published] = [line for line in parsed if line["message"] == "event published"]
    assert published["subject"] == "ticket:created"
    [handled] = [line for line in parsed if line["message"] == "event handled"]
    assert {key: handled[key] for key in ("subject", "deliveries", "queue_group", "msg_id")} == {
        "subject": "order:cancelled",
        "deliveries": 1,
        "queue_group": "tickets-service",
        "msg_id": cancelled.message_id(),
    }


def lines(folder: Path) -> list[dict[str, Any]]:
    """The service's log, a JSON object per line; a line that is not JSON fails the test."""
    text = (folder / "tickets.log").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]
