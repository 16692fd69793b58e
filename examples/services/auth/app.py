"""The auth service's HTTP API: the session cookie every other service reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ticketing_common import BadRequestError
from ticketing_common.fastapi import (
    CurrentUser,
    SessionConfigDep,
    clear_session_cookie,
    error_responses,
    set_session_cookie,
)
from ticketing_common.service import Service, ServiceDep, ServiceSettings

from .limits import SignInLimits
from .models import Base, SignIn, SignUp, User, UserOut
from .passwords import hash_password_async, verify_password_async

MIGRATIONS = Path(__file__).parent / "migrations"
"""The Alembic revisions of this service's database (``python -m auth migrate``)."""

router = APIRouter(prefix="/api/users")


def create_app(settings: ServiceSettings, *, limits: SignInLimits | None = None) -> FastAPI:
    """The auth app: a database of users, no NATS; ``limits`` default to the environment's (README)."""
    service = Service(settings, Base.metadata, migrations=MIGRATIONS)
    app = FastAPI(title="auth", lifespan=service.lifespan)
    service.install(app)
    app.state.sign_in_limits = limits or SignInLimits.from_env()
    app.include_router(router)
    return app


async def sign_in_limits(request: Request) -> SignInLimits:
    """The app's limits; counting a hit for the client's address before the body is even read."""
    limits: SignInLimits = request.app.state.sign_in_limits
    await limits.per_address.per_address(request)
    return limits


Limits = Annotated[SignInLimits, Depends(sign_in_limits)]


@router.post("/signup", status_code=201, responses=error_responses(400, 429))
async def sign_up(
    body: SignUp, service: ServiceDep, config: SessionConfigDep, response: Response, limits: Limits
) -> UserOut:
    """Register a new email and sign it in; 400 "Email in use" for a known one."""
    limits.per_email.hit(body.email)
    password_hash = await hash_password_async(body.password)
    try:
        async with service.transaction() as session:
            if await session.scalar(select(User.id).where(User.email == body.email)) is not None:
                raise BadRequestError("Email in use")
            user = User(email=body.email, password_hash=password_hash)
            session.add(user)
    except IntegrityError:  # the same email signed up concurrently, between our check and our insert
        raise BadRequestError("Email in use") from None
    set_session_cookie(response, config, user_id=user.id, email=user.email)
    return UserOut(id=user.id, email=user.email)


@router.post("/signin", responses=error_responses(400, 429))
async def sign_in(
    body: SignIn, service: ServiceDep, config: SessionConfigDep, response: Response, limits: Limits
) -> UserOut:
    """Sign a registered user in; 400 "Invalid credentials" for an unknown email or a wrong password."""
    limits.per_email.hit(body.email)
    async with service.database.sessions() as session:
        user = await session.scalar(select(User).where(User.email == body.email))
    stored = user.password_hash if user is not None else _UNKNOWN_USER_HASH
    # An unknown email costs one hash too, so the response time does not tell which emails exist.
    if not await verify_password_async(body.password, stored) or user is None:
        raise BadRequestError("Invalid credentials")
    set_session_cookie(response, config, user_id=user.id, email=user.email)
    return UserOut(id=user.id, email=user.email)


@router.post("/signout")
async def sign_out(config: SessionConfigDep, response: Response) -> dict[str, Any]:
    """Clear the session cookie."""
    clear_session_cookie(response, config)
    return {}


@router.get("/currentuser")
async def show_current_user(user: CurrentUser) -> dict[str, Any]:
    """``{"currentUser": {id, email, iat, exp}}`` while signed in, ``{"currentUser": null}`` otherwise."""
    return {"currentUser": None if user is None else user.model_dump(exclude_none=True)}


# A hash no password matches in practice, checked when the email is unknown (see sign_in).
_UNKNOWN_USER_HASH = "scrypt$14$8$1$" + "00" * 16 + "$" + "00" * 64
