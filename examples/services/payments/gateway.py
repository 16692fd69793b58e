"""Who takes the money: Stripe when ``STRIPE_KEY`` is set, a fake that accepts ``tok_visa`` otherwise.

A charge carries an idempotency key derived from the order, so a retried request (a timeout, a crash
between the charge and saving the payment) gets the first charge back instead of a second one.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import stripe

from ticketing_common import BadRequestError

logger = logging.getLogger(__name__)

TEST_TOKEN = "tok_visa"  # noqa: S105 - Stripe's public test token, not a secret
"""The one card token the fake gateway accepts, as Stripe's test mode does."""


class PaymentDeclinedError(BadRequestError):
    """The card was refused: 400 with the gateway's reason."""


class PaymentGateway(Protocol):
    """Charges a card token."""

    async def charge(self, *, amount_cents: int, currency: str, token: str, idempotency_key: str) -> str:
        """Charge and return the gateway's id of the payment; the same key charges once.

        Raises:
            PaymentDeclinedError: the card or token was refused.
        """
        ...

    async def aclose(self) -> None:
        """Release the gateway's connections."""
        ...


@dataclass
class FakeGateway:
    """A gateway for local runs and tests: ``tok_visa`` pays, any other token is declined."""

    charges: dict[str, tuple[str, int, str]] = field(default_factory=dict)
    """Charges by idempotency key: (id, amount in cents, currency)."""

    async def charge(self, *, amount_cents: int, currency: str, token: str, idempotency_key: str) -> str:
        """Record the charge once per key, as Stripe does."""
        if token != TEST_TOKEN:
            raise PaymentDeclinedError(f"Your card was declined (the fake gateway accepts only {TEST_TOKEN})")
        if idempotency_key not in self.charges:
            self.charges[idempotency_key] = (f"ch_fake_{uuid.uuid4().hex}", amount_cents, currency)
        return self.charges[idempotency_key][0]

    async def aclose(self) -> None:
        """Nothing to release."""


class StripeGateway:
    """Stripe's Charges API with the card token, as the original charged (``source=token``)."""

    def __init__(self, api_key: str, *, api_base: str | None = None) -> None:
        """A gateway on Stripe's API (or ``api_base``) with this secret key, through httpx (asynchronous)."""
        self._http = stripe.HTTPXClient()
        self.client = stripe.StripeClient(
            api_key,
            http_client=self._http,
            max_network_retries=2,
            base_addresses={"api": api_base} if api_base is not None else None,
        )

    async def aclose(self) -> None:
        """Close the HTTP connections to Stripe."""
        await self._http.close_async()  # type: ignore[no-untyped-call]  # stripe leaves it unannotated

    async def charge(self, *, amount_cents: int, currency: str, token: str, idempotency_key: str) -> str:
        """Create the charge; declined unless Stripe says it succeeded."""
        try:
            charge = await self.client.v1.charges.create_async(
                params={"amount": amount_cents, "currency": currency, "source": token},
                options={"idempotency_key": idempotency_key},
            )
        except (stripe.CardError, stripe.InvalidRequestError) as error:
            # A declined card or a bad token is the client's to fix, and Stripe's message says how: 400.
            raise PaymentDeclinedError(error.user_message or "Your card was declined") from error
        if charge.status != "succeeded":
            raise PaymentDeclinedError(f"The payment did not go through ({charge.status})")
        return charge.id


def gateway_from_env(environ: Mapping[str, str]) -> PaymentGateway:
    """Stripe with ``STRIPE_KEY``; without it the fake gateway, said once in the log."""
    key = environ.get("STRIPE_KEY")
    if key:
        return StripeGateway(key)
    logger.warning("STRIPE_KEY is not set: payments use the fake gateway (only %s pays)", TEST_TOKEN)
    return FakeGateway()
