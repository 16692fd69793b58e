"""Run the auth service: ``python -m auth`` from examples/services, configured by the environment."""

from __future__ import annotations

from ticketing_common.service import ServiceSettings
from ticketing_common.uvicorn import serve

from .app import create_app

if __name__ == "__main__":
    settings = ServiceSettings.from_env("auth", default_port=3000, uses_nats=False)
    raise SystemExit(serve(create_app(settings), host=settings.host, port=settings.port))
