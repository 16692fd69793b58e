"""``nox`` runs tests, lint and typecheck; ``nox -s demo`` runs the demo; bench and build on demand."""

from __future__ import annotations

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests", "faults", "lint", "typecheck", "contracts", "docs"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
TYPED_PATHS = [
    "src",
    "examples",
    "typing_tests",
    "benchmarks",
    "tests",
    "scripts",
    "docs/hooks.py",
    "noxfile.py",
]


def install(session: nox.Session, *groups: str) -> None:
    """Install the project with its testing, fastapi and sqlalchemy extras and the tools of ``groups``."""
    session.install(".[testing,fastapi,sqlalchemy]")
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group))


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite against real nats-servers started by the package's pytest plugin."""
    install(session, "test")
    session.run("pytest", *session.posargs)


@nox.session
def faults(session: nox.Session) -> None:
    """Kill -9 nodes of a three-node JetStream cluster and a listener; print what was lost (nothing)."""
    install(session, "test")
    session.run("pytest", "-m", "faults", "-p", "no:randomly", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check lint and formatting with ruff."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Run mypy --strict on the package, examples, typing tests, benchmarks, tests and this file."""
    install(session, "typecheck")
    session.run("mypy", "--exclude", "typing_tests/bad/", *TYPED_PATHS)


@nox.session
def demo(session: nox.Session) -> None:
    """Run the five reference services and a user's story end to end (the README's main command)."""
    install(session, "services")
    session.run("python", "examples/end_to_end.py", *session.posargs)


@nox.session
def standalone(session: nox.Session) -> None:
    """Run the standalone publisher/listener demo on an embedded nats-server."""
    session.install(".[testing]")
    session.run("python", "examples/standalone_nats/demo.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark publisher and listener against raw nats-py and FastStream; hop, outbox, memory, a service."""
    install(session, "bench")
    session.run("python", "benchmarks/bench.py", *session.posargs)
    session.run("python", "benchmarks/hop.py", *session.posargs)
    session.run("python", "benchmarks/outbox_drain.py", *session.posargs)
    session.run("python", "benchmarks/memory.py", *session.posargs)
    session.run("python", "benchmarks/service.py", *session.posargs)


@nox.session
def build(session: nox.Session) -> None:
    """Build the sdist and wheel into dist/ and check them with twine."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "build"))
    session.run("python", "-m", "build", "--outdir", "dist")
    session.run("twine", "check", "--strict", "dist/*")


@nox.session
def contracts(session: nox.Session) -> None:
    """Check the event contracts against the last released snapshot (semantic versioning gate)."""
    session.install(".")
    session.run("ticketing-contracts", "check", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site into site/ with --strict; ``nox -s docs -- serve`` serves it instead."""
    session.install(".", *nox.project.dependency_groups(PYPROJECT, "docs"))
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", *session.posargs[1:])
    else:
        session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session
def release(session: nox.Session) -> None:
    """Release: ``nox -s release -- patch|minor|major [--repository-url URL] [--dry-run]``."""
    session.install(".", "nox>=2025.2.9", *nox.project.dependency_groups(PYPROJECT, "build"))
    session.run("python", "scripts/release.py", *session.posargs)
