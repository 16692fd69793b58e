"""Resident memory of a process consuming a large backlog: the listener against raw nats-py push.

One nats-server holds ``--events`` stored events (1,000,000 by default); each contender then consumes
all of them in a process of its own (validating and acking each, as in bench.py), sampling its resident
set size as it goes. A listener asks for at most ``prefetch`` events at a time, so its memory should stay
flat however deep the backlog. Run: ``nox -s bench`` runs it after bench.py (``-- --quick``: 20,000).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from ticketing_common import EVENTS_STREAM, BaseListener, TicketCreatedEvent, ensure_stream
from ticketing_common import opentelemetry as event_tracing
from ticketing_common.testing import NatsServer

SUBJECT = "ticket:created"
CONTENDERS = ("ticketing-common", "raw nats-py push")
_PAGE = 4096


def rss_mib() -> float:
    """This process's resident set size now (Linux's /proc), else its peak so far."""
    statm = Path("/proc/self/statm")
    if statm.exists():
        return int(statm.read_text().split()[1]) * _PAGE / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


async def fill(js: JetStreamContext, count: int) -> None:
    """Store ``count`` events, in chunks of pipelined publishes."""
    run = uuid.uuid4().hex[:8]
    for start in range(0, count, 10_000):
        for number in range(start, min(count, start + 10_000)):
            event = TicketCreatedEvent(
                id=f"{run}-{number}", version=0, title="concert", price=10, user_id="u"
            )
            await js.publish_async(
                SUBJECT, event.model_dump_json().encode(), headers={"Nats-Msg-Id": event.message_id()}
            )
        await js.publish_async_completed()


async def consume(contender: str, url: str, count: int) -> dict[str, object]:
    """Consume ``count`` events as ``contender``; return the RSS samples, in MiB, and the time taken."""
    event_tracing.disable()
    client = await nats.connect(url)
    done = asyncio.Event()
    seen = 0
    samples: list[float] = [rss_mib()]
    every = max(1, count // 20)

    def one_more() -> None:
        nonlocal seen
        seen += 1
        if seen % every == 0:
            samples.append(rss_mib())
        if seen == count:
            done.set()

    started = time.perf_counter()
    if contender == "ticketing-common":
        await _listen(client, one_more)
    else:

        async def handle(msg: Msg) -> None:
            TicketCreatedEvent.model_validate_json(msg.data)
            await msg.ack()
            one_more()

        await client.jetstream().subscribe(
            SUBJECT, durable=f"raw-{uuid.uuid4().hex[:8]}", stream=EVENTS_STREAM, cb=handle, manual_ack=True
        )
    await done.wait()
    elapsed = time.perf_counter() - started
    await client.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    return {"samples": samples, "peak": peak, "seconds": elapsed}


async def _listen(client: Client, one_more: Callable[[], None]) -> None:
    class Listener(BaseListener[TicketCreatedEvent]):
        queue_group_name = f"memory-{uuid.uuid4().hex[:8]}"

        async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
            await msg.ack()
            one_more()

    await Listener(client).listen()


def main(count: int) -> None:
    with NatsServer() as server:

        async def stored() -> None:
            client = await nats.connect(server.url)
            js = client.jetstream()
            await ensure_stream(js)
            await fill(js, count)
            await client.close()

        asyncio.run(stored())
        print(f"\nmemory: {count:,} stored events, each contender in a process of its own (RSS in MiB)")
        print(f"{'contender':<20}{'start':>8}{'at 50%':>8}{'end':>8}{'peak':>8}{'events/s':>10}")
        for contender in CONTENDERS:
            result = subprocess.run(  # noqa: S603 - this interpreter, this script
                [
                    sys.executable,
                    __file__,
                    "--consume",
                    contender,
                    "--url",
                    server.url,
                    "--events",
                    str(count),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            figures = json.loads(result.stdout.splitlines()[-1])
            samples = figures["samples"]
            print(
                f"{contender:<20}{samples[0]:>8.1f}{samples[len(samples) // 2]:>8.1f}{samples[-1]:>8.1f}"
                f"{figures['peak']:>8.1f}{count / figures['seconds']:>10,.0f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run, to check the benchmark works")
    parser.add_argument("--events", type=int, default=1_000_000, help="the backlog (default 1,000,000)")
    parser.add_argument("--consume", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.consume:
        print(json.dumps(asyncio.run(consume(arguments.consume, arguments.url, arguments.events))))
    else:
        main(20_000 if arguments.quick else arguments.events)
