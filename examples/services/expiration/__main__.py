"""Run the expiration service: ``python -m expiration`` from examples/services, with ``NATS_URL`` set.

SIGINT or SIGTERM stops it at any moment, also while it waits for NATS at start-up: the listeners stop
and the connection drains.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import Field

from ticketing_common import run_until_stopped
from ticketing_common.service import EnvironmentSettings, read_environment

from .service import expiration_service


class _ExpirationEnvironment(EnvironmentSettings):
    nats_url: str = Field(validation_alias="NATS_URL")
    stream_replicas: int = Field(default=1, ge=1, le=5, validation_alias="NATS_STREAM_REPLICAS")


async def main() -> None:
    """Serve until cancelled (by a signal, through ``run_until_stopped``)."""
    env = read_environment(_ExpirationEnvironment, None, who="the expiration service")
    async with expiration_service(env.nats_url, stream_replicas=env.stream_replicas):
        await asyncio.Future()  # until cancelled


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise SystemExit(run_until_stopped(main))
