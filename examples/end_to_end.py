"""The end-to-end demo: the five reference services on one machine, and a user's story through HTTP.

An embedded nats-server (JetStream, temporary store), auth, tickets, orders, expiration and payments as
processes on free ports with SQLite files in a temporary folder, then: sign up, sell a ticket, a second
user orders and pays it (fake gateway), a third order is left to expire. Every event is printed as it
flows, with the service that produced it and those that consume it. Exits 0 only if every step was
observed; stops everything it started, also on failure or Ctrl-C.

Run: ``nox -s demo``; ``nox -s demo -- --keep`` leaves the services running for curl or a browser.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from ticketing_common import EVENTS_STREAM
from ticketing_common.testing import NatsServer

SERVICES_DIR = Path(__file__).parent / "services"
HTTP_SERVICES = ("auth", "tickets", "orders", "payments")
PRODUCERS = {"ticket": "tickets", "order": "orders", "expiration": "expiration", "payment": "payments"}
TIMEOUT = 30.0
STARTED = time.perf_counter()


def say(text: str) -> None:
    """Print a line with the time since the demo started."""
    print(f"[{time.perf_counter() - STARTED:7.3f}s] {text}", flush=True)


def free_port() -> int:
    """A port nothing listens on now (the service binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def services(nats_url: str, folder: Path, window: float) -> Iterator[dict[str, str]]:
    """Start the five services; yield the HTTP ones' base URLs; stop them all (SIGTERM, then SIGKILL)."""
    shared = {
        **os.environ,
        "JWT_KEY": secrets.token_urlsafe(32),
        "NATS_URL": nats_url,
        "SECURE_COOKIES": "false",  # plain HTTP on localhost: the browser must send the cookie back
        "EXPIRATION_WINDOW_SECONDS": str(window),
        "PYTHONPATH": os.pathsep.join([str(SERVICES_DIR), os.environ.get("PYTHONPATH", "")]),
    }
    shared.pop("STRIPE_KEY", None)  # the demo pays with the fake gateway, whatever the shell has
    processes: dict[str, subprocess.Popen[bytes]] = {}
    urls: dict[str, str] = {}
    try:
        for name in (*HTTP_SERVICES, "expiration"):
            env = {**shared, "DATABASE_URL": f"sqlite+aiosqlite:///{folder / name}.db"}
            if name in HTTP_SERVICES:
                env["PORT"] = str(free_port())
                urls[name] = f"http://127.0.0.1:{env['PORT']}"
            with (folder / f"{name}.log").open("wb") as log:
                processes[name] = subprocess.Popen(  # noqa: S603 - our interpreter and our modules
                    [sys.executable, "-m", name], cwd=SERVICES_DIR, env=env, stdout=log, stderr=log
                )
        yield urls
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for name, process in processes.items():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop in 10 s: killed")
                process.kill()


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
        """Note who consumes each subject, then follow the stream from its first message.

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

    async def _on_message(self, msg: Msg) -> None:
        data = json.loads(msg.data)
        headers = msg.headers or {}
        if msg.subject.startswith("schedule."):
            target, when = headers.get("Nats-Schedule-Target"), headers.get("Nats-Schedule")
            say(f"  ~ expiration schedules {target} {when}")
            return
        self.seen.append((msg.subject, data))
        producer = PRODUCERS[msg.subject.split(":")[0]]
        consumers = ", ".join(sorted(self.consumers.get(msg.subject, []))) or "nobody"
        say(f"  > {msg.subject:<20} {producer:>10} -> {consumers:<30} {json.dumps(data)}")

    def count(self, subject: str) -> int:
        """How many events of ``subject`` were seen."""
        return sum(1 for seen, _ in self.seen if seen == subject)


async def ready(urls: dict[str, str], js: JetStreamContext) -> None:
    """Wait until each HTTP service answers and the expiration service has made its consumers."""
    async with httpx.AsyncClient() as http:
        for name, url in urls.items():

            async def answers(url: str = url) -> bool:
                try:
                    return (await http.get(f"{url}/health-check-unknown-route")).status_code == 404
                except httpx.TransportError:
                    return False

            await until(f"the {name} service answering at {url}", answers)

    async def expiration_listens() -> bool:
        names = {consumer.config.durable_name for consumer in await js.consumers_info(EVENTS_STREAM)}
        wanted = {
            f"expiration-service_{subject}"
            for subject in ("order_created", "order_cancelled", "payment_created")
        }
        return wanted <= names

    await until("the expiration service listening", expiration_listens)
    say("all five services are up: " + ", ".join(f"{name} {url}" for name, url in urls.items()))


async def story(urls: dict[str, str], tap: EventTap, js: JetStreamContext) -> None:
    """Sign up, sell, order, pay, and let one order expire; each step is checked, not assumed."""
    seller, buyer, late = (httpx.AsyncClient(timeout=10) for _ in range(3))
    async with seller, buyer, late:

        async def call(client: httpx.AsyncClient, method: str, url: str, expected: int, **kw: Any) -> Any:  # noqa: ANN401 - JSON
            response = await client.request(method, url, **kw)
            if response.status_code != expected:
                raise RuntimeError(
                    f"{method} {url}: {response.status_code} {response.text}, wanted {expected}"
                )
            return response.json() if response.content else None

        async def until_status(client: httpx.AsyncClient, url: str, body: dict[str, Any], status: int) -> Any:  # noqa: ANN401 - JSON
            # The replica this route needs arrives by event: 404 until then.
            answer: dict[str, Any] = {}

            async def accepted() -> bool:
                response = await client.post(url, json=body)
                if response.status_code == status:
                    answer.update(response.json())
                    return True
                if response.status_code != 404:
                    raise RuntimeError(f"POST {url}: {response.status_code} {response.text}")
                return False

            await until(f"POST {url} {body} accepted", accepted)
            return answer

        auth, tickets, orders, payments = (urls[name] for name in HTTP_SERVICES)
        for client, email in (
            (seller, "seller@test.com"),
            (buyer, "buyer@test.com"),
            (late, "late@test.com"),
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
        order = await until_status(buyer, f"{orders}/api/orders", {"ticketId": concert["id"]}, 201)
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
            "the unpaid order cancelled", lambda: _order_status(late, orders, left["id"], "cancelled")
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

    expected = {
        "ticket:created": 2,
        "order:created": 2,
        "payment:created": 1,
        "expiration:complete": 1,  # the unpaid order's: payment:created withdrew the paid order's
        "order:cancelled": 1,
    }
    for subject, count in expected.items():
        await until(f"{count} {subject} event(s)", partial(_at_least, tap, subject, count))

    async def all_acked() -> bool:
        infos = await js.consumers_info(EVENTS_STREAM)
        return all(info.num_pending == 0 and info.num_ack_pending == 0 for info in infos)

    await until("every consumer has acked every event", all_acked)
    say(f"every one of {len(tap.seen)} events was consumed and acked by every service that listens to it")


async def _at_least(tap: EventTap, subject: str, count: int) -> bool:
    return tap.count(subject) >= count


async def _reserved(client: httpx.AsyncClient, tickets: str, ticket_id: str, order_id: str | None) -> bool:
    shown = (await client.get(f"{tickets}/api/tickets/{ticket_id}")).json()
    return bool(shown.get("orderId") == order_id)


async def _order_status(client: httpx.AsyncClient, orders: str, order_id: str, status: str) -> bool:
    return bool((await client.get(f"{orders}/api/orders/{order_id}")).json()["status"] == status)


async def main(*, keep: bool, window: float) -> int:
    """Run the demo; return the exit status."""
    with tempfile.TemporaryDirectory(prefix="ticketing-demo-") as tmp, NatsServer() as server:
        folder = Path(tmp)
        say(f"nats-server {server.version} with JetStream at {server.url}; databases and logs in {folder}")
        client = await nats.connect(server.url, name="demo")
        try:
            with services(server.url, folder, window) as urls:
                try:
                    js = client.jetstream()
                    await ready(urls, js)
                    tap = EventTap(js)
                    await tap.start()
                    await story(urls, tap, js)
                    say("OK: the whole story was observed")
                    if keep:
                        await _keep(urls, server.url)
                except (RuntimeError, AssertionError) as failure:
                    say(f"FAILED: {failure}")
                    _print_logs(folder)
                    return 1
        finally:
            await client.close()
    return 0


def _print_logs(folder: Path) -> None:
    for log in sorted(folder.glob("*.log")):
        print(f"--- {log.name} (last lines)\n" + "\n".join(log.read_text().splitlines()[-15:]))


async def _keep(urls: dict[str, str], nats_url: str) -> None:
    say("--keep: the services keep running until Ctrl-C")
    for name, url in urls.items():
        print(f"  {name:<9} {url}")
    print(f"  nats      {nats_url}")
    body = '{"email":"me@x.com","password":"pass"}'
    print(
        f"  e.g. curl -c jar -H 'content-type: application/json' -d '{body}' {urls['auth']}/api/users/signup"
    )
    await asyncio.Event().wait()


def _interrupt(_signal: int, _frame: object) -> None:
    # SIGTERM stops the demo as Ctrl-C does: the finally blocks stop every service and the server.
    raise KeyboardInterrupt


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the services running until Ctrl-C")
    parser.add_argument("--window", type=float, default=3.0, help="seconds an order waits for its payment")
    args = parser.parse_args()
    for stop in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a shell may start us with it ignored
        signal.signal(stop, _interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main(keep=args.keep, window=args.window)))
    print("interrupted: everything stopped", flush=True)
    sys.exit(130)
