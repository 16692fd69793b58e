"""The contract gate's types, as a release tool or a CI script would use them."""

from __future__ import annotations

from pathlib import Path
from typing import assert_type

from ticketing_common.contracts import (
    Finding,
    Level,
    Rule,
    bump,
    compare_contracts,
    current_contracts,
    last_snapshot,
    parse_version,
    required_level,
)


def gate(folder: Path) -> None:
    last = last_snapshot(folder)
    if last is None:
        return
    version, contracts = last
    assert_type(version, tuple[int, int, int])
    findings = compare_contracts(contracts, current_contracts())
    assert_type(findings, list[Finding])
    level = required_level(findings)
    assert_type(level, Level)
    assert_type(bump(parse_version("1.2.3"), level), tuple[int, int, int])
    for finding in findings:
        assert_type(finding.rule, Rule)
        assert_type(finding.level, Level)
