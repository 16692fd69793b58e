from __future__ import annotations

from ticketing_common import CustomError, ErrorDetail, RequestValidationError
from ticketing_common.fastapi import CurrentUser, SessionConfig


async def maybe_signed_in(user: CurrentUser) -> str:
    return user.email  # expect: union-attr


def abstract() -> CustomError:
    return CustomError()  # expect: abstract


def details() -> ErrorDetail:
    RequestValidationError([{"message": "x", "param": "title"}])  # expect: typeddict-unknown-key
    return {"field": "title"}  # expect: typeddict-item


def settings() -> SessionConfig:
    return SessionConfig("secret")  # expect: call-arg
