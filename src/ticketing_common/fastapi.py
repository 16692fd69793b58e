"""FastAPI and Starlette integration: the original error bodies, the session user, the session cookie.

Needs the extra ``ticketing-common[fastapi]``. A service wires it with two calls at start-up::

    app = FastAPI()
    install_error_handlers(app)
    install_session(app)  # reads JWT_KEY now: a missing key stops the start-up, not the first request


    @app.post("/api/tickets", status_code=201)
    async def create_ticket(ticket: NewTicket, user: RequiredUser) -> Ticket: ...

Every error then answers ``{"errors": [{"message": ..., "field": ...}]}`` as ``@sgtickets/common`` does: a
``CustomError`` with its own status, invalid input 400 (one entry per field), an unknown route 404, anything
else 500 "Something went wrong" with the traceback logged, never sent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any, cast

from fastapi import Depends
from fastapi.exceptions import RequestValidationError as FastAPIValidationError
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ticketing_common._session import SessionConfig, UserPayload
from ticketing_common.errors import CustomError, ErrorDetail, NotAuthorizedError, RequestValidationError

__all__ = [
    "CurrentUser",
    "RequiredUser",
    "SessionAuthBackend",
    "SessionConfig",
    "SessionConfigDep",
    "SessionUser",
    "UserPayload",
    "clear_session_cookie",
    "current_user",
    "install_error_handlers",
    "install_session",
    "require_user",
    "session_config",
    "set_session_cookie",
]

logger = logging.getLogger(__name__)
_STATE_KEY = "ticketing_session_config"
_SOURCES = frozenset({"body", "query", "path", "header", "cookie"})


def install_error_handlers(app: Starlette) -> None:
    """Answer every error of ``app`` with the original ``{"errors": [...]}`` body and the right status."""
    app.add_exception_handler(CustomError, _custom_error)
    app.add_exception_handler(FastAPIValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_middleware(_UnhandledErrors)


def _errors_response(
    errors: list[ErrorDetail], status_code: int, headers: Mapping[str, str] | None = None
) -> Response:
    """The original error body with this status."""
    return JSONResponse({"errors": errors}, status_code=status_code, headers=headers)


async def _custom_error(request: Request, exc: Exception) -> Response:
    # Registered for CustomError only.
    return _custom_error_response(cast("CustomError", exc), request.method, request.url.path)


def _custom_error_response(error: CustomError, method: str, path: str) -> Response:
    """The error's own body and status; a server-side one (5xx) is logged with its traceback too."""
    if error.status_code >= 500:
        logger.error("%s in %s %s", error, method, path, exc_info=error)
    return _errors_response(error.serialize_errors(), error.status_code)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    details = [_without_source(detail) for detail in cast("FastAPIValidationError", exc).errors()]
    error = RequestValidationError.from_pydantic(details)
    return _errors_response(error.serialize_errors(), error.status_code)


def _without_source(detail: dict[str, Any]) -> dict[str, Any]:
    # FastAPI prefixes each location with where the value came from; the client knows its field by name only.
    location = tuple(detail.get("loc", ()))
    if location[:1] and location[0] in _SOURCES:
        location = location[1:]
    if detail.get("type") == "json_invalid":
        return {"msg": "Request body is not valid JSON", "loc": ()}
    if detail.get("type") == "missing" and not location:
        return {"msg": "Request body is required", "loc": ()}
    return {**detail, "loc": location}


async def _http_error(_request: Request, exc: Exception) -> Response:
    error = cast("HTTPException", exc)  # registered for HTTPException only
    # FastAPI lets a route raise HTTPException with any JSON detail; the original body has a string.
    detail: object = error.detail
    message = detail if isinstance(detail, str) else HTTPStatus(error.status_code).phrase
    return _errors_response([{"message": message}], error.status_code, error.headers)


class _UnhandledErrors:
    """Turn an exception no handler took into 500 "Something went wrong", logging its traceback.

    Starlette's own handler for ``Exception`` re-raises after answering (so the server logs it twice and
    test clients raise); this one answers and logs once. It also answers a ``CustomError`` raised by a
    middleware, which the exception handlers, inside the middleware stack, never see.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracking_start)
        except Exception as exc:
            if started:  # too late for another response: let the server end the connection
                raise
            if isinstance(exc, CustomError):
                response = _custom_error_response(exc, scope["method"], scope["path"])
            else:
                logger.exception("Unhandled error in %s %s", scope.get("method"), scope.get("path"))
                response = _errors_response([{"message": "Something went wrong"}], 500)
            await response(scope, receive, send)


def install_session(app: Starlette, config: SessionConfig | None = None) -> SessionConfig:
    """Give ``app`` its session settings, read from the environment (``JWT_KEY``) unless ``config`` is given.

    Raises:
        ConfigurationError: ``JWT_KEY`` is missing; raised here, at start-up.
    """
    config = config or SessionConfig.from_env()
    setattr(app.state, _STATE_KEY, config)
    return config


async def session_config(connection: HTTPConnection) -> SessionConfig:
    """The dependency behind ``SessionConfigDep``: the settings ``install_session`` gave the app."""
    config: SessionConfig | None = getattr(connection.app.state, _STATE_KEY, None)
    if config is None:
        raise RuntimeError("the session is not configured: call install_session(app) at start-up")
    return config


SessionConfigDep = Annotated[SessionConfig, Depends(session_config)]


async def current_user(connection: HTTPConnection, config: SessionConfigDep) -> UserPayload | None:
    """The dependency behind ``CurrentUser``: the session's user, or None without a valid session."""
    return _session_user(connection, config)


def _session_user(connection: HTTPConnection, config: SessionConfig) -> UserPayload | None:
    return config.read_cookie(connection.cookies.get(config.cookie_name))


CurrentUser = Annotated[UserPayload | None, Depends(current_user)]


async def require_user(user: CurrentUser) -> UserPayload:
    """The dependency behind ``RequiredUser``: the session's user, or 401 "Not authorized"."""
    if user is None:
        raise NotAuthorizedError
    return user


RequiredUser = Annotated[UserPayload, Depends(require_user)]


def set_session_cookie(
    response: Response, config: SessionConfig, *, user_id: str, email: str, now: datetime | None = None
) -> UserPayload:
    """Sign the user in: add the session cookie to ``response`` and return the claims it carries."""
    user = config.new_session(user_id=user_id, email=email, now=now)
    response.headers.append("set-cookie", config.set_cookie_header(user))
    return user


def clear_session_cookie(response: Response, config: SessionConfig) -> None:
    """Sign the user out: make the client drop the session cookie."""
    response.headers.append("set-cookie", config.clear_cookie_header())


class SessionUser(BaseUser):
    """``request.user`` under Starlette's ``AuthenticationMiddleware`` with ``SessionAuthBackend``."""

    def __init__(self, payload: UserPayload) -> None:
        self.payload = payload

    @property
    def is_authenticated(self) -> bool:
        """Always: an anonymous request gets Starlette's ``UnauthenticatedUser`` instead."""
        return True

    @property
    def display_name(self) -> str:
        """The user's email."""
        return self.payload.email

    @property
    def identity(self) -> str:
        """The user's id."""
        return self.payload.id


class SessionAuthBackend(AuthenticationBackend):
    """The session cookie as a Starlette authentication backend, for apps that use ``request.user``."""

    def __init__(self, config: SessionConfig | None = None) -> None:
        self.config = config or SessionConfig.from_env()

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        """The scope ``authenticated`` and the user for a valid session; None (anonymous) otherwise."""
        user = _session_user(conn, self.config)
        return None if user is None else (AuthCredentials(["authenticated"]), SessionUser(user))
