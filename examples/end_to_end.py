"""The end-to-end demo: the five reference services on one machine, and a user's story through HTTP.

An embedded nats-server (JetStream, temporary store), auth, tickets, orders, expiration and payments as
processes on free ports with SQLite files in a temporary folder, then: sign up, sell a ticket, a second
user orders and pays it (fake gateway), a third order is left to expire, and a fourth is cancelled and
paid at the same moment (a race: the demo says which side won and how the services settled it). Every
event is printed as it flows, with the service that produced it and those that consume it. Exits 0
only if every step was observed; stops everything it started, also on failure or Ctrl-C.

Run: ``nox -s demo``; ``nox -s demo -- --keep`` leaves the services running for curl or a browser;
``nox -s demo -- --trace`` has the services export their spans (OTLP) and prints the buyer's order's trace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from ticketing_common import DEAD_LETTERS_STREAM, EVENTS_STREAM
from ticketing_common._deadletter import QUEUE_GROUP_HEADER, REASON_HEADER, SUBJECT_HEADER
from ticketing_common.testing import NatsServer

sys.path.insert(0, str(Path(__file__).parent / "services"))
import processes
import traces

HTTP_SERVICES = processes.HTTP_SERVICES
PRODUCERS = {"ticket": "tickets", "order": "orders", "expiration": "expiration", "payment": "payments"}
TIMEOUT = 30.0
MIN_WINDOW = 2.0
"""The shortest --window: the buyer orders, then pays, and the order must still be open by then."""
STARTED = time.perf_counter()


def say(text: str) -> None:
    """Print a line with the time since the demo started."""
    print(f"[{time.perf_counter() - STARTED:7.3f}s] {text}", flush=True)


async def until(what: str, check: Callable[[], Awaitable[bool]], timeout: float = TIMEOUT) -> None:
    """Wait for ``check()`` to hold, or fail naming ``what``."""
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise RuntimeError(f"not observed within {timeout:g} s: {what}") from None


class EventTap:
    """Prints every message of the events stream as it is stored, with who produces and who consumes it."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.consumers: dict[str, list[str]] = {}

    async def start(self) -> None:
        """Note who consumes each subject, then follow the events and dead-letter streams from the start.

        Every service has made its consumers by now (``ready``), so they are read once, not per event.
        An ordered consumer keeps no state on the server.
        """
        for consumer in await self.js.consumers_info(EVENTS_STREAM):
            subject, durable = consumer.config.filter_subject, consumer.config.durable_name
            if subject and durable:
                # Durable names are <queue group>_<subject>, e.g. orders-service_ticket_created.
                self.consumers.setdefault(subject, []).append(
                    durable.split("_", 1)[0].removesuffix("-service")
                )
        await self.js.subscribe(">", stream=EVENTS_STREAM, cb=self._on_message, ordered_consumer=True)
        await self.js.subscribe(
            ">", stream=DEAD_LETTERS_STREAM, cb=self._on_dead_letter, ordered_consumer=True
        )

    async def _on_message(self, msg: Msg) -> None:
        headers = msg.headers or {}
        if msg.subject.startswith("schedule."):
            target, when = headers.get("Nats-Schedule-Target"), headers.get("Nats-Schedule")
            say(f"  ~ expiration schedules {target} {when}")
            return
        producer = PRODUCERS.get(msg.subject.split(":")[0], "?")
        consumers = ", ".join(sorted(self.consumers.get(msg.subject, []))) or "nobody"
        try:
            data = json.loads(msg.data)
        except ValueError:  # published by hand, or by a broken producer: shown, not a crash
            say(f"  > {msg.subject:<20} {producer:>10} -> {consumers:<30} not JSON: {msg.data[:200]!r}")
            return
        self.seen.append((msg.subject, data))
        say(f"  > {msg.subject:<20} {producer:>10} -> {consumers:<30} {json.dumps(data)}")

    async def _on_dead_letter(self, msg: Msg) -> None:
        headers = msg.headers or {}
        say(
            f"  ! dead letter: {headers.get(SUBJECT_HEADER, msg.subject)} given up by "
            f"{headers.get(QUEUE_GROUP_HEADER, '?')}: {headers.get(REASON_HEADER, '?')}"
        )

    def count(self, subject: str) -> int:
        """How many events of ``subject`` were seen."""
        return sum(1 for seen, _ in self.seen if seen == subject)


async def ready(urls: dict[str, str], js: JetStreamContext) -> None:
    """Wait until each HTTP service answers and the expiration service has made its consumers."""
    await asyncio.to_thread(processes.wait_until_answering, urls, TIMEOUT)

    async def expiration_listens() -> bool:
        names = {consumer.config.durable_name for consumer in await js.consumers_info(EVENTS_STREAM)}
        wanted = {
            f"expiration-service_{subject}"
            for subject in ("order_created", "order_cancelled", "payment_created")
        }
        return wanted <= names

    await until("the expiration service listening", expiration_listens)
    say("all five services are up: " + ", ".join(f"{name} {url}" for name, url in urls.items()))


async def call(client: httpx.AsyncClient, method: str, url: str, expected: int, **kw: Any) -> Any:  # noqa: ANN401 - JSON
    """Send a request; fail unless it answers ``expected``; return its JSON."""
    response = await client.request(method, url, **kw)
    if response.status_code != expected:
        raise RuntimeError(f"{method} {url}: {response.status_code} {response.text}, wanted {expected}")
    return response.json() if response.content else None


async def until_status(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    status: int,
    headers: Callable[[], Mapping[str, str]] = dict,
) -> Any:  # noqa: ANN401 - JSON
    """POST until it answers ``status``: the replica this route needs arrives by event, 404 until then."""
    answer: dict[str, Any] = {}

    async def accepted() -> bool:
        response = await client.post(url, json=body, headers=headers())
        if response.status_code == status:
            answer.update(response.json())
            return True
        if response.status_code != 404:
            raise RuntimeError(f"POST {url}: {response.status_code} {response.text}")
        return False

    await until(f"POST {url} {body} accepted", accepted)
    return answer


async def story(
    urls: dict[str, str], tap: EventTap, js: JetStreamContext, window: float, trace_id: str | None = None
) -> None:
    """Sign up, sell, order, pay, let one order expire, race another; each step is checked, not assumed.

    With ``trace_id``, the buyer's order is sent in that trace (a ``traceparent`` header).
    """
    seller, buyer, late, racer = (httpx.AsyncClient(timeout=10) for _ in range(4))
    async with seller, buyer, late, racer:
        auth, tickets, orders, payments = (urls[name] for name in HTTP_SERVICES)
        for client, email in (
            (seller, "seller@test.com"),
            (buyer, "buyer@test.com"),
            (late, "late@test.com"),
            (racer, "racer@test.com"),
        ):
            user = await call(
                client, "POST", f"{auth}/api/users/signup", 201, json={"email": email, "password": "secret1"}
            )
            say(f"signed up {email} (id {user['id']}); the session cookie works everywhere")
        me = await call(buyer, "GET", f"{auth}/api/users/currentuser", 200)
        assert me["currentUser"]["email"] == "buyer@test.com"  # noqa: S101 - the demo's own check

        concert = await call(
            seller, "POST", f"{tickets}/api/tickets", 201, json={"title": "Concert", "price": 20}
        )
        say(f"seller put ticket {concert['id']} on sale for $20")
        in_trace = (lambda: traces.traceparent(trace_id)) if trace_id else dict
        order = await until_status(
            buyer, f"{orders}/api/orders", {"ticketId": concert["id"]}, 201, headers=in_trace
        )
        say(f"buyer ordered it: order {order['id']}, expires at {order['expiresAt']}")
        await until(
            "the ticket shown reserved by the order",
            lambda: _reserved(seller, tickets, concert["id"], order["id"]),
        )
        say("tickets shows the ticket reserved by the order")
        payment = await until_status(
            buyer, f"{payments}/api/payments", {"token": "tok_visa", "orderId": order["id"]}, 201
        )
        say(f"buyer paid: payment {payment['id']}")
        await until("the order complete", lambda: _order_status(buyer, orders, order["id"], "complete"))
        say("orders shows the order complete")

        festival = await call(
            seller, "POST", f"{tickets}/api/tickets", 201, json={"title": "Festival", "price": 50}
        )
        left = await until_status(late, f"{orders}/api/orders", {"ticketId": festival["id"]}, 201)
        say(f"late user ordered ticket {festival['id']} and does not pay (order {left['id']})")
        await until(
            "the unpaid order cancelled",
            lambda: _order_status(late, orders, left["id"], "cancelled"),
            timeout=window + TIMEOUT,  # it expires after the window, however long
        )
        say("the unpaid order expired: orders shows it cancelled")
        await until("the ticket released", lambda: _reserved(seller, tickets, festival["id"], None))
        say("tickets shows the festival ticket free again")
        # The paid order was due first: had its expiration not been withdrawn, it would have fired by now.
        fired = any(
            subject == "expiration:complete" and data.get("orderId") == order["id"]
            for subject, data in tap.seen
        )
        say(
            "the paid order's expiration fired anyway (payment:created came late); orders ignored it"
            if fired
            else "the paid order's expiration never fired: payment:created withdrew it"
        )
        await until(
            "the paid order still complete", lambda: _order_status(buyer, orders, order["id"], "complete")
        )
        raced = await cancel_while_paying(seller, racer, urls, js)

    expected = Counter(
        {
            "ticket:created": 2,
            "order:created": 2,
            "payment:created": 1,
            "expiration:complete": 1,  # the unpaid order's: payment:created withdrew the paid order's
            "order:cancelled": 1,
        }
    )
    for subject, count in (expected + raced).items():
        await until(f"{count} {subject} event(s)", partial(_at_least, tap, subject, count))

    async def all_acked() -> bool:
        infos = await js.consumers_info(EVENTS_STREAM)
        return all(info.num_pending == 0 and info.num_ack_pending == 0 for info in infos)

    await until("every consumer has acked every event", all_acked)
    say(f"every one of {len(tap.seen)} events was consumed and acked by every service that listens to it")


async def cancel_while_paying(
    seller: httpx.AsyncClient, racer: httpx.AsyncClient, urls: dict[str, str], js: JetStreamContext
) -> Counter[str]:
    """A buyer cancels and pays one order at the same moment; say who won and how it settled.

    Returns the events the race adds, by subject. Which side wins depends on timing: orders decides
    (the first of the cancellation and payment:created it applies), and the others follow it.
    """
    tickets, orders, payments = urls["tickets"], urls["orders"], urls["payments"]
    opera = await call(seller, "POST", f"{tickets}/api/tickets", 201, json={"title": "Opera", "price": 35})
    order = await until_status(racer, f"{orders}/api/orders", {"ticketId": opera["id"]}, 201)
    created = await js.get_last_msg(EVENTS_STREAM, "order:created")

    async def payments_knows_it() -> bool:
        info = await js.consumer_info(EVENTS_STREAM, "payments-service_order_created")
        return (info.ack_floor.stream_seq or 0) >= (created.seq or 0)

    await until("payments knowing the opera order", payments_knows_it)
    say(f"racer ordered the $35 opera ticket (order {order['id']}), then cancels and pays it at once:")
    cancel, pay = await asyncio.gather(
        racer.delete(f"{orders}/api/orders/{order['id']}"),
        racer.post(f"{payments}/api/payments", json={"token": "tok_visa", "orderId": order["id"]}),
    )
    say(
        f"  DELETE /api/orders/... answered {cancel.status_code}; "
        f"POST /api/payments {pay.status_code} {pay.text}"
    )

    async def final() -> bool:
        shown = (await racer.get(f"{orders}/api/orders/{order['id']}")).json()
        return bool(shown["status"] in {"complete", "cancelled"})

    await until("the raced order complete or cancelled", final)
    race = Counter({"ticket:created": 1, "order:created": 1})
    # A charge is announced (payment:created) before the payment route answers, whichever way it answers.
    charged = await _last_is_about(js, "payment:created", order["id"])
    if await _order_status(racer, orders, order["id"], "complete"):
        await until(
            "the opera ticket still sold", lambda: _reserved(seller, tickets, opera["id"], order["id"])
        )
        say("  settled: orders applied the payment first, so the cancellation was refused; the order is")
        say("  complete, the ticket sold once, the buyer charged $35 once")
        return race + Counter({"payment:created": 1})
    await until("the opera ticket free again", lambda: _reserved(seller, tickets, opera["id"], None))
    if not charged:
        say("  settled: orders cancelled the order and payments knew it before charging: nothing was")
        say("  charged, and the ticket is free again")
        return race + Counter({"order:cancelled": 1})
    await until("the charge refunded", lambda: _last_is_about(js, "payment:refunded", order["id"]))
    say("  settled: orders cancelled the order first; payments had charged it before hearing so, and")
    say("  refunded the charge (payment:refunded): the buyer paid nothing, the ticket is free again")
    return race + Counter({"order:cancelled": 1, "payment:created": 1, "payment:refunded": 1})


async def _last_is_about(js: JetStreamContext, subject: str, order_id: str) -> bool:
    try:
        last = await js.get_last_msg(EVENTS_STREAM, subject)
    except nats.js.errors.NotFoundError:
        return False
    return bool(json.loads(last.data or b"").get("orderId") == order_id)


async def _at_least(tap: EventTap, subject: str, count: int) -> bool:
    return tap.count(subject) >= count


async def _reserved(client: httpx.AsyncClient, tickets: str, ticket_id: str, order_id: str | None) -> bool:
    shown = (await client.get(f"{tickets}/api/tickets/{ticket_id}")).json()
    return bool(shown.get("orderId") == order_id)


async def _order_status(client: httpx.AsyncClient, orders: str, order_id: str, status: str) -> bool:
    return bool((await client.get(f"{orders}/api/orders/{order_id}")).json()["status"] == status)


async def main(*, keep: bool, window: float, trace: bool = False) -> int:
    """Run the demo; return the exit status."""
    # The databases go with the run; the services' logs stay, to read after it (named at the end).
    logs = Path(tempfile.mkdtemp(prefix="ticketing-demo-logs-"))
    try:
        if not trace:
            return await _run(keep=keep, window=window, logs=logs)
        with traces.collecting() as (collector, otel_env):
            return await _run(keep=keep, window=window, logs=logs, tracing=(collector, otel_env))
    finally:
        say(f"the services' logs are kept in {logs}")


async def _run(
    *,
    keep: bool,
    window: float,
    logs: Path,
    tracing: tuple[traces.Collector, Mapping[str, str]] | None = None,
) -> int:
    collector, otel_env = tracing or (None, {})
    trace_id = traces.new_trace_id() if collector is not None else None
    with tempfile.TemporaryDirectory(prefix="ticketing-demo-") as tmp, NatsServer() as server:
        folder = Path(tmp)
        say(f"nats-server {server.version} with JetStream at {server.url}; databases in {folder}")
        client = await nats.connect(server.url, name="demo")
        try:
            with processes.running(
                processes.the_five(window),
                nats_url=server.url,
                jwt_key=secrets.token_urlsafe(32),
                database_url=lambda name: f"sqlite+aiosqlite:///{folder / name}.db",
                logs=logs,
                env=otel_env,
            ) as urls:
                try:
                    js = client.jetstream()
                    await ready(urls, js)
                    tap = EventTap(js)
                    await tap.start()
                    await story(urls, tap, js, window, trace_id)
                    if collector is not None and trace_id is not None:
                        await show_trace(collector, trace_id)
                    say("OK: the whole story was observed")
                    if keep:
                        await _keep(urls, server.url)
                except (RuntimeError, AssertionError) as failure:
                    say(f"FAILED: {failure}")
                    print(processes.last_lines(logs))
                    return 1
        finally:
            await client.close()
    return 0


TRACED = {
    ("orders", "send order:created"),
    ("tickets", "process order:created"),
    ("payments", "process order:created"),
    ("expiration", "process order:created"),
    ("tickets", "send ticket:updated"),
    ("orders", "process ticket:updated"),
}
"""What the trace of the buyer's order must hold: the event, each service's handling, the reply."""


async def show_trace(collector: traces.Collector, trace_id: str) -> None:
    """Wait until the services have exported the buyer's order's trace, then print it as a tree."""

    async def complete() -> bool:
        return {(span.service, span.name) for span in collector.trace(trace_id)} >= TRACED

    await until("the buyer's order traced through every service", complete)
    say(f"the trace of the buyer's order ({trace_id}), as the services exported it:")
    print(traces.tree(collector.trace(trace_id)))


async def _keep(urls: dict[str, str], nats_url: str) -> None:
    """Print where the services are and wait for Ctrl-C (or SIGTERM): the normal end of a kept demo."""
    say("--keep: the services keep running until Ctrl-C")
    for name, url in urls.items():
        print(f"  {name:<9} {url}")
    print(f"  nats      {nats_url}")
    body = '{"email":"me@x.com","password":"pass"}'
    print(
        f"  e.g. curl -c jar -H 'content-type: application/json' -d '{body}' {urls['auth']}/api/users/signup"
    )
    print("  events published by hand (nats pub, or a service of yours) are shown here as they come")
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for stop in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(stop, stopped.set)
    try:
        await stopped.wait()
    finally:
        for stop in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(stop)
    print(flush=True)  # after the terminal's ^C
    say("Ctrl-C: stopping the services and nats-server")


def _interrupt(_signal: int, _frame: object) -> None:
    # SIGTERM stops the demo as Ctrl-C does: the finally blocks stop every service and the server.
    raise KeyboardInterrupt


def _window(text: str) -> float:
    seconds = float(text)
    if seconds < MIN_WINDOW:
        raise argparse.ArgumentTypeError(f"at least {MIN_WINDOW:g} s: the buyer must have time to pay")
    return seconds


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the services running until Ctrl-C")
    parser.add_argument(
        "--trace", action="store_true", help="print the trace of the buyer's order, from every service"
    )
    parser.add_argument(
        "--window",
        type=_window,
        default=3.0,
        help="seconds an order waits for its payment (the demo waits that long for one to expire)",
    )
    args = parser.parse_args()
    for stop in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a shell may start us with it ignored
        signal.signal(stop, _interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main(keep=args.keep, window=args.window, trace=args.trace)))
    print("interrupted before the story ended: everything stopped", flush=True)
    sys.exit(130)
