"""The auth reference service: sign up, in, out, current user; its cookie is every service's session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from sqlalchemy import select

import tickets.app
from auth.app import create_app
from auth.models import User
from auth.passwords import hash_password, verify_password
from conftest import DatabaseUrl
from node_session import node_verify
from services import ServiceClient, running, session_cookie, settings
from ticketing_common.testing import NatsServer

USER = {"email": "test@test.com", "password": "password"}


@pytest.fixture
async def client(nats_server: NatsServer, database_url: DatabaseUrl) -> AsyncIterator[ServiceClient]:
    async with running(create_app(settings("auth", nats_server, database_url, uses_nats=False))) as client:
        yield client


async def test_signup_answers_201_with_the_user_and_a_session_cookie(client: ServiceClient) -> None:
    """201 {id, email}; the cookie is the original's: express:sess, HttpOnly, SameSite=Lax, Secure."""
    response = await client.post("/api/users/signup", json=USER)
    assert response.status_code == 201
    assert response.json() == {"id": response.json()["id"], "email": "test@test.com"}
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("express:sess=")
    assert {"path=/", "httponly", "samesite=lax", "secure"} <= {part.strip() for part in cookie.split(";")}


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"email": "not-an-email", "password": "password"}, [("Email must be valid", "email")]),
        (
            {"email": "a@b.com", "password": "p"},
            [("Password must be between 4 and 20 characters", "password")],
        ),
        (
            {"email": "a@b.com", "password": "x" * 21},
            [("Password must be between 4 and 20 characters", "password")],
        ),
        (
            {"email": "a@b.com", "password": "   ab   "},
            [("Password must be between 4 and 20 characters", "password")],
        ),
        ({}, [("Field required", "email"), ("Field required", "password")]),
        ({"email": "a@b.com"}, [("Field required", "password")]),
    ],
    ids=["invalid email", "short password", "long password", "short after trim", "nothing", "no password"],
)
async def test_signup_rejects_invalid_input_with_400(
    client: ServiceClient, body: object, errors: list[tuple[str, str]]
) -> None:
    """The original's messages, one per invalid field, and no user is made."""
    response = await client.post("/api/users/signup", json=body)
    expected = [{"message": message, "field": field} for message, field in errors]
    assert (response.status_code, response.json()) == (400, {"errors": expected})
    async with client.service.database.sessions() as session:
        assert (await session.scalars(select(User))).all() == []


async def test_a_duplicate_email_is_rejected_whatever_its_case(client: ServiceClient) -> None:
    """The second sign-up of an email, even spelt with capitals, is 400 "Email in use"."""
    assert (await client.post("/api/users/signup", json=USER)).status_code == 201
    again = await client.post("/api/users/signup", json={**USER, "email": "Test@TEST.com"})
    assert (again.status_code, again.json()) == (400, {"errors": [{"message": "Email in use"}]})


async def test_concurrent_signups_of_one_email_make_one_user(client: ServiceClient) -> None:
    """Ten sign-ups at once: one 201, nine 400, one row."""
    responses = await asyncio.gather(*(client.post("/api/users/signup", json=USER) for _ in range(10)))
    assert sorted(response.status_code for response in responses) == [201] + [400] * 9
    async with client.service.database.sessions() as session:
        assert len((await session.scalars(select(User))).all()) == 1


async def test_the_password_is_stored_hashed_never_in_clear(client: ServiceClient) -> None:
    """The row holds a salted scrypt hash that verifies the password; the response never shows it."""
    response = await client.post("/api/users/signup", json=USER)
    assert "password" not in response.text
    async with client.service.database.sessions() as session:
        user = await session.scalar(select(User))
    assert user is not None
    assert USER["password"] not in user.password_hash
    assert user.password_hash.startswith("scrypt$")
    assert verify_password(USER["password"], user.password_hash)
    assert not verify_password("wrong", user.password_hash)
    assert hash_password(USER["password"]) != user.password_hash  # a new salt each time


@pytest.mark.parametrize(
    "body",
    [{"email": "nobody@test.com", "password": "password"}, {"email": "test@test.com", "password": "wrong"}],
    ids=["unknown email", "wrong password"],
)
async def test_signin_fails_with_invalid_credentials(client: ServiceClient, body: object) -> None:
    """Both failures look the same: 400 "Invalid credentials", no cookie."""
    await client.post("/api/users/signup", json=USER)
    response = await client.post("/api/users/signin", json=body)
    assert (response.status_code, response.json()) == (400, {"errors": [{"message": "Invalid credentials"}]})
    assert "set-cookie" not in response.headers


async def test_signin_validates_its_body(client: ServiceClient) -> None:
    """A blank password is the original's "You must supply a password"."""
    response = await client.post("/api/users/signin", json={"email": "test@test.com", "password": "  "})
    assert response.json() == {"errors": [{"message": "You must supply a password", "field": "password"}]}


async def test_signin_sets_a_cookie_for_the_right_password(client: ServiceClient) -> None:
    """200 with the user and a fresh session cookie."""
    signed_up = (await client.post("/api/users/signup", json=USER)).json()
    response = await client.post("/api/users/signin", json=USER)
    assert (response.status_code, response.json()) == (200, signed_up)
    assert response.headers["set-cookie"].startswith("express:sess=")


async def test_signout_clears_the_cookie(client: ServiceClient) -> None:
    """200 {} and a Set-Cookie that empties the session and expires in the past."""
    cookie = session_cookie(await client.post("/api/users/signup", json=USER))
    response = await client.post("/api/users/signout", headers=cookie)
    assert (response.status_code, response.json()) == (200, {})
    cleared = response.headers["set-cookie"]
    assert cleared.startswith("express:sess=;")
    assert "expires=Thu, 01 Jan 1970 00:00:00 GMT" in cleared


async def test_currentuser_with_and_without_a_cookie(client: ServiceClient) -> None:
    """The signed-in user's claims with the cookie, null without one."""
    signed_up = (response := await client.post("/api/users/signup", json=USER)).json()
    current = (await client.get("/api/users/currentuser", headers=session_cookie(response))).json()
    assert current["currentUser"]["id"] == signed_up["id"]
    assert current["currentUser"]["email"] == "test@test.com"
    assert current["currentUser"]["exp"] > current["currentUser"]["iat"]
    assert (await client.get("/api/users/currentuser")).json() == {"currentUser": None}


async def test_the_cookie_is_accepted_by_node_and_by_the_other_services(
    client: ServiceClient, nats_server: NatsServer, jetstream: JetStreamContext, tmp_path: Path
) -> None:
    """A Node service's currentUser verifies it, and the tickets service lets its user create a ticket."""
    response = await client.post("/api/users/signup", json=USER)
    cookie = session_cookie(response)
    claims = node_verify(cookie["cookie"].removeprefix("express:sess="))
    assert (claims["id"], claims["email"]) == (response.json()["id"], "test@test.com")
    async with running(tickets.app.create_app(settings("tickets", nats_server, tmp_path))) as tickets_api:
        created = await tickets_api.post("/api/tickets", json={"title": "gig", "price": 5}, headers=cookie)
    assert created.status_code == 201
    assert created.json()["userId"] == response.json()["id"]
