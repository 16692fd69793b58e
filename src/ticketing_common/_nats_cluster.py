"""A JetStream cluster of ``nats-server`` processes on loopback, to test what production NATS does."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Self

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from ticketing_common._nats_server import NatsServer, find_nats_server

_START_TRIES = 3  # the ports are chosen before the servers bind them: another process may take one


class _Node(NatsServer):
    """One server of the cluster: its name, its route port, the routes to every node, fsync always."""

    def __init__(self, cluster: NatsCluster, index: int, store_dir: Path, startup_timeout: float) -> None:
        super().__init__(store_dir=store_dir, startup_timeout=startup_timeout)
        self.cluster = cluster
        self.name = f"{cluster.name}-{index + 1}"
        self.route_port = 0

    def _command(self) -> list[str]:
        routes = ", ".join(f'"nats-route://127.0.0.1:{node.route_port}"' for node in self.cluster.nodes)
        # sync_interval always: without it an acknowledged event can be lost when every node dies at once
        # (Jepsen's 2025 analysis of NATS 2.12.1); a cluster here is for testing what production runs.
        config = f"""
server_name: "{self.name}"
listen: "127.0.0.1:{self.port}"
jetstream {{ store_dir: "{self.store_dir}", sync_interval: always }}
cluster {{ name: "{self.cluster.name}", listen: "127.0.0.1:{self.route_port}", routes: [{routes}] }}
"""
        path = self.store_dir / "server.conf"
        path.write_text(config)
        return [find_nats_server(), "-c", str(path)]


class NatsCluster:
    """``size`` nats-servers with JetStream, routed to each other on loopback, each with a store of its own.

    Each node keeps its ports and store across ``kill`` / ``stop`` and ``start_node``, as a crashed
    server that comes back would. ``url`` lists every node, so a client fails over as in production.

    Example::

        with NatsCluster(3) as cluster:
            client = await nats.connect(cluster.urls)
            await cluster.wait_ready()
            await ensure_stream(client.jetstream(), replicas=3)
            leader = await cluster.stream_leader(client.jetstream(), EVENTS_STREAM)
            cluster.nodes[leader].kill()
    """

    def __init__(self, size: int = 3, *, name: str = "ticketing", startup_timeout: float = 20.0) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        self.name = name
        self._root = Path(tempfile.mkdtemp(prefix="nats-cluster-"))
        self.nodes: list[_Node] = []
        for index in range(size):
            store = self._root / f"node-{index + 1}"
            store.mkdir()
            self.nodes.append(_Node(self, index, store, startup_timeout))

    @property
    def urls(self) -> list[str]:
        """Every node's client URL."""
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated: what ``NATS_URL`` takes."""
        return ",".join(self.urls)

    def start(self) -> Self:
        """Start every node and return once each says it is ready (``wait_ready`` waits for JetStream)."""
        for attempt in range(1, _START_TRIES + 1):
            ports = _free_ports(2 * len(self.nodes))
            for node, port, route_port in zip(self.nodes, ports[::2], ports[1::2], strict=True):
                node.port = port
                node.route_port = route_port
            try:
                with ExitStack() as started:
                    for node in self.nodes:
                        node.start()
                        started.callback(node.stop)
                    started.pop_all()
            except RuntimeError:
                if attempt == _START_TRIES:
                    raise
            else:
                break
        return self

    def start_node(self, index: int) -> None:
        """Start node ``index`` again, on its ports and store, after ``stop`` or ``kill``."""
        self.nodes[index].start()

    def node_named(self, name: str) -> int:
        """The index of the node whose server name is ``name`` (as JetStream names a leader)."""
        for index, node in enumerate(self.nodes):
            if node.name == name:
                return index
        raise LookupError(f"no node named {name!r} in the cluster")

    async def wait_ready(self, js: JetStreamContext, timeout: float = 30.0) -> None:
        """Wait until JetStream answers through ``js``: the cluster has elected its meta leader."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    await js.account_info()
                except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
                    await asyncio.sleep(0.1)
                else:
                    return

    async def stream_leader(self, js: JetStreamContext, stream: str, timeout: float = 30.0) -> int:
        """The index of the node leading ``stream``, waiting (up to ``timeout`` s) while it has none."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    info = await js.stream_info(stream)
                except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
                    info = None
                if info is not None and info.cluster is not None and info.cluster.leader:
                    return self.node_named(info.cluster.leader)
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        """Stop every node (the stores stay)."""
        for node in self.nodes:
            node.stop()

    def kill(self, indexes: Sequence[int] | None = None) -> None:
        """Kill -9 the nodes at ``indexes``, every node if None."""
        for index in range(len(self.nodes)) if indexes is None else indexes:
            self.nodes[index].kill()

    def close(self) -> None:
        """Stop every node and remove the stores."""
        self.stop()
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _free_ports(count: int) -> list[int]:
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()
