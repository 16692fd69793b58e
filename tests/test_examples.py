"""The standalone examples run as a user runs them, against a real server."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from nats.js import JetStreamContext

from conftest import WAIT
from ticketing_common.testing import NatsServer

EXAMPLES = Path(__file__).parent.parent / "examples" / "standalone_nats"


async def start(script: str, *args: str, url: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / script),
        *args,
        env={**os.environ, "NATS_URL": url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def read_until(process: asyncio.subprocess.Process, wanted: int, prefix: str) -> list[str]:
    """Read lines until ``wanted`` of them start with ``prefix``; return all lines read."""
    assert process.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(WAIT):
        while sum(line.startswith(prefix) for line in lines) < wanted:
            raw = await process.stdout.readline()
            assert raw, f"the process ended early: {lines}"
            lines.append(raw.decode().rstrip())
    return lines


async def test_the_listener_prints_history_and_new_events_then_drains_on_sigterm(
    nats_server: NatsServer, jetstream: JetStreamContext
) -> None:
    """Published before and after it starts, every event is printed once; SIGTERM exits cleanly."""
    before = await start("publisher.py", "--count", "2", url=nats_server.url)
    assert await before.wait() == 0
    listener = await start("listener.py", url=nats_server.url)
    try:
        await read_until(listener, 1, "Listener ready")
        after = await start("publisher.py", "--count", "3", url=nats_server.url)
        assert await after.wait() == 0
        lines = await read_until(listener, 5, "Event #")
    finally:
        listener.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(listener.communicate(), WAIT)
    assert listener.returncode == 0
    assert [line.split()[1] for line in lines if line.startswith("Event #")] == [f"#{n}" for n in range(1, 6)]
    assert "Listener closed" in rest.decode()


async def test_the_demo_splits_the_work_between_two_listeners() -> None:
    """The README's demo command exits 0, having seen each event at exactly one of two listeners."""
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "demo.py"),
        "--count",
        "30",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(demo.communicate(), 60)
    text = output.decode()
    assert demo.returncode == 0, text
    assert "OK: the queue group split 30 events without loss or duplicate" in text
    assert "listener-1 handled 0" not in text
    assert "listener-2 handled 0" not in text
