"""BaseListener on a real JetStream: delivery, queue groups, redelivery, dead letters, keep-alive."""

from __future__ import annotations

import asyncio
import json
import logging

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from conftest import WAIT, consumer_is_settled, eventually, ticket, wait_until
from publishers import TicketCreatedPublisher
from ticketing_common import (
    DEAD_LETTERS_STREAM,
    BaseListener,
    OrderCreatedEvent,
    TicketCreatedEvent,
    _pull,
    dead_letter_subject,
)
from ticketing_common._listener import delivery_count
from ticketing_common._pull import deliver_directly
from ticketing_common.versioning import should_apply


class Recorder(BaseListener[TicketCreatedEvent]):
    """Records each event it is handed, with its delivery count, and acks it."""

    queue_group_name = "recorder"
    redelivery_delay = 0.05

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.handled: list[tuple[str, int]] = []

    async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
        """Record and ack."""
        self.handled.append((data.id, msg.metadata.num_delivered))
        await msg.ack()

    @property
    def ids(self) -> list[str]:
        """The ids of the handled events, in order."""
        return [event_id for event_id, _ in self.handled]


async def publish(client: Client, count: int, *, start: int = 0) -> None:
    publisher = TicketCreatedPublisher(client)
    for number in range(start, start + count):
        await publisher.publish(ticket(number))


async def dead_letters(js: JetStreamContext) -> list[RawStreamMsg]:
    info = await js.stream_info(DEAD_LETTERS_STREAM)
    if not info.state.messages:
        return []
    first, last = info.state.first_seq, info.state.last_seq
    return [await js.get_msg(DEAD_LETTERS_STREAM, seq) for seq in range(first, last + 1)]


async def test_events_published_before_listening_are_delivered(
    nats_client: Client, jetstream: JetStreamContext
) -> None:
    """Deliver all available: a new queue group gets the history first, then new events, in order."""
    await publish(nats_client, 5)
    listener = Recorder(nats_client)
    await listener.listen()
    await publish(nats_client, 5, start=5)
    await wait_until(lambda: len(listener.handled) == 10)
    # An ack is fire-and-forget: the server applies it shortly after the handler returns.
    await eventually(lambda: consumer_is_settled(jetstream, listener.durable_name))
    await listener.close()
    assert listener.ids == [f"t{n}" for n in range(10)]


def test_nats_py_still_has_the_queue_the_pull_takes_the_place_of() -> None:
    """The pull hands messages on without nats-py's per-subscription queue, a private part it checks for."""
    subscription = Subscription(conn=None, id=1, subject="_INBOX.x")
    assert deliver_directly(subscription, print)


async def test_without_that_queue_the_pull_falls_back_to_a_callback(
    nats_client: Client, jetstream: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should nats-py lose that private queue, events still arrive in order, through a callback."""
    monkeypatch.setattr(_pull, "deliver_directly", lambda *_: False)
    listener = Recorder(nats_client)
    await listener.listen()
    await publish(nats_client, 5)
    await wait_until(lambda: len(listener.handled) == 5)
    await listener.close()
    assert listener.ids == [f"t{n}" for n in range(5)]


async def test_the_handler_gets_the_validated_model(nats_client: Client, jetstream: JetStreamContext) -> None:
    """on_message receives the typed model equal to what was published."""
    received: list[TicketCreatedEvent] = []

    class Typed(Recorder):
        async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
            received.append(data)
            await msg.ack()

    listener = Typed(nats_client)
    await listener.listen()
    await TicketCreatedPublisher(nats_client).publish(ticket(3))
    await wait_until(lambda: len(received) == 1)
    await listener.close()
    assert received == [ticket(3)]


async def test_two_replicas_of_a_queue_group_split_the_work(
    nats_client: Client, jetstream: JetStreamContext
) -> None:
    """Each event reaches exactly one replica of a queue group: none lost, none twice, both busy."""
    first, second = Recorder(nats_client), Recorder(nats_client)
    await first.listen()
    await second.listen()
    await publish(nats_client, 300)
    await wait_until(lambda: len(first.handled) + len(second.handled) >= 300)
    await eventually(lambda: consumer_is_settled(jetstream, first.durable_name))
    await first.close()
    await second.close()
    assert sorted(first.ids + second.ids) == sorted(f"t{n}" for n in range(300))
    assert first.handled
    assert second.handled


async def test_every_queue_group_gets_every_event(nats_client: Client, jetstream: JetStreamContext) -> None:
    """Two services (queue groups) each receive all events."""

    class OtherService(Recorder):
        queue_group_name = "other-service"

    mine, theirs = Recorder(nats_client), OtherService(nats_client)
    await mine.listen()
    await theirs.listen()
    await publish(nats_client, 20)
    await wait_until(lambda: len(mine.handled) == 20 and len(theirs.handled) == 20)
    await mine.close()
    await theirs.close()
    assert mine.ids == theirs.ids


async def test_an_exception_in_the_handler_naks_and_redelivers(
    nats_client: Client, jetstream: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that raises gets the event again later; the failure is logged with its place."""

    class FailsOnce(Recorder):
        async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
            if msg.metadata.num_delivered == 1:
                raise RuntimeError("database busy")
            await super().on_message(data, msg)

    listener = FailsOnce(nats_client)
    await listener.listen()
    ack = await TicketCreatedPublisher(nats_client).publish(ticket(1))
    await wait_until(lambda: len(listener.handled) == 1)
    await listener.close()
    assert listener.handled == [("t1", 2)]
    failure = next(r for r in caplog.records if "database busy" in r.getMessage())
    assert f"ticket:created stream sequence {ack.seq}, delivery 1" in failure.getMessage()


async def test_an_out_of_order_event_waits_for_its_predecessor(
    nats_client: Client, jetstream: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    """Version 1 before version 0 is naked, redelivered once 0 is applied, then applied; no warning."""
    seen: list[int] = []

    class Replica(Recorder):
        version: int | None = None

        async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
            seen.append(data.version)
            if should_apply(self.version, data.version, record=f"ticket {data.id}"):
                self.version = data.version
                self.handled.append((f"v{data.version}", msg.metadata.num_delivered))
            await msg.ack()

    listener = Replica(nats_client)
    await listener.listen()
    publisher = TicketCreatedPublisher(nats_client)
    await publisher.publish(ticket(1, version=1))
    await wait_until(lambda: seen == [1], what="version 1 seen first")
    await publisher.publish(ticket(1, version=0))
    await wait_until(lambda: len(listener.handled) == 2)
    await listener.close()
    assert [version for version, _ in listener.handled] == ["v0", "v1"]
    assert listener.handled[1][1] >= 2
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


async def test_an_event_whose_predecessor_never_comes_is_dead_lettered(
    nats_client: Client, jetstream: JetStreamContext
) -> None:
    """OutOfOrder until max_deliver: the event is dead-lettered with the reason, not blocked forever."""

    class Waits(Recorder):
        max_deliver = 3
        out_of_order_delay = 0.01

        async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
            should_apply(None, data.version, record=f"ticket {data.id}")

    listener = Waits(nats_client)
    await listener.listen()
    await TicketCreatedPublisher(nats_client).publish(ticket(1, version=4))
    await eventually(lambda: consumer_is_settled(jetstream, listener.durable_name))
    await listener.close()
    [letter] = await dead_letters(jetstream)
    reason = (letter.headers or {})["Ticketing-Dead-Letter-Reason"]
    assert reason == "out of order after 3 deliveries: ticket t1: version 4 arrived with no replica yet"


async def test_an_invalid_event_goes_to_the_dead_letters_untouched(
    nats_client: Client, jetstream: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    """Bad JSON and a wrong field type never reach on_message: terminated, copied with the reason."""
    listener = Recorder(nats_client)
    await listener.listen()
    bad_json = await jetstream.publish("ticket:created", b"{not json")
    bad_type = await jetstream.publish(
        "ticket:created", b'{"id":"t9","version":"1","title":"x","price":1,"userId":"u"}'
    )
    await publish(nats_client, 1)
    await wait_until(lambda: len(listener.handled) == 1)
    await eventually(lambda: consumer_is_settled(jetstream, listener.durable_name))
    await listener.close()
    assert listener.ids == ["t0"]
    letters = await dead_letters(jetstream)
    assert [letter.data for letter in letters] == [
        b"{not json",
        b'{"id":"t9","version":"1","title":"x","price":1,"userId":"u"}',
    ]
    assert {letter.subject for letter in letters} == {dead_letter_subject("recorder", "ticket:created")}
    headers = [letter.headers or {} for letter in letters]
    assert "Invalid JSON" in headers[0]["Ticketing-Dead-Letter-Reason"]
    assert "version" in headers[1]["Ticketing-Dead-Letter-Reason"]
    assert [
        (h["Ticketing-Subject"], h["Ticketing-Stream-Sequence"], h["Ticketing-Deliveries"]) for h in headers
    ] == [
        ("ticket:created", str(bad_json.seq), "1"),
        ("ticket:created", str(bad_type.seq), "1"),
    ]
    assert f"dead letter: ticket:created stream sequence {bad_json.seq}, delivery 1" in caplog.text


async def test_an_event_that_keeps_failing_ends_in_the_dead_letters(
    nats_client: Client, jetstream: JetStreamContext
) -> None:
    """After max_deliver failures the event is dead-lettered with the last error, not retried forever."""

    class AlwaysFails(Recorder):
        max_deliver = 3

        async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
            self.handled.append((data.id, msg.metadata.num_delivered))
            raise ValueError("poison")

    listener = AlwaysFails(nats_client)
    await listener.listen()
    await TicketCreatedPublisher(nats_client).publish(ticket(1))
    await eventually(lambda: consumer_is_settled(jetstream, listener.durable_name))
    await listener.close()
    assert listener.handled == [("t1", 1), ("t1", 2), ("t1", 3)]
    (letter,) = await dead_letters(jetstream)
    assert json.loads(letter.data or b"")["id"] == "t1"
    headers = letter.headers or {}
    assert headers["Ticketing-Deliveries"] == "3"
    assert "handler failed 3 times, last: ValueError('poison')" in headers["Ticketing-Dead-Letter-Reason"]
    assert headers["Ticketing-Original-Msg-Id"] == "ticket:created:t1:0"


async def test_an_event_never_acked_ends_in_the_dead_letters(
    nats_client: Client, jetstream: JetStreamContext
) -> None:
    """A handler that returns without acking gets max_deliver tries, then the event is dead-lettered."""

    class NeverAcks(Recorder):
        ack_wait = 0.4
        max_deliver = 2

        async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
            self.handled.append((data.id, msg.metadata.num_delivered))

    listener = NeverAcks(nats_client)
    await listener.listen()
    await TicketCreatedPublisher(nats_client).publish(ticket(1))
    await eventually(lambda: consumer_is_settled(jetstream, listener.durable_name))
    await listener.close()
    assert listener.handled == [("t1", 1), ("t1", 2)]
    (letter,) = await dead_letters(jetstream)
    assert "not settled after 2 deliveries" in (letter.headers or {})["Ticketing-Dead-Letter-Reason"]


async def test_a_slow_handler_is_kept_alive_not_redelivered(
    nats_client: Client, jetstream: JetStreamContext
) -> None:
    """A handler running three ack_waits is not redelivered under its feet, nor are events behind it."""

    class Slow(Recorder):
        ack_wait = 0.5

        async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
            if data.id == "t0":
                await asyncio.sleep(1.5)
            await super().on_message(data, msg)

    listener = Slow(nats_client)
    await listener.listen()
    await publish(nats_client, 3)
    # A redelivery would arrive while t0 is handled and wait behind it, so "nothing in hand" sees it.
    await wait_until(lambda: len(listener.handled) >= 3 and not listener._in_hand())
    await eventually(lambda: consumer_is_settled(jetstream, listener.durable_name))
    await listener.close()
    assert listener.handled == [("t0", 1), ("t1", 1), ("t2", 1)]


@pytest.mark.parametrize("prefetch", [1, 3])
async def test_a_listener_holds_no_more_unacked_events_than_its_prefetch(
    nats_client: Client, jetstream: JetStreamContext, prefetch: int
) -> None:
    """The server never has more than prefetch events delivered and unacked, and the rest still come."""
    permits: asyncio.Queue[None] = asyncio.Queue()

    class Narrow(Recorder):
        async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
            await permits.get()
            await super().on_message(data, msg)

    Narrow.prefetch = prefetch
    listener = Narrow(nats_client)
    await publish(nats_client, 8)
    await listener.listen()
    await wait_until(lambda: len(listener._in_hand()) == prefetch)
    info = await listener.consumer_info()
    assert (info.num_ack_pending, info.num_pending, info.num_waiting) == (prefetch, 8 - prefetch, 0)
    for settled in range(1, 9):
        permits.put_nowait(None)
        await wait_until(lambda settled=settled: len(listener.handled) == settled)  # type: ignore[misc]
        info = await listener.consumer_info()
        assert info.num_ack_pending is not None
        assert info.num_ack_pending <= prefetch
    await eventually(lambda: consumer_is_settled(jetstream, listener.durable_name))
    await listener.close()
    assert listener.ids == [f"t{n}" for n in range(8)]


async def test_concurrency_runs_handlers_side_by_side(
    nats_client: Client, jetstream: JetStreamContext
) -> None:
    """With concurrency = 4, four handlers are in progress at once."""
    inside = 0
    release = asyncio.Event()

    class Parallel(Recorder):
        concurrency = 4

        async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
            nonlocal inside
            inside += 1
            await release.wait()
            await super().on_message(data, msg)

    listener = Parallel(nats_client)
    await listener.listen()
    await publish(nats_client, 8)
    await wait_until(lambda: inside == 4)
    release.set()
    await wait_until(lambda: len(listener.handled) == 8)
    await listener.close()
    assert sorted(listener.ids) == sorted(f"t{n}" for n in range(8))


async def test_close_hands_unstarted_events_to_another_replica(
    nats_client: Client, jetstream: JetStreamContext
) -> None:
    """Events fetched but not started when a replica closes are nak'ed and go to the other replica."""
    gate = asyncio.Event()

    class Blocked(Recorder):
        ack_wait = 30  # a redelivery by timeout would not come within the test's wait

        async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
            await gate.wait()
            await super().on_message(data, msg)

    class Free(Blocked):
        async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
            await Recorder.on_message(self, data, msg)

    stuck = Blocked(nats_client)
    await stuck.listen()
    await publish(nats_client, 5)
    await wait_until(lambda: len(stuck._in_hand()) == 5)
    closing = asyncio.create_task(stuck.close(timeout=WAIT))
    free = Free(nats_client)
    await free.listen()
    await wait_until(lambda: len(free.handled) == 4)
    gate.set()
    await closing
    await free.close()
    assert sorted(stuck.ids + free.ids) == [f"t{n}" for n in range(5)]


async def test_listening_without_a_stream_says_what_to_do(nats_client: Client) -> None:
    """listen() before ensure_stream() raises the server's not-found error with a note on the fix."""
    js = nats_client.jetstream()
    for stream in await js.streams_info():
        await js.delete_stream(stream.config.name or "")
    with pytest.raises(nats.js.errors.NotFoundError) as caught:
        await Recorder(nats_client).listen()
    assert "ensure_stream" in "".join(caught.value.__notes__)


def test_a_subject_that_disagrees_with_the_event_is_rejected() -> None:
    """A listener declaring another subject than its event's fails when the class is defined."""
    with pytest.raises(TypeError, match="declares subject"):

        class Confused(BaseListener[OrderCreatedEvent]):
            subject = "ticket:created"  # type: ignore[assignment]
            queue_group_name = "x"

            async def on_message(self, data: OrderCreatedEvent, msg: Msg) -> None:
                await msg.ack()


def test_a_listener_needs_a_queue_group(nats_client: Client) -> None:
    """No queue group, no durable consumer: refused when made."""

    class Nameless(BaseListener[OrderCreatedEvent]):
        async def on_message(self, data: OrderCreatedEvent, msg: Msg) -> None:
            await msg.ack()

    with pytest.raises(TypeError, match="queue_group_name"):
        Nameless(nats_client)


def test_defaults_are_the_originals(nats_client: Client) -> None:
    """ack_wait 5 s, deliver all available, explicit acks, a durable per queue group and subject."""
    config = Recorder(nats_client).consumer_config()
    assert (config.ack_wait, config.deliver_policy, config.ack_policy) == (5.0, "all", "explicit")
    assert config.durable_name == "recorder_ticket_created"
    assert config.filter_subject == "ticket:created"
    assert config.max_deliver == Recorder.max_deliver + 1


@pytest.mark.parametrize(
    "reply",
    [
        "$JS.ACK.TICKETING.recorder_ticket_created.3.41.40.1700000000000000000.7",
        "$JS.ACK.hub.ACCHASH.TICKETING.recorder_ticket_created.3.41.40.1700000000000000000.7.rand",
    ],
    ids=["v1", "v2 with domain"],
)
def test_the_delivery_count_is_read_from_either_ack_subject_form(reply: str) -> None:
    """The cheap delivery count agrees with nats-py's full metadata parse, in both ack subject forms."""
    msg = Msg(_client=None, subject="ticket:created", reply=reply)  # type: ignore[arg-type]
    assert delivery_count(msg) == msg.metadata.num_delivered == 3
