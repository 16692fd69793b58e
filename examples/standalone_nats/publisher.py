"""Publish ticket:created events, as the course's standalone NATS publisher did, on JetStream.

Run: ``NATS_URL=nats://127.0.0.1:4222 python publisher.py --count 10``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid

from ticketing_common import BasePublisher, TicketCreatedEvent, ensure_stream, nats_wrapper


class TicketCreatedPublisher(BasePublisher[TicketCreatedEvent]):
    """Publishes ticket:created; the subject comes from the event type."""


async def main(count: int) -> None:
    """Connect, make sure the stream exists, publish ``count`` new tickets, drain."""
    client = await nats_wrapper.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"), name="publisher")
    await ensure_stream(nats_wrapper.jetstream)
    publisher = TicketCreatedPublisher(client)
    run = uuid.uuid4().hex[:8]
    for number in range(count):
        event = TicketCreatedEvent(id=f"{run}-{number}", version=0, title="concert", price=20, user_id="123")
        ack = await publisher.publish(event)
        print(f"Event published to {event.subject}: {event.model_dump_json()} (stream sequence {ack.seq})")
    await nats_wrapper.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1, help="how many tickets to publish")
    asyncio.run(main(parser.parse_args().count))
