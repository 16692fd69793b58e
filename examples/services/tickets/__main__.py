"""Run the tickets service: ``python -m tickets`` from examples/services, configured by the environment."""

from __future__ import annotations

from ticketing_common.service import ServiceSettings
from ticketing_common.uvicorn import serve

from .app import create_app

if __name__ == "__main__":
    settings = ServiceSettings.from_env("tickets", default_port=3001)
    raise SystemExit(serve(create_app(settings), host=settings.host, port=settings.port))
