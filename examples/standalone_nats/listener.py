"""Print and ack ticket:created events, as the course's standalone NATS listener did, on JetStream.

Run two of them to see the queue group split the work: each event reaches one of them.
Run: ``NATS_URL=nats://127.0.0.1:4222 python listener.py``; Ctrl-C (or SIGTERM) drains and exits.
"""

from __future__ import annotations

import asyncio
import logging
import os

from nats.aio.msg import Msg

from ticketing_common import BaseListener, TicketCreatedEvent, ensure_stream, nats_wrapper


class TicketCreatedListener(BaseListener[TicketCreatedEvent]):
    """The payments service's interest in new tickets, as in the course."""

    queue_group_name = "payments-service"

    async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
        """Print the event and ack it."""
        print(f"Event #{msg.metadata.sequence.stream} {self.subject}: {data.model_dump_json()}", flush=True)
        await msg.ack()


async def main() -> None:
    """Connect, listen until SIGINT/SIGTERM, then drain."""
    client = await nats_wrapper.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"), name="listener")
    nats_wrapper.install_signal_handlers()
    await ensure_stream(nats_wrapper.jetstream)
    await TicketCreatedListener(client).listen()
    print("Listener ready", flush=True)
    await nats_wrapper.wait_closed()
    print("Listener closed", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(main())
