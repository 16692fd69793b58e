"""ticketing_common.opentelemetry: what the set-up calls return, as mypy sees them."""

from __future__ import annotations

from typing import assert_type

from opentelemetry.sdk.trace import TracerProvider

from ticketing_common import opentelemetry


def configured() -> None:
    assert_type(opentelemetry.configure_from_env("orders"), TracerProvider | None)
    assert_type(opentelemetry.enable(TracerProvider()), None)
    assert_type(opentelemetry.disable(), None)
    assert_type(opentelemetry.EventTracing().carrier(), dict[str, str])
