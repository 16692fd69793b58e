"""The FastAPI integration on a small app: error bodies, validation, current user, sign-in and sign-out."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import FastAPI, Query, Response
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from node_session import KEY, cookie_header, node_cookie, node_token
from test_session import BAD_COOKIES, RECENT
from ticketing_common import (
    BadRequestError,
    ConfigurationError,
    CustomError,
    DatabaseConnectionError,
    NotAuthorizedError,
    NotFoundError,
    RequestValidationError,
)
from ticketing_common.fastapi import (
    CurrentUser,
    RequiredUser,
    SessionAuthBackend,
    SessionConfig,
    SessionConfigDep,
    SessionUser,
    clear_session_cookie,
    install_error_handlers,
    install_session,
    set_session_cookie,
)

NODE_USER = {"id": "5f8d0d55b54764421b7156c5", "email": "test@test.com", "iat": RECENT}
NODE_COOKIE = cookie_header(node_cookie({"jwt": node_token(NODE_USER)}))


class Seat(BaseModel):
    """A nested model inside a list."""

    row: int
    number: int


class NewTicket(BaseModel):
    """A body in the services' style: camelCase on the wire, bounded strings, a nested list."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True)

    title: str = Field(max_length=100)
    price: float = Field(gt=0)
    seat_plan: list[Seat] = []

    @field_validator("title")
    @classmethod
    def _title_required(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("Title is required")
        return value


class Credentials(BaseModel):
    """A sign-in body."""

    email: str
    password: str


ERRORS: dict[str, CustomError] = {
    "bad-request": BadRequestError("Email in use"),
    "not-authorized": NotAuthorizedError(),
    "not-found": NotFoundError(),
    "database": DatabaseConnectionError(),
    "validation": RequestValidationError([{"message": "Invalid", "field": "title"}]),
}


def make_app(config: SessionConfig | None = None) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    install_session(app, config or SessionConfig(jwt_key=KEY))

    @app.get("/api/users/currentuser")
    async def current_user(user: CurrentUser) -> dict[str, object]:
        return {"currentUser": user.model_dump(exclude_none=True) if user else None}

    @app.post("/api/tickets", status_code=201)
    async def create_ticket(ticket: NewTicket, user: RequiredUser) -> dict[str, object]:
        return {"title": ticket.title, "userId": user.id}

    @app.get("/api/tickets")
    async def list_tickets(limit: Annotated[int, Query(le=100)] = 10) -> list[str]:
        return ["t"] * limit

    @app.post("/api/users/signin")
    async def sign_in(body: Credentials, response: Response, session: SessionConfigDep) -> dict[str, str]:
        user = set_session_cookie(response, session, user_id="u1", email=body.email)
        return {"id": user.id, "email": user.email}

    @app.post("/api/users/signout")
    async def sign_out(response: Response, session: SessionConfigDep) -> dict[str, str]:
        clear_session_cookie(response, session)
        return {}

    @app.get("/raise/{name}")
    async def raise_error(name: str) -> None:
        raise ERRORS[name]

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("password=hunter2")

    return app


def asgi_client(app: ASGIApp) -> httpx.AsyncClient:
    """An HTTP client that calls the app in process, as a server would."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(make_app()) as client:
        yield client


@pytest.mark.parametrize("name", ERRORS)
async def test_a_custom_error_answers_its_status_and_body(client: httpx.AsyncClient, name: str) -> None:
    """A CustomError raised by a route becomes {"errors": serialize_errors()} with its status code."""
    response = await client.get(f"/raise/{name}")
    assert response.status_code == ERRORS[name].status_code
    assert response.json() == {"errors": ERRORS[name].serialize_errors()}


async def test_an_unknown_route_is_the_original_404(client: httpx.AsyncClient) -> None:
    """Any method on a path no route serves: 404 {"errors":[{"message":"Not Found"}]}."""
    for method in ("GET", "POST", "DELETE"):
        response = await client.request(method, "/api/nothing/here")
        assert response.status_code == 404
        assert response.json() == {"errors": [{"message": "Not Found"}]}


async def test_a_wrong_method_keeps_its_status_and_allow_header(client: httpx.AsyncClient) -> None:
    """405 keeps Starlette's status and Allow header, in the original body shape."""
    response = await client.delete("/api/users/currentuser")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.json() == {"errors": [{"message": "Method Not Allowed"}]}


async def test_an_unexpected_error_is_500_and_logged_not_shown(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The client gets "Something went wrong"; the log gets the traceback; the detail never leaves."""
    with caplog.at_level(logging.ERROR, logger="ticketing_common.fastapi"):
        response = await client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"errors": [{"message": "Something went wrong"}]}
    assert "hunter2" not in response.text
    [record] = caplog.records
    assert record.getMessage() == "Unhandled error in GET /boom"
    assert record.exc_info is not None
    assert "hunter2" in str(record.exc_info[1])


async def test_a_custom_error_raised_by_a_middleware_keeps_its_body() -> None:
    """Middleware added before install_error_handlers is covered too."""
    app = FastAPI()

    @app.middleware("http")
    async def refuse(request: Request, call_next: object) -> Response:
        raise NotAuthorizedError

    install_error_handlers(app)
    async with asgi_client(app) as client:
        response = await client.get("/")
    assert (response.status_code, response.json()) == (401, {"errors": [{"message": "Not authorized"}]})


async def test_missing_fields_are_listed_one_per_field(client: httpx.AsyncClient) -> None:
    """An empty object names every required field, camelCase as the client writes them."""
    response = await client.post("/api/tickets", json={}, headers=NODE_COOKIE)
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {"message": "Field required", "field": "title"},
            {"message": "Field required", "field": "price"},
        ]
    }


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"title": "   ", "price": 10}, {"message": "Title is required", "field": "title"}),
        (
            {"title": "x" * 101, "price": 10},
            {"message": "String should have at most 100 characters", "field": "title"},
        ),
        ({"title": "t", "price": -10}, {"message": "Input should be greater than 0", "field": "price"}),
        (
            {"title": "t", "price": "ten"},
            {
                "message": "Input should be a valid number, unable to parse string as a number",
                "field": "price",
            },
        ),
        (
            {"title": "t", "price": 1, "seatPlan": [{"row": 1, "number": 2}, {"row": 1}]},
            {"message": "Field required", "field": "seatPlan[1].number"},
        ),
        (
            [1, 2],
            {"message": "Request body must be a JSON object, sent as application/json", "field": "body"},
        ),
    ],
    ids=["blank", "too long", "not positive", "wrong type", "nested", "not an object"],
)
async def test_an_invalid_body_is_400_with_the_field(
    client: httpx.AsyncClient, body: object, error: dict[str, str]
) -> None:
    """Each kind of invalid input names the field as sent and says what is wrong with it."""
    response = await client.post("/api/tickets", json=body, headers=NODE_COOKIE)
    assert response.status_code == 400
    assert response.json() == {"errors": [error]}


async def test_a_body_that_is_not_json_is_400(client: httpx.AsyncClient) -> None:
    """Broken JSON is a client error with a plain message, not a 422 or a 500."""
    response = await client.post(
        "/api/tickets", content=b'{"title": ', headers={**NODE_COOKIE, "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Request body is not valid JSON", "field": "body"}]}


async def test_a_missing_body_is_400(client: httpx.AsyncClient) -> None:
    """No body at all where one is required."""
    response = await client.post("/api/tickets", headers=NODE_COOKIE)
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Request body is required", "field": "body"}]}


async def test_an_invalid_query_parameter_is_400(client: httpx.AsyncClient) -> None:
    """Query parameters are validated and named the same way as body fields."""
    response = await client.get("/api/tickets", params={"limit": 1000})
    assert response.status_code == 400
    assert response.json() == {
        "errors": [{"message": "Input should be less than or equal to 100", "field": "limit"}]
    }


async def test_a_node_cookie_gives_the_current_user(client: httpx.AsyncClient) -> None:
    """The cookie a Node auth service issues is read as {id, email, iat}."""
    response = await client.get("/api/users/currentuser", headers=NODE_COOKIE)
    # The original's token has no exp: it is read as expiring a day after its iat.
    assert response.json() == {"currentUser": {**NODE_USER, "exp": RECENT + 86400}}


async def test_a_protected_route_serves_the_signed_in_user(client: httpx.AsyncClient) -> None:
    """RequiredUser hands the route the typed user."""
    response = await client.post("/api/tickets", json={"title": "t", "price": 5}, headers=NODE_COOKIE)
    assert response.status_code == 201
    assert response.json() == {"title": "t", "userId": NODE_USER["id"]}


async def test_without_a_cookie_there_is_no_user(client: httpx.AsyncClient) -> None:
    """Open routes see null; protected ones answer 401 before looking at the body."""
    assert (await client.get("/api/users/currentuser")).json() == {"currentUser": None}
    response = await client.post("/api/tickets", json={})
    assert response.status_code == 401
    assert response.json() == {"errors": [{"message": "Not authorized"}]}


@pytest.mark.parametrize("value", BAD_COOKIES.values(), ids=BAD_COOKIES.keys())
async def test_a_bad_cookie_is_no_user(client: httpx.AsyncClient, value: str) -> None:
    """Each bad cookie: null on an open route, 401 with the original body on a protected one."""
    assert (await client.get("/api/users/currentuser", headers=cookie_header(value))).json() == {
        "currentUser": None
    }
    response = await client.post(
        "/api/tickets", json={"title": "t", "price": 1}, headers=cookie_header(value)
    )
    assert (response.status_code, response.json()) == (401, {"errors": [{"message": "Not authorized"}]})


async def test_sign_in_then_out(client: httpx.AsyncClient) -> None:
    """The helper's cookie signs the user in on the next request; sign-out's header expires it."""
    signed_in = await client.post("/api/users/signin", json={"email": "a@b.io", "password": "pw"})
    assert signed_in.json() == {"id": "u1", "email": "a@b.io"}
    set_cookie = signed_in.headers["set-cookie"]
    assert set_cookie.endswith("; samesite=lax; secure; httponly")
    value = set_cookie.split(";", 1)[0].removeprefix("express:sess=")
    token = json.loads(base64.b64decode(value))["jwt"]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert token == node_token(claims)
    assert claims["exp"] - claims["iat"] == 24 * 3600

    current = await client.get("/api/users/currentuser", headers=cookie_header(value))
    assert current.json()["currentUser"] == claims
    signed_out = await client.post("/api/users/signout")
    assert signed_out.json() == {}
    assert signed_out.headers["set-cookie"] == (
        "express:sess=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; samesite=lax; secure; httponly"
    )


def test_a_missing_jwt_key_stops_the_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """install_session reads JWT_KEY when the app is built, and refuses to go on without it."""
    monkeypatch.delenv("JWT_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="set JWT_KEY"):
        install_session(FastAPI())
    monkeypatch.setenv("JWT_KEY", KEY)
    assert install_session(FastAPI()).jwt_key == KEY


async def test_a_session_route_without_install_session_is_a_logged_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Forgetting install_session is a server bug: 500 for the client, the reason in the log."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/me")
    async def me(user: CurrentUser) -> None: ...

    async with asgi_client(app) as client:
        response = await client.get("/me")
    assert response.status_code == 500
    assert "install_session(app)" in caplog.text


async def test_starlette_apps_get_request_user_from_the_backend() -> None:
    """SessionAuthBackend under AuthenticationMiddleware sets request.user and the 'authenticated' scope."""

    @requires("authenticated")
    async def me(request: Request) -> JSONResponse:
        user = request.user
        assert isinstance(user, SessionUser)
        return JSONResponse({"id": user.identity, "email": user.display_name})

    backend = SessionAuthBackend(SessionConfig(jwt_key=KEY))
    app = Starlette(
        routes=[Route("/me", me)], middleware=[Middleware(AuthenticationMiddleware, backend=backend)]
    )
    async with asgi_client(app) as client:
        response = await client.get("/me", headers=NODE_COOKIE)
        assert response.json() == {"id": NODE_USER["id"], "email": NODE_USER["email"]}
        assert (await client.get("/me", headers=cookie_header(BAD_COOKIES["wrong key"]))).status_code == 403


GARBAGE_APP = make_app()


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.binary(max_size=300).filter(lambda raw: b"\r" not in raw and b"\n" not in raw)
    | st.text(max_size=300).map(lambda text: base64.b64encode(text.encode()))
)
async def test_garbage_cookies_never_give_a_500(raw: bytes) -> None:
    """Any bytes in the Cookie header: the open route says null, the protected one 401, nothing crashes."""
    headers = {b"cookie": b"express:sess=" + raw}
    async with asgi_client(GARBAGE_APP) as client:
        assert (await client.get("/api/users/currentuser", headers=headers)).json() == {"currentUser": None}
        response = await client.post("/api/tickets", json={"title": "t", "price": 1}, headers=headers)
        assert response.status_code == 401
