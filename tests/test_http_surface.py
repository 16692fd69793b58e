"""The HTTP surface refuses what it cannot serve with a 4xx and the original body: each finding of issue 12.

Every case runs on SQLite and on PostgreSQL (asyncpg refuses NUL, SQLite stores it), on the services
as they run in production but in this process.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from auth.app import create_app as create_auth
from auth.limits import SignInLimits
from conftest import DatabaseUrl
from node_session import cookie_header, node_cookie, node_token
from orders.app import create_app as create_orders
from payments.app import CANCELLED, OUT_OF_RANGE
from payments.app import create_app as create_payments
from payments.gateway import FakeGateway
from services import ServiceClient, running, settings, signed_in
from test_payments_service import an_order, created, pay
from ticketing_common import ConfigurationError
from ticketing_common.fastapi import SessionConfig
from ticketing_common.service import ServiceSettings
from ticketing_common.testing import NatsServer
from tickets.app import MAX_PAGE
from tickets.app import create_app as create_tickets

ALICE = signed_in("alice")
JSON = {"content-type": "application/json"}


@pytest.fixture
async def tickets(
    nats_server: NatsServer, jetstream: JetStreamContext, database_url: DatabaseUrl
) -> AsyncIterator[ServiceClient]:
    async with running(create_tickets(settings("tickets", nats_server, database_url))) as client:
        yield client


@pytest.fixture
async def orders(
    nats_server: NatsServer, jetstream: JetStreamContext, database_url: DatabaseUrl
) -> AsyncIterator[ServiceClient]:
    async with running(create_orders(settings("orders", nats_server, database_url))) as client:
        yield client


@pytest.fixture
async def payments(
    nats_server: NatsServer, jetstream: JetStreamContext, database_url: DatabaseUrl
) -> AsyncIterator[ServiceClient]:
    app = create_payments(settings("payments", nats_server, database_url), gateway=FakeGateway())
    async with running(app) as client:
        yield client


def raw(text: str) -> dict[str, Any]:
    """A request body sent as this exact JSON text (Infinity, 1e309 and lone surrogates included)."""
    return {"content": text.encode("utf-8", "surrogatepass"), "headers": {**ALICE, **JSON}}


async def a_ticket_of_alice(tickets: ServiceClient) -> str:
    response = await tickets.post("/api/tickets", json={"title": "concert", "price": 20}, headers=ALICE)
    assert response.status_code == 201, response.text
    ticket_id: str = response.json()["id"]
    return ticket_id


BAD_PRICES = {
    "Infinity": "Infinity",
    "1e309 (infinite)": "1e309",
    "NaN": "NaN",
    "1e30 (over the maximum)": "1e30",
    "1000000 (over the maximum)": "1000000",
    "0.001 (a tenth of a cent)": "0.001",
    "19.999 (a fraction of a cent)": "19.999",
    "0.49 (under Stripe's minimum)": "0.49",
    "0": "0",
    "-10": "-10",
    "true (a boolean)": "true",
    '"12.5" (a string)': '"12.5"',
    "null": "null",
}


@pytest.mark.parametrize("price", BAD_PRICES.values(), ids=BAD_PRICES.keys())
@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_a_price_that_cannot_be_charged_as_shown_is_400(
    tickets: ServiceClient, method: str, price: str
) -> None:
    """Infinite, huge, sub-cent, under-minimum, boolean and string prices are refused with field price."""
    path = "/api/tickets" if method == "POST" else f"/api/tickets/{await a_ticket_of_alice(tickets)}"
    response = await tickets.request(method, path, **raw(f'{{"title": "concert", "price": {price}}}'))
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "price"


@pytest.mark.parametrize(
    ("price", "stored"),
    [(0.5, 0.5), (999_999.99, 999_999.99), (57 * 0.01, 0.57), (20, 20.0)],
    ids=["the minimum", "the maximum", "0.57 with float noise", "an integer"],
)
async def test_a_price_in_whole_cents_is_sold_as_those_cents(
    tickets: ServiceClient, price: float, stored: float
) -> None:
    """The documented range is accepted, and binary noise is stored as the cents it stands for."""
    response = await tickets.post("/api/tickets", json={"title": "t", "price": price}, headers=ALICE)
    assert (response.status_code, response.json()["price"]) == (201, stored)


CONTROL_TEXT = {
    "NUL": "a\\u0000b",
    "ESC": "a\\u001bb",
    "a newline": "a\\nb",
    "DEL": "a\\u007fb",
    "C1 NEL": "a\\u0085b",
    "a lone surrogate": "a\\ud800b",
}


@pytest.mark.parametrize("text", CONTROL_TEXT.values(), ids=CONTROL_TEXT.keys())
async def test_a_title_with_a_control_character_is_400_on_every_database(
    tickets: ServiceClient, text: str
) -> None:
    """PostgreSQL refuses NUL (500 before), SQLite stored it (201): both now answer 400 naming the title."""
    response = await tickets.post("/api/tickets", **raw(f'{{"title": "{text}", "price": 10}}'))
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["field"] == "title"


BAD_IDS = {"NUL": "a%00b", "ESC": "a%1Bb", "a space": "a%20b", "65 characters": "a" * 65, "unicode": "%C3%A9"}


@pytest.mark.parametrize("ticket_id", BAD_IDS.values(), ids=BAD_IDS.keys())
@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_a_ticket_id_in_the_path_that_no_record_can_have_is_400(
    tickets: ServiceClient, method: str, ticket_id: str
) -> None:
    """A NUL in a path id was a 500 on PostgreSQL; now every such id is a 400 naming ticket_id."""
    body = {"title": "t", "price": 10} if method == "PUT" else None
    response = await tickets.request(method, f"/api/tickets/{ticket_id}", headers=ALICE, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["field"] == "ticket_id"


@pytest.mark.parametrize("ticket_id", BAD_IDS.values(), ids=BAD_IDS.keys())
@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_an_order_id_in_the_path_that_no_record_can_have_is_400(
    orders: ServiceClient, method: str, ticket_id: str
) -> None:
    """The orders service's path ids are checked as the tickets service's are."""
    response = await orders.request(method, f"/api/orders/{ticket_id}", headers=ALICE)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["field"] == "order_id"


@pytest.mark.parametrize(
    "value", ["a\\u0000b", "a b", "a\\ud800b"], ids=["NUL", "a space", "a lone surrogate"]
)
async def test_ids_and_tokens_in_bodies_are_checked_as_path_ids(
    orders: ServiceClient, payments: ServiceClient, value: str
) -> None:
    """ticketId, orderId and token refuse a control character (or, ids, any non-id character) with 400."""
    response = await orders.post("/api/orders", **raw(f'{{"ticketId": "{value}"}}'))
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, "ticketId")
    response = await payments.post("/api/payments", **raw(f'{{"token": "tok", "orderId": "{value}"}}'))
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, "orderId")
    if value != "a b":  # a space is fine in a card token
        response = await payments.post("/api/payments", **raw(f'{{"token": "{value}", "orderId": "o1"}}'))
        assert (response.status_code, response.json()["errors"][0]["field"]) == (400, "token")


def token(claims: dict[str, object]) -> dict[str, str]:
    return cookie_header(node_cookie({"jwt": node_token(claims)}))


NOW = int(time.time())
BAD_TOKENS = {
    "an empty id": {"id": "", "email": "a@b.c", "iat": NOW, "exp": NOW + 60},
    "an empty email": {"id": "u1", "email": "", "iat": NOW, "exp": NOW + 60},
    "no exp and no iat": {"id": "u1", "email": "a@b.c"},
    "no exp, issued two days ago": {"id": "u1", "email": "a@b.c", "iat": NOW - 2 * 86400},
    "expired": {"id": "u1", "email": "a@b.c", "iat": NOW - 120, "exp": NOW - 60},
    "a NUL in the id": {"id": "u\x001", "email": "a@b.c", "iat": NOW, "exp": NOW + 60},
    "a numeric id": {"id": 7, "email": "a@b.c", "iat": NOW, "exp": NOW + 60},
}


@pytest.mark.parametrize("claims", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
async def test_a_validly_signed_token_that_names_no_user_is_401(
    tickets: ServiceClient, claims: dict[str, object]
) -> None:
    """An empty id was a 500, a token without exp never expired: both are no user now."""
    response = await tickets.post("/api/tickets", json={"title": "t", "price": 10}, headers=token(claims))
    assert (response.status_code, response.json()) == (401, {"errors": [{"message": "Not authorized"}]})


async def test_a_token_of_the_original_auth_service_is_a_user_for_a_day(tickets: ServiceClient) -> None:
    """The original signs {id, email, iat} without exp: valid until iat plus the session lifetime."""
    response = await tickets.post(
        "/api/tickets",
        json={"title": "t", "price": 10},
        headers=token({"id": "u1", "email": "a@b.c", "iat": NOW - 3600}),
    )
    assert response.status_code == 201


BODIES = {
    "form data": {
        "content": b"title=t&price=10",
        "headers": {"content-type": "application/x-www-form-urlencoded"},
    },
    "JSON without a content type": {"content": b'{"title": "t", "price": 10}'},
    "a JSON array": {"content": b"[1]", "headers": JSON},
    "a JSON string": {"content": b'"t"', "headers": JSON},
    "not JSON": {"content": b"{", "headers": JSON},
    "no body": {"headers": JSON},
}


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
async def test_a_body_that_is_not_a_json_object_is_400_naming_the_body(
    tickets: ServiceClient, body: dict[str, Any]
) -> None:
    """One error with field "body" that says what to send, not pydantic's words about dictionaries."""
    headers = {**ALICE, **body.get("headers", {})}
    response = await tickets.post("/api/tickets", content=body.get("content"), headers=headers)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "body"
    assert "dictionary" not in error["message"]


async def test_a_body_over_the_limit_is_413_before_it_is_validated(tickets: ServiceClient) -> None:
    """10 MB of extra keys was parsed and answered 201; over 100 kB is now 413 with the standard body."""
    padding = {f"key{number}": "x" * 100 for number in range(1100)}
    response = await tickets.post("/api/tickets", json={"title": "t", "price": 10, **padding}, headers=ALICE)
    assert (response.status_code, response.json()) == (
        413,
        {"errors": [{"message": "Request body is too large (at most 102400 bytes)"}]},
    )
    small = await tickets.post(
        "/api/tickets", json={"title": "t", "price": 10, "key": "x" * 90_000}, headers=ALICE
    )
    assert small.status_code == 201


async def test_the_body_limit_is_a_setting(
    nats_server: NatsServer, jetstream: JetStreamContext, tmp_path: Path
) -> None:
    """MAX_BODY_BYTES sets it; a streamed body without Content-Length is cut off at the limit too."""
    base = settings("tickets", nats_server, tmp_path)
    async with running(create_tickets(replace(base, max_body_bytes=50))) as client:
        body = json.dumps({"title": "t", "price": 10, "pad": "x" * 60}).encode()

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 10):
                yield body[start : start + 10]

        streamed = await client.post("/api/tickets", content=chunks(), headers={**ALICE, **JSON})
        assert streamed.status_code == 413
        assert streamed.json()["errors"][0]["message"] == "Request body is too large (at most 50 bytes)"
        fits = await client.post("/api/tickets", json={"title": "t", "price": 10}, headers=ALICE)
        assert fits.status_code == 201


ALLOW = {
    ("DELETE", "/api/tickets"): "GET, POST",
    ("PATCH", "/api/tickets/abc"): "GET, PUT",
    ("PUT", "/api/tickets"): "GET, POST",
    ("PUT", "/api/tickets/"): "GET, POST",
    ("HEAD", "/api/tickets"): "GET, POST",
}


@pytest.mark.parametrize(("method", "path"), ALLOW.keys(), ids=[" ".join(key) for key in ALLOW])
async def test_a_405_allows_every_method_of_the_path(tickets: ServiceClient, method: str, path: str) -> None:
    """Allow named only the first route's method; PUT /api/tickets/ was a 307 to the slashless path."""
    response = await tickets.request(method, path, headers=ALICE)
    assert response.status_code == 405
    assert response.headers["allow"] == ALLOW[method, path]
    if method != "HEAD":
        assert response.json() == {"errors": [{"message": "Method Not Allowed"}]}


async def test_a_trailing_slash_serves_the_same_route(tickets: ServiceClient) -> None:
    """As Express's routes: /api/tickets/ is /api/tickets, never a redirect."""
    created_ = await tickets.post("/api/tickets/", json={"title": "t", "price": 10}, headers=ALICE)
    assert created_.status_code == 201
    shown = await tickets.get(f"/api/tickets/{created_.json()['id']}/")
    assert (shown.status_code, shown.json()["id"]) == (200, created_.json()["id"])


async def test_tickets_are_listed_in_pages_a_link_header_chains(tickets: ServiceClient) -> None:
    """Limit and cursor page through every free ticket once; the last page has no Link."""
    made = {await a_ticket_of_alice(tickets) for _ in range(5)}
    seen: list[str] = []
    url: str | None = "/api/tickets?limit=2"
    pages = 0
    while url is not None:
        response = await tickets.get(url)
        assert response.status_code == 200
        seen += [ticket["id"] for ticket in response.json()]
        link = response.headers.get("link")
        url = link.split(";")[0].strip("<>") if link else None
        pages += 1
    assert (sorted(seen), pages) == (sorted(made), 3)
    default = await tickets.get("/api/tickets")
    assert len(default.json()) == 5
    assert "link" not in default.headers


@pytest.mark.parametrize(
    "query",
    ["limit=0", f"limit={MAX_PAGE + 1}", "limit=abc", "cursor=a%00b"],
    ids=["0", "over max", "abc", "NUL"],
)
async def test_a_page_out_of_bounds_is_400(tickets: ServiceClient, query: str) -> None:
    """Limit is 1 to the documented maximum, and a cursor is an id."""
    assert (await tickets.get(f"/api/tickets?{query}")).status_code == 400


@pytest.mark.parametrize("price", [0.3, 1e30], ids=["under Stripe's minimum", "over Stripe's maximum"])
async def test_an_order_at_a_price_no_gateway_charges_is_400(
    payments: ServiceClient, nats_client: Client, price: float
) -> None:
    """An order made from another seller's ticket may carry such a price: 400, not a 500 or 0 cents."""
    order_id = await an_order(payments, nats_client, created(price=price))
    response = await pay(payments, order_id)
    assert (response.status_code, response.json()) == (400, {"errors": [{"message": OUT_OF_RANGE}]})
    assert not payments.asgi_app.state.gateway.charges


def test_the_cancelled_message_is_grammatical() -> None:
    """The original's typo, "an cancelled", is fixed."""
    assert CANCELLED == "Cannot pay for a cancelled order"


@pytest.fixture
async def limited_auth(nats_server: NatsServer, database_url: DatabaseUrl) -> AsyncIterator[ServiceClient]:
    """The auth service with small limits: 3 attempts per address, 2 per email, a minute."""
    limits = SignInLimits.of(per_address="3/minute", per_email="2/minute")
    app = create_auth(settings("auth", nats_server, database_url, uses_nats=False), limits=limits)
    async with running(app) as client:
        yield client


def from_address(client: ServiceClient, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=client.asgi_app, client=(address, 4321))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.mark.parametrize("route", ["signin", "signup"])
async def test_attempts_for_one_email_are_limited_with_retry_after(
    limited_auth: ServiceClient, route: str
) -> None:
    """The third attempt for an email within the minute is 429 with Retry-After, from any address."""
    body = {"email": "victim@test.com", "password": "guess"}
    answers = []
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        async with from_address(limited_auth, address) as client:
            answers.append(await client.post(f"/api/users/{route}", json=body))
    assert [answer.status_code for answer in answers[:2]] != [429, 429]
    last = answers[2]
    assert (last.status_code, last.json()) == (
        429,
        {"errors": [{"message": "Too many attempts, try again later"}]},
    )
    assert 1 <= int(last.headers["retry-after"]) <= 60


async def test_attempts_from_one_address_are_limited_before_the_body_is_read(
    limited_auth: ServiceClient,
) -> None:
    """The fourth request of an address is 429 whatever it carries; another address is not held back."""
    async with from_address(limited_auth, "10.0.0.9") as client:
        answers = [
            (
                await client.post("/api/users/signin", json={"email": f"u{n}@test.com", "password": "x"})
            ).status_code
            for n in range(3)
        ]
        assert answers == [400, 400, 400]
        assert (await client.post("/api/users/signin", content=b"{")).status_code == 429
    async with from_address(limited_auth, "10.0.0.10") as other:
        response = await other.post("/api/users/signup", json={"email": "new@test.com", "password": "secret"})
        assert response.status_code == 201


SECURE_COOKIES = {
    "false": False,
    "off": False,
    "0": False,
    "no": False,
    "true": True,
    "on": True,
    "1": True,
    "": True,
}


@pytest.mark.parametrize(("value", "secure"), SECURE_COOKIES.items(), ids=[repr(v) for v in SECURE_COOKIES])
def test_secure_cookies_is_a_typed_boolean(value: str, secure: bool) -> None:  # noqa: FBT001 - parametrised
    """SECURE_COOKIES=off was taken for true (anything but "false" was); empty is the default, true."""
    env = {"JWT_KEY": "k" * 32, "NATS_URL": "nats://x", "SECURE_COOKIES": value}
    assert ServiceSettings.from_env("tickets", env).session.secure is secure
    assert SessionConfig.from_env(env).secure is secure


INVALID_SETTINGS = {
    "SECURE_COOKIES": "maybe",
    "PORT": "http",
    "MAX_BODY_BYTES": "-1",
}


@pytest.mark.parametrize(("variable", "value"), INVALID_SETTINGS.items(), ids=INVALID_SETTINGS.keys())
def test_an_invalid_setting_stops_the_start_naming_the_variable(variable: str, value: str) -> None:
    """pydantic-settings parses each variable; the error says which one and what it got."""
    env = {"JWT_KEY": "k" * 32, "NATS_URL": "nats://x", variable: value}
    with pytest.raises(
        ConfigurationError, match=f"the tickets service cannot start: {variable} is invalid: .*'{value}'"
    ):
        ServiceSettings.from_env("tickets", env)


@pytest.mark.parametrize("variable", ["SIGNIN_RATE_LIMIT_PER_ADDRESS", "SIGNIN_RATE_LIMIT_PER_EMAIL"])
def test_a_rate_limit_that_is_not_one_stops_the_auth_service(variable: str) -> None:
    """The limits are written as the limits library reads them ("10/minute")."""
    with pytest.raises(ConfigurationError, match=f"{variable} is invalid"):
        SignInLimits.from_env({variable: "often"})


async def test_a_declared_body_over_the_limit_is_refused_before_a_byte_is_read(
    tickets: ServiceClient,
) -> None:
    """Content-Length alone decides: the app answers 413 without asking the server for the body."""
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body was read")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/tickets",
        "raw_path": b"/api/tickets",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-length", b"10000000"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    await tickets.asgi_app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["errors"][0]["message"].startswith("Request body is too large")
