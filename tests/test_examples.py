"""The standalone examples run as a user runs them, against a real server."""

from __future__ import annotations

import asyncio
import os
import re
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


async def test_the_end_to_end_demo_observes_the_whole_story() -> None:
    """The README's main command: five services, the story through HTTP, every event acked; exit 0."""
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES.parent / "end_to_end.py"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(demo.communicate(), 120)
    text = output.decode()
    assert demo.returncode == 0, text
    for step in (
        "all five services are up",
        "buyer paid",
        "orders shows the order complete",
        "the unpaid order expired: orders shows it cancelled",
        "tickets shows the festival ticket free again",
        "then cancels and pays it at once",
        "OK: the whole story was observed",
    ):
        assert step in text, text
    # The paid order's expiration is withdrawn on payment:created, unless that came after it fired.
    withdrawn = "the paid order's expiration never fired: payment:created withdrew it" in text
    events = 10 if withdrawn else 11
    # The race adds a ticket, its order and the reservation (3 events), then what settled it.
    [winner] = re.findall(r"settled: orders (applied the payment first|cancelled the order)", text)
    if winner == "applied the payment first":
        events += 3 + 1  # payment:created
    elif "refunded the charge" in text:
        events += 3 + 4  # order:cancelled, the release, payment:created, payment:refunded
    else:
        events += 3 + 2  # order:cancelled, the release
    [seen] = re.findall(r"every one of (\d+) events was consumed and acked", text)
    # The raced order's expiration fires (and is ignored) if its withdrawal reached the expiration
    # service before its schedule did, and its expiresAt came before the demo ended.
    assert int(seen) in {events, events + 1}, text
    assert "> order:cancelled" in text
    assert "expiration -> orders" in text


async def test_the_kept_demo_stops_everything_on_ctrl_c() -> None:
    """--keep prints the URLs and waits; SIGINT stops the services and the server, exit status 130."""
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES.parent / "end_to_end.py"),
        "--keep",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert demo.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(60):
        while not any("keep running until Ctrl-C" in line for line in lines):
            raw = await demo.stdout.readline()
            assert raw, "\n".join(lines)
            lines.append(raw.decode())
    demo.send_signal(signal.SIGINT)
    rest, _ = await asyncio.wait_for(demo.communicate(), 30)
    assert demo.returncode == 130
    assert "interrupted: everything stopped" in rest.decode()
