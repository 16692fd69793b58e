"""GET /metrics: what a service published and consumed, how long it took, and what waits, for Prometheus."""

from __future__ import annotations

from pathlib import Path

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client.parser import text_string_to_metric_families

import tickets.app
from conftest import eventually, ticket
from publishers import OrderCancelledPublisher, TicketCreatedPublisher
from services import ServiceClient, running, settings, signed_in
from ticketing_common import BaseListener, OrderCancelledEvent, OrderCancelledTicket, TicketCreatedEvent
from ticketing_common.testing import NatsServer


async def scrape(api: ServiceClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples of /metrics, by name and sorted labels."""
    answer = await api.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_a_service_counts_what_it_publishes_and_consumes(tmp_path: Path) -> None:
    """A ticket created and an order:cancelled handled show in the counters and the histograms."""
    with NatsServer() as server:
        async with running(tickets.app.create_app(settings("tickets", server, tmp_path))) as api:
            before = await scrape(api)
            created = await api.post(
                "/api/tickets", json={"title": "gig", "price": 10}, headers=signed_in("seller")
            )
            assert created.status_code == 201
            client = api.service.client
            held = OrderCancelledTicket(id=created.json()["id"])
            event = OrderCancelledEvent(id="o1", version=1, ticket=held)
            await OrderCancelledPublisher(client).publish(event)
            consumed = ("order:cancelled", "tickets-service")

            labels = {"subject": consumed[0], "queue_group": consumed[1]}
            name = "ticketing_events_consumed_total"

            async def handled() -> bool:
                return value(await scrape(api), name, **labels) > value(before, name, **labels)

            await eventually(handled)
            after = await scrape(api)
    published = "ticketing_events_published_total"
    # The test's own publish of order:cancelled is in this process too.
    for name in (published, "ticketing_publish_duration_seconds_count"):
        assert (
            value(after, name, subject="ticket:created") == value(before, name, subject="ticket:created") + 1
        )
    handler = "ticketing_handler_duration_seconds_count"
    assert value(after, handler, subject=consumed[0], queue_group=consumed[1]) >= 1
    assert value(after, "ticketing_outbox_rows", service="tickets") == 0
    pending = (("queue_group", "tickets-service"), ("subject", "order:created"))
    assert ("ticketing_consumer_pending_events", pending) in after


class Flaky(BaseListener[TicketCreatedEvent]):
    """Fails the first delivery; dead-letters nothing itself (an invalid event does)."""

    queue_group_name = "metrics-test"
    redelivery_delay = 0.05

    async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
        """Raise on the first delivery, ack the second."""
        if msg.metadata.num_delivered == 1:
            raise RuntimeError("first try fails")
        await msg.ack()


async def test_failures_redeliveries_dead_letters_and_duplicates_are_counted(
    tmp_path: Path, nats_client: Client, jetstream: JetStreamContext
) -> None:
    """A failed delivery, its redelivery, an invalid event's dead letter and a duplicate publish count."""
    with NatsServer() as server:
        async with running(tickets.app.create_app(settings("tickets", server, tmp_path))) as api:
            before = await scrape(api)
            listener = Flaky(nats_client)
            await listener.listen()
            publisher = TicketCreatedPublisher(nats_client)
            await publisher.publish(ticket(7))
            await publisher.publish(ticket(7))  # the same message id
            await jetstream.publish("ticket:created", b"not json")
            group = {"subject": "ticket:created", "queue_group": "metrics-test"}

            async def counted() -> bool:
                samples = await scrape(api)
                return all(
                    value(samples, name, **group) > value(before, name, **group)
                    for name in (
                        "ticketing_events_failed_total",
                        "ticketing_events_redelivered_total",
                        "ticketing_events_dead_lettered_total",
                        "ticketing_events_consumed_total",
                    )
                )

            await eventually(counted)
            after = await scrape(api)
            await listener.close()
    duplicates = "ticketing_events_duplicate_total"
    once_more = value(before, duplicates, subject="ticket:created") + 1
    assert value(after, duplicates, subject="ticket:created") == once_more


async def test_the_outbox_gauge_counts_what_waits_while_nats_is_down(tmp_path: Path) -> None:
    """With NATS stopped a created ticket's event waits in the outbox: the gauge says 1; back, it drains."""
    with NatsServer() as server:
        app = tickets.app.create_app(settings("tickets", server, tmp_path))
        async with running(app) as api:
            server.stop()
            created = await api.post(
                "/api/tickets", json={"title": "gig", "price": 10}, headers=signed_in("seller")
            )
            assert created.status_code == 201
            assert value(await scrape(api), "ticketing_outbox_rows", service="tickets") == 1
            server.start()

            async def drained() -> bool:
                return await api.service.outbox.count(api.service.database) == 0

            await eventually(drained, timeout=30)
