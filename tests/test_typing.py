"""mypy --strict rejects the wrong uses in typing_tests/bad, each with the error code its line expects."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

BAD = Path(__file__).parent.parent / "typing_tests" / "bad"
_EXPECT = re.compile(r"# expect: ([\w-]+)")
_ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[\w-]+)\]$")


def expected_errors(path: Path) -> set[tuple[int, str]]:
    return {
        (number, match.group(1))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if (match := _EXPECT.search(line))
    }


@pytest.mark.parametrize("path", sorted(BAD.glob("*.py")), ids=lambda p: p.name)
def test_mypy_reports_each_expected_error(path: Path) -> None:
    """Mypy finds exactly the errors marked `# expect: <code>`, on their lines, and no others."""
    stdout, _stderr, _status = api.run(["--strict", "--no-incremental", "--show-error-codes", str(path)])
    found = {
        (int(match.group("line")), match.group("code"))
        for line in stdout.splitlines()
        if (match := _ERROR.match(line.strip()))
    }
    assert found == expected_errors(path), stdout
    assert expected_errors(path)
