"""Who takes the money: Stripe when ``STRIPE_KEY`` is set, a fake that accepts ``tok_visa`` otherwise.

A charge carries an idempotency key derived from the order, so a retried request (a timeout, a crash
between the charge and saving the payment) gets the first charge back instead of a second one; a
refund carries one derived from the payment, so however often it is asked for, it is made once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import stripe
from pydantic import Field, HttpUrl

from ticketing_common import BadRequestError
from ticketing_common.service import EnvironmentSettings, read_environment

logger = logging.getLogger(__name__)

TEST_TOKEN = "tok_visa"  # noqa: S105 - Stripe's public test token, not a secret
"""The one card token the fake gateway accepts, as Stripe's test mode does."""


class PaymentDeclinedError(BadRequestError):
    """The card was refused: 400 with the gateway's reason."""


class PaymentGateway(Protocol):
    """Charges a card token, and gives a charge back."""

    async def charge(self, *, amount_cents: int, currency: str, token: str, idempotency_key: str) -> str:
        """Charge and return the gateway's id of the payment; the same key charges once.

        Raises:
            PaymentDeclinedError: the card or token was refused.
        """
        ...

    async def refund(self, *, charge_id: str, idempotency_key: str) -> str:
        """Give the whole charge back and return the gateway's id of the refund; the same key refunds once."""
        ...

    async def aclose(self) -> None:
        """Release the gateway's connections."""
        ...


@dataclass
class FakeGateway:
    """A gateway for local runs and tests: ``tok_visa`` pays, any other token is declined."""

    charges: dict[str, tuple[str, int, str]] = field(default_factory=dict)
    """Charges by idempotency key: (id, amount in cents, currency)."""
    refunds: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Refunds by idempotency key: (id, the charge's id)."""

    async def charge(self, *, amount_cents: int, currency: str, token: str, idempotency_key: str) -> str:
        """Record the charge once per key, as Stripe does."""
        if token != TEST_TOKEN:
            raise PaymentDeclinedError(f"Your card was declined (the fake gateway accepts only {TEST_TOKEN})")
        if idempotency_key not in self.charges:
            self.charges[idempotency_key] = (f"ch_fake_{uuid.uuid4().hex}", amount_cents, currency)
        return self.charges[idempotency_key][0]

    async def refund(self, *, charge_id: str, idempotency_key: str) -> str:
        """Record the refund once per key; refuse an unknown charge, or one refunded under another key."""
        if idempotency_key not in self.refunds:
            if charge_id not in {charge for charge, _, _ in self.charges.values()}:
                raise LookupError(f"no charge {charge_id}")
            if self._refunded(charge_id):
                raise RuntimeError(f"charge {charge_id} is already refunded")
            self.refunds[idempotency_key] = (f"re_fake_{uuid.uuid4().hex}", charge_id)
        return self.refunds[idempotency_key][0]

    def charged_cents(self, idempotency_key: str) -> int:
        """Net money taken under a charge's key: its amount, or 0 once refunded (or never charged)."""
        if idempotency_key not in self.charges:
            return 0
        charge_id, amount, _ = self.charges[idempotency_key]
        return 0 if self._refunded(charge_id) else amount

    def _refunded(self, charge_id: str) -> bool:
        return any(charge == charge_id for _, charge in self.refunds.values())

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

    async def refund(self, *, charge_id: str, idempotency_key: str) -> str:
        """Refund the whole charge; a refund that Stripe did not accept raises, to be retried."""
        refund = await self.client.v1.refunds.create_async(
            params={"charge": charge_id}, options={"idempotency_key": idempotency_key}
        )
        # "pending" is accepted: Stripe completes it without us (some card networks take days).
        if refund.status not in {"succeeded", "pending"}:
            raise RuntimeError(
                f"Stripe did not refund charge {charge_id}: refund {refund.id} is {refund.status}"
            )
        return refund.id


class _StripeEnvironment(EnvironmentSettings):
    key: str | None = Field(default=None, validation_alias="STRIPE_KEY")
    api_base: HttpUrl | None = Field(default=None, validation_alias="STRIPE_API_BASE")


def gateway_from_env(environ: Mapping[str, str] | None = None) -> PaymentGateway:
    """Stripe with ``STRIPE_KEY`` (at ``STRIPE_API_BASE`` if set); else the fake gateway, said in the log.

    ``STRIPE_API_BASE`` points the client at another server speaking Stripe's API, such as stripe-mock.
    """
    env = read_environment(_StripeEnvironment, environ, who="the payments service")
    if env.key:
        api_base = str(env.api_base).rstrip("/") if env.api_base is not None else None
        return StripeGateway(env.key, api_base=api_base)
    logger.warning("STRIPE_KEY is not set: payments use the fake gateway (only %s pays)", TEST_TOKEN)
    return FakeGateway()
