"""Types for request input that every database stores as given and every gateway charges as shown.

Each type checks with Python's ``re`` the very pattern its JSON schema states, so the OpenAPI document
and the validation agree on every string; the messages are the ones clients see in ``errors[].message``.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Final

from pydantic import AfterValidator, Field

CONTROL_CHARACTERS: Final = r"\x00-\x1f\x7f-\x9f"
"""C0, DEL and C1, as the inside of a regex class: PostgreSQL refuses NUL, and none belongs in stored text."""
_CONTROLS = CONTROL_CHARACTERS
TEXT_PATTERN: Final = rf"^[^{_CONTROLS}]*[^\s{_CONTROLS}][^{_CONTROLS}]*$"
"""Some text that is not only spaces, without a control character."""
IDENTIFIER_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
"""An id as the services make them (uuid hex, MongoDB's ObjectId hex), and no other character."""

MIN_PRICE: Final = 0.5
"""The smallest price, in dollars: Stripe charges no less than 50 cents."""
MAX_PRICE: Final = 999_999.99
"""The largest price, in dollars: Stripe charges no more than $999,999.99."""
_CENT_NOISE: Final = 1e-6
"""How far from whole cents a price may be and still be taken as them: floating-point noise, no more."""


def _text(value: str) -> str:
    if any(0xD800 <= ord(character) <= 0xDFFF for character in value):  # lone surrogates: not UTF-8
        raise ValueError("Text must be valid Unicode")
    if re.fullmatch(TEXT_PATTERN, value) is None:
        if not value.strip():
            raise ValueError("Text must not be blank")
        raise ValueError("Text must not contain control characters")
    return value


def _identifier(value: str) -> str:
    if re.fullmatch(IDENTIFIER_PATTERN, value) is None:
        raise ValueError("Must be an id: 1 to 64 letters, digits, '-' or '_'")
    return value


def _price(price: float) -> float:
    if not price > 0:
        raise ValueError("Price must be greater than 0")
    if price < MIN_PRICE:
        raise ValueError(f"Price must be at least {MIN_PRICE:.2f}")
    if price > MAX_PRICE:
        raise ValueError(f"Price must be at most {MAX_PRICE:.2f}")
    cents = round(price * 100)
    if not math.isclose(price * 100, cents, rel_tol=0, abs_tol=_CENT_NOISE):
        raise ValueError("Price must be in whole cents (at most two decimals)")
    return cents / 100


def price_cents(price: float) -> int:
    """The cents to charge for ``price`` dollars: never fewer than it shows (a fraction of a cent rounds up).

    Raises:
        ValueError: ``price`` is not a finite number.
    """
    if not math.isfinite(price):
        raise ValueError(f"{price} is not a price")
    cents = price * 100
    whole = round(cents)
    return whole if math.isclose(cents, whole, rel_tol=0, abs_tol=_CENT_NOISE) else math.ceil(cents)


PlainText = Annotated[str, AfterValidator(_text), Field(json_schema_extra={"pattern": TEXT_PATTERN})]
"""Text to store: not blank, no control character (NUL, ESC, DEL...), valid Unicode; else 400."""

Identifier = Annotated[
    str, AfterValidator(_identifier), Field(json_schema_extra={"pattern": IDENTIFIER_PATTERN})
]
"""The id of a record, in a path or a body: letters, digits, ``-`` and ``_``, 1 to 64 of them; else 400."""

Price = Annotated[
    float,
    Field(
        strict=True,  # true is not 1.0, and "12.5" is not a number
        allow_inf_nan=False,
        json_schema_extra={"minimum": MIN_PRICE, "maximum": MAX_PRICE, "multipleOf": 0.01},
    ),
    AfterValidator(_price),
]
"""A price in dollars: a JSON number from 0.50 to 999,999.99 in whole cents; else 400.

A value within a millionth of a cent of whole cents (binary floating-point noise, as in 0.57 sent as
0.5700000000000001) is taken as those cents; any other fraction of a cent is refused, never rounded down.
"""
