"""Run the auth service: ``python -m auth`` from examples/services, configured by the environment."""

from __future__ import annotations

import uvicorn

from ticketing_common.service import ServiceSettings

from .app import create_app

if __name__ == "__main__":
    settings = ServiceSettings.from_env("auth", default_port=3000, uses_nats=False)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port)
