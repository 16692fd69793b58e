"""The standalone demo: an embedded nats-server, two listeners of one queue group, one publisher.

It exits 0 only if every published event was printed by exactly one of the two listeners, and it stops
everything it started, also on failure or Ctrl-C. Run: ``nox -s demo`` (or ``python demo.py --count 20``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from pathlib import Path

from ticketing_common.testing import NatsServer

HERE = Path(__file__).parent
EVENT_LINE = re.compile(r"^Event #\d+ ticket:created: (?P<json>\{.*\})$")
TIMEOUT = 30.0


async def run_script(name: str, *args: str, url: str) -> asyncio.subprocess.Process:
    """Start one of the example scripts against ``url``, its output piped to us."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / name),
        *args,
        env={**os.environ, "NATS_URL": url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def follow(
    label: str, process: asyncio.subprocess.Process, seen: list[str], ready: asyncio.Event
) -> None:
    """Echo a listener's lines with its label, noting each event it printed and when it is ready."""
    assert process.stdout is not None  # noqa: S101 - started with stdout=PIPE
    async for raw in process.stdout:
        line = raw.decode().rstrip()
        print(f"  [{label}] {line}", flush=True)
        if line == "Listener ready":
            ready.set()
        elif match := EVENT_LINE.match(line):
            seen.append(match.group("json"))


async def demo(count: int) -> int:
    """Run the demo; return the exit status."""
    started = time.perf_counter()
    with NatsServer() as server:
        print(f"nats-server with JetStream at {server.url}, store {server.store_dir}")
        listeners: dict[str, tuple[asyncio.subprocess.Process, list[str], asyncio.Event]] = {}
        followers = []
        try:
            for label in ("listener-1", "listener-2"):
                process = await run_script("listener.py", url=server.url)
                listeners[label] = (process, [], asyncio.Event())
                followers.append(asyncio.create_task(follow(label, *listeners[label])))
            async with asyncio.timeout(TIMEOUT):
                await asyncio.gather(*(ready.wait() for _, _, ready in listeners.values()))
            print(f"publishing {count} ticket:created events")
            publisher = await run_script("publisher.py", "--count", str(count), url=server.url)
            output, _ = await publisher.communicate()
            print("\n".join(f"  [publisher] {line}" for line in output.decode().splitlines()))
            if publisher.returncode != 0:
                print("FAILED: the publisher exited with", publisher.returncode)
                return 1
            async with asyncio.timeout(TIMEOUT):
                while sum(len(seen) for _, seen, _ in listeners.values()) < count:
                    await asyncio.sleep(0.05)
        except TimeoutError:
            print(f"FAILED: not every event arrived within {TIMEOUT} s")
            return 1
        finally:
            for process, _, _ in listeners.values():
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
            codes = [await process.wait() for process, _, _ in listeners.values()]
            await asyncio.gather(*followers)
        every = [event for _, seen, _ in listeners.values() for event in seen]
        split = ", ".join(f"{label} handled {len(seen)}" for label, (_, seen, _) in listeners.items())
        print(f"{count} events published; {split}; listeners exited with {codes}")
        if len(every) != count or len(set(every)) != count or any(codes):
            print("FAILED: each event must reach exactly one listener, and both must exit cleanly")
            return 1
        elapsed = time.perf_counter() - started
        print(f"OK: the queue group split {count} events without loss or duplicate in {elapsed:.1f} s")
        return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20, help="how many events to publish")
    sys.exit(asyncio.run(demo(parser.parse_args().count)))
