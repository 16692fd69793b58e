"""A stand-in for Stripe's HTTP API (POST /v1/charges and /v1/refunds), served on a free loopback port.

The one part of the system that cannot run here: the real ``stripe`` library talks to it over HTTP, so
its requests (form fields, Idempotency-Key, API key) are what the tests check, and what it recorded is
the money that moved.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

DECLINED_TOKEN = "tok_chargeDeclined"


def _card_error(code: str, message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": {"type": "card_error", "code": code, "message": message}}, status)


@dataclass
class FakeStripe:
    """What the fake Stripe saw: every request, and the charges and refunds it made by idempotency key."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def _form(self, request: Request, path: str) -> tuple[dict[str, str], str]:
        # Stripe sends application/x-www-form-urlencoded; parsed here so the fake needs no multipart library.
        form = dict(parse_qsl((await request.body()).decode()))
        key = request.headers.get("idempotency-key", "")
        self.requests.append(
            {"path": path, "form": form, "idempotency_key": key, "auth": request.headers["authorization"]}
        )
        return form, key

    async def create_charge(self, request: Request) -> JSONResponse:
        """POST /v1/charges: a charge per idempotency key; the declined test token gets a 402 card error."""
        form, key = await self._form(request, "/v1/charges")
        if form.get("source") == DECLINED_TOKEN:
            return _card_error("card_declined", "Your card was declined.", 402)
        if key not in self.charges:
            self.charges[key] = {
                "id": f"ch_{uuid.uuid4().hex[:24]}",
                "object": "charge",
                "amount": int(form["amount"]),
                "amount_refunded": 0,
                "currency": form["currency"],
                "status": "succeeded",
                "paid": True,
            }
        return JSONResponse(self.charges[key])

    async def create_refund(self, request: Request) -> JSONResponse:
        """POST /v1/refunds: the whole charge back, once per key; a second key for one charge is refused."""
        form, key = await self._form(request, "/v1/refunds")
        if key in self.refunds:
            return JSONResponse(self.refunds[key])
        charge = next((c for c in self.charges.values() if c["id"] == form.get("charge")), None)
        if charge is None:
            error = {"type": "invalid_request_error", "code": "resource_missing", "message": "No such charge"}
            return JSONResponse({"error": error}, 404)
        if charge["amount_refunded"]:
            error = {
                "type": "invalid_request_error",
                "code": "charge_already_refunded",
                "message": f"Charge {charge['id']} has already been refunded.",
            }
            return JSONResponse({"error": error}, 400)
        charge["amount_refunded"] = charge["amount"]
        self.refunds[key] = {
            "id": f"re_{uuid.uuid4().hex[:24]}",
            "object": "refund",
            "amount": charge["amount"],
            "charge": charge["id"],
            "currency": charge["currency"],
            "status": "succeeded",
        }
        return JSONResponse(self.refunds[key])

    def charged_cents(self, order_id: str) -> int:
        """Net money taken for an order: its charge (key ``ticketing-order-<id>``) less what was refunded."""
        charge = self.charges.get(f"ticketing-order-{order_id}")
        return 0 if charge is None else int(charge["amount"]) - int(charge["amount_refunded"])


def _server(stripe: FakeStripe) -> uvicorn.Server:
    routes = [
        Route("/v1/charges", stripe.create_charge, methods=["POST"]),
        Route("/v1/refunds", stripe.create_refund, methods=["POST"]),
    ]
    config = uvicorn.Config(
        Starlette(routes=routes), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    return uvicorn.Server(config)


def _url(server: uvicorn.Server) -> str:
    return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


@asynccontextmanager
async def fake_stripe() -> AsyncIterator[FakeStripe]:
    """Serve a FakeStripe on this event loop until the block ends."""
    stripe = FakeStripe()
    server = _server(stripe)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.01)
    stripe.url = _url(server)
    try:
        yield stripe
    finally:
        server.should_exit = True
        await task


@contextmanager
def fake_stripe_in_a_thread() -> Iterator[FakeStripe]:
    """Serve a FakeStripe from a thread of its own, for fixtures that outlive one test's event loop."""
    stripe = FakeStripe()
    server = _server(stripe)
    thread = threading.Thread(target=server.run, name="fake-stripe", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:  # uvicorn offers no callback for "listening", only this flag
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake Stripe server did not start")
        time.sleep(0.01)
    stripe.url = _url(server)
    try:
        yield stripe
    finally:
        server.should_exit = True
        thread.join(10)
