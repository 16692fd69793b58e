"""FULL compatibility between two JSON Schemas of one event, as a schema registry judges it.

FULL = backward and forward: consumers on the old schema read new events, and consumers on the new schema
read old events. Producers send only declared fields; consumers ignore unknown ones (as our models do).
So a new optional field is compatible, and any change to what an existing field accepts breaks one side.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

Schema = dict[str, Any]

# Keywords that only document a schema: changing them is compatible.
_DOCUMENTATION = ("title", "description", "examples")
# Keywords that restrict values: any change makes one side reject what the other sends.
_CONSTRAINTS = (
    "format",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "const",
    "additionalProperties",
)


class Level(IntEnum):
    """The version bump a change needs, ordered: ``NONE < PATCH < MINOR < MAJOR``."""

    NONE = 0
    PATCH = 1
    MINOR = 2
    MAJOR = 3


class Rule(StrEnum):
    """Each kind of change the check knows, named as findings print them."""

    EVENT_ADDED = "event added"
    EVENT_REMOVED = "event removed"
    SUBJECT_CHANGED = "subject changed"
    FIELD_ADDED_OPTIONAL = "optional field added"
    FIELD_ADDED_REQUIRED = "required field added"
    FIELD_REMOVED = "field removed"
    FIELD_RENAMED = "field renamed"
    MADE_REQUIRED = "optional field made required"
    MADE_OPTIONAL = "required field made optional"
    TYPE_CHANGED = "type changed"
    UNION_MEMBER_ADDED = "union member added"
    UNION_MEMBER_REMOVED = "union member removed"
    ENUM_VALUE_ADDED = "enum value added"
    ENUM_VALUE_REMOVED = "enum value removed"
    CONSTRAINT_CHANGED = "constraint changed"
    DEFAULT_CHANGED = "default changed"
    DOCUMENTATION_CHANGED = "documentation changed"


LEVELS: dict[Rule, Level] = {
    Rule.EVENT_ADDED: Level.MINOR,
    Rule.FIELD_ADDED_OPTIONAL: Level.MINOR,
    Rule.DOCUMENTATION_CHANGED: Level.MINOR,
    Rule.DEFAULT_CHANGED: Level.MINOR,  # a default fills a field the sender omitted: both sides still read it
    **dict.fromkeys(
        (
            Rule.EVENT_REMOVED,
            Rule.SUBJECT_CHANGED,
            Rule.FIELD_ADDED_REQUIRED,
            Rule.FIELD_REMOVED,
            Rule.FIELD_RENAMED,
            Rule.MADE_REQUIRED,
            Rule.MADE_OPTIONAL,
            Rule.TYPE_CHANGED,
            Rule.UNION_MEMBER_ADDED,  # old consumers cannot read the new kind
            Rule.UNION_MEMBER_REMOVED,  # new consumers cannot read the old kind
            Rule.ENUM_VALUE_ADDED,
            Rule.ENUM_VALUE_REMOVED,
            Rule.CONSTRAINT_CHANGED,
        ),
        Level.MAJOR,
    ),
}


@dataclass(frozen=True, order=True)
class Finding:
    """One change between two contracts: where (subject, JSON path), which rule, and what it needs."""

    subject: str
    path: str
    rule: Rule
    detail: str = ""

    @property
    def level(self) -> Level:
        """The bump this change needs."""
        return LEVELS[self.rule]

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.level.name.lower()}: {self.subject} {self.path}: {self.rule}{detail}"


def compare_contracts(old: dict[str, Schema], new: dict[str, Schema]) -> list[Finding]:
    """Every change from ``old`` to ``new``, both mapping subject to the event's JSON Schema."""
    findings: list[Finding] = []
    removed = {subject: schema for subject, schema in old.items() if subject not in new}
    added = {subject: schema for subject, schema in new.items() if subject not in old}
    for subject, schema in removed.items():
        # The same model on another subject: old consumers listen on a subject nobody publishes to.
        moved_to = [
            other for other, candidate in added.items() if candidate.get("title") == schema.get("title")
        ]
        if moved_to:
            findings.append(Finding(subject, "$", Rule.SUBJECT_CHANGED, f"now {moved_to[0]!r}"))
            added.pop(moved_to[0])
        else:
            findings.append(Finding(subject, "$", Rule.EVENT_REMOVED))
    findings += [Finding(subject, "$", Rule.EVENT_ADDED) for subject in added]
    for subject in old.keys() & new.keys():
        findings += _Comparison(subject, old[subject], new[subject]).run()
    return sorted(findings)


def required_level(findings: list[Finding]) -> Level:
    """The largest bump the findings need (NONE for none)."""
    return max((finding.level for finding in findings), default=Level.NONE)


class _Comparison:
    def __init__(self, subject: str, old_root: Schema, new_root: Schema) -> None:
        self.subject = subject
        self.old_root = old_root
        self.new_root = new_root
        self.findings: list[Finding] = []

    def run(self) -> list[Finding]:
        self.schema("$", self.old_root, self.new_root, set())
        return self.findings

    def add(self, path: str, rule: Rule, detail: str = "") -> None:
        self.findings.append(Finding(self.subject, path, rule, detail))

    def schema(self, path: str, old: Schema, new: Schema, seen: set[tuple[str, str]]) -> None:
        refs = (old.get("$ref", ""), new.get("$ref", ""))
        if refs != ("", "") and refs in seen:
            return  # a recursive model: this pair is being compared further up
        seen = seen | {refs}
        old, new = _resolve(old, self.old_root), _resolve(new, self.new_root)
        old_types, new_types = _types(old, self.old_root), _types(new, self.new_root)
        if old_types != new_types:
            self.add(path, Rule.TYPE_CHANGED, f"{_show(old_types)} -> {_show(new_types)}")
            return
        self.keywords(path, old, new)
        self.enum(path, old, new)
        # Same type set: compare what is inside each branch (the non-null one of a nullable field, items),
        # each old member with the new member of the same name, whatever their order.
        old_members, new_members = _members(old, new), _members(new, old)
        pairs = [(old_members[name], new_members[name]) for name in old_members.keys() & new_members.keys()]
        gone = [name for name in old_members if name not in new_members]
        came = [name for name in new_members if name not in old_members]
        # A member under another name (a nested model renamed) is compared with the one that left.
        pairs += [(old_members[a], new_members[b]) for a, b in zip(gone, came, strict=False)]
        for name in gone[len(came) :]:
            self.add(path, Rule.UNION_MEMBER_REMOVED, name)
        for name in came[len(gone) :]:
            self.add(path, Rule.UNION_MEMBER_ADDED, name)
        for old_member, new_member in pairs:
            old_branch = _resolve(old_member, self.old_root)
            new_branch = _resolve(new_member, self.new_root)
            if "properties" in old_branch or "properties" in new_branch:
                self.properties(path, old_branch, new_branch, seen)
            if "items" in old_branch and "items" in new_branch:
                self.schema(f"{path}[]", old_branch["items"], new_branch["items"], seen)

    def keywords(self, path: str, old: Schema, new: Schema) -> None:
        # A field that became a union, or stopped being one, is a union change: its title goes with it.
        same_shape = (_union(old) is None) == (_union(new) is None)
        if path != "$" and same_shape and any(old.get(key) != new.get(key) for key in _DOCUMENTATION):
            self.add(path, Rule.DOCUMENTATION_CHANGED)
        for key in _CONSTRAINTS:
            if old.get(key) != new.get(key):
                self.add(path, Rule.CONSTRAINT_CHANGED, f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
        if ("default" in old or "default" in new) and old.get("default") != new.get("default"):
            self.add(path, Rule.DEFAULT_CHANGED, f"{old.get('default')!r} -> {new.get('default')!r}")

    def enum(self, path: str, old: Schema, new: Schema) -> None:
        old_values, new_values = _enum(old, self.old_root), _enum(new, self.new_root)
        if old_values is None or new_values is None:
            return
        for value in sorted(new_values - old_values, key=str):
            self.add(path, Rule.ENUM_VALUE_ADDED, repr(value))
        for value in sorted(old_values - new_values, key=str):
            self.add(path, Rule.ENUM_VALUE_REMOVED, repr(value))

    def properties(self, path: str, old: Schema, new: Schema, seen: set[tuple[str, str]]) -> None:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
        removed = [name for name in old_props if name not in new_props]
        added = [name for name in new_props if name not in old_props]
        for name in removed:
            twin = next((other for other in added if _same(old_props[name], new_props[other])), None)
            if twin is not None:
                added.remove(twin)
                self.add(f"{path}.{name}", Rule.FIELD_RENAMED, f"now {twin!r}")
            else:
                self.add(f"{path}.{name}", Rule.FIELD_REMOVED)
        for name in added:
            rule = Rule.FIELD_ADDED_REQUIRED if name in new_required else Rule.FIELD_ADDED_OPTIONAL
            self.add(f"{path}.{name}", rule)
        for name in old_props.keys() & new_props.keys():
            if name not in old_required and name in new_required:
                self.add(f"{path}.{name}", Rule.MADE_REQUIRED)
            elif name in old_required and name not in new_required:
                self.add(f"{path}.{name}", Rule.MADE_OPTIONAL)
            self.schema(f"{path}.{name}", old_props[name], new_props[name], seen)


def _resolve(schema: Schema, root: Schema) -> Schema:
    # Local references only, as pydantic writes them (#/$defs/Name); keys beside a $ref win. An allOf
    # (pydantic's wrapper of a $ref with a description, or a composition) is the merge of its members.
    while "$ref" in schema or "allOf" in schema:
        if "$ref" in schema:
            name = schema["$ref"].removeprefix("#/$defs/")
            schema = {**root.get("$defs", {})[name], **{k: v for k, v in schema.items() if k != "$ref"}}
        else:
            merged: Schema = {}
            for member in schema["allOf"]:
                merged = _merge(merged, _resolve(member, root))
            schema = _merge(merged, {k: v for k, v in schema.items() if k != "allOf"})
    return schema


def _merge(first: Schema, second: Schema) -> Schema:
    # What a value must satisfy under both: properties and required lists add up, other keys: the latter.
    merged = {**first, **second}
    if "properties" in first and "properties" in second:
        merged["properties"] = {**first["properties"], **second["properties"]}
    if "required" in first and "required" in second:
        merged["required"] = [
            *first["required"],
            *(n for n in second["required"] if n not in first["required"]),
        ]
    return merged


def _union(schema: Schema) -> list[Schema] | None:
    return schema.get("anyOf") or schema.get("oneOf")


def _members(schema: Schema, other: Schema) -> dict[str, Schema]:
    """The non-null members of a union (or the schema itself), by name: the model's, else the type's.

    A nullable field is anyOf [X, null]: its member is X. Members are matched by name, so reordering a
    union changes nothing; two unnamed members of one type are told apart by their rank among them.
    Where neither side is a union, the one schema is its own member, whatever its title.
    """
    if _union(schema) is None and _union(other) is None:
        return {"": schema}
    options = _union(schema) or [schema]
    members: dict[str, Schema] = {}
    for option in options:
        if option.get("type") == "null":
            continue
        name = (
            option.get("$ref", "").removeprefix("#/$defs/") or option.get("title") or str(option.get("type"))
        )
        rank, key = 1, name
        while key in members:
            rank += 1
            key = f"{name} #{rank}"
        members[key] = option
    return members


def _types(schema: Schema, root: Schema) -> frozenset[str]:
    options = _union(schema) or [schema]
    kinds: set[str] = set()
    for option in options:
        kind = _resolve(option, root).get("type", "any")
        kinds.update(kind if isinstance(kind, list) else [kind])
    return frozenset(kinds)


def _enum(schema: Schema, root: Schema) -> set[Any] | None:
    values: set[Any] = set()
    found = False
    for option in schema.get("anyOf") or [schema]:
        resolved = _resolve(option, root)
        if "enum" in resolved:
            found = True
            values.update(resolved["enum"])
    return values if found else None


def _same(old: Schema, new: Schema) -> bool:
    ignored = {"title", "description"}
    return {k: v for k, v in old.items() if k not in ignored} == {
        k: v for k, v in new.items() if k not in ignored
    }


def _show(types: frozenset[str]) -> str:
    return " | ".join(sorted(types))
