"""The tickets service as ``benchmarks/service.py`` serves it: its own app, plus two things to measure with.

- ``POST /bench/tickets``: the same as ``POST /api/tickets`` but with no event (no outbox row, no flush),
  in the same process, on the same database: the baseline of the event's cost.
- ``GET /bench/flush``: how long the route's ``service.flush()`` (relay pass, PubAck) took, each time.

Run by service.py as ``python benchmarks/service_app.py`` with the service's environment and ``PORT``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "examples" / "services"))

from fastapi import FastAPI

from ticketing_common import opentelemetry as event_tracing
from ticketing_common.fastapi import RequiredUser
from ticketing_common.service import Service, ServiceDep, ServiceSettings
from ticketing_common.uvicorn import serve
from tickets.app import create_app
from tickets.models import Ticket, TicketIn, TicketOut

FLUSHES: list[float] = []


def bench_app(settings: ServiceSettings) -> FastAPI:
    """The tickets app with the two bench routes, and its flushes timed."""
    app = create_app(settings)

    @app.post("/bench/tickets", status_code=201)
    async def create_without_event(body: TicketIn, user: RequiredUser, service: ServiceDep) -> TicketOut:
        async with service.transaction() as session:
            ticket = Ticket(title=body.title, price=body.price, user_id=user.id)
            session.add(ticket)
            await session.flush()
        return TicketOut.model_validate(ticket)

    @app.get("/bench/flush")
    async def flushes() -> list[float]:
        return FLUSHES

    original = Service.flush

    async def timed_flush(self: Service) -> bool:
        started = time.perf_counter()
        try:
            return await original(self)
        finally:
            FLUSHES.append(time.perf_counter() - started)

    Service.flush = timed_flush  # type: ignore[method-assign]
    return app


if __name__ == "__main__":
    event_tracing.disable()  # the event's own cost, no telemetry
    settings = ServiceSettings.from_env("tickets", secure_cookies=False)
    raise SystemExit(serve(bench_app(settings), host=settings.host, port=settings.port, log_level="warning"))
