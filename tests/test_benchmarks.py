"""The benchmarks a user runs (``nox -s bench``) still run: each script's quick mode prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


@pytest.mark.parametrize(
    ("script", "printed"),
    [
        (
            "hop.py",
            [
                "hop, consume, 2,000 events",
                "ticketing-common concurrency 8 ",
                "ticketing-common publish_many ",
            ],
        ),
        ("outbox_drain.py", ["outbox drain, 500 rows on SQLite"]),
        ("memory.py", ["memory: 20,000 stored events", "ticketing-common ", "raw nats-py push "]),
        ("service.py", ["SQLite with event", "SQLite no event", "SQLite: the event is"]),
    ],
)
def test_a_benchmark_runs_and_prints_its_table(script: str, printed: list[str]) -> None:
    """``--quick`` exits 0 with the lines of its table (bench.py needs FastStream: nox -s bench runs it)."""
    result = subprocess.run(  # noqa: S603 - this interpreter, our scripts
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for line in printed:
        assert line in result.stdout, result.stdout
