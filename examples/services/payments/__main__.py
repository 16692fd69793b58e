"""Run the payments service: ``python -m payments`` from examples/services, configured by the environment.

``STRIPE_KEY`` (a Stripe secret key) charges through Stripe; without it, the fake gateway accepts
only the test token ``tok_visa``.
"""

from __future__ import annotations

from ticketing_common.service import ServiceSettings
from ticketing_common.uvicorn import serve

from .app import create_app

if __name__ == "__main__":
    settings = ServiceSettings.from_env("payments", default_port=3003)
    raise SystemExit(serve(create_app(settings), host=settings.host, port=settings.port))
