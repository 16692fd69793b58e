"""The README's and the documentation site's code runs: snippets are examples users copy, tested as code.

Every python block of README.md and docs/ is executed (each alone, so each must stand alone), but those
of the adding-an-event guide, which tests/test_guides.py follows step by step in a clone.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from node_session import KEY

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FOLLOWED_ELSEWHERE = ROOT / "docs" / "guides" / "new-event.md"
SNIPPETS = [
    (page, snippet)
    for page in PAGES
    if page != FOLLOWED_ELSEWHERE
    for snippet in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)
]


def run(snippet: str, page: Path = ROOT / "README.md") -> dict[str, object]:
    namespace: dict[str, object] = {"__name__": "docs"}
    exec(compile(snippet, str(page), "exec"), namespace)  # noqa: S102 - our own documentation, on purpose
    return namespace


@pytest.mark.parametrize(
    ("page", "snippet"), SNIPPETS, ids=[f"{p.name}:{n}" for n, (p, _) in enumerate(SNIPPETS)]
)
def test_every_snippet_runs(page: Path, snippet: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each python block imports only what exists and defines what it shows."""
    monkeypatch.setenv("JWT_KEY", KEY)
    run(snippet, page)


def test_the_testing_guides_example_passes_with_its_setting(tmp_path: Path) -> None:
    """A project of the guide's pyproject.toml setting and test file: pytest runs it, with our fixtures."""
    guide = (ROOT / "docs" / "guides" / "testing.md").read_text()
    [toml] = re.findall(r"```toml\n(.*?)```", guide, flags=re.DOTALL)
    assert tomllib.loads(toml)["tool"]["pytest"]["ini_options"] == {"asyncio_mode": "auto"}
    [example] = [snippet for page, snippet in SNIPPETS if page.name == "testing.md"]
    (tmp_path / "pyproject.toml").write_text(toml)
    (tmp_path / "test_example.py").write_text(example)
    ran = subprocess.run(  # noqa: S603 - pytest on the guide's own example
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "1 passed" in ran.stdout


async def test_the_web_snippet_serves_what_its_comments_say(monkeypatch: pytest.MonkeyPatch) -> None:
    """The FastAPI example signs a user in, creates a ticket for them, and answers errors as documented."""
    monkeypatch.setenv("JWT_KEY", KEY)
    [(page, snippet)] = [(page, snippet) for page, snippet in SNIPPETS if "install_error_handlers" in snippet]
    app = run(snippet, page)["app"]
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
