"""SIGTERM and SIGINT stop a service process at any moment: waiting for NATS, serving, shutting down."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from node_session import KEY
from processes import SERVICES_DIR, free_port, wait_until_answering
from ticketing_common.testing import NatsServer

STOPPED_WITHIN = 15.0
"""Seconds a process may take to exit after the signal (its clean-up included) before the test fails."""


class Process:
    """A service process whose output lines are read as they come, to wait for one."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        """Wait until the process writes a line containing ``text``, or fail."""
        try:
            while text not in self.lines.get(timeout=timeout):
                pass
        except queue.Empty:
            pytest.fail(f"no line with {text!r} in {timeout:g} s; output:\n{''.join(self.output)}")

    def close(self) -> None:
        """Kill the process if it still runs, read its output to the end and close the pipe."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def stop(self, sig: signal.Signals) -> int:
        """Send ``sig`` and return the exit status, failing if the process does not exit in time."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=STOPPED_WITHIN)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"still running {STOPPED_WITHIN:g} s after {sig.name}:\n{''.join(self.output)}")


@contextmanager
def service(name: str, nats_url: str, tmp_path: Path, port: int | None = None) -> Iterator[Process]:
    env = {
        **os.environ,
        "JWT_KEY": KEY,
        "NATS_URL": nats_url,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / name}.db",
        "PORT": str(port or free_port()),
        "PYTHONPATH": str(SERVICES_DIR),
    }
    process = subprocess.Popen(  # noqa: S603 - our interpreter and our module
        [sys.executable, "-m", name],
        cwd=SERVICES_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    watched = Process(process)
    try:
        yield watched
    finally:
        watched.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda sig: sig.name)
@pytest.mark.parametrize("name", ["tickets", "expiration"])
def test_a_signal_stops_a_service_waiting_for_an_unreachable_nats(
    name: str, sig: signal.Signals, tmp_path: Path
) -> None:
    """While start-up retries a NATS server that is not there, the signal ends the process with status 0."""
    with service(name, f"nats://127.0.0.1:{free_port()}", tmp_path) as process:
        process.wait_for("ConnectionRefusedError")
        assert process.stop(sig) == 0
        assert "Traceback" not in "".join(process.output)


def test_sigterm_stops_a_serving_service_gracefully(tmp_path: Path) -> None:
    """A service that answers HTTP stops on SIGTERM with status 0 and no traceback."""
    port = free_port()
    with NatsServer() as server, service("tickets", server.url, tmp_path, port) as process:
        wait_until_answering({"tickets": f"http://127.0.0.1:{port}"})
        assert process.stop(signal.SIGTERM) == 0
        output = "".join(process.output)
        assert "Application shutdown complete" in output or "Finished server process" in output, output
        assert "Traceback" not in output


def test_sigterm_stops_a_service_whose_nats_went_away(tmp_path: Path) -> None:
    """With its NATS server gone after start-up (reconnecting), the service still stops on SIGTERM."""
    port = free_port()
    with NatsServer() as server, service("tickets", server.url, tmp_path, port) as process:
        wait_until_answering({"tickets": f"http://127.0.0.1:{port}"})
        server.stop()
        process.wait_for("disconnected from NATS")
        assert process.stop(signal.SIGTERM) == 0
        assert "Traceback" not in "".join(process.output)


STUCK_IN_SHUTDOWN = """
import asyncio
from ticketing_common import run_until_stopped

async def main() -> None:
    try:
        print("serving", flush=True)
        await asyncio.Future()
    finally:
        print("cleaning up", flush=True)
        await asyncio.Future()  # a clean-up that never ends: a drain with nobody answering

raise SystemExit(run_until_stopped(main))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda sig: sig.name)
def test_a_second_signal_stops_a_process_stuck_in_its_shutdown(sig: signal.Signals) -> None:
    """The first signal starts the clean-up; when that hangs, the next one ends the process, status 0."""
    process = Process(
        subprocess.Popen(  # noqa: S603 - our interpreter and our code
            [sys.executable, "-c", STUCK_IN_SHUTDOWN],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    )
    try:
        process.wait_for("serving")
        process.process.send_signal(sig)
        process.wait_for("cleaning up")
        assert process.stop(sig) == 0
        assert "Traceback" not in "".join(process.output)
    finally:
        process.close()
