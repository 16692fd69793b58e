"""The guides are followed as written: docs/guides/new-event.md, step by step, in a temporary clone."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from commands import NEEDS_GIT_CHECKOUT, ROOT, git, sh
from ticketing_common.testing import NatsServer

GUIDE = (ROOT / "docs" / "guides" / "new-event.md").read_text()
# An edit: where it goes (after a line, or at the end of a file), then the code block to put there.
EDIT = re.compile(
    r"<!-- guide: (?:after '(?P<anchor>[^']+)' in|append to) (?P<path>\S+) -->\n```python\n(?P<code>.*?)```",
    flags=re.DOTALL,
)
PYTHON = re.compile(r"```python\n(.*?)```", flags=re.DOTALL)
CONSOLE = re.compile(r"```console\n\$ (?P<command>.*?)\n(?P<output>.*?)```", flags=re.DOTALL)

pytestmark = NEEDS_GIT_CHECKOUT


def in_clone(clone: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in ``clone`` on the clone's own package."""
    return sh(clone, *command, env={"PYTHONPATH": str(clone / "src")})


def follow_the_edits(clone: Path) -> None:
    edits = list(EDIT.finditer(GUIDE))
    assert len(edits) == 4
    for edit in edits:
        path = clone / edit["path"]
        text = path.read_text()
        if edit["anchor"] is None:
            text += "\n\n" + edit["code"]
        else:
            line = edit["anchor"] + "\n"
            assert text.count(line) == 1, f"{edit['anchor']!r} is not one line of {edit['path']}"
            text = text.replace(line, line + edit["code"])
        path.write_text(text)


def expected_output(command: str) -> list[str]:
    [block] = [block for block in CONSOLE.finditer(GUIDE) if block["command"] == command]
    return block["output"].strip().splitlines()


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This repository, cloned, with the guide's edits made and committed."""
    clone = tmp_path_factory.mktemp("guide") / "ticketing-common"
    git(ROOT, "clone", "--quiet", str(ROOT), str(clone))
    follow_the_edits(clone)
    git(clone, "commit", "--quiet", "-am", "ticket:reviewed")
    return clone


def test_the_contract_check_says_minor_as_the_guide_shows(clone: Path) -> None:
    """Step 5: the check in the clone prints what the guide prints, and passes."""
    checked = in_clone(clone, sys.executable, "-m", "ticketing_common.contracts", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip().splitlines() == expected_output("ticketing-contracts check")


def test_node_services_get_the_new_event(clone: Path, tmp_path: Path) -> None:
    """Step 6: the TypeScript declarations have the event and its subject."""
    written = in_clone(
        clone, sys.executable, "-m", "ticketing_common.contracts", "typescript", "--out", f"{tmp_path}"
    )
    assert written.returncode == 0, written.stderr
    assert "subject: Subjects.TicketReviewed;" in (tmp_path / "ticket-reviewed-event.d.ts").read_text()
    assert 'TicketReviewed = "ticket:reviewed"' in (tmp_path / "subjects.d.ts").read_text()


def test_the_new_event_is_published_and_consumed(clone: Path, nats_server: NatsServer) -> None:
    """Step 8: the guide's publisher and listener, on the clone's package, carry a review end to end."""
    [use] = [code for code in PYTHON.findall(GUIDE) if "TicketReviewedListener" in code]
    script = use + textwrap.dedent(
        f"""
        import asyncio
        import nats
        from ticketing_common import ensure_stream

        async def run() -> None:
            client = await nats.connect({nats_server.url!r})
            await ensure_stream(client.jetstream())
            handled = asyncio.Event()

            class Handled(TicketReviewedListener):
                async def on_message(self, data: TicketReviewedEvent, msg: Msg) -> None:
                    await super().on_message(data, msg)
                    handled.set()

            listener = Handled(client)
            await listener.listen()
            event = TicketReviewedEvent(ticket_id="t1", user_id="u1", stars=5)
            publisher = TicketReviewedPublisher(client)
            await publisher.publish(event)
            assert (await publisher.publish(event)).duplicate, "the same message id"
            await asyncio.wait_for(handled.wait(), 10)
            await listener.close()
            await client.close()

        asyncio.run(run())
        """
    )
    ran = in_clone(clone, sys.executable, "-c", script)
    assert ran.returncode == 0, ran.stderr
    assert "t1 5" in ran.stdout


def test_the_release_is_the_minor_the_guide_shows(clone: Path) -> None:
    """Step 7: a dry-run minor release of the clone is 0.1.0 (the baseline's bump) and leaves no trace."""
    passing = f"{sys.executable} -c pass"
    released = in_clone(clone, sys.executable, "scripts/release.py", "minor", "--dry-run", "--check", passing)
    assert released.returncode == 0, released.stdout + released.stderr
    for line in expected_output("nox -s release -- minor --dry-run"):
        assert line in released.stdout
    assert in_clone(clone, "git", "status", "--porcelain").stdout == ""


async def test_an_event_of_a_services_own_is_published_and_consumed(nats_server: NatsServer) -> None:
    """The guide's service-local event: its main() gets its flag back through its own listener."""
    [own] = [code for code in PYTHON.findall(GUIDE) if "ReviewSubjects" in code]
    namespace: dict[str, object] = {"__name__": "guide"}
    exec(compile(own, "new-event.md", "exec"), namespace)  # noqa: S102 - our own guide, on purpose
    main = namespace["main"]
    assert callable(main)
    assert await main(nats_server.url) == "r1"
