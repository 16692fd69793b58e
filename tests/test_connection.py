"""The NATS connection holder: connect, use, reconnect after a server restart, drain on close or signal."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from nats.js import JetStreamContext

from conftest import WAIT, ticket, wait_until
from publishers import TicketCreatedPublisher
from test_listener import Recorder
from ticketing_common import NatsWrapper, NotConnectedError, ensure_stream, nats_wrapper
from ticketing_common.testing import NatsServer


def test_using_the_client_before_connecting_is_a_clear_runtime_error() -> None:
    """nats_wrapper.client before connect() raises a RuntimeError that says what to do."""
    with pytest.raises(RuntimeError, match=r"before connecting: await nats_wrapper.connect\(\)"):
        _ = NatsWrapper().client
    with pytest.raises(NotConnectedError):
        _ = NatsWrapper().jetstream
    assert isinstance(nats_wrapper, NatsWrapper)


async def test_connect_passes_options_through_and_close_drains(
    nats_server: NatsServer, jetstream: JetStreamContext
) -> None:
    """connect() accepts nats-py options (here: name) and close() drains, stopping listeners first."""
    wrapper = NatsWrapper()
    client = await wrapper.connect(nats_server.url, name="tickets-test")
    assert client is wrapper.client
    assert client.options["name"] == "tickets-test"
    await ensure_stream(wrapper.jetstream)
    listener = Recorder(client)
    await listener.listen()
    await TicketCreatedPublisher(client).publish(ticket(1))
    await wait_until(lambda: len(listener.handled) == 1)
    await wrapper.close()
    assert client.is_closed
    assert not listener._tasks
    assert not wrapper.is_connected
    await asyncio.wait_for(wrapper.wait_closed(), WAIT)


async def test_connecting_twice_is_refused(nats_server: NatsServer) -> None:
    """A second connect() on a connected holder is a mistake, not a silent leak."""
    wrapper = NatsWrapper()
    await wrapper.connect(nats_server.url)
    with pytest.raises(RuntimeError, match="already connected"):
        await wrapper.connect(nats_server.url)
    await wrapper.close()


async def test_sigterm_drains_and_closes(nats_server: NatsServer, jetstream: JetStreamContext) -> None:
    """With the opt-in signal handlers, SIGTERM drains and closes the connection."""
    wrapper = NatsWrapper()
    client = await wrapper.connect(nats_server.url)
    wrapper.install_signal_handlers()
    loop = asyncio.get_running_loop()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(wrapper.wait_closed(), WAIT)
        assert client.is_closed
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        loop.remove_signal_handler(signal.SIGINT)


async def test_listeners_resume_after_the_server_restarts(caplog: pytest.LogCaptureFixture) -> None:
    """After a restart on the same store, the reconnect is logged and the durable consumer carries on."""
    with NatsServer() as server:
        wrapper = NatsWrapper()
        client = await wrapper.connect(server.url, reconnect_time_wait=0.1)
        await ensure_stream(wrapper.jetstream)
        listener = Recorder(client)
        await listener.listen()
        publisher = TicketCreatedPublisher(client)
        for number in range(5):
            await publisher.publish(ticket(number))
        await wait_until(lambda: len(listener.handled) == 5)

        await asyncio.to_thread(server.restart)
        for number in range(5, 10):
            await publisher.publish(ticket(number))
        await wait_until(lambda: len(listener.handled) == 10, timeout=20)
        await wrapper.close()
    assert listener.ids == [f"t{n}" for n in range(10)]
    assert "disconnected from NATS" in caplog.text
    assert "reconnected to NATS" in caplog.text


async def test_an_unused_signal_free_holder_closes_quietly() -> None:
    """close() and wait_closed() on a holder that never connected return at once."""
    wrapper = NatsWrapper()
    await wrapper.close()
    await wrapper.wait_closed()


def test_an_embedded_server_has_a_process_id_while_it_runs() -> None:
    """NatsServer.pid names a live process while the server runs (to watch its CPU), and None once stopped."""
    with NatsServer() as server:
        pid = server.pid
        assert pid is not None
        os.kill(pid, 0)  # raises if no such process
    assert server.pid is None
