"""FastAPI and Starlette integration: the original error bodies, the session user, the session cookie.

Needs the extra ``ticketing-common[fastapi]``. A service wires it with three calls at start-up::

    app = FastAPI()
    install_error_handlers(app)
    install_body_limit(app)  # 413 over 100 kB, Express's default
    install_session(app)  # reads JWT_KEY now: a missing key stops the start-up, not the first request


    @app.post("/api/tickets", status_code=201)
    async def create_ticket(ticket: NewTicket, user: RequiredUser) -> Ticket: ...

Every error then answers ``{"errors": [{"message": ..., "field": ...}]}`` as ``@sgtickets/common`` does: a
``CustomError`` with its own status, invalid input 400 (one entry per field), an unknown route 404, another
method of a known path 405 with every method it has in ``Allow``, anything else 500 "Something went wrong"
with the traceback logged, never sent. A path matches with or without one trailing slash, as Express's
routes do (no 307 to the other spelling). The OpenAPI document shows those answers, not FastAPI's 422.

``PlainText``, ``Identifier`` and ``Price`` type request input so that no database, no gateway and no event
model refuses what a route accepted; ``RateLimit`` counts attempts per client address or per key.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any, cast

from fastapi import Depends, FastAPI, Security
from fastapi.exceptions import RequestValidationError as FastAPIValidationError
from fastapi.security import APIKeyCookie
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY, RequestBodyLimitMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ticketing_common._input import (
    CONTROL_CHARACTERS,
    MAX_PRICE,
    MIN_PRICE,
    Identifier,
    PlainText,
    Price,
    price_cents,
)
from ticketing_common._openapi import error_responses, install_openapi
from ticketing_common._rate_limit import RateLimit, RateLimitSpec
from ticketing_common._session import COOKIE_NAME, SessionConfig, UserPayload
from ticketing_common.errors import (
    CustomError,
    ErrorDetail,
    NotAuthorizedError,
    PayloadTooLargeError,
    RequestValidationError,
)

__all__ = [
    "CONTROL_CHARACTERS",
    "DEFAULT_MAX_BODY_BYTES",
    "MAX_PRICE",
    "MIN_PRICE",
    "CurrentUser",
    "Identifier",
    "PlainText",
    "Price",
    "RateLimit",
    "RateLimitSpec",
    "RequiredUser",
    "SessionAuthBackend",
    "SessionConfig",
    "SessionConfigDep",
    "SessionUser",
    "UserPayload",
    "clear_session_cookie",
    "current_user",
    "error_responses",
    "install_body_limit",
    "install_error_handlers",
    "install_session",
    "price_cents",
    "require_user",
    "session_config",
    "set_session_cookie",
]

DEFAULT_MAX_BODY_BYTES = 100 * 1024
"""Express's body-parser default ('100kb'), which the original services had."""

logger = logging.getLogger(__name__)
_STATE_KEY = "ticketing_session_config"
_SOURCES = frozenset({"body", "query", "path", "header", "cookie"})


def install_error_handlers(app: Starlette) -> None:
    """Answer every error of ``app`` with the original ``{"errors": [...]}`` body and the right status.

    Also: a path matches with or without a trailing slash, and a FastAPI app's OpenAPI document shows
    these answers (``install_openapi``).
    """
    app.add_exception_handler(CustomError, _custom_error)
    app.add_exception_handler(FastAPIValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_middleware(_UnhandledErrors)
    app.router.redirect_slashes = False
    app.add_middleware(_OptionalTrailingSlash)
    if isinstance(app, FastAPI):
        install_openapi(app)


def install_body_limit(app: Starlette, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
    """Answer 413 (``PayloadTooLargeError``) to a request body over ``max_bytes``, before reading it all.

    A declared ``Content-Length`` over the limit is answered before the app runs; a body streamed
    without one is cut off at the first chunk past the limit (Starlette's ``RequestBodyLimitMiddleware``).
    """
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=max_bytes)
    app.add_middleware(_DeclaredBodyLimit, max_bytes=max_bytes)


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
    return _errors_response(error.serialize_errors(), error.status_code, error.headers())


async def _validation_error(_request: Request, exc: Exception) -> Response:
    details = [_without_source(detail) for detail in cast("FastAPIValidationError", exc).errors()]
    error = RequestValidationError.from_pydantic(details)
    return _errors_response(error.serialize_errors(), error.status_code)


def _without_source(detail: dict[str, Any]) -> dict[str, Any]:
    # FastAPI prefixes each location with where the value came from; the client knows its field by name only.
    location = tuple(detail.get("loc", ()))
    if location[:1] and location[0] in _SOURCES:
        location = location[1:]
    # The body as a whole: the client is told what to send, and "body" is the field it got wrong.
    if detail.get("type") == "json_invalid":
        return {"msg": "Request body is not valid JSON", "loc": ("body",)}
    if detail.get("type") == "missing" and not location:
        return {"msg": "Request body is required", "loc": ("body",)}
    if not location and detail.get("type") in _NOT_AN_OBJECT:
        return {"msg": "Request body must be a JSON object, sent as application/json", "loc": ("body",)}
    return {**detail, "loc": location}


# What pydantic says when the body is bytes (no JSON content type), an array, a string or a number.
_NOT_AN_OBJECT = frozenset({"model_attributes_type", "model_type", "dict_type"})


async def _http_error(request: Request, exc: Exception) -> Response:
    error = cast("HTTPException", exc)  # registered for HTTPException only
    if error.status_code == 413:  # Starlette's body limit
        limit = request.scope.get(MAX_BODY_SIZE_SCOPE_KEY)
        return _custom_error_response(PayloadTooLargeError(limit), request.method, request.url.path)
    headers = dict(error.headers or {})
    if error.status_code == 405:
        # Starlette's Allow names the methods of the first route of the path; FastAPI has one per method.
        headers["Allow"] = ", ".join(_methods_of(request))
    # FastAPI lets a route raise HTTPException with any JSON detail; the original body has a string.
    detail: object = error.detail
    message = detail if isinstance(detail, str) else HTTPStatus(error.status_code).phrase
    return _errors_response([{"message": message}], error.status_code, headers)


def _methods_of(request: Request) -> list[str]:
    # Asked of the router rather than read off the routes: FastAPI nests an included router's routes.
    def served(method: str) -> bool:
        scope = {**request.scope, "method": method}
        return any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes)

    return [method for method in _METHODS if served(method)]


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class _OptionalTrailingSlash:
    """Serve ``/api/tickets/`` as ``/api/tickets``, as Express's non-strict routing does.

    Starlette's own answer is a 307 to the other spelling, which no client of the original expects,
    and which some clients follow by dropping the body of a PUT or POST.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            raw: bytes | None = scope.get("raw_path")
            scope = {**scope, "path": path[:-1]}
            if raw is not None and raw.endswith(b"/"):
                scope["raw_path"] = raw[:-1]
        await self.app(scope, receive, send)


class _DeclaredBodyLimit:
    """Answer 413 at once to a request that declares a body over the limit: nothing of it is read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _declared_length(scope) > self.max_bytes:
            error = PayloadTooLargeError(self.max_bytes)
            response = _errors_response(error.serialize_errors(), error.status_code, {"Connection": "close"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:  # the server refuses such a request before it gets here
                return 0
    return 0


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


# Only documents the session cookie in the OpenAPI (securitySchemes); current_user reads the cookie itself.
_SESSION_COOKIE = APIKeyCookie(
    name=COOKIE_NAME,
    scheme_name="session",
    description="The session cookie the auth service sets (cookie-session, holding a JWT)",
    auto_error=False,
)


async def require_user(
    user: CurrentUser, _cookie: Annotated[str | None, Security(_SESSION_COOKIE)] = None
) -> UserPayload:
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
