"""A stand-in for Stripe's HTTP API (POST /v1/charges only), served on a free loopback port.

The one part of the system that cannot run here: the real ``stripe`` library talks to it over HTTP, so
its requests (form fields, Idempotency-Key, API key) are what the tests check.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

DECLINED_TOKEN = "tok_chargeDeclined"


@dataclass
class FakeStripe:
    """What the fake Stripe saw: every charge request, and the charges it made by idempotency key."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def create_charge(self, request: Request) -> JSONResponse:
        """POST /v1/charges: a charge per idempotency key; the declined test token gets a 402 card error."""
        # Stripe sends application/x-www-form-urlencoded; parsed here so the fake needs no multipart library.
        form = dict(parse_qsl((await request.body()).decode()))
        key = request.headers.get("idempotency-key", "")
        self.requests.append({"form": form, "idempotency_key": key, "auth": request.headers["authorization"]})
        if form.get("source") == DECLINED_TOKEN:
            error = {"type": "card_error", "code": "card_declined", "message": "Your card was declined."}
            return JSONResponse({"error": error}, status_code=402)
        if key not in self.charges:
            self.charges[key] = {
                "id": f"ch_{uuid.uuid4().hex[:24]}",
                "object": "charge",
                "amount": int(str(form["amount"])),
                "currency": form["currency"],
                "status": "succeeded",
                "paid": True,
            }
        return JSONResponse(self.charges[key])


@asynccontextmanager
async def fake_stripe() -> AsyncIterator[FakeStripe]:
    """Serve a FakeStripe until the block ends."""
    stripe = FakeStripe()
    app = Starlette(routes=[Route("/v1/charges", stripe.create_charge, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    stripe.url = f"http://127.0.0.1:{port}"
    try:
        yield stripe
    finally:
        server.should_exit = True
        await task
