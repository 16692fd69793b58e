"""The contract gate: FULL-compatibility rules on a table of before/after schemas, the command, AsyncAPI."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ticketing_common import Subjects, TicketCreatedEvent
from ticketing_common.contracts import (
    BASELINE,
    Level,
    Rule,
    asyncapi_document,
    compare_contracts,
    current_contracts,
    main,
    required_level,
    write_asyncapi,
    write_snapshot,
)

STRING: dict[str, Any] = {"type": "string"}
INTEGER: dict[str, Any] = {"type": "integer"}
NUMBER: dict[str, Any] = {"type": "number"}
ASYNCAPI_SPECS = "6.11.1"  # the npm package of the AsyncAPI JSON Schemas
NULLABLE_STRING: dict[str, Any] = {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}


def event(
    properties: dict[str, Any],
    required: list[str] | None = None,
    *,
    title: str = "SomeEvent",
    defs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An event's schema as pydantic writes one; every property required unless ``required`` says."""
    schema = {
        "type": "object",
        "title": title,
        "properties": properties,
        "required": list(properties) if required is None else required,
    }
    return schema if defs is None else {**schema, "$defs": defs}


def ticket_ref(ticket: dict[str, Any], **more_defs: dict[str, Any]) -> dict[str, Any]:
    """An event whose ``ticket`` is a nested model in $defs, as pydantic writes it."""
    return event({"id": STRING, "ticket": {"$ref": "#/$defs/Ticket"}}, defs={"Ticket": ticket, **more_defs})


STATUS = {"type": "string", "enum": ["created", "cancelled"], "title": "Status"}
MODELS = {
    "A": event({"id": STRING, "note": NULLABLE_STRING}, ["id"], title="A"),
    "B": event({"id": STRING, "seats": INTEGER}, title="B"),
}
"""Two models a field may hold one of (a union), as pydantic puts them in $defs."""
REF_A, REF_B = {"$ref": "#/$defs/A"}, {"$ref": "#/$defs/B"}
TICKET = event({"id": STRING, "price": NUMBER}, title="Ticket")

# (id, before, after, expected findings as (path, rule)); the subject is always "thing:happened".
CASES: list[tuple[str, dict[str, Any], dict[str, Any], set[tuple[str, Rule]]]] = [
    ("unchanged", event({"id": STRING}), event({"id": STRING}), set()),
    (
        "optional field added",
        event({"id": STRING}),
        event({"id": STRING, "note": NULLABLE_STRING}, required=["id"]),
        {("$.note", Rule.FIELD_ADDED_OPTIONAL)},
    ),
    (
        "description changed",
        event({"id": {**STRING, "description": "old"}}),
        event({"id": {**STRING, "description": "new"}}),
        {("$.id", Rule.DOCUMENTATION_CHANGED)},
    ),
    (
        "title changed",
        event({"id": {**STRING, "title": "Id"}}),
        event({"id": {**STRING, "title": "Identifier"}}),
        {("$.id", Rule.DOCUMENTATION_CHANGED)},
    ),
    (
        "field removed",
        event({"id": STRING, "title": STRING}),
        event({"id": STRING}),
        {("$.title", Rule.FIELD_REMOVED)},
    ),
    (
        "field renamed",
        event({"id": STRING, "userId": STRING}),
        event({"id": STRING, "ownerId": STRING}),
        {("$.userId", Rule.FIELD_RENAMED)},
    ),
    (
        "required field added",
        event({"id": STRING}),
        event({"id": STRING, "price": NUMBER}),
        {("$.price", Rule.FIELD_ADDED_REQUIRED)},
    ),
    (
        "optional made required",
        event({"id": STRING, "orderId": STRING}, required=["id"]),
        event({"id": STRING, "orderId": STRING}),
        {("$.orderId", Rule.MADE_REQUIRED)},
    ),
    (
        "required made optional",
        event({"id": STRING, "orderId": STRING}),
        event({"id": STRING, "orderId": STRING}, required=["id"]),
        {("$.orderId", Rule.MADE_OPTIONAL)},
    ),
    (
        "int to float",
        event({"version": INTEGER}),
        event({"version": NUMBER}),
        {("$.version", Rule.TYPE_CHANGED)},
    ),
    ("float to int", event({"price": NUMBER}), event({"price": INTEGER}), {("$.price", Rule.TYPE_CHANGED)}),
    (
        "scalar to nested object",
        event({"ticket": STRING}),
        event({"ticket": event({"id": STRING})}),
        {("$.ticket", Rule.TYPE_CHANGED)},
    ),
    (
        "made nullable",
        event({"orderId": STRING}),
        event({"orderId": {"anyOf": [STRING, {"type": "null"}]}}),
        {("$.orderId", Rule.TYPE_CHANGED)},
    ),
    (
        "enum value added",
        event({"status": STATUS}),
        event({"status": {**STATUS, "enum": ["created", "cancelled", "complete"]}}),
        {("$.status", Rule.ENUM_VALUE_ADDED)},
    ),
    (
        "enum value removed",
        event({"status": STATUS}),
        event({"status": {**STATUS, "enum": ["created"]}}),
        {("$.status", Rule.ENUM_VALUE_REMOVED)},
    ),
    (
        "constraint changed",
        event({"id": STRING}),
        event({"id": {**STRING, "minLength": 1}}),
        {("$.id", Rule.CONSTRAINT_CHANGED)},
    ),
    (
        "format changed",
        event({"expiresAt": {**STRING, "format": "date-time"}}),
        event({"expiresAt": STRING}),
        {("$.expiresAt", Rule.CONSTRAINT_CHANGED)},
    ),
    (
        "default changed",
        event({"note": NULLABLE_STRING}, required=[]),
        event({"note": {**NULLABLE_STRING, "default": "none"}}, required=[]),
        {("$.note", Rule.DEFAULT_CHANGED)},
    ),
    (
        "nested inline field removed",
        event({"ticket": event({"id": STRING, "price": NUMBER})}),
        event({"ticket": event({"id": STRING})}),
        {("$.ticket.price", Rule.FIELD_REMOVED)},
    ),
    (
        "nested $ref field type changed",
        ticket_ref(TICKET),
        ticket_ref(event({"id": STRING, "price": INTEGER}, title="Ticket")),
        {("$.ticket.price", Rule.TYPE_CHANGED)},
    ),
    (
        "nested $ref optional field added",
        ticket_ref(TICKET),
        ticket_ref(
            event({"id": STRING, "price": NUMBER, "seat": NULLABLE_STRING}, ["id", "price"], title="Ticket")
        ),
        {("$.ticket.seat", Rule.FIELD_ADDED_OPTIONAL)},
    ),
    (
        "enum inside a nested model",
        ticket_ref(event({"status": {"$ref": "#/$defs/Status"}}, title="Ticket"), Status=STATUS),
        ticket_ref(
            event({"status": {"$ref": "#/$defs/Status"}}, title="Ticket"),
            Status={**STATUS, "enum": ["created"]},
        ),
        {("$.ticket.status", Rule.ENUM_VALUE_REMOVED)},
    ),
    (
        "inline model moved to $defs unchanged",
        event({"id": STRING, "ticket": TICKET}),
        ticket_ref(TICKET),
        set(),
    ),
    (
        "optional nullable nested model made non-nullable",
        event(
            {"ticket": {"anyOf": [{"$ref": "#/$defs/Ticket"}, {"type": "null"}], "default": None}},
            [],
            defs={"Ticket": TICKET},
        ),
        event({"ticket": {"$ref": "#/$defs/Ticket"}}, [], defs={"Ticket": TICKET}),
        {("$.ticket", Rule.TYPE_CHANGED)},  # a type change says it all: nothing more is compared there
    ),
    (
        "array items changed",
        event({"seats": {"type": "array", "items": INTEGER}}),
        event({"seats": {"type": "array", "items": STRING}}),
        {("$.seats[]", Rule.TYPE_CHANGED)},
    ),
    (
        "union of two models narrowed to one",
        event({"item": {"anyOf": [REF_A, REF_B]}}, defs=MODELS),
        event({"item": REF_A}, defs=MODELS),
        {("$.item", Rule.UNION_MEMBER_REMOVED)},
    ),
    (
        "union of one model widened to two",
        event({"item": REF_A}, defs=MODELS),
        event({"item": {"anyOf": [REF_A, REF_B]}}, defs=MODELS),
        {("$.item", Rule.UNION_MEMBER_ADDED)},
    ),
    (
        "anyOf members reordered",
        event({"item": {"anyOf": [REF_A, REF_B]}}, defs=MODELS),
        event({"item": {"anyOf": [REF_B, REF_A]}}, defs=MODELS),
        set(),
    ),
    (
        "oneOf members reordered, nullable",
        event({"item": {"oneOf": [REF_A, REF_B, {"type": "null"}]}}, defs=MODELS),
        event({"item": {"oneOf": [{"type": "null"}, REF_B, REF_A]}}, defs=MODELS),
        set(),
    ),
    (
        "a member's nested anyOf changed, members reordered",
        event({"item": {"anyOf": [REF_A, REF_B]}}, defs=MODELS),
        event(
            {"item": {"anyOf": [REF_B, REF_A]}},
            defs={
                **MODELS,
                "A": event({"id": STRING, "note": {"anyOf": [INTEGER, {"type": "null"}]}}, ["id"], title="A"),
            },
        ),
        {("$.item.note", Rule.TYPE_CHANGED)},
    ),
    (
        "nullable nested model renamed, same fields",
        event({"item": {"anyOf": [REF_A, {"type": "null"}], "default": None}}, [], defs=MODELS),
        event(
            {"item": {"anyOf": [{"$ref": "#/$defs/Renamed"}, {"type": "null"}], "default": None}},
            [],
            defs={"Renamed": {**MODELS["A"], "title": "Renamed"}},
        ),
        set(),
    ),
    (
        "change inside an allOf wrapper of a $ref",
        event(
            {"ticket": {"allOf": [{"$ref": "#/$defs/Ticket"}], "description": "the ticket"}},
            defs={"Ticket": TICKET},
        ),
        event(
            {"ticket": {"allOf": [{"$ref": "#/$defs/Ticket"}], "description": "the ticket"}},
            defs={"Ticket": event({"id": STRING, "price": INTEGER}, title="Ticket")},
        ),
        {("$.ticket.price", Rule.TYPE_CHANGED)},
    ),
    (
        "required field added to one part of an allOf composition",
        event({"ticket": {"allOf": [event({"id": STRING}), event({"price": NUMBER})]}}),
        event({"ticket": {"allOf": [event({"id": STRING}), event({"price": NUMBER, "seat": STRING})]}}),
        {("$.ticket.seat", Rule.FIELD_ADDED_REQUIRED)},
    ),
]


@pytest.mark.parametrize(
    ("before", "after", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_each_rule_on_a_before_after_pair(
    before: dict[str, Any], after: dict[str, Any], expected: set[tuple[str, Rule]]
) -> None:
    """The findings name the subject, the JSON path and the rule, and nothing else is reported."""
    findings = compare_contracts({"thing:happened": before}, {"thing:happened": after})
    assert {(finding.path, finding.rule) for finding in findings} == expected
    assert all(finding.subject == "thing:happened" for finding in findings)


@pytest.mark.parametrize(
    ("rule", "level"),
    [
        (Rule.FIELD_ADDED_OPTIONAL, Level.MINOR),
        (Rule.DOCUMENTATION_CHANGED, Level.MINOR),
        (Rule.EVENT_ADDED, Level.MINOR),
        *(
            (rule, Level.MAJOR)
            for rule in (
                Rule.FIELD_REMOVED,
                Rule.FIELD_RENAMED,
                Rule.FIELD_ADDED_REQUIRED,
                Rule.MADE_REQUIRED,
                Rule.MADE_OPTIONAL,
                Rule.TYPE_CHANGED,
                Rule.UNION_MEMBER_ADDED,
                Rule.UNION_MEMBER_REMOVED,
                Rule.ENUM_VALUE_ADDED,
                Rule.ENUM_VALUE_REMOVED,
                Rule.SUBJECT_CHANGED,
                Rule.EVENT_REMOVED,
                Rule.CONSTRAINT_CHANGED,
            )
        ),
    ],
)
def test_compatible_changes_are_minor_and_the_rest_major(rule: Rule, level: Level) -> None:
    """The bump each rule needs, as the issue's table states it."""
    from ticketing_common._compat import LEVELS  # noqa: PLC0415 - the table under test

    assert LEVELS[rule] is level


def test_events_added_removed_and_moved_to_another_subject() -> None:
    """A new subject is minor; a gone one is major; the same model on a new subject is a changed subject."""
    ticket, order = event({"id": STRING}, title="Ticket"), event({"id": STRING}, title="Order")
    findings = compare_contracts(
        {"ticket:created": ticket, "order:created": order},
        {"ticket:made": ticket, "payment:created": event({"id": STRING}, title="Payment")},
    )
    assert {(f.subject, f.rule) for f in findings} == {
        ("ticket:created", Rule.SUBJECT_CHANGED),
        ("order:created", Rule.EVENT_REMOVED),
        ("payment:created", Rule.EVENT_ADDED),
    }
    assert required_level(findings) is Level.MAJOR
    assert required_level([]) is Level.NONE


def test_real_pydantic_models_are_judged_the_same_way() -> None:
    """Schemas pydantic generates from variants of a real event give the expected verdicts."""

    class WithSeat(TicketCreatedEvent):
        seat: str | None = None

    class IntegerPrice(TicketCreatedEvent):
        price: int  # the breaking change under test

    base = {"ticket:created": TicketCreatedEvent.model_json_schema(by_alias=True)}
    seat = compare_contracts(base, {"ticket:created": WithSeat.model_json_schema(by_alias=True)})
    assert {(f.path, f.rule) for f in seat} == {("$.seat", Rule.FIELD_ADDED_OPTIONAL)}
    price = compare_contracts(base, {"ticket:created": IntegerPrice.model_json_schema(by_alias=True)})
    assert (("$.price", Rule.TYPE_CHANGED)) in {(f.path, f.rule) for f in price}
    assert str(next(f for f in price if f.rule is Rule.TYPE_CHANGED)) == (
        "major: ticket:created $.price: type changed (number -> integer)"
    )


def test_the_snapshot_is_the_camel_case_wire_form_of_every_subject(tmp_path: Path) -> None:
    """One schema per subject, field names as they travel (userId, expiresAt), version in the file."""
    path = write_snapshot(tmp_path, (1, 2, 3))
    snapshot = json.loads(path.read_text())
    assert (path.name, snapshot["version"]) == ("1.2.3.json", "1.2.3")
    assert set(snapshot["events"]) == {subject.value for subject in Subjects}
    assert "userId" in snapshot["events"]["ticket:created"]["properties"]
    assert "expiresAt" in snapshot["events"]["order:created"]["properties"]
    assert snapshot["events"] == current_contracts()


def test_the_check_command_fails_when_the_version_is_too_low(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unchanged: 0; a removed field since 1.0.0: exit 1 naming it, unless the version is 2.0.0."""
    folder = str(tmp_path)
    assert main(["--dir", folder, "check", "--version", "1.0.0"]) == 0  # no snapshot yet
    assert main(["--dir", folder, "export", "--version", "1.0.0"]) == 0
    assert main(["--dir", folder, "check", "--version", "1.0.0"]) == 0
    snapshot_path = tmp_path / "1.0.0.json"
    snapshot = json.loads(snapshot_path.read_text())
    # The released contract had a field the current models no longer have: they removed it.
    snapshot["events"]["payment:created"]["properties"]["amount"] = INTEGER
    snapshot["events"]["payment:created"]["required"].append("amount")
    snapshot_path.write_text(json.dumps(snapshot))
    capsys.readouterr()
    assert main(["--dir", folder, "check", "--version", "1.9.0"]) == 1
    out, err = capsys.readouterr()
    assert "major: payment:created $.amount: field removed" in out
    assert "needs a major release (2.0.0 or later)" in err
    assert main(["--dir", folder, "check", "--version", "2.0.0.dev0"]) == 0


ROOT = Path(__file__).resolve().parent.parent


def test_the_committed_baseline_holds_todays_contracts() -> None:
    """contracts/baseline.json, the gate's base until the first release, holds the models as they are."""
    baseline = json.loads((ROOT / "contracts" / BASELINE).read_text())
    assert baseline["version"] == "0.0.0"
    assert baseline["events"] == current_contracts()


def test_against_the_baseline_a_breaking_change_fails_and_an_addition_needs_the_next_minor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before any release: a removed field fails at 0.x (it needs 1.0.0); a new event passes at 0.1.0."""
    folder = str(tmp_path)
    assert main(["--dir", folder, "baseline"]) == 0
    contracts = current_contracts()
    del contracts["payment:created"]["properties"]["stripeId"]
    contracts["payment:created"]["required"].remove("stripeId")
    monkeypatch.setattr("ticketing_common.contracts.current_contracts", lambda: contracts)
    capsys.readouterr()
    assert main(["--dir", folder, "check", "--version", "0.1.0.dev0"]) == 1
    out, err = capsys.readouterr()
    assert "major: payment:created $.stripeId: field removed" in out
    assert "since the baseline (nothing released yet)" in err
    assert "needs a major release (1.0.0 or later)" in err
    added = {**current_contracts(), "ticket:reviewed": contracts["ticket:created"]}
    monkeypatch.setattr("ticketing_common.contracts.current_contracts", lambda: added)
    assert main(["--dir", folder, "check", "--version", "0.1.0.dev0"]) == 0
    assert "(minor)" in capsys.readouterr().out


def test_the_asyncapi_document_has_every_subject_and_resolves(tmp_path: Path) -> None:
    """AsyncAPI 3.0: a channel per subject, send/receive operations, every $ref resolves; valid YAML."""
    path = write_asyncapi(tmp_path / "asyncapi.yaml", "1.2.3")
    document = yaml.safe_load(path.read_text())
    assert document == asyncapi_document("1.2.3")
    assert (document["asyncapi"], document["info"]["version"]) == ("3.0.0", "1.2.3")
    assert {channel["address"] for channel in document["channels"].values()} == {s.value for s in Subjects}
    assert len(document["operations"]) == 2 * len(Subjects)
    refs = list(_refs(document))
    assert refs
    for ref in refs:
        target: Any = document
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        assert isinstance(target, dict), ref
    payload = document["components"]["schemas"]["OrderCreatedEvent"]
    assert payload["properties"]["ticket"] == {"$ref": "#/components/schemas/OrderCreatedTicket"}
    assert document["components"]["schemas"]["OrderStatus"]["enum"] == [
        "created",
        "cancelled",
        "awaiting:payment",
        "complete",
    ]


def _refs(node: Any) -> Any:  # noqa: ANN401 - any JSON
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


@pytest.mark.skipif(shutil.which("npm") is None, reason="the AsyncAPI specification is fetched with npm")
def test_the_asyncapi_document_is_valid_against_the_official_schema(tmp_path: Path) -> None:
    """The document validates against AsyncAPI 3.0.0's own JSON Schema (from the @asyncapi/specs package)."""
    fetched = subprocess.run(  # noqa: S603 - fixed arguments
        ["npm", "pack", "--silent", f"@asyncapi/specs@{ASYNCAPI_SPECS}"],  # noqa: S607 - npm from PATH
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert fetched.returncode == 0, fetched.stderr
    with tarfile.open(tmp_path / fetched.stdout.strip()) as archive:
        member = archive.extractfile("package/schemas/3.0.0-without-$id.json")
        assert member is not None
        specification = json.load(member)
    validator = jsonschema.validators.validator_for(specification)(specification)
    errors = [
        f"{list(error.path)}: {error.message}" for error in validator.iter_errors(asyncapi_document("1.2.3"))
    ]
    assert errors == []
    broken = asyncapi_document("1.2.3")
    del broken["info"]
    assert list(validator.iter_errors(broken)), "the official schema must reject a document without info"
