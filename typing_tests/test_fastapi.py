from __future__ import annotations

from typing import assert_type

from fastapi import FastAPI, Response

from ticketing_common import BadRequestError, CustomError, ErrorDetail, RequestValidationError
from ticketing_common.fastapi import (
    CurrentUser,
    RequiredUser,
    SessionConfig,
    SessionConfigDep,
    UserPayload,
    install_error_handlers,
    install_session,
    set_session_cookie,
)

app = FastAPI()
install_error_handlers(app)
assert_type(install_session(app), SessionConfig)


@app.get("/api/users/currentuser")
async def current_user(user: CurrentUser) -> dict[str, UserPayload | None]:
    assert_type(user, UserPayload | None)
    return {"currentUser": user}


@app.post("/api/tickets")
async def create_ticket(user: RequiredUser) -> str:
    assert_type(user, UserPayload)
    assert_type(user.id, str)
    return user.email


@app.post("/api/users/signin")
async def sign_in(response: Response, session: SessionConfigDep) -> UserPayload:
    assert_type(session, SessionConfig)
    return set_session_cookie(response, session, user_id="u1", email="a@b.io")


def errors(error: CustomError) -> list[ErrorDetail]:
    assert_type(error.status_code, int)
    assert_type(BadRequestError("x").serialize_errors(), list[ErrorDetail])
    assert_type(RequestValidationError.from_pydantic([]), RequestValidationError)
    return error.serialize_errors()
