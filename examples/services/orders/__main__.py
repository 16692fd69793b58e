"""Run the orders service: ``python -m orders`` from examples/services, configured by the environment.

``EXPIRATION_WINDOW_SECONDS`` (default 900) is how long an order waits for its payment.
"""

from __future__ import annotations

import sys
from datetime import timedelta

from pydantic import Field

from ticketing_common import opentelemetry, structlog
from ticketing_common.alembic import command_line
from ticketing_common.service import (
    EnvironmentSettings,
    ServiceSettings,
    database_url_from_env,
    read_environment,
)
from ticketing_common.uvicorn import serve

from .app import MIGRATIONS, create_app


class _OrdersEnvironment(EnvironmentSettings):
    expiration_window_seconds: float = Field(default=900, gt=0, validation_alias="EXPIRATION_WINDOW_SECONDS")


if __name__ == "__main__":
    if sys.argv[1:]:  # migrate, revision, check: they need only the database
        raise SystemExit(command_line(MIGRATIONS, database_url_from_env("orders"), sys.argv[1:]))
    settings = ServiceSettings.from_env("orders", default_port=3002)
    structlog.configure_from_env("orders")
    opentelemetry.configure_from_env("orders")
    env = read_environment(_OrdersEnvironment, None, who="the orders service")
    window = timedelta(seconds=env.expiration_window_seconds)
    app = create_app(settings, expiration_window=window)
    raise SystemExit(serve(app, host=settings.host, port=settings.port))
