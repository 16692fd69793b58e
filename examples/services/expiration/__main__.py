"""Run the expiration service: ``python -m expiration`` from examples/services, with ``NATS_URL`` set.

It stops (drains) on SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import os

from ticketing_common import ConfigurationError, NatsWrapper

from .service import expiration_service


async def main() -> None:
    """Run until a signal closes the connection."""
    nats_url = os.environ.get("NATS_URL")
    if not nats_url:
        raise ConfigurationError("the expiration service cannot start: set NATS_URL")
    wrapper = NatsWrapper()
    async with expiration_service(nats_url, wrapper):
        wrapper.install_signal_handlers()
        await wrapper.wait_closed()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(main())
