"""The outbox when NATS is down: record and event are kept, and the event goes out once NATS is back."""

from __future__ import annotations

from pathlib import Path

import nats
from sqlalchemy import func, select

import tickets.app
from conftest import eventually
from services import published, running, settings, signed_in
from ticketing_common.testing import NatsServer


async def test_an_event_committed_while_nats_is_down_is_published_when_it_is_back(
    tmp_path: Path,
) -> None:
    """201 while the server is down (the ticket is kept); ticket:created reaches JetStream once it is back."""
    with NatsServer() as server:
        app = tickets.app.create_app(settings("tickets", server, tmp_path))
        async with running(app) as api:
            server.stop()
            response = await api.post(
                "/api/tickets", json={"title": "gig", "price": 5}, headers=signed_in("a")
            )
            assert response.status_code == 201, response.text
            outbox = api.service.outbox.table
            async with api.service.database.sessions() as session:
                assert await session.scalar(select(func.count()).select_from(outbox)) == 1
            server.start()
            client = await nats.connect(server.url)
            try:
                js = client.jetstream()

                async def delivered() -> bool:
                    return [event["id"] for event in await published(js, "ticket:created")] == [
                        response.json()["id"]
                    ]

                await eventually(delivered, timeout=30)
            finally:
                await client.close()

            # The relay deletes the row after the PubAck, a moment after the event is in the stream.
            async def outbox_emptied() -> bool:
                async with api.service.database.sessions() as session:
                    return await session.scalar(select(func.count()).select_from(outbox)) == 0

            await eventually(outbox_emptied)
