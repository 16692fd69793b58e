"""The README's code runs: its snippets are examples a user copies, so they are tested like code."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from node_session import KEY

README = (Path(__file__).parent.parent / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def run(snippet: str) -> dict[str, object]:
    namespace: dict[str, object] = {"__name__": "readme"}
    exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 - our own README, on purpose
    return namespace


def test_every_snippet_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each python block of the README imports only what exists and defines what it shows."""
    monkeypatch.setenv("JWT_KEY", KEY)
    assert len(SNIPPETS) >= 2
    for snippet in SNIPPETS:
        run(snippet)


async def test_the_web_snippet_serves_what_its_comments_say(monkeypatch: pytest.MonkeyPatch) -> None:
    """The FastAPI example signs a user in, creates a ticket for them, and answers errors as documented."""
    monkeypatch.setenv("JWT_KEY", KEY)
    [snippet] = [snippet for snippet in SNIPPETS if "install_error_handlers" in snippet]
    app = run(snippet)["app"]
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        signed_out = await client.post("/api/tickets", json={"title": "t", "price": 1})
        assert signed_out.status_code == 401
        cookie = (await client.post("/api/users/signin")).headers["set-cookie"].split(";")[0]
        headers = {"cookie": cookie}
        created = await client.post("/api/tickets", json={"title": "t", "price": 1}, headers=headers)
        assert (created.status_code, created.json()) == (201, {"userId": "u1"})
        too_high = await client.post("/api/tickets", json={"title": "t", "price": 10**6}, headers=headers)
        assert too_high.json() == {"errors": [{"message": "Price is too high"}]}
        current = await client.get("/api/users/currentuser", headers=headers)
        assert current.json()["currentUser"]["email"] == "a@b.io"
