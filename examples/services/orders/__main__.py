"""Run the orders service: ``python -m orders`` from examples/services, configured by the environment.

``EXPIRATION_WINDOW_SECONDS`` (default 900) is how long an order waits for its payment.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from ticketing_common.service import EnvironmentSettings, ServiceSettings, read_environment
from ticketing_common.uvicorn import serve

from .app import create_app


class _OrdersEnvironment(EnvironmentSettings):
    expiration_window_seconds: float = Field(default=900, gt=0, validation_alias="EXPIRATION_WINDOW_SECONDS")


if __name__ == "__main__":
    settings = ServiceSettings.from_env("orders", default_port=3002)
    env = read_environment(_OrdersEnvironment, None, who="the orders service")
    window = timedelta(seconds=env.expiration_window_seconds)
    app = create_app(settings, expiration_window=window)
    raise SystemExit(serve(app, host=settings.host, port=settings.port))
