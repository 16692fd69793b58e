"""The public surface: what `import ticketing_common` offers is exactly its sorted __all__, typed."""

from __future__ import annotations

import importlib.resources
import subprocess
import sys

import ticketing_common
import ticketing_common.alembic
import ticketing_common.contracts
import ticketing_common.deadletters
import ticketing_common.errors
import ticketing_common.fastapi
import ticketing_common.health
import ticketing_common.opentelemetry
import ticketing_common.prometheus
import ticketing_common.service
import ticketing_common.sqlalchemy
import ticketing_common.structlog
import ticketing_common.testing
import ticketing_common.uvicorn
import ticketing_common.versioning


def test_all_is_sorted_and_complete() -> None:
    """__all__ lists every public name of the package, sorted, and nothing it lacks."""
    public = {name for name in vars(ticketing_common) if not name.startswith("_") and not _is_module(name)}
    assert set(ticketing_common.__all__) == public | {"__version__"}
    assert ticketing_common.__all__ == sorted(ticketing_common.__all__, key=lambda n: (not n.isupper(), n))


def test_public_modules_export_what_they_define() -> None:
    """Each public module names its exports in a sorted __all__, and each exists."""
    modules = (
        ticketing_common.alembic,
        ticketing_common.contracts,
        ticketing_common.deadletters,
        ticketing_common.errors,
        ticketing_common.fastapi,
        ticketing_common.health,
        ticketing_common.opentelemetry,
        ticketing_common.prometheus,
        ticketing_common.service,
        ticketing_common.structlog,
        ticketing_common.sqlalchemy,
        ticketing_common.testing,
        ticketing_common.uvicorn,
        ticketing_common.versioning,
    )
    for module in modules:
        assert all(hasattr(module, name) for name in module.__all__)
        # Sorted as ruff's RUF022 sorts: constants first, then classes and functions.
        assert module.__all__ == sorted(module.__all__, key=lambda n: (not n.isupper(), n))


def test_the_package_is_marked_typed() -> None:
    """py.typed ships, so mypy uses the package's annotations."""
    assert importlib.resources.files("ticketing_common").joinpath("py.typed").is_file()


def test_the_core_import_stays_light() -> None:
    """Importing the package loads neither pytest (the testing extra) nor the fastapi extra."""
    code = (
        "import sys, ticketing_common; "
        "extras = {'pytest', 'fastapi', 'starlette', 'jwt', 'sqlalchemy', 'uvicorn', 'alembic', "
        "'structlog', 'prometheus_client', 'opentelemetry'}; "
        "print(sorted(extras & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)  # noqa: S603
    assert result.stdout.strip() == "[]"


def _is_module(name: str) -> bool:
    # Submodules and the __future__ feature are attributes of the package, not its API.
    return type(getattr(ticketing_common, name)).__name__ in {"module", "_Feature"}
