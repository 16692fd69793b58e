"""Each service's OpenAPI document tells the truth: schemathesis, all its checks, signed in, both databases.

The four HTTP services run as processes (uvicorn, as deployed) on one nats-server; schemathesis reads each
one's /openapi.json and sends what it generates from it, valid and invalid (NUL bytes included), to the
running service with a valid session cookie, checking every answer against the document: no 5xx, every
status and header documented, every body matching its schema, invalid input refused with a 4xx, valid
input accepted, 405 with a full Allow header for the methods a path lacks, 401 without the cookie.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

import processes
from conftest import databases_on, sqlite_in
from node_session import KEY, node_cookie, node_token
from ticketing_common.testing import NatsServer

EXAMPLES = 40
"""Generated requests per operation and mode: enough to cross every documented constraint."""
RULES = {
    # A business rule answers 400 with the original's message to input the schema allows, and the
    # original's clients and tests expect 400 there: it is documented, so schemathesis may accept it.
    ("POST", "/api/users/signup"): "Email in use",
    ("POST", "/api/users/signin"): "Invalid credentials",
    ("POST", "/api/orders"): "Ticket is already reserved",
    ("DELETE", "/api/orders/{order_id}"): "Cannot cancel a completed order",
    ("PUT", "/api/tickets/{ticket_id}"): "Cannot edit a reserved ticket",
    ("POST", "/api/payments"): "a cancelled, expired or already paid order, a declined card",
}


def _session_cookie() -> str:
    claims = {"id": "schemathesis-user", "email": "schemathesis@test.com", "iat": int(time.time())}
    return node_cookie({"jwt": node_token(claims)})


def _config(url: str, document: dict[str, Any]) -> SchemathesisConfig:
    operations: list[dict[str, Any]] = [
        {
            "include-method": method,
            "include-path": path,
            "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "404"]}},
        }
        for method, path in RULES
    ]
    config: dict[str, Any] = {
        "base-url": url,
        "generation": {"max-examples": EXAMPLES, "allow-x00": True, "mode": "all"},
        "operations": operations,
    }
    if "session" in document.get("components", {}).get("securitySchemes", {}):
        config["auth"] = {"openapi": {"session": {"api_key": _session_cookie()}}}
    return SchemathesisConfig.from_dict(config)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def urls(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The four HTTP services as processes, on one database server; sign-ins unthrottled for the fuzzing."""
    logs = tmp_path_factory.mktemp("openapi")
    new_database = (
        sqlite_in(logs)
        if request.param == "sqlite"
        else databases_on(request.getfixturevalue("postgres_server"))
    )
    instances = [processes.Instance(name, name) for name in processes.HTTP_SERVICES]
    # The limits have their own tests; here they would turn generated sign-ins into 429s.
    unthrottled = {
        "SIGNIN_RATE_LIMIT_PER_ADDRESS": "100000/minute",
        "SIGNIN_RATE_LIMIT_PER_EMAIL": "100000/minute",
    }
    with (
        NatsServer() as server,
        processes.running(
            instances,
            nats_url=server.url,
            jwt_key=KEY,
            database_url=functools.cache(new_database),
            logs=logs,
            env=unthrottled,
        ) as running,
    ):
        processes.wait_until_answering(running)
        yield running


@pytest.fixture(params=processes.HTTP_SERVICES)
def api(request: pytest.FixtureRequest, urls: dict[str, str]) -> schemathesis.BaseSchema:
    """One service's OpenAPI document, as the service serves it."""
    url = urls[request.param]
    document = httpx.get(f"{url}/openapi.json").raise_for_status().json()
    return schemathesis.openapi.from_dict(document, config=_config(url, document))


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
def test_every_answer_is_the_documented_one(case: schemathesis.Case[Any]) -> None:
    """Whatever schemathesis sends an operation, the answer passes all of schemathesis's checks."""
    case.call_and_validate()
