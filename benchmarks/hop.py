"""The listener's and publish_many's own cost per event, in process, beside raw nats-py doing the same.

bench.py times whole runs against a nats-server on the same two cores, so a few hundred nanoseconds an
event are lost in its spread. This times only the part that differs from raw nats-py, with no server and
no network. Consuming: messages built once are handed over in bursts, as nats-py's parser hands them to
a subscription's queue (``put_nowait``), and each contender validates and acks them (the ack's publish
does nothing here). For raw push that is nats-py's own queue, task and callback; for the listener, its
pull, its hand-off and its workers, started without a consumer (private parts: this is a benchmark of
them). Publishing: each contender serialises every event and calls ``publish_async`` once for it, on a
JetStream context whose PubAck futures are done when returned; what is timed beside the raw loop is
``publish_many``'s checks, window and collection of the PubAcks. CPU time per event, medians of
interleaved repeats.
Run: ``nox -s bench`` runs it after bench.py (``-- --quick`` for a short run).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import cast

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import PubAck

from counting import counting_callback, counting_listener
from ticketing_common import BasePublisher, TicketCreatedEvent
from ticketing_common import opentelemetry as event_tracing
from ticketing_common._pull import deliver_directly

BURST = 128
"""Messages handed over between two turns of the event loop (what one read of the socket holds)."""
DATA = TicketCreatedEvent(id="t-1", version=0, title="concert", price=20.0, user_id="u1").model_dump_json()


class _Silent:
    """The client a message acks through: its publish goes nowhere."""

    async def publish(self, subject: str, payload: bytes = b"", reply: str = "") -> None:
        pass

    def jetstream(self) -> None:
        """No JetStream context: nothing here talks to a server."""


CLIENT = cast("Client", _Silent())


def messages(durable: str, count: int) -> list[Msg]:
    """First deliveries of one event, with the headers a service's events carry."""
    return [
        Msg(
            _client=CLIENT,
            subject="ticket:created",
            reply=f"$JS.ACK.TICKETING.{durable}.1.{n}.{n}.1765000000000000000.0",
            data=DATA.encode(),
            headers={"Nats-Msg-Id": f"t-1:{n}", "traceparent": "00-0af7651916cd43dd-b7ad6b7169203331-01"},
        )
        for n in range(count)
    ]


async def hand_over(subscription: Subscription, batch: list[Msg]) -> None:
    """Put the messages into the subscription as nats-py's parser does, a burst per turn of the loop."""
    for start in range(0, len(batch), BURST):
        for msg in batch[start : start + BURST]:
            subscription._pending_size += len(msg.data)  # noqa: SLF001 - what nats-py does per message
            subscription._pending_queue.put_nowait(msg)  # noqa: SLF001
        await asyncio.sleep(0)


async def timed(subscription: Subscription, batch: list[Msg], done: asyncio.Event) -> float:
    started = time.process_time()
    await hand_over(subscription, batch)
    await done.wait()
    return (time.process_time() - started) / len(batch) * 1e6


async def listener(count: int, concurrency: int = 1) -> float:
    """CPU µs an event through the listener's pull, hand-off and worker."""
    done = asyncio.Event()
    consumer = counting_listener("hop", count, done, concurrency=concurrency)(CLIENT)
    subscription = Subscription(conn=None, id=1, subject="_INBOX.hop")
    if not deliver_directly(subscription, consumer._pull._receive):  # noqa: SLF001
        raise RuntimeError("nats-py no longer has the queue the pull takes the place of")
    tasks = [asyncio.create_task(consumer._work(slot)) for slot in range(concurrency)]  # noqa: SLF001
    try:
        return await timed(subscription, messages(consumer.durable_name, count), done)
    finally:
        for task in tasks:
            task.cancel()


async def raw_push(count: int) -> float:
    """CPU µs an event through nats-py's subscription queue, its task and an async callback."""
    done = asyncio.Event()
    subscription = Subscription(conn=None, id=1, subject="_INBOX.hop", cb=counting_callback(count, done))
    subscription._start(None)  # type: ignore[no-untyped-call]  # noqa: SLF001 - as subscribe() does
    try:
        return await timed(subscription, messages("hop_ticket_created", count), done)
    finally:
        subscription._stop_processing()  # noqa: SLF001


class _Stored:
    """The JetStream context events are published through: each is stored at once, nothing is sent."""

    def __init__(self) -> None:
        self._ack = PubAck(stream="EVENTS", seq=1)

    async def publish_async(
        self, subject: str, payload: bytes = b"", headers: dict[str, str] | None = None
    ) -> asyncio.Future[PubAck]:
        future = asyncio.get_running_loop().create_future()
        future.set_result(self._ack)
        return future

    async def publish_async_completed(self) -> None:
        """Every PubAck is in when its publish returns."""


class _Publisher(BasePublisher[TicketCreatedEvent]):
    """The package's publisher of the event timed."""


def events(count: int) -> list[TicketCreatedEvent]:
    """``count`` events of distinct ids, so of distinct message ids."""
    return [
        TicketCreatedEvent(id=f"t-{n}", version=0, title="concert", price=20.0, user_id="u1")
        for n in range(count)
    ]


async def raw_publish_async(count: int) -> float:
    """CPU µs an event through a publish_async loop and publish_async_completed, as in bench.py."""
    js, batch = _Stored(), events(count)
    started = time.process_time()
    for item in batch:
        await js.publish_async(
            "ticket:created", item.model_dump_json().encode(), headers={"Nats-Msg-Id": item.message_id()}
        )
    await js.publish_async_completed()
    return (time.process_time() - started) / count * 1e6


async def publish_many(count: int) -> float:
    """CPU µs an event through ``publish_many`` (its default window)."""
    publisher, batch = _Publisher(CLIENT, js=cast("JetStreamContext", _Stored())), events(count)
    started = time.process_time()
    await publisher.publish_many(batch)
    return (time.process_time() - started) / count * 1e6


Contenders = dict[str, Callable[[int], Awaitable[float]]]
CONSUMING: Contenders = {
    "raw nats-py push": raw_push,
    "ticketing-common": listener,
    "ticketing-common concurrency 8": lambda count: listener(count, concurrency=8),
}
PUBLISHING: Contenders = {
    "raw nats-py publish_async": raw_publish_async,
    "ticketing-common publish_many": publish_many,
}


async def main(repeats: int, count: int) -> None:
    """Run each contender ``repeats`` times, interleaved, and print the medians beside the first's."""
    event_tracing.disable()  # as bench.py's plain contenders
    for kind, contenders in (("consume", CONSUMING), ("publish many", PUBLISHING)):
        results: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(repeats):
            for name, contender in contenders.items():
                gc.collect()
                results[name].append(await contender(count))
        raw = next(iter(results))
        baseline = statistics.median(results[raw])
        print(
            f"hop, {kind}, {count:,} events, {repeats} repeats: CPU µs per event (median, min), beside {raw}"
        )
        for name, values in results.items():
            median = statistics.median(values)
            print(f"{name:<32}{median:>8.2f}{min(values):>8.2f}{median - baseline:>+9.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run, to check the benchmark works")
    parser.add_argument("--repeats", type=int, default=9, help="interleaved repeats (default 9)")
    parser.add_argument("--events", type=int, default=100_000, help="events per repeat (default 100,000)")
    arguments = parser.parse_args()
    if arguments.quick:
        asyncio.run(main(1, 2_000))
    else:
        asyncio.run(main(arguments.repeats, arguments.events))
