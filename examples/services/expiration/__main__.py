"""Run the expiration service: ``python -m expiration`` from examples/services, with ``NATS_URL`` set.

It serves only ``/healthz`` and ``/readyz``, on ``PORT`` (3004 by default). SIGINT or SIGTERM stops it
at any moment, also while it waits for NATS at start-up: the listeners stop and the connection drains.
"""

from __future__ import annotations

from pydantic import Field

from ticketing_common import opentelemetry, structlog
from ticketing_common.service import EnvironmentSettings, read_environment
from ticketing_common.uvicorn import serve

from .app import create_app


class _ExpirationEnvironment(EnvironmentSettings):
    nats_url: str = Field(validation_alias="NATS_URL")
    stream_replicas: int = Field(default=1, ge=1, le=5, validation_alias="NATS_STREAM_REPLICAS")
    host: str = Field(default="127.0.0.1", validation_alias="HOST")
    port: int = Field(default=3004, ge=1, le=65535, validation_alias="PORT")


if __name__ == "__main__":
    structlog.configure_from_env("expiration")
    opentelemetry.configure_from_env("expiration")
    env = read_environment(_ExpirationEnvironment, None, who="the expiration service")
    app = create_app(env.nats_url, stream_replicas=env.stream_replicas)
    raise SystemExit(serve(app, host=env.host, port=env.port))
