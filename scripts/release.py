"""Release ticketing-common: checks, contract gate, version bump, CHANGELOG, build, twine check, upload, tag.

The release commit carries the contracts of the version: its JSON Schema snapshot, the AsyncAPI document
and the TypeScript declarations for Node services (``contracts/typescript``, an npm package folder).

``nox -s release -- patch|minor|major [--repository-url URL] [--dry-run]``. It refuses on a dirty tree, on a
failing check, and on a bump smaller than the contract changes since the last release need; a refusal or a
failure leaves the tree as it was. twine reads ``TWINE_USERNAME`` / ``TWINE_PASSWORD`` (or the keyring):
credentials never come from arguments or files in the repository. ``--dry-run`` does everything but upload,
commit and tag, then puts the tree back.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path.cwd()
# The models of this checkout, not of whatever ticketing-common the running environment has installed.
sys.path.insert(0, str(ROOT / "src"))

from ticketing_common._version import __version__  # noqa: E402 - this checkout's, as above
from ticketing_common.contracts import (  # noqa: E402 - after the path to this checkout's package
    Level,
    bump,
    check,
    event_types,
    format_version,
    parse_version,
    write_asyncapi,
    write_snapshot,
    write_typescript,
)

VERSION_FILE = ROOT / "src" / "ticketing_common" / "_version.py"
CHANGELOG = ROOT / "CHANGELOG.md"
CONTRACTS = ROOT / "contracts"
PYPI = "https://upload.pypi.org/legacy/"
DEFAULT_CHECKS = [f"{shlex.quote(sys.executable)} -m nox -s tests lint typecheck"]


class ReleaseRefusedError(Exception):
    """The release cannot go ahead; the message says why."""


def run(*command: str, capture: bool = False) -> str:
    """Run a command in the checkout; raise ReleaseRefusedError, with its output, if it fails."""
    print("$", shlex.join(command), flush=True)
    result = subprocess.run(command, cwd=ROOT, text=True, capture_output=capture, check=False)  # noqa: S603 - our own commands
    if result.returncode != 0:
        raise ReleaseRefusedError(
            f"{shlex.join(command)} failed ({result.returncode}){': ' + result.stderr if capture else ''}"
        )
    return result.stdout if capture else ""


def contract_gate(level: Level) -> str:
    """Refuse a bump smaller than the contract changes need, listing those that need more; return the version.

    The version is a bump of the last released one (of the baseline's 0.0.0 for a first release), or
    the project's own for a first release in a tree with no baseline.
    """
    needed, findings, released = check(CONTRACTS)
    if released is None:
        print("no released contract snapshot yet: this first release makes one")
        return format_version(parse_version(__version__))
    for finding in findings:
        print("  ", finding)
    if level < needed:
        too_big = "\n".join(f"  {finding}" for finding in findings if finding.level > level)
        raise ReleaseRefusedError(
            f"a {level.name.lower()} release cannot carry these contract changes; "
            f"they need a {needed.name.lower()} release:\n{too_big}"
        )
    return format_version(bump(released, level))


def update_changelog(version: str, today: dt.date) -> None:
    """Move the Unreleased section under the new version, with today's date; leave Unreleased empty."""
    text = CHANGELOG.read_text()
    if "## [Unreleased]" not in text:
        raise ReleaseRefusedError("CHANGELOG.md has no '## [Unreleased]' section")
    CHANGELOG.write_text(
        text.replace("## [Unreleased]", f"## [Unreleased]\n\n## [{version}] - {today.isoformat()}", 1)
    )


def release(level: Level, repository_url: str, *, dry_run: bool, checks: list[str]) -> str:
    """Do the release; return the version."""
    if run("git", "status", "--porcelain", capture=True).strip():
        raise ReleaseRefusedError("the working tree has uncommitted changes: commit or stash them first")
    for command in checks:
        run(*shlex.split(command))
    version = contract_gate(level)
    print(f"releasing {version} ({level.name.lower()})", flush=True)
    try:
        VERSION_FILE.write_text(f'__version__ = "{version}"\n')
        update_changelog(version, dt.datetime.now(dt.UTC).date())
        write_snapshot(CONTRACTS, parse_version(version))
        write_asyncapi(CONTRACTS / "asyncapi.yaml", version)
        write_typescript(CONTRACTS / "typescript", event_types(), version)
        with tempfile.TemporaryDirectory(prefix="ticketing-release-") as dist:
            run(sys.executable, "-m", "build", "--outdir", dist)
            built = sorted(str(path) for path in Path(dist).iterdir())
            run(sys.executable, "-m", "twine", "check", "--strict", *built)
            if dry_run:
                names = ", ".join(Path(path).name for path in built)
                print(f"dry run: would upload {names} to {repository_url}")
            else:
                run(
                    sys.executable,
                    "-m",
                    "twine",
                    "upload",
                    "--non-interactive",
                    "--repository-url",
                    repository_url,
                    *built,
                )
    except BaseException:
        _restore()
        raise
    if dry_run:
        _restore()
        print(f"dry run of {version}: built and checked; nothing uploaded, committed or tagged")
        return version
    run("git", "add", "--all", str(VERSION_FILE), str(CHANGELOG), str(CONTRACTS))
    run("git", "commit", "--quiet", "-m", f"Release {version}")
    run("git", "tag", "--annotate", f"v{version}", "-m", f"ticketing-common {version}")
    print(f"released {version}: uploaded to {repository_url}, committed and tagged v{version}")
    return version


def _restore() -> None:
    # The tree was clean when the release started: put back exactly what it was.
    subprocess.run(["git", "checkout", "--", "."], cwd=ROOT, check=True)  # noqa: S607 - git from PATH
    subprocess.run(["git", "clean", "-fdq", "--", str(CONTRACTS)], cwd=ROOT, check=True)  # noqa: S603, S607 - git from PATH, our path


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and release; 1 with the reason when refused."""
    parser = argparse.ArgumentParser(prog="release", description=__doc__.splitlines()[0])
    parser.add_argument("level", choices=["patch", "minor", "major"])
    parser.add_argument("--repository-url", default=os.environ.get("TWINE_REPOSITORY_URL", PYPI))
    parser.add_argument(
        "--dry-run", action="store_true", help="build and check, but upload, commit and tag nothing"
    )
    parser.add_argument(
        "--check",
        action="append",
        dest="checks",
        help="a command that must pass first (repeatable); default: nox -s tests lint typecheck",
    )
    args = parser.parse_args(argv)
    try:
        release(
            Level[args.level.upper()],
            args.repository_url,
            dry_run=args.dry_run,
            checks=args.checks or DEFAULT_CHECKS,
        )
    except ReleaseRefusedError as refusal:
        print(f"REFUSED: {refusal}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
