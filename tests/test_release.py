"""The release script, run in a temporary git clone: the contract gate, refusals, and a real upload."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from commands import NEEDS_GIT_CHECKOUT, ROOT, git, sh

PASSING = f"{sys.executable} -c pass"
pytestmark = NEEDS_GIT_CHECKOUT


def release(clone: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return sh(clone, sys.executable, "scripts/release.py", *args, env=env)


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """This repository in a clone, released at 0.1.0 (snapshot and version committed), then broken."""
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", str(ROOT), str(clone))
    (clone / "src" / "ticketing_common" / "_version.py").write_text('__version__ = "0.1.0"\n')
    exported = sh(
        clone,
        sys.executable,
        "-m",
        "ticketing_common.contracts",
        "export",
        env={"PYTHONPATH": str(clone / "src")},
    )
    assert exported.returncode == 0, exported.stderr
    git(clone, "add", "--all")
    git(clone, "commit", "--quiet", "-m", "Release 0.1.0")
    events = clone / "src" / "ticketing_common" / "_events.py"
    # Breaking: payment:created loses stripeId, which every consumer of the original requires.
    events.write_text(
        events.read_text().replace("    order_id: _Id\n    stripe_id: _Id\n", "    order_id: _Id\n")
    )
    git(clone, "commit", "--quiet", "-am", "Drop stripeId from payment:created")
    return clone


def state(clone: Path) -> tuple[str, str, str]:
    return git(clone, "rev-parse", "HEAD"), git(clone, "status", "--porcelain"), git(clone, "tag")


def test_a_breaking_change_is_refused_as_a_patch_and_the_tree_is_left_unchanged(clone: Path) -> None:
    """patch: exit 1 naming the subject, path and rule; no file, commit or tag changed."""
    before = state(clone)
    result = release(clone, "patch", "--dry-run", "--check", PASSING)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "REFUSED: a patch release cannot carry these contract changes" in result.stderr
    assert "major: payment:created $.stripeId: field removed" in result.stderr
    assert state(clone) == before
    assert (before[1], before[2]) == ("", "")


def test_a_dirty_tree_and_a_failing_check_are_refused(clone: Path) -> None:
    """Uncommitted changes, or a check that fails, stop the release before anything changes."""
    failing = f"{sys.executable} -c 'raise SystemExit(3)'"
    refused = release(clone, "major", "--dry-run", "--check", failing)
    assert refused.returncode == 1
    assert "failed (3)" in refused.stderr
    (clone / "README.md").write_text("changed\n")
    dirty = release(clone, "major", "--dry-run", "--check", PASSING)
    assert (dirty.returncode, "uncommitted changes" in dirty.stderr) == (1, True)


def test_a_major_dry_run_builds_and_checks_but_leaves_no_trace(clone: Path) -> None:
    """A major dry run builds and twine-checks 1.0.0, then leaves tree, history and tags as they were."""
    before = state(clone)
    result = release(clone, "major", "--dry-run", "--check", PASSING)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dry run of 1.0.0: built and checked" in result.stdout
    assert "ticketing_common-1.0.0-py3-none-any.whl" in result.stdout
    assert state(clone) == before


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def package_index(tmp_path: Path) -> Iterator[str]:
    """A pypiserver on a free loopback port, open to uploads without credentials."""
    packages = tmp_path / "packages"
    packages.mkdir()
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 - our interpreter and a test server
        [
            sys.executable,
            "-m",
            "pypiserver",
            "run",
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-a",
            ".",
            "-P",
            ".",
            str(packages),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/simple/", timeout=1).close()  # noqa: S310 - our own loopback URL
            break
        except OSError:
            assert time.monotonic() < deadline, "pypiserver did not start"
            time.sleep(0.1)
    try:
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


SERVICE = '''
"""A service of someone else's: typed against the released package."""
from typing import assert_type

from nats.aio.msg import Msg

from ticketing_common import BaseListener, PaymentCreatedEvent, Subjects, TicketCreatedEvent


class Listener(BaseListener[TicketCreatedEvent]):
    queue_group_name = "someone-service"

    async def on_message(self, data: TicketCreatedEvent, msg: Msg) -> None:
        assert_type(data.price, float)


assert Subjects.PAYMENT_CREATED.value == "payment:created"
assert "stripe_id" not in PaymentCreatedEvent.model_fields
'''


def test_a_full_release_uploads_commits_tags_and_installs_typed(
    clone: Path, package_index: str, tmp_path: Path
) -> None:
    """A major release to a local index uploads, commits and tags 1.0.0; a fresh venv installs it, typed."""
    result = release(
        clone,
        "major",
        "--repository-url",
        f"{package_index}/",
        "--check",
        PASSING,
        env={"TWINE_USERNAME": "test", "TWINE_PASSWORD": "test"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert git(clone, "tag") == "v1.0.0"
    assert git(clone, "log", "-1", "--format=%s") == "Release 1.0.0"
    assert git(clone, "status", "--porcelain") == ""
    assert (clone / "src" / "ticketing_common" / "_version.py").read_text() == '__version__ = "1.0.0"\n'
    assert (clone / "contracts" / "1.0.0.json").is_file()
    assert (clone / "contracts" / "asyncapi.yaml").is_file()
    assert "1.0.0" in (clone / "contracts" / "typescript" / "order-created-event.d.ts").read_text()
    changelog = (clone / "CHANGELOG.md").read_text()
    assert re.search(r"## \[Unreleased\]\n\n## \[1\.0\.0\] - \d{4}-\d{2}-\d{2}\n", changelog)

    venv = tmp_path / "venv"
    assert sh(tmp_path, sys.executable, "-m", "venv", str(venv)).returncode == 0
    python = str(venv / "bin" / "python")
    installed = sh(
        tmp_path,
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--index-url",
        f"{package_index}/simple/",
        "--extra-index-url",
        "https://pypi.org/simple/",
        "ticketing-common==1.0.0",
        "mypy",
    )
    assert installed.returncode == 0, installed.stderr
    service = tmp_path / "service.py"
    service.write_text(SERVICE)
    typed = sh(tmp_path, python, "-m", "mypy", "--strict", str(service))
    assert typed.returncode == 0, typed.stdout + typed.stderr
    ran = sh(tmp_path, python, str(service))
    assert ran.returncode == 0, ran.stderr


def test_the_readme_installs_from_a_git_url_and_from_a_local_checkout(tmp_path: Path) -> None:
    """The README's two other install lines: a tag of a git repository by URL, then a checkout's path."""
    readme = (ROOT / "README.md").read_text()
    assert 'pip install "ticketing-common @ git+https://' in readme
    assert "pip install ./ticketing-common " in readme
    checkout = tmp_path / "ticketing-common"
    git(tmp_path, "clone", "--quiet", str(ROOT), str(checkout))
    git(checkout, "tag", "v0.1.0")
    venv = tmp_path / "venv"
    assert sh(tmp_path, sys.executable, "-m", "venv", str(venv)).returncode == 0
    python = str(venv / "bin" / "python")
    # A name with a git+file URL needs a pip newer than some Pythons bring (23.2 refuses it).
    assert sh(tmp_path, python, "-m", "pip", "install", "--quiet", "--upgrade", "pip").returncode == 0
    show = ["-c", "import importlib.metadata as m, ticketing_common; print(m.version('ticketing-common'))"]
    # The second one replaces the first (and leaves the dependencies it installed alone).
    for source, *flags in (
        (f"ticketing-common @ git+file://{checkout}@v0.1.0",),
        ("./ticketing-common", "--force-reinstall", "--no-deps"),
    ):
        installed = sh(tmp_path, python, "-m", "pip", "install", "--quiet", *flags, source)
        assert installed.returncode == 0, installed.stderr
        assert sh(tmp_path, python, *show).stdout.strip() == "0.1.0.dev0", source
