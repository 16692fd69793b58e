"""Fault injection on a three-node JetStream cluster (``nox -s faults``): kill -9, nothing acknowledged lost.

A publisher in this process and a queue group of two listener processes (``fault_listener.py``) work
through kill -9 of the stream leader, of a node that does not lead, of the whole cluster, and of a
listener between its commit and its ack. Then the tickets and orders services run on the cluster through
a leader kill. Marked ``faults``: the default run leaves them out, ``nox -s faults`` runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.js.errors
import pytest
from fastapi import FastAPI
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from sqlalchemy import select

import orders.app
import tickets.app
from conftest import DatabaseUrl, eventually, sqlite_in, ticket
from fault_listener import Recording
from node_session import KEY
from orders.models import Ticket as TicketReplica
from publishers import TicketCreatedPublisher
from services import running, service_of, signed_in
from ticketing_common import EVENTS_STREAM, PublishError, TicketCreatedEvent, ensure_stream
from ticketing_common._jetstream import RIDE_OUT_DEADLINE, ride_out
from ticketing_common.service import ServiceSettings
from ticketing_common.testing import NatsCluster
from tickets.models import Ticket

pytestmark = pytest.mark.faults

EVENTS = 800
STEP = 100
"""Events published between two faults: the next fault waits until they are acknowledged."""
PROGRESS_WITHIN = 60.0
"""Seconds the publisher may take to get STEP more PubAcks after a fault before the test fails."""
LISTENER = Path(__file__).parent / "fault_listener.py"


@dataclass
class Run:
    """What the publisher and the faults did, for the checks and the table."""

    acked: list[str] = field(default_factory=list)
    unacked: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    """Why each unacked event was given up: the publish's last error, for the table."""
    stalls: list[float] = field(default_factory=list)
    faults: list[tuple[str, float]] = field(default_factory=list)
    """Each fault's name and wall-clock time."""

    async def until_acked(self, count: int) -> None:
        """Wait until ``count`` events are acknowledged, or fail."""
        async with asyncio.timeout(PROGRESS_WITHIN):
            while len(self.acked) < count:
                await asyncio.sleep(0.01)


@asynccontextmanager
async def connected(cluster: NatsCluster) -> AsyncIterator[Client]:
    client = await nats.connect(
        cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2, connect_timeout=2
    )
    try:
        yield client
    finally:
        await client.close()


class Listeners:
    """The two listener processes: started, crashed on request, restarted."""

    def __init__(self, cluster: NatsCluster, folder: Path) -> None:
        self.cluster = cluster
        self.database = folder / "handled.db"
        self.crash_file = folder / "crash"
        self.logs = folder
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, index: int) -> None:
        """Start listener ``index`` (again) and wait until it listens."""
        log = self.logs / f"listener-{index}-{time.monotonic_ns()}.log"
        with log.open("w") as stderr:
            process = subprocess.Popen(  # noqa: S603 - our interpreter and our script
                [sys.executable, str(LISTENER), self.cluster.url, str(self.database), str(self.crash_file)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        assert process.stdout is not None
        line = process.stdout.readline()  # "listening", or EOF if it died
        assert line.strip() == "listening", f"listener {index} did not start; see {log.name}"
        if index < len(self.processes):
            crashed, self.processes[index] = self.processes[index], process
            crashed.wait()
            if crashed.stdout is not None:
                crashed.stdout.close()
        else:
            self.processes.append(process)

    def crash_one(self) -> int:
        """Have the next event's handler crash between commit and ack; return which listener died."""
        self.crash_file.touch()
        deadline = time.monotonic() + PROGRESS_WITHIN
        while time.monotonic() < deadline:
            for index, process in enumerate(self.processes):
                if process.poll() is not None:
                    return index
            time.sleep(0.01)
        pytest.fail("no listener crashed")

    def handled(self) -> list[tuple[str, int, float]]:
        """Every handling recorded: event id, delivery, time, in time order."""
        with sqlite3.connect(self.database, timeout=30) as database:
            return database.execute("SELECT event_id, delivery, at FROM handled ORDER BY at").fetchall()

    def stop(self) -> None:
        """Stop both listeners (SIGTERM, then SIGKILL)."""
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


@contextmanager
def listening(cluster: NatsCluster, folder: Path) -> Iterator[Listeners]:
    listeners = Listeners(cluster, folder)
    try:
        for index in range(2):
            listeners.start(index)
        yield listeners
    finally:
        listeners.stop()


async def stored_ids(js: JetStreamContext) -> list[str]:
    """The ids of the ticket:created events in the stream, in stream order, duplicates kept."""
    ids: list[str] = []
    sequence = 1
    while True:

        async def read(after: int = sequence) -> RawStreamMsg:
            return await js.get_msg(EVENTS_STREAM, after, subject="ticket:created", next=True)

        try:  # the cluster may still be electing leaders after the last fault
            message = await ride_out(read, deadline=RIDE_OUT_DEADLINE, what="reading the stream")
        except nats.js.errors.NotFoundError:
            return ids
        ids.append(TicketCreatedEvent.model_validate_json(message.data or b"").id)
        sequence = (message.seq or sequence) + 1


async def inject(cluster: NatsCluster, js: JetStreamContext, listeners: Listeners, run: Run) -> None:
    """Each fault after STEP more acknowledged events, the faulty part back after STEP more."""

    def fault(name: str) -> None:
        run.faults.append((name, time.time()))

    await run.until_acked(STEP)
    leader = await cluster.stream_leader(js, EVENTS_STREAM)
    cluster.kill([leader])
    fault("kill -9 of the stream leader")
    await run.until_acked(2 * STEP)
    await asyncio.to_thread(cluster.start_node, leader)

    await run.until_acked(3 * STEP)
    leader = await cluster.stream_leader(js, EVENTS_STREAM)
    follower = (leader + 1) % len(cluster.nodes)
    cluster.kill([follower])
    fault("kill -9 of a node that does not lead")
    await run.until_acked(4 * STEP)
    await asyncio.to_thread(cluster.start_node, follower)

    await run.until_acked(5 * STEP)
    crashed = await asyncio.to_thread(listeners.crash_one)
    fault("kill -9 of a listener between commit and ack")
    await asyncio.to_thread(listeners.start, crashed)

    async def crashed_event_handled_again() -> bool:
        handled = await asyncio.to_thread(listeners.handled)
        return any(count > 1 for count in Counter(event_id for event_id, _, _ in handled).values())

    await eventually(crashed_event_handled_again, timeout=PROGRESS_WITHIN)  # before the next fault

    await run.until_acked(6 * STEP)
    cluster.kill()
    fault("kill -9 of all three nodes")
    for index in range(len(cluster.nodes)):
        await asyncio.to_thread(cluster.start_node, index)
    await run.until_acked(7 * STEP)


async def publish_all(client: Client, run: Run) -> None:
    publisher = TicketCreatedPublisher(client)
    for number in range(EVENTS):
        event = ticket(number)
        started = time.monotonic()
        try:
            await publisher.publish(event)
        except PublishError as error:
            run.unacked.append(event.id)
            run.refusals.append(f"{event.id}: {error.__cause__ or error!r}")
        else:
            run.acked.append(event.id)
        run.stalls.append(time.monotonic() - started)


def explanation(rows: list[tuple[str, int, float]], faults: list[tuple[str, float]]) -> str | None:
    """The fault that explains a second handling: the last one between the two (or an ack window before).

    None if there is none.
    """
    (_, _, first), (_, _, second) = rows[0], rows[1]
    between = [name for name, at in faults if first - Recording.ack_wait - 5 <= at <= second]
    return between[-1] if between else None


async def test_no_acknowledged_event_is_lost_through_kill_9(
    nats_cluster: NatsCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through every kill: 0 acknowledged lost, 0 stored unhandled, duplicates only where a kill explains."""
    run = Run()
    async with connected(nats_cluster) as client:
        js = client.jetstream()
        await nats_cluster.wait_ready(js)
        await ensure_stream(js, replicas=3)
        with listening(nats_cluster, tmp_path) as listeners:
            await asyncio.gather(publish_all(client, run), inject(nats_cluster, js, listeners, run))
            stored = await stored_ids(js)

            def all_handled() -> bool:
                return set(stored) <= {event_id for event_id, _, _ in listeners.handled()}

            async def handled_everything() -> bool:
                return await asyncio.to_thread(all_handled)

            with contextlib.suppress(TimeoutError):  # then the table and the checks say what is missing
                await eventually(handled_everything, timeout=60)
            handled = listeners.handled()

    lost = set(run.acked) - set(stored)
    stored_twice = [event_id for event_id, count in Counter(stored).items() if count > 1]
    by_event: dict[str, list[tuple[str, int, float]]] = {}
    for row in handled:
        by_event.setdefault(row[0], []).append(row)
    duplicates = {event_id: rows for event_id, rows in by_event.items() if len(rows) > 1}
    explained = Counter(explanation(rows, run.faults) for rows in duplicates.values())
    unexplained = explained.pop(None, 0)
    table = [
        ("events published", EVENTS),
        ("acknowledged (PubAck)", len(run.acked)),
        ("refused after the retry deadline", len(run.unacked)),
        ("stored", len(stored)),
        ("faults", len(run.faults)),
        ("acknowledged but lost", len(lost)),
        ("stored twice", len(stored_twice)),
        ("stored but unhandled", len(set(stored) - set(by_event))),
        ("handled more than once", len(duplicates)),
        *((f"  after the {name}", count) for name, count in explained.items()),
        ("  that no kill explains", unexplained),
        ("longest publish stall", f"{max(run.stalls):.2f} s"),
    ]
    with capsys.disabled():
        print("\n\nFault injection, 3-node JetStream cluster, replicas=3, sync_interval always:")  # noqa: T201
        for name, at in run.faults:
            print(f"  {time.strftime('%H:%M:%S', time.localtime(at))}  {name}")  # noqa: T201
        for name, value in table:
            print(f"  {name:<56} {value:>10}")  # noqa: T201
        for refusal in run.refusals:
            print(f"  refused {refusal}")  # noqa: T201
    assert len(run.faults) == 4
    assert lost == set()
    assert run.unacked == []  # the default retry deadline rode out every election
    assert stored_twice == []
    assert set(stored) <= set(by_event)
    assert unexplained == 0


async def test_replicas_equal_their_sources_through_a_leader_kill(
    nats_cluster: NatsCluster, tmp_path: Path
) -> None:
    """Tickets and orders on the cluster: tickets edited through a stream leader's kill are replicated."""
    urls: DatabaseUrl = sqlite_in(tmp_path)
    environ = {"JWT_KEY": KEY, "NATS_URL": nats_cluster.url, "NATS_STREAM_REPLICAS": "3"}

    def settings(name: str) -> ServiceSettings:
        return ServiceSettings.from_env(name, {**environ, "DATABASE_URL": urls(name)})

    seller = signed_in("seller")
    async with connected(nats_cluster) as client:
        await nats_cluster.wait_ready(client.jetstream())
    tickets_app = tickets.app.create_app(settings("tickets"))
    orders_app = orders.app.create_app(settings("orders"))
    async with running(tickets_app) as tickets_api, running(orders_app):
        js = service_of(tickets_app).nats.jetstream
        created = [
            (
                await tickets_api.post("/api/tickets", json={"title": f"t{n}", "price": 10}, headers=seller)
            ).json()
            for n in range(5)
        ]

        async def edit_all(price: int) -> None:
            for item in created:
                body = {"title": item["title"], "price": price}
                answer = await tickets_api.put(f"/api/tickets/{item['id']}", json=body, headers=seller)
                assert answer.status_code == 200, answer.text

        await edit_all(11)
        nats_cluster.kill([await nats_cluster.stream_leader(js, EVENTS_STREAM)])
        await edit_all(12)  # while the stream elects a leader: the outbox holds what cannot go yet
        await edit_all(13)

        async def in_step() -> bool:
            return await sources(tickets_app) == await sources(orders_app)

        await eventually(in_step, timeout=90)
        assert {(title, price, version) for title, price, version in await sources(orders_app)} == {
            (f"t{n}", 13.0, 3) for n in range(5)
        }


async def sources(app: FastAPI) -> list[tuple[str, float, int]]:
    """The tickets of the tickets service, or their replicas in orders: title, price, version."""
    service = service_of(app)
    model: type[Ticket | TicketReplica] = Ticket if service.settings.name == "tickets" else TicketReplica
    async with service.database.sessions() as session:
        rows = await session.execute(select(model.title, model.price, model.version).order_by(model.title))
    return [(title, price, version) for title, price, version in rows.all()]
