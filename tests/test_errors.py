"""The CustomError family: the original status codes and bodies, without any web framework."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field, ValidationError, field_validator

from ticketing_common import (
    BadRequestError,
    CustomError,
    DatabaseConnectionError,
    ErrorDetail,
    NotAuthorizedError,
    NotFoundError,
    RequestValidationError,
    TicketingError,
)


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (BadRequestError("Email in use"), 400, [{"message": "Email in use"}]),
        (NotAuthorizedError(), 401, [{"message": "Not authorized"}]),
        (NotFoundError(), 404, [{"message": "Not Found"}]),
        (DatabaseConnectionError(), 500, [{"message": "Error connecting to database"}]),
        (
            RequestValidationError([{"message": "Title is required", "field": "title"}]),
            400,
            [{"message": "Title is required", "field": "title"}],
        ),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, CustomError) else "",
)
def test_each_error_has_the_original_status_and_body(
    error: CustomError, status: int, body: list[ErrorDetail]
) -> None:
    """Status code and serialize_errors() are those of @sgtickets/common's error classes."""
    assert error.status_code == status
    assert error.serialize_errors() == body
    assert isinstance(error, TicketingError)


def test_custom_error_is_abstract() -> None:
    """CustomError itself cannot be raised: a subclass must say what the client sees."""
    with pytest.raises(TypeError, match="abstract"):
        CustomError()  # type: ignore[abstract]


def test_the_exception_message_is_the_original_one() -> None:
    """str(error) is the Error message the Node classes pass to their base, for logs."""
    assert str(NotAuthorizedError()) == "Not Authorized"
    assert str(NotFoundError()) == "Route not found"
    assert str(DatabaseConnectionError()) == "Error connecting to db"
    assert str(RequestValidationError([])) == "Invalid request parameters"


class Order(BaseModel):
    """A request body with a nested model, a list and a validator."""

    ticket_id: str = Field(alias="ticketId", max_length=24)
    seats: list[int]

    @field_validator("ticket_id")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("TicketId must be provided")
        return value


def test_pydantic_errors_name_fields_as_the_client_sent_them() -> None:
    """Aliases, list indices and validator messages come through as express-validator would show them."""
    with pytest.raises(ValidationError) as caught:
        Order.model_validate({"ticketId": " ", "seats": [1, "x"]})
    error = RequestValidationError.from_pydantic(caught.value)
    assert error.serialize_errors() == [
        {"message": "TicketId must be provided", "field": "ticketId"},
        {
            "message": "Input should be a valid integer, unable to parse string as an integer",
            "field": "seats[1]",
        },
    ]


def test_an_error_without_a_location_has_no_field() -> None:
    """A problem with the whole input (not an object) has a message and no field."""
    with pytest.raises(ValidationError) as caught:
        Order.model_validate([])
    assert RequestValidationError.from_pydantic(caught.value).serialize_errors() == [
        {"message": "Input should be a valid dictionary or instance of Order"}
    ]
