"""ticketing-deadletters: list, show, replay and purge the dead letters of a real JetStream."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from importlib.metadata import entry_points

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from conftest import WAIT, ticket, wait_until
from publishers import TicketCreatedPublisher
from ticketing_common import BaseListener, TicketCreatedEvent
from ticketing_common.deadletters import REPLAYED_FROM_HEADER, DeadLetter, dead_letters, main
from ticketing_common.testing import NatsServer


class Flaky(BaseListener[TicketCreatedEvent]):
    """Fails every delivery while ``failing`` is set (so its events end in the dead letters), else records."""

    queue_group_name = "flaky-service"
    max_deliver = 2
    redelivery_delay = 0.05

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.failing = True
        self.handled: list[tuple[str, str | None]] = []

    async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
        """Raise while failing; else record the id and where it was replayed from, and ack."""
        if self.failing:
            raise RuntimeError(f"cannot store {data.id}")
        self.handled.append((data.id, (msg.headers or {}).get(REPLAYED_FROM_HEADER)))
        await msg.ack()


async def letters(js: JetStreamContext, **filters: str) -> list[DeadLetter]:
    return [letter async for letter in dead_letters(js, **filters)]


async def letter_count_is(js: JetStreamContext, count: int) -> None:
    async with asyncio.timeout(WAIT):
        while len(await letters(js)) != count:
            await asyncio.sleep(0.02)


@pytest.fixture
async def flaky(nats_client: Client, jetstream: JetStreamContext) -> AsyncIterator[Flaky]:
    listener = Flaky(nats_client)
    await listener.listen()
    yield listener
    await listener.close()


async def cli(server: NatsServer, *args: str) -> tuple[int, str, str]:
    """Run the command as a process (as an operator would) without blocking this test's event loop."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ticketing_common.deadletters",
        "--server",
        server.url,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), WAIT * 3)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_failed_event_is_listed_with_its_reason(
    nats_client: Client, jetstream: JetStreamContext, flaky: Flaky
) -> None:
    """A dead letter names its subject, queue group, reason, deliveries and original sequence."""
    ack = await TicketCreatedPublisher(nats_client).publish(ticket(1))
    await letter_count_is(jetstream, 1)
    [letter] = await letters(jetstream)
    assert (letter.subject, letter.queue_group, letter.deliveries) == ("ticket:created", "flaky-service", 2)
    assert letter.original_sequence == ack.seq
    assert "cannot store t1" in letter.reason
    assert TicketCreatedEvent.model_validate_json(letter.data) == ticket(1)
    assert 0 <= letter.age() < WAIT * 2
    assert await letters(jetstream, subject="order:created") == []
    assert await letters(jetstream, queue_group="other-service") == []
    assert await letters(jetstream, subject="ticket:created", queue_group="flaky-service") == [letter]


async def test_a_replayed_event_is_handled_once_fixed_and_leaves_the_dead_letters(
    nats_client: Client, jetstream: JetStreamContext, flaky: Flaky, nats_server: NatsServer
) -> None:
    """Replay republishes on the original subject and removes the dead letter; the handler gets it."""
    await TicketCreatedPublisher(nats_client).publish(ticket(2))
    await letter_count_is(jetstream, 1)
    [letter] = await letters(jetstream)
    flaky.failing = False
    status, out, _ = await cli(nats_server, "replay", str(letter.sequence))
    assert status == 0
    assert f"replayed {letter.sequence} to ticket:created" in out
    await wait_until(lambda: flaky.handled == [("t2", str(letter.sequence))])
    assert await letters(jetstream) == []


async def test_a_replayed_event_that_fails_again_comes_back(
    nats_client: Client, jetstream: JetStreamContext, flaky: Flaky, nats_server: NatsServer
) -> None:
    """Replaying while the handler still fails ends in a new dead letter of the same event."""
    await TicketCreatedPublisher(nats_client).publish(ticket(3))
    await letter_count_is(jetstream, 1)
    [first] = await letters(jetstream)
    status, _, _ = await cli(nats_server, "replay", "--all", "--subject", "ticket:created")
    assert status == 0
    async with asyncio.timeout(WAIT):
        while [letter.sequence for letter in await letters(jetstream)] in ([first.sequence], []):
            await asyncio.sleep(0.02)
    [again] = await letters(jetstream)
    assert again.sequence != first.sequence
    assert again.data == first.data
    assert again.original_sequence > first.original_sequence
    assert flaky.handled == []


async def test_list_show_and_purge_from_the_command_line(
    nats_client: Client, jetstream: JetStreamContext, flaky: Flaky, nats_server: NatsServer
) -> None:
    """The list command prints a line per letter (or JSON), show the headers and body, purge removes."""
    await TicketCreatedPublisher(nats_client).publish(ticket(4))
    await jetstream.publish("ticket:created", b"\xffnot json")  # dead-lettered at once
    await letter_count_is(jetstream, 2)
    valid, invalid = sorted(await letters(jetstream), key=lambda letter: letter.data.startswith(b"\xff"))

    status, out, _ = await cli(nats_server, "list")
    assert status == 0
    lines = out.splitlines()
    assert len(lines) == 3  # a header and two letters
    assert "cannot store t4" in lines[1] + lines[2]
    status, out, _ = await cli(nats_server, "list", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert {row["sequence"] for row in rows} == {valid.sequence, invalid.sequence}
    assert {row["queueGroup"] for row in rows} == {"flaky-service"}

    status, out, _ = await cli(nats_server, "show", str(valid.sequence))
    assert status == 0
    assert "Ticketing-Dead-Letter-Reason:" in out
    assert '"id": "t4"' in out
    status, out, _ = await cli(nats_server, "show", str(invalid.sequence))
    assert "b'\\xffnot json'" in out  # not JSON: shown as the bytes it is, not a crash

    status, out, _ = await cli(nats_server, "purge", str(invalid.sequence))
    assert (status, await letters(jetstream)) == (0, [valid])
    status, _, _ = await cli(nats_server, "purge", "--all")
    assert (status, await letters(jetstream)) == (0, [])
    assert flaky.handled == []


async def test_a_missing_dead_letter_is_an_error_message(
    jetstream: JetStreamContext, nats_server: NatsServer
) -> None:
    """Showing or replaying a sequence that is not there exits 1 and says which."""
    for command in ("show", "replay"):
        status, _, err = await cli(nats_server, command, "999")
        assert (status, err.strip()) == (1, "ticketing-deadletters: no dead letter 999")


async def test_an_unreachable_server_is_an_error_message() -> None:
    """With no server at the address the command says so and exits 1, without a traceback."""
    with NatsServer() as server:
        url = server.url
    status = await asyncio.to_thread(main, ["--server", url, "--timeout", "0.5", "list"])
    assert status == 1


def test_the_console_script_is_installed() -> None:
    """Installing the package installs ``ticketing-deadletters``, which runs main()."""
    [script] = [
        point for point in entry_points(group="console_scripts") if point.name == "ticketing-deadletters"
    ]
    assert script.load() is main
