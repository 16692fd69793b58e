"""A user: an email and a password hash, never the password."""

from __future__ import annotations

import uuid

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, field_validator
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


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


class SignUp(BaseModel):
    """The body of POST /api/users/signup, with the original's messages."""

    email: str
    password: str

    _email = field_validator("email")(_valid_email)

    @field_validator("password")
    @classmethod
    def _password_length(cls, password: str) -> str:
        if not 4 <= len(password.strip()) <= 20:
            raise ValueError("Password must be between 4 and 20 characters")
        return password.strip()


class SignIn(BaseModel):
    """The body of POST /api/users/signin, with the original's messages."""

    email: str
    password: str

    _email = field_validator("email")(_valid_email)

    @field_validator("password")
    @classmethod
    def _password_given(cls, password: str) -> str:
        if not password.strip():
            raise ValueError("You must supply a password")
        return password.strip()


class UserOut(BaseModel):
    """A user as the API shows it: id and email."""

    id: str
    email: str
