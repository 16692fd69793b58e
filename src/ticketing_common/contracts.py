"""The events' contracts as JSON Schema snapshots, the semantic-version gate on them, and AsyncAPI.

``ticketing-contracts export`` writes ``contracts/<version>.json`` (each event's JSON Schema, camelCase as on
the wire, keyed by subject); ``ticketing-contracts check`` compares the current models with the last
snapshot and exits 1 when the project's version is lower than the changes need (see ``_compat``);
``ticketing-contracts asyncapi`` writes an AsyncAPI 3.0 document of every channel;
``ticketing-contracts typescript`` writes TypeScript declarations for Node services (see ``_typescript``).

Before the first release, ``contracts/baseline.json`` (``ticketing-contracts baseline``) stands for the
last snapshot: the contracts as they were when the gate started, as version 0.0.0. So a breaking change
fails the check from that day on, and the first release is a bump of 0.0.0 (``minor`` gives 0.1.0).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

from ticketing_common import _events
from ticketing_common._compat import Finding, Level, Rule, compare_contracts, required_level
from ticketing_common._events import Event
from ticketing_common._subjects import Subjects
from ticketing_common._typescript import typescript_files, write_typescript
from ticketing_common._version import __version__

__all__ = [
    "BASELINE",
    "Finding",
    "Level",
    "Rule",
    "asyncapi_document",
    "bump",
    "check",
    "compare_contracts",
    "current_contracts",
    "event_types",
    "format_version",
    "last_snapshot",
    "main",
    "parse_version",
    "required_level",
    "typescript_files",
    "write_asyncapi",
    "write_baseline",
    "write_snapshot",
    "write_typescript",
]

Version = tuple[int, int, int]
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)")
BASELINE = "baseline.json"
"""The snapshot in a contracts folder that stands for the last release until there is one."""
BASELINE_VERSION: Version = (0, 0, 0)


def event_types() -> list[type[Event]]:
    """Every event model of the package, one per subject, in ``Subjects`` order."""
    by_subject = {
        model.subject: model
        for model in vars(_events).values()
        if isinstance(model, type) and issubclass(model, Event) and "subject" in model.__dict__
    }
    return [by_subject[subject] for subject in Subjects]


def current_contracts() -> dict[str, dict[str, Any]]:
    """Subject -> the JSON Schema of its event as consumers validate it (camelCase field names)."""
    return {model.subject.value: model.model_json_schema(by_alias=True) for model in event_types()}


def parse_version(text: str) -> Version:
    """``1.2.3`` (or ``1.2.3.dev0``) -> (1, 2, 3)."""
    match = _VERSION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a MAJOR.MINOR.PATCH version")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def format_version(version: Version) -> str:
    """(1, 2, 3) -> ``1.2.3``."""
    return ".".join(map(str, version))


def bump(version: Version, level: Level) -> Version:
    """The version after a bump of ``level`` (NONE leaves it as it is)."""
    major, minor, patch = version
    if level is Level.MAJOR:
        return major + 1, 0, 0
    if level is Level.MINOR:
        return major, minor + 1, 0
    if level is Level.PATCH:
        return major, minor, patch + 1
    return version


def last_snapshot(folder: Path) -> tuple[Version, dict[str, dict[str, Any]]] | None:
    """The highest version with a snapshot in ``folder`` and its contracts.

    Without one, the baseline (as version 0.0.0) if there is one, else None.
    """
    snapshots = {
        parse_version(path.stem): path for path in folder.glob("*.json") if _VERSION.match(path.stem)
    }
    if snapshots:
        version = max(snapshots)
        path = snapshots[version]
    elif (folder / BASELINE).is_file():
        version, path = BASELINE_VERSION, folder / BASELINE
    else:
        return None
    contracts: dict[str, dict[str, Any]] = json.loads(path.read_text())["events"]
    return version, contracts


def write_snapshot(folder: Path, version: Version) -> Path:
    """Write ``<folder>/<version>.json`` with the current contracts; return its path."""
    return _write(folder / f"{format_version(version)}.json", format_version(version))


def write_baseline(folder: Path) -> Path:
    """Write ``<folder>/baseline.json``: today's contracts, the base of the first release; return its path."""
    return _write(folder / BASELINE, format_version(BASELINE_VERSION))


def _write(path: Path, version: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot = {"version": version, "events": current_contracts()}
    path.write_text(json.dumps(snapshot, indent=2, sort_keys=True) + "\n")
    return path


def asyncapi_document(version: str) -> dict[str, Any]:
    """An AsyncAPI 3.0 document: one channel per subject, one message per event, their payload schemas."""
    schemas: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for model in event_types():
        name = model.__name__
        schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
        messages[name] = {
            "name": name,
            "title": model.subject.value,
            "summary": (model.__doc__ or "").strip().splitlines()[0],
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
        }
        channel = _channel_id(model.subject)
        channels[channel] = {
            "address": model.subject.value,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        for action in ("send", "receive"):
            operations[f"{action}{channel[0].upper()}{channel[1:]}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{channel}"},
                "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"}],
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "ticketing events",
            "version": version,
            "description": "The events of the ticketing services, on NATS JetStream (ticketing-common).",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def write_asyncapi(path: Path, version: str) -> Path:
    """Write ``asyncapi_document(version)`` to ``path`` and return it.

    As JSON, which is YAML 1.2: writing needs no YAML library, and any YAML tool reads it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asyncapi_document(version), indent=2) + "\n")
    return path


def _channel_id(subject: StrEnum) -> str:
    first, *rest = re.split(r"[:.\-]", subject.value)
    return first + "".join(part.capitalize() for part in rest)


def check(folder: Path) -> tuple[Level, list[Finding], Version | None]:
    """The level the changes since the last snapshot need, the findings, and that snapshot's version."""
    last = last_snapshot(folder)
    if last is None:
        return Level.NONE, [], None
    released, contracts = last
    findings = compare_contracts(contracts, current_contracts())
    return required_level(findings), findings, released


def main(argv: Sequence[str] | None = None) -> int:
    """The ``ticketing-contracts`` command."""
    parser = argparse.ArgumentParser(prog="ticketing-contracts", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("contracts"), help="the snapshots' folder")
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write the snapshot of this version")
    export.add_argument("--version", default=__version__, help="default: the package's version")
    check_command = commands.add_parser(
        "check", help="compare with the last snapshot; exit 1 if the version is too low"
    )
    check_command.add_argument("--version", default=__version__, help="default: the package's version")
    commands.add_parser("baseline", help="write the baseline the check uses until a first release")
    asyncapi = commands.add_parser("asyncapi", help="write the AsyncAPI 3.0 document")
    asyncapi.add_argument("--output", type=Path, default=Path("contracts/asyncapi.yaml"))
    asyncapi.add_argument("--version", default=__version__)
    typescript = commands.add_parser("typescript", help="write TypeScript declarations for Node services")
    typescript.add_argument("--out", type=Path, default=Path("contracts/typescript"))
    typescript.add_argument("--version", default=__version__)
    args = parser.parse_args(argv)

    writers: dict[str, Callable[[], object]] = {
        "export": lambda: write_snapshot(args.dir, parse_version(args.version)),
        "baseline": lambda: write_baseline(args.dir),
        "asyncapi": lambda: write_asyncapi(args.output, args.version),
        "typescript": lambda: (
            f"{len(write_typescript(args.out, event_types(), args.version))} files to {args.out}"
        ),
    }
    if args.command in writers:
        print(f"wrote {writers[args.command]()}")
        return 0
    return _check_command(args.dir, args.version)


def _check_command(folder: Path, version_text: str) -> int:
    version = parse_version(version_text)
    level, findings, released = check(folder)
    if released is None:
        print(f"no snapshot in {folder}: nothing to compare with (run: ticketing-contracts export)")
        return 0
    for finding in findings:
        print(finding)
    needed = bump(released, level)
    since, least = format_version(released), format_version(needed)
    if released == BASELINE_VERSION:
        since = "the baseline (nothing released yet)"
    if version < needed:
        print(
            f"FAIL: the contracts changed since {since} in a way that needs a "
            f"{level.name.lower()} release ({least} or later), but the version is {version_text}",
            file=sys.stderr,
        )
        return 1
    print(f"OK: version {version_text} covers the changes since {since} ({level.name.lower()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
