"""A listener process for the fault tests: records each event it handles in SQLite, then acks it.

``python tests/fault_listener.py NATS_URLS DATABASE CRASH_FILE``: joins the ``faults`` queue group on
ticket:created. For each event it commits a row (event id, stream sequence, delivery, time, pid); if
``CRASH_FILE`` exists then, it removes it and kills itself (SIGKILL) before the ack: a crash between the
commit and the ack, which JetStream must answer with a redelivery to the other listener.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

from nats.aio.msg import Msg

from ticketing_common import BaseListener, NatsWrapper, TicketCreatedEvent, ensure_stream, run_until_stopped

SCHEMA = "CREATE TABLE IF NOT EXISTS handled (event_id TEXT, sequence INT, delivery INT, at REAL, pid INT)"


class Recording(BaseListener[TicketCreatedEvent]):
    """Commit a row per handled event, crash when told to, ack."""

    queue_group_name = "faults"
    ack_wait = 2.0  # a crashed listener's event comes back to the other one soon

    def __init__(self, wrapper: NatsWrapper, database: sqlite3.Connection, crash_file: Path) -> None:
        super().__init__(wrapper.client)
        self.database = database
        self.crash_file = crash_file

    async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
        """Record, maybe crash, ack."""
        metadata = msg.metadata
        row = (data.id, metadata.sequence.stream, metadata.num_delivered, time.time(), os.getpid())
        self.database.execute("INSERT INTO handled VALUES (?, ?, ?, ?, ?)", row)
        self.database.commit()
        if self.crash_file.exists():
            self.crash_file.unlink()
            os.kill(os.getpid(), signal.SIGKILL)
        await msg.ack()


async def main() -> None:
    """Connect to every node, listen until a signal."""
    urls, database_path, crash_file = sys.argv[1:4]
    database = sqlite3.connect(database_path, timeout=30, isolation_level=None)
    database.execute("PRAGMA journal_mode = WAL")
    database.execute(SCHEMA)
    database.isolation_level = "DEFERRED"
    wrapper = NatsWrapper()
    await wrapper.connect(urls, name=f"fault-listener-{os.getpid()}")
    try:
        await ensure_stream(wrapper.jetstream, replicas=3)
        await Recording(wrapper, database, Path(crash_file)).listen()
        print("listening", flush=True)  # noqa: T201 - the test waits for this line
        await asyncio.Future()
    finally:
        await wrapper.close()


if __name__ == "__main__":
    raise SystemExit(run_until_stopped(main))
