"""The standalone examples run as a user runs them, against a real server."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import nats
from nats.js import JetStreamContext

from conftest import WAIT
from ticketing_common.testing import NatsServer

EXAMPLES = Path(__file__).parent.parent / "examples" / "standalone_nats"
TIMEOUT_OF_A_STEP = 30
"""The end-to-end demo's own timeout for one step (``end_to_end.TIMEOUT``)."""
SERVICES = ("auth", "tickets", "orders", "payments", "expiration")


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
    """The README's main command, with --trace: the story, every event acked, the order's trace; exit 0."""
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES.parent / "end_to_end.py"),
        "--trace",
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
    # The buyer's order's trace: each event's handling under its send, in the service that handled it.
    tree = text.split("as the services exported it:\n", 1)[1]
    for nested in (
        "POST /api/orders  [orders, server",
        "    send order:created  [orders, producer",
        "      process order:created  [tickets, consumer",
        "        send ticket:updated  [tickets, producer",
        "          process ticket:updated  [orders, consumer",
        "      process order:created  [payments, consumer",
        "      process order:created  [expiration, consumer",
        "        send schedule.expiration:complete.",
    ):
        assert f"\n{nested}" in f"\n{tree}", tree
    [logs] = re.findall(r"the services' logs are kept in (\S+)", text)
    await asyncio.to_thread(shutil.rmtree, logs)


async def test_the_kept_demo_shows_any_event_and_ends_cleanly_on_ctrl_c() -> None:
    """--keep, a long window: the story passes, a bad event shows, Ctrl-C ends it with exit 0 and logs."""
    window = TIMEOUT_OF_A_STEP + 1  # the expiry wait follows the window, not the demo's step timeout
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES.parent / "end_to_end.py"),
        "--keep",
        "--window",
        str(window),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert demo.stdout is not None
    lines: list[str] = []

    async def read_until(text: str) -> None:
        async with asyncio.timeout(60 + window):
            while not any(text in line for line in lines):
                raw = await demo.stdout.readline()  # type: ignore[union-attr]
                assert raw, "".join(lines)
                lines.append(raw.decode())

    await read_until("keep running until Ctrl-C")
    await read_until("  nats ")
    [nats_url] = [line.split()[1] for line in lines if line.startswith("  nats ")]
    client = await nats.connect(nats_url)
    await client.jetstream().publish("ticket:created", b"\xffnot json")
    await client.close()
    await read_until("! dead letter: ticket:created given up by orders-service")
    demo.send_signal(signal.SIGINT)
    rest, _ = await asyncio.wait_for(demo.communicate(), 30)
    text = "".join(lines) + rest.decode()
    assert demo.returncode == 0, text
    assert "OK: the whole story was observed" in text
    assert "not JSON: b'\\xffnot json'" in text
    assert "Ctrl-C: stopping the services and nats-server" in text
    assert "Traceback" not in text
    [logs] = re.findall(r"the services' logs are kept in (\S+)", text)
    kept = await asyncio.to_thread(lambda: {path.name for path in Path(logs).glob("*.log")})
    assert kept >= {f"{name}.log" for name in SERVICES}
    await asyncio.to_thread(shutil.rmtree, logs)


def test_the_demo_refuses_a_window_too_short_to_pay() -> None:
    """--window under 2 s is refused with a reason, before anything starts."""
    demo = subprocess.run(  # noqa: S603 - our interpreter and our script
        [sys.executable, str(EXAMPLES.parent / "end_to_end.py"), "--window", "0.5"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert demo.returncode == 2
    assert "at least 2 s: the buyer must have time to pay" in demo.stderr
