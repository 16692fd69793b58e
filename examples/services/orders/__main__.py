"""Run the orders service: ``python -m orders`` from examples/services, configured by the environment.

``EXPIRATION_WINDOW_SECONDS`` (default 900) is how long an order waits for its payment.
"""

from __future__ import annotations

import os
from datetime import timedelta

import uvicorn

from ticketing_common.service import ServiceSettings

from .app import create_app

if __name__ == "__main__":
    settings = ServiceSettings.from_env("orders", default_port=3002)
    window = timedelta(seconds=float(os.environ.get("EXPIRATION_WINDOW_SECONDS", "900")))
    uvicorn.run(create_app(settings, expiration_window=window), host=settings.host, port=settings.port)
