"""Running commands from tests: in a git clone of this repository (git, the release script), and npm."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Release Test",
    "GIT_AUTHOR_EMAIL": "release@test.invalid",
    "GIT_COMMITTER_NAME": "Release Test",
    "GIT_COMMITTER_EMAIL": "release@test.invalid",
}
NEEDS_GIT_CHECKOUT = pytest.mark.skipif(
    not (ROOT / ".git").exists(), reason="needs the project's git repository"
)
NEEDS_NODE = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None, reason="needs node and npm"
)


def sh(cwd: Path, *command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in ``cwd``, a git identity and ``env`` added; output captured, never raising."""
    return subprocess.run(  # noqa: S603 - our own commands
        command,
        cwd=cwd,
        env={**os.environ, **GIT_ENV, **(env or {})},
        text=True,
        capture_output=True,
        check=False,
    )


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd``; fail the test if it fails; its output."""
    result = sh(cwd, "git", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def npm_install(folder: Path, packages: list[str]) -> Path:
    """Install npm ``packages`` into ``folder`` (from the npm registry); its ``node_modules``."""
    installed = sh(folder, "npm", "install", "--silent", "--no-audit", "--no-fund", *packages)
    assert installed.returncode == 0, installed.stderr
    return folder / "node_modules"
