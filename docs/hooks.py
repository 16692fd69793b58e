"""MkDocs hooks: the AsyncAPI page and document, rendered from the models when the site is built."""

from __future__ import annotations

import json
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

from ticketing_common import __version__
from ticketing_common.contracts import asyncapi_document

_PLACEHOLDER = "<!-- asyncapi -->"


def on_page_markdown(markdown: str, **_: object) -> str:
    """Fill the AsyncAPI page's placeholder with a section per channel."""
    if _PLACEHOLDER not in markdown:
        return markdown
    return markdown.replace(_PLACEHOLDER, render(asyncapi_document(__version__)))


def on_files(files: Files, *, config: MkDocsConfig) -> Files:
    """Add the document itself beside the page that links to it."""
    content = json.dumps(asyncapi_document(__version__), indent=2) + "\n"
    files.append(File.generated(config, "reference/asyncapi.json", content=content))
    return files


def render(document: dict[str, Any]) -> str:
    """Markdown: per channel, its address, its message's summary and a table of the payload's fields."""
    components = document["components"]
    parts = [f"AsyncAPI {document['asyncapi']}, version {document['info']['version']}.\n"]
    for channel in document["channels"].values():
        (reference,) = channel["messages"].values()
        message = components["messages"][reference["$ref"].rsplit("/", 1)[1]]
        schema = components["schemas"][message["payload"]["$ref"].rsplit("/", 1)[1]]
        parts.append(f"## `{channel['address']}`\n\n{message['name']}: {message['summary']}\n")
        parts.append(_fields(schema, components["schemas"]))
    return "\n".join(parts)


def _fields(schema: dict[str, Any], schemas: dict[str, Any]) -> str:
    rows = ["| field | type | required |", "|---|---|---|"]
    required = set(schema.get("required", []))
    for name, field in schema.get("properties", {}).items():
        rows.append(f"| `{name}` | {_type(field, schemas)} | {'yes' if name in required else 'no'} |")
    return "\n".join(rows) + "\n"


def _type(field: dict[str, Any], schemas: dict[str, Any]) -> str:
    if "$ref" in field:
        target = schemas[field["$ref"].rsplit("/", 1)[1]]
        if "enum" in target:
            return " or ".join(f"`{json.dumps(value)}`" for value in target["enum"])
        inner = ", ".join(f"`{name}`" for name in target.get("properties", {}))
        return f"object ({inner})"
    if "anyOf" in field:
        return " or ".join(_type(option, schemas) for option in field["anyOf"])
    kind = str(field.get("type", "any"))
    return f"{kind} ({field['format']})" if "format" in field else kind
