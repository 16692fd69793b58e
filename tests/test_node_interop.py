"""One login for Python and Node services: the real @sgtickets/common reads our cookie, we read Node's.

Runs a Node service written as the course wrote them (express, cookie-session, the package's currentUser)
next to the auth and tickets reference services. Needs node and npm; the npm packages are installed into a
temporary folder.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext

import tickets.app
from auth.app import create_app
from commands import NEEDS_NODE, npm_install
from node_session import KEY
from services import running, session_cookie, settings
from ticketing_common.testing import NatsServer

pytestmark = NEEDS_NODE
# cookie-session 1.x, as the course used: it names the cookie express:sess (2.x says "session").
NODE_PACKAGES = ["@sgtickets/common@1.0.24", "express@4", "cookie-session@1", "jsonwebtoken@9"]


@pytest.fixture(scope="module")
def node_modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The original's shared package and what a course service runs on, installed once."""
    return npm_install(tmp_path_factory.mktemp("node"), NODE_PACKAGES)


@pytest.fixture
async def node_service(node_modules: Path) -> AsyncIterator[str]:
    """The Node service on a free port; its base URL."""
    process = await asyncio.create_subprocess_exec(
        "node",
        str(Path(__file__).parent / "node" / "service.js"),
        env={**os.environ, "JWT_KEY": KEY, "NODE_PATH": str(node_modules)},
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    async with asyncio.timeout(20):
        line = (await process.stdout.readline()).decode()
    assert line.startswith("listening "), line
    try:
        yield f"http://127.0.0.1:{line.split()[1]}"
    finally:
        process.terminate()
        await process.wait()


async def test_a_node_service_reads_the_cookie_of_the_python_auth_service(
    node_service: str, nats_server: NatsServer, tmp_path: Path
) -> None:
    """Signed up in Python, the user is the currentUser of @sgtickets/common's middleware in Node."""
    async with running(create_app(settings("auth", nats_server, tmp_path, uses_nats=False))) as auth:
        signed_up = await auth.post("/api/users/signup", json={"email": "py@test.com", "password": "secret"})
    async with httpx.AsyncClient() as node:
        current = (
            await node.get(f"{node_service}/api/users/currentuser", headers=session_cookie(signed_up))
        ).json()
        signed_out = (await node.get(f"{node_service}/api/users/currentuser")).json()
    assert current["currentUser"]["id"] == signed_up.json()["id"]
    assert current["currentUser"]["email"] == "py@test.com"
    assert signed_out == {"currentUser": None}


async def test_the_python_services_read_the_cookie_of_a_node_service(
    node_service: str, nats_server: NatsServer, jetstream: JetStreamContext, tmp_path: Path
) -> None:
    """Signed in by Node (cookie-session, jsonwebtoken), the user is known to auth and may sell a ticket."""
    async with httpx.AsyncClient() as node:
        signed_in = await node.post(
            f"{node_service}/api/users/signin", json={"id": "node-user", "email": "js@test.com"}
        )
    assert signed_in.status_code == 200
    cookie = session_cookie(signed_in)
    async with running(create_app(settings("auth", nats_server, tmp_path, uses_nats=False))) as auth:
        current = (await auth.get("/api/users/currentuser", headers=cookie)).json()
    assert (current["currentUser"]["id"], current["currentUser"]["email"]) == ("node-user", "js@test.com")
    async with running(tickets.app.create_app(settings("tickets", nats_server, tmp_path))) as tickets_api:
        created = await tickets_api.post("/api/tickets", json={"title": "gig", "price": 5}, headers=cookie)
    assert (created.status_code, created.json()["userId"]) == (201, "node-user")
