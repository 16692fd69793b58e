"""Run the tickets service: ``python -m tickets`` from examples/services, configured by the environment."""

from __future__ import annotations

import sys

from ticketing_common import opentelemetry, structlog
from ticketing_common.alembic import command_line
from ticketing_common.service import ServiceSettings, database_url_from_env
from ticketing_common.uvicorn import serve

from .app import MIGRATIONS, create_app

if __name__ == "__main__":
    if sys.argv[1:]:  # migrate, revision, check: they need only the database
        raise SystemExit(command_line(MIGRATIONS, database_url_from_env("tickets"), sys.argv[1:]))
    settings = ServiceSettings.from_env("tickets", default_port=3001)
    structlog.configure_from_env("tickets")
    opentelemetry.configure_from_env("tickets")
    raise SystemExit(serve(create_app(settings), host=settings.host, port=settings.port))
