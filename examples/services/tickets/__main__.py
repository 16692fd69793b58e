"""Run the tickets service: ``python -m tickets`` from examples/services, configured by the environment."""

from __future__ import annotations

import uvicorn

from ticketing_common.service import ServiceSettings

from .app import create_app

if __name__ == "__main__":
    settings = ServiceSettings.from_env("tickets", default_port=3001)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port)
