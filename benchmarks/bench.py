"""Publisher and listener against raw nats-py and FastStream: same process, same server, same work.

Every contender validates each event with the same pydantic model and acks it. Runs are interleaved
(each repeat runs every contender once, in a shuffled order) and medians are reported, so drift of the
machine hits all alike. Run: ``nox -s bench`` (``-- --quick`` for a short run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from importlib.metadata import version
from pathlib import Path

import nats
from faststream.nats import JStream, NatsBroker
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from counting import counting_callback, counting_listener
from ticketing_common import EVENTS_STREAM, BaseListener, BasePublisher, TicketCreatedEvent, ensure_stream
from ticketing_common import opentelemetry as event_tracing
from ticketing_common._instruments import OBSERVERS
from ticketing_common.prometheus import Metrics
from ticketing_common.testing import NatsServer

SUBJECT = "ticket:created"
WINDOW = 1024
"""PubAcks outstanding in publish_many (its default); nats-py's publish_async allows 4,000."""
PREFETCH = 256
"""Events raw continuous pull keeps requested, as the listener does by default (its ``prefetch``)."""
MESSAGES = {"publish": 5_000, "publish many": 20_000, "consume": 20_000}
"""Events per contender and repeat by default: a repeat of 5,000 pipelined or consumed events lasts
about 0.1 s, which this machine's drift moves by more than the 5 % issue 15's targets ask about;
sequential publishes, one round trip each, take 1.5 s for 5,000."""
Timed = Callable[[Client, JetStreamContext, int], Awaitable[float]]


def event(run: str, number: int) -> TicketCreatedEvent:
    return TicketCreatedEvent(id=f"{run}-{number}", version=0, title="concert", price=20.0, user_id="u1")


def parse(data: bytes) -> TicketCreatedEvent:
    return TicketCreatedEvent.model_validate_json(data)


def faststream_broker(client: Client) -> NatsBroker:
    # FastStream logs every message at INFO by default, which would be timed with it.
    return NatsBroker(client.connected_url.geturl() if client.connected_url else "", logger=None)


class Publisher(BasePublisher[TicketCreatedEvent]):
    """The package's publisher."""


# Publish throughput: sequential publishes, each awaited until its PubAck. Returns seconds.


async def publish_ours(client: Client, js: JetStreamContext, count: int) -> float:
    publisher, run = Publisher(client, js=js), uuid.uuid4().hex
    started = time.perf_counter()
    for number in range(count):
        await publisher.publish(event(run, number))
    return time.perf_counter() - started


async def publish_raw(client: Client, js: JetStreamContext, count: int) -> float:
    run = uuid.uuid4().hex
    started = time.perf_counter()
    for number in range(count):
        item = event(run, number)
        await js.publish(SUBJECT, item.model_dump_json().encode(), headers={"Nats-Msg-Id": item.message_id()})
    return time.perf_counter() - started


async def publish_faststream(client: Client, js: JetStreamContext, count: int) -> float:
    broker, run = (
        faststream_broker(client),
        uuid.uuid4().hex,
    )
    await broker.connect()
    started = time.perf_counter()
    for number in range(count):
        item = event(run, number)
        await broker.publish(item, SUBJECT, stream=EVENTS_STREAM, headers={"Nats-Msg-Id": item.message_id()})
    elapsed = time.perf_counter() - started
    await broker.stop()
    return elapsed


async def publish_many_ours(client: Client, js: JetStreamContext, count: int) -> float:
    publisher, run = Publisher(client, js=js), uuid.uuid4().hex
    events = [event(run, number) for number in range(count)]
    started = time.perf_counter()
    await publisher.publish_many(events, window=WINDOW)
    return time.perf_counter() - started


async def publish_many_raw(client: Client, js: JetStreamContext, count: int) -> float:
    """nats-py's own pipelining: publish_async for every event, then publish_async_completed."""
    run = uuid.uuid4().hex
    events = [event(run, number) for number in range(count)]
    started = time.perf_counter()
    for item in events:
        await js.publish_async(
            SUBJECT, item.model_dump_json().encode(), headers={"Nats-Msg-Id": item.message_id()}
        )
    await js.publish_async_completed()
    return time.perf_counter() - started


# Consume throughput: `count` stored events, a new durable consumer, until all are validated and acked.


async def fill(js: JetStreamContext, count: int) -> None:
    """Store ``count`` events with the headers a service's events have: a message id, a trace context."""
    await js.purge_stream(EVENTS_STREAM)
    run = uuid.uuid4().hex
    events = [event(run, n) for n in range(count)]
    futures = [
        await js.publish_async(
            SUBJECT,
            item.model_dump_json().encode(),
            headers={"Nats-Msg-Id": item.message_id(), "traceparent": f"00-{run}{run}-{run[:16]}-01"},
        )
        for item in events
    ]
    await asyncio.gather(*futures)


async def consume_ours(client: Client, js: JetStreamContext, count: int, concurrency: int = 1) -> float:
    done = asyncio.Event()
    group = f"bench-{uuid.uuid4().hex[:8]}"
    listener = counting_listener(group, count, done, concurrency=concurrency)(client, js=js)
    started = time.perf_counter()
    await listener.listen()
    await done.wait()
    elapsed = time.perf_counter() - started
    await listener.close()
    await js.delete_consumer(EVENTS_STREAM, listener.durable_name)
    return elapsed


async def consume_raw_pull(client: Client, js: JetStreamContext, count: int) -> float:
    durable = f"raw-pull-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    subscription = await js.pull_subscribe(SUBJECT, durable=durable, stream=EVENTS_STREAM)
    seen = 0
    while seen < count:
        for msg in await subscription.fetch(batch=100, timeout=5):
            parse(msg.data)
            await msg.ack()
            seen += 1
    elapsed = time.perf_counter() - started
    await subscription.unsubscribe()
    await js.delete_consumer(EVENTS_STREAM, durable)
    return elapsed


async def raw_continuous_pull(
    client: Client, js: JetStreamContext, durable: str, handle: Callable[[Msg], Awaitable[None]]
) -> Callable[[], Awaitable[None]]:
    """Pull from a new durable consumer as the listener does, at its barest; return what stops it.

    ``PREFETCH`` events are requested, more as half of them are handled, all through one inbox callback.
    """
    outstanding = 0
    await js.add_consumer(
        EVENTS_STREAM,
        ConsumerConfig(durable_name=durable, filter_subject=SUBJECT, ack_policy=AckPolicy.EXPLICIT),
    )
    inbox = client.new_inbox()
    next_message = f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.{durable}"

    async def pull() -> None:
        nonlocal outstanding
        request = {"batch": PREFETCH - outstanding, "expires": 30_000_000_000}
        outstanding = PREFETCH
        await client.publish(next_message, json.dumps(request).encode(), reply=inbox)

    async def on_inbox(msg: Msg) -> None:
        nonlocal outstanding
        if msg.headers and "Status" in msg.headers:  # a heartbeat or the end of a request
            return
        outstanding -= 1
        await handle(msg)
        if outstanding <= PREFETCH // 2:
            await pull()

    subscription = await client.subscribe(inbox, cb=on_inbox)
    await pull()
    return subscription.unsubscribe


async def consume_raw_continuous_pull(client: Client, js: JetStreamContext, count: int) -> float:
    done = asyncio.Event()
    durable = f"raw-cpull-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    stop = await raw_continuous_pull(client, js, durable, counting_callback(count, done))
    await done.wait()
    elapsed = time.perf_counter() - started
    await stop()
    await js.delete_consumer(EVENTS_STREAM, durable)
    return elapsed


async def consume_raw_push(client: Client, js: JetStreamContext, count: int) -> float:
    done = asyncio.Event()
    handle = counting_callback(count, done)
    durable = f"raw-push-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    subscription = await js.subscribe(
        SUBJECT, durable=durable, stream=EVENTS_STREAM, cb=handle, manual_ack=True
    )
    await done.wait()
    elapsed = time.perf_counter() - started
    await subscription.unsubscribe()
    await js.delete_consumer(EVENTS_STREAM, durable)
    return elapsed


async def consume_faststream(client: Client, js: JetStreamContext, count: int) -> float:
    done = asyncio.Event()
    seen = 0
    broker = faststream_broker(client)
    durable = f"faststream-{uuid.uuid4().hex[:8]}"

    @broker.subscriber(SUBJECT, stream=JStream(EVENTS_STREAM, declare=False), durable=durable)
    async def handle(body: TicketCreatedEvent) -> None:
        nonlocal seen
        seen += 1
        if seen == count:
            done.set()

    await broker.connect()
    started = time.perf_counter()
    await broker.start()
    await done.wait()
    elapsed = time.perf_counter() - started
    await broker.stop()
    await js.delete_consumer(EVENTS_STREAM, durable)
    return elapsed


METRICS = Metrics()  # its own registry: observing only while a "+ metrics" contender runs


def with_metrics(timed: Timed) -> Timed:
    """The same contender with the Prometheus metrics observing every publish and delivery."""

    async def measured(client: Client, js: JetStreamContext, count: int) -> float:
        OBSERVERS.append(METRICS)
        try:
            return await timed(client, js, count)
        finally:
            OBSERVERS.remove(METRICS)

    return measured


class _Dropped(SpanExporter):
    """Takes the spans and sends them nowhere: the SDK's cost without a network's."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


RECORDING = TracerProvider()
RECORDING.add_span_processor(BatchSpanProcessor(_Dropped()))


def with_tracing(timed: Timed, provider: trace.TracerProvider) -> Timed:
    """The same contender with event tracing on: spans from ``provider``, the context in the headers."""

    async def measured(client: Client, js: JetStreamContext, count: int) -> float:
        event_tracing.enable(provider)
        try:
            return await timed(client, js, count)
        finally:
            event_tracing.disable()
            if isinstance(provider, TracerProvider):
                # The batch processor's thread would export what it holds during the next contender.
                provider.force_flush()

    return measured


ADDED = {
    "+ metrics": "Prometheus metrics",
    "+ propagation": "trace context only (opentelemetry-api, no SDK)",
    "+ tracing": "spans recorded by the SDK (batch processor, export dropped)",
}
"""The telemetry contenders, each the plain one plus this, and what it adds."""

CONTENDERS: dict[str, dict[str, Timed]] = {
    "publish": {
        "ticketing-common": publish_ours,
        "ticketing-common + metrics": with_metrics(publish_ours),
        "ticketing-common + propagation": with_tracing(publish_ours, trace.NoOpTracerProvider()),
        "ticketing-common + tracing": with_tracing(publish_ours, RECORDING),
        "raw nats-py": publish_raw,
        "FastStream": publish_faststream,
    },
    "publish many": {
        "ticketing-common publish_many": publish_many_ours,
        "raw nats-py publish_async": publish_many_raw,
    },
    "consume": {
        "ticketing-common": consume_ours,
        "ticketing-common concurrency 8": partial(consume_ours, concurrency=8),
        "ticketing-common + metrics": with_metrics(consume_ours),
        "ticketing-common + propagation": with_tracing(consume_ours, trace.NoOpTracerProvider()),
        "ticketing-common + tracing": with_tracing(consume_ours, RECORDING),
        "raw nats-py pull": consume_raw_pull,
        "raw nats-py continuous pull": consume_raw_continuous_pull,
        "raw nats-py push": consume_raw_push,
        "FastStream": consume_faststream,
    },
}


# Latency: one event at a time, from before the publish to the handler's first line.


async def latency(kind: str, client: Client, js: JetStreamContext, count: int) -> list[float]:
    await js.purge_stream(EVENTS_STREAM)
    arrived: asyncio.Queue[float] = asyncio.Queue()
    durable = f"lat-{uuid.uuid4().hex[:8]}"
    stop: Callable[[], Awaitable[object]]

    async def handle(msg: Msg) -> None:
        """The raw contenders' handler: validate, note the time, ack."""
        parse(msg.data)
        arrived.put_nowait(time.perf_counter())
        await msg.ack()

    if kind == "ticketing-common":

        class Listener(BaseListener[TicketCreatedEvent]):
            queue_group_name = durable

            async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
                arrived.put_nowait(time.perf_counter())
                await msg.ack()

        listener = Listener(client, js=js)
        await listener.listen()
        durable, stop = listener.durable_name, listener.close
    elif kind == "raw nats-py push":
        subscription = await js.subscribe(
            SUBJECT, durable=durable, stream=EVENTS_STREAM, cb=handle, manual_ack=True
        )
        stop = subscription.unsubscribe
    elif kind == "raw nats-py continuous pull":
        stop = await raw_continuous_pull(client, js, durable, handle)
    elif kind == "raw nats-py pull":
        pull = await js.pull_subscribe(SUBJECT, durable=durable, stream=EVENTS_STREAM)

        async def loop() -> None:
            while True:
                try:
                    messages = await pull.fetch(batch=1, timeout=5)
                except TimeoutError:
                    continue
                for msg in messages:
                    parse(msg.data)
                    arrived.put_nowait(time.perf_counter())
                    await msg.ack()

        task = asyncio.create_task(loop())

        async def stop_pull() -> None:
            task.cancel()
            await pull.unsubscribe()

        stop = stop_pull
    else:
        broker = faststream_broker(client)

        @broker.subscriber(SUBJECT, stream=JStream(EVENTS_STREAM, declare=False), durable=durable)
        async def on_event(body: TicketCreatedEvent) -> None:
            arrived.put_nowait(time.perf_counter())

        await broker.start()
        stop = broker.stop
    run, samples = uuid.uuid4().hex, []
    for number in range(count):
        started = time.perf_counter()
        await js.publish(SUBJECT, event(run, number).model_dump_json().encode())
        samples.append(await asyncio.wait_for(arrived.get(), 10) - started)
    await stop()
    await js.delete_consumer(EVENTS_STREAM, durable)
    return samples


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def main(
    repeats: int,
    messages: Mapping[str, int],
    latency_samples: int,
    kinds: Sequence[str] = (),
    only: Sequence[str] = (),
) -> None:
    """Run the contenders of ``kinds`` (default: all, and the latency), or ``only`` these; print tables.

    ``messages`` is the events per contender and repeat, by kind.
    """
    chosen = {
        kind: {name: timed for name, timed in CONTENDERS[kind].items() if not only or name in only}
        for kind in kinds or CONTENDERS
        if kind in CONTENDERS
    }
    logging.basicConfig(level=logging.ERROR)
    event_tracing.disable()  # the plain contenders: no telemetry (opentelemetry-api is installed here)
    with NatsServer() as server:
        client = await nats.connect(server.url)
        js = client.jetstream()
        await ensure_stream(js)
        print(
            f"Python {platform.python_version()}, nats-server {server.version}, "
            f"nats-py {version('nats-py')}, pydantic {version('pydantic')}, "
            f"FastStream {version('faststream')}, ticketing-common {version('ticketing-common')}; "
            f"{platform.machine()}, {repeats} interleaved repeats; events per contender and repeat: "
            + ", ".join(f"{kind} {messages[kind]:,}" for kind in chosen)
        )
        results: dict[str, dict[str, list[float]]] = {kind: {} for kind in chosen}
        cpu: dict[str, dict[str, list[tuple[float, float]]]] = {kind: {} for kind in chosen}
        for _ in range(repeats):
            for kind, contenders in chosen.items():
                names = list(contenders)
                random.shuffle(names)
                count = messages[kind]
                for name in names:
                    if kind == "consume":
                        await fill(js, count)
                    client_before, server_before = cpu_seconds(server.pid)
                    seconds = await contenders[name](client, js, count)
                    client_after, server_after = cpu_seconds(server.pid)
                    results[kind].setdefault(name, []).append(count / seconds)
                    cpu[kind].setdefault(name, []).append(
                        (
                            (client_after - client_before) / count * 1e6,
                            (server_after - server_before) / count * 1e6,
                        )
                    )
        latencies: dict[str, list[float]] = {}
        names = [
            "ticketing-common",
            "raw nats-py push",
            "raw nats-py continuous pull",
            "raw nats-py pull",
            "FastStream",
        ]
        for _ in range(repeats if not kinds or "latency" in kinds else 0):
            random.shuffle(names)
            for name in names:
                latencies.setdefault(name, []).extend(await latency(name, client, js, latency_samples))
        await client.close()
    report(results, latencies)
    report_cpu(cpu)


def cpu_seconds(server_pid: int | None) -> tuple[float, float]:
    """CPU seconds used so far by this process (all its threads) and by the server (0 where /proc is not)."""
    server = 0.0
    stat = Path(f"/proc/{server_pid}/stat")
    if server_pid is not None and stat.exists():
        # utime and stime, the 14th and 15th fields; the command name before them may hold spaces.
        fields = stat.read_text().rpartition(")")[2].split()
        server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return time.process_time(), server


def report_cpu(cpu: dict[str, dict[str, list[tuple[float, float]]]]) -> None:
    """Print the CPU time per event of this process and of nats-server, medians (they share the cores)."""
    print(f"\n{'CPU per event (us), medians':<40}{'client':>9}{'server':>9}")
    for kind, by_name in cpu.items():
        for name, used in by_name.items():
            client = statistics.median(mine for mine, _ in used)
            server = statistics.median(theirs for _, theirs in used)
            print(f"{kind + ' ' + name:<40}{client:>9.1f}{server:>9.1f}")


def report(results: dict[str, dict[str, list[float]]], latencies: dict[str, list[float]]) -> None:
    """Print the throughput table, the telemetry costs and the latency table."""
    # Consume is read against raw push (the target) and the raw pull of the listener's kind; the
    # publish kinds, against their one raw contender. "paired" is the median of each repeat's own ratio
    # to raw push: a repeat's contenders run back to back, so the machine's drift moves it less.
    header = f"{'median':>9}{'min':>9}{'max':>9}{'/ raw push':>11}{'paired':>8}{'/ raw cpull':>12}"
    print(f"\n{'throughput (events/s)':<40}{header}")
    for kind, by_name in results.items():
        medians = {name: statistics.median(values) for name, values in by_name.items()}
        raws = [name for name in medians if name.startswith("raw")]
        push = "raw nats-py push" if "raw nats-py push" in medians else max(raws, key=medians.__getitem__)
        pull = "raw nats-py continuous pull" if "raw nats-py continuous pull" in medians else push
        for name, values in by_name.items():
            median = medians[name]
            paired = statistics.median(ours / raw for ours, raw in zip(values, by_name[push], strict=True))
            spread = f"{min(values):>9.0f}{max(values):>9.0f}"
            ratios = f"{median / medians[push]:>10.2f}x{paired:>7.2f}x{median / medians[pull]:>11.2f}x"
            print(f"{kind + ' ' + name:<40}{median:>9.0f}{spread}{ratios}")
    for kind, by_name in results.items():
        if "ticketing-common" not in by_name:
            continue
        off = statistics.median(by_name["ticketing-common"])
        for added, what in ADDED.items():
            if f"ticketing-common {added}" not in by_name:
                continue
            on = statistics.median(by_name[f"ticketing-common {added}"])
            print(f"{kind} {added}: {(1 / on - 1 / off) * 1e6:+.1f} us per event (medians), {what}")
    if not latencies:
        return
    print(f"\n{'latency publish->handler (us)':<34}{'p50':>10}{'p99':>10}{'p50 - raw push':>16}")
    raw_p50 = percentile(latencies["raw nats-py push"], 0.5)
    for name, values in latencies.items():
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        print(f"{name:<34}{p50 * 1e6:>10.0f}{p99 * 1e6:>10.0f}{(p50 - raw_p50) * 1e6:>+16.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run, to check the benchmark works")
    parser.add_argument("--repeats", type=int, default=9, help="interleaved repeats (default 9)")
    parser.add_argument(
        "--messages",
        type=int,
        default=None,
        help="events per contender and repeat, every kind (default: publish 5,000, the others 20,000)",
    )
    parser.add_argument(
        "--kinds",
        default="",
        help=f"comma-separated, of: {', '.join(CONTENDERS)}, latency (default: all)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated contender names: only these run (a shorter repeat drifts less)",
    )
    arguments = parser.parse_args()
    kinds = [kind.strip() for kind in arguments.kinds.split(",") if kind.strip()]
    only = [name.strip() for name in arguments.only.split(",") if name.strip()]
    if arguments.quick:
        asyncio.run(main(1, dict.fromkeys(CONTENDERS, 500), latency_samples=50, kinds=kinds, only=only))
    else:
        counts = MESSAGES if arguments.messages is None else dict.fromkeys(CONTENDERS, arguments.messages)
        asyncio.run(main(arguments.repeats, counts, latency_samples=300, kinds=kinds, only=only))
