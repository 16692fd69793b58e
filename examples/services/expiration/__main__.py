"""Run the expiration service: ``python -m expiration`` from examples/services, with ``NATS_URL`` set.

It stops (drains) on SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import Field

from ticketing_common import NatsWrapper
from ticketing_common.service import EnvironmentSettings, read_environment

from .service import expiration_service


class _ExpirationEnvironment(EnvironmentSettings):
    nats_url: str = Field(validation_alias="NATS_URL")


async def main() -> None:
    """Run until a signal closes the connection."""
    env = read_environment(_ExpirationEnvironment, None, who="the expiration service")
    wrapper = NatsWrapper()
    async with expiration_service(env.nats_url, wrapper):
        wrapper.install_signal_handlers()
        await wrapper.wait_closed()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(main())
