"""A user: an email and a password hash, never the password."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ticketing_common.fastapi import CONTROL_CHARACTERS, PlainText


class Base(DeclarativeBase):
    """The auth database."""


class User(Base):
    """A registered user; the email is unique (case-insensitively: it is stored normalised)."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: uuid.uuid4().hex)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))


def _valid_email(email: str) -> str:
    try:
        # No DNS lookup: signing up must not depend on the network, and the original did not either.
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        raise ValueError("Email must be valid") from None


# Whitespace around a password is dropped, as the original's trim(); what is left is checked.
_CONTROLS = CONTROL_CHARACTERS
NEW_PASSWORD = rf"^[^\S{_CONTROLS}]*[^\s{_CONTROLS}][^{_CONTROLS}]{{2,18}}[^\s{_CONTROLS}][^\S{_CONTROLS}]*$"
"""4 to 20 characters once trimmed, none of them a control character."""

Email = Annotated[str, Field(max_length=320, json_schema_extra={"format": "email"})]
NewPassword = Annotated[str, Field(json_schema_extra={"pattern": NEW_PASSWORD})]
Password = Annotated[PlainText, Field(max_length=256)]


def _no_controls(text: str) -> None:
    if re.search(f"[{_CONTROLS}\ud800-\udfff]", text):
        raise ValueError("Text must not contain control characters")


class SignUp(BaseModel):
    """The body of POST /api/users/signup, with the original's messages."""

    email: Email
    password: NewPassword

    _email = field_validator("email")(_valid_email)

    @field_validator("password")
    @classmethod
    def _password_length(cls, password: str) -> str:
        _no_controls(password)
        if re.fullmatch(NEW_PASSWORD, password) is None:
            raise ValueError("Password must be between 4 and 20 characters")
        return password.strip()


class SignIn(BaseModel):
    """The body of POST /api/users/signin, with the original's messages."""

    email: Email
    password: Password

    _email = field_validator("email")(_valid_email)

    @field_validator("password", mode="before")
    @classmethod
    def _password_given(cls, password: object) -> object:
        if isinstance(password, str) and not password.strip():
            raise ValueError("You must supply a password")
        return password.strip() if isinstance(password, str) else password


class UserOut(BaseModel):
    """A user as the API shows it: id and email."""

    id: str
    email: str
