"""Tool catalogs in the OpenAI `tools` format: load, validate, hash.

The supported schema is a subset of JSON Schema draft 2020-12: object/string/number/integer/
boolean/array, enum, required, default, minimum/maximum, items, description. Anything else is
refused with an error naming the tool and the field, because the data generator, the grammar and
the validator only understand this subset.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fnedge.errors import FnedgeError
from fnedge.io import read_json

SCALAR_TYPES = {"string", "number", "integer", "boolean"}
SUPPORTED_TYPES = SCALAR_TYPES | {"array", "object"}
# Keys we accept in a property schema; anything else would be silently ignored downstream.
PROPERTY_KEYS = {"type", "description", "enum", "default", "minimum", "maximum", "items", "title",
                 "properties", "required", "examples"}


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]

    @property
    def properties(self) -> dict[str, dict[str, Any]]:
        return self.parameters.get("properties", {})

    @property
    def required(self) -> list[str]:
        return list(self.parameters.get("required", []))

    def to_openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": self.parameters}}


@dataclass(frozen=True)
class Catalog:
    tools: tuple[Tool, ...]
    source: str = "<memory>"
    by_name: dict[str, Tool] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name.update({t.name: t for t in self.tools})

    def __getitem__(self, name: str) -> Tool:
        return self.by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tools]

    def to_openai(self) -> list[dict[str, Any]]:
        return [t.to_openai() for t in self.tools]

    def sha256(self) -> str:
        canonical = json.dumps(self.to_openai(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def default_catalog_path() -> Path:
    return Path(str(resources.files("fnedge") / "catalogs" / "default_tools.json"))


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load and validate a catalog file; None means the built-in default catalog."""
    path = Path(path) if path is not None else default_catalog_path()
    if not path.is_file():
        raise FnedgeError(f"{path}: catalog file not found")
    return parse_catalog(read_json(path), source=str(path))


def model_catalog(record: dict[str, Any], source: str) -> Catalog:
    """The catalog a model was trained on, from its fnedge.json `record` (read from `source`):
    the tools the record carries, else its training config's catalog file, else the built-in one;
    checked against the hash the record keeps."""
    if record.get("catalog"):
        catalog = parse_catalog(record["catalog"], source=f"{source} (catalog)")
    else:
        catalog = load_catalog(record.get("train_config", {}).get("catalog"))
    if record.get("catalog_sha256") and catalog.sha256() != record["catalog_sha256"]:
        raise FnedgeError(f"{source}: the model was trained on catalog {record['catalog_sha256'][:12]}, "
                          f"but {catalog.source} hashes to {catalog.sha256()[:12]}")
    return catalog


def parse_catalog(data: Any, source: str = "<memory>") -> Catalog:
    """Validate a list of OpenAI tool objects (or bare function objects) and build a Catalog."""
    if isinstance(data, dict) and "tools" in data:
        data = data["tools"]
    if not isinstance(data, list) or not data:
        raise FnedgeError(f"{source}: a catalog must be a non-empty JSON list of tools")
    tools: list[Tool] = []
    seen: set[str] = set()
    for index, entry in enumerate(data):
        tool = _parse_tool(entry, f"{source}: tool #{index}")
        if tool.name in seen:
            raise FnedgeError(f"{source}: duplicate tool name '{tool.name}'")
        seen.add(tool.name)
        tools.append(tool)
    return Catalog(tuple(tools), source=source)


def _parse_tool(entry: Any, where: str) -> Tool:
    if isinstance(entry, dict) and entry.get("type") == "function" and "function" in entry:
        entry = entry["function"]
    if not isinstance(entry, dict):
        raise FnedgeError(f"{where}: expected an object with a 'function' field")
    name = entry.get("name")
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-." for c in name):
        raise FnedgeError(f"{where}: 'name' must be a non-empty identifier, got {name!r}")
    where = f"{where.rsplit(': ', 1)[0]}: tool '{name}'"
    description = entry.get("description", "")
    if not isinstance(description, str):
        raise FnedgeError(f"{where}: 'description' must be a string")
    parameters = entry.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        raise FnedgeError(f"{where}: 'parameters' must be a JSON Schema of type 'object'")
    _check_object_schema(parameters, f"{where}: parameters")
    return Tool(name=name, description=description, parameters=parameters)


def _check_object_schema(schema: dict[str, Any], where: str) -> None:
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise FnedgeError(f"{where}: 'properties' must be an object")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise FnedgeError(f"{where}: 'required' must be a list of property names")
    for name in required:
        if name not in properties:
            raise FnedgeError(f"{where}: required property '{name}' is not defined in 'properties'")
    for prop_name, prop in properties.items():
        _check_property(prop, f"{where}.{prop_name}")


def _check_property(prop: Any, where: str) -> None:
    if not isinstance(prop, dict):
        raise FnedgeError(f"{where}: schema must be an object")
    unknown = set(prop) - PROPERTY_KEYS
    if unknown:
        raise FnedgeError(f"{where}: unsupported schema keyword(s) {sorted(unknown)}")
    kind = prop.get("type")
    if kind is None and "enum" in prop:
        kind = "string"
    if kind not in SUPPORTED_TYPES:
        raise FnedgeError(f"{where}: unsupported type {kind!r} (supported: {sorted(SUPPORTED_TYPES)})")
    if "enum" in prop and (not isinstance(prop["enum"], list) or not prop["enum"]):
        raise FnedgeError(f"{where}: 'enum' must be a non-empty list")
    for bound in ("minimum", "maximum"):
        if bound in prop and (kind not in {"number", "integer"} or not is_number(prop[bound])):
            raise FnedgeError(f"{where}: '{bound}' needs a numeric type and a numeric value")
    if kind == "array":
        if "items" in prop:
            _check_property(prop["items"], f"{where}[]")
    if kind == "object":
        _check_object_schema(prop, where)
    if "default" in prop:
        problem = value_problem(prop["default"], prop)
        if problem:
            raise FnedgeError(f"{where}: default {prop['default']!r} {problem}")


def is_number(value: Any) -> bool:
    """A JSON number: an int or float, not a bool (which Python counts as an int; YAML's true too)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def value_problem(value: Any, prop: dict[str, Any]) -> str | None:
    """Why `value` does not satisfy the property schema, or None when it does."""
    kind = prop.get("type", "string" if "enum" in prop else None)
    if kind == "string" and not isinstance(value, str):
        return "is not a string"
    if kind == "integer" and not (is_number(value) and float(value).is_integer()):
        return "is not an integer"
    if kind == "number" and not is_number(value):
        return "is not a number"
    if kind == "boolean" and not isinstance(value, bool):
        return "is not a boolean"
    if kind == "array":
        if not isinstance(value, list):
            return "is not an array"
        for item in value:
            problem = value_problem(item, prop.get("items", {}))
            if problem:
                return f"has an item that {problem}"
    if kind == "object":
        if not isinstance(value, dict):
            return "is not an object"
        problem = arguments_problem(value, prop)
        if problem:
            return problem
    if "enum" in prop and value not in prop["enum"]:
        return f"is not one of {prop['enum']}"
    if "minimum" in prop and is_number(value) and value < prop["minimum"]:
        return f"is below the minimum {prop['minimum']}"
    if "maximum" in prop and is_number(value) and value > prop["maximum"]:
        return f"is above the maximum {prop['maximum']}"
    return None


def arguments_problem(arguments: Any, schema: dict[str, Any]) -> str | None:
    """Why `arguments` does not validate against an object schema, or None."""
    if not isinstance(arguments, dict):
        return "arguments are not a JSON object"
    properties = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in arguments:
            return f"missing required argument '{name}'"
    for name, value in arguments.items():
        if name not in properties:
            if "properties" not in schema:  # a free-form object: any key is allowed
                continue
            return f"unknown argument '{name}'"
        problem = value_problem(value, properties[name])
        if problem:
            return f"argument '{name}' {problem}"
    return None


def call_problem(call: dict[str, Any], catalog: Catalog) -> str | None:
    """Why a parsed call {"name", "arguments"} is not valid for the catalog, or None."""
    name = call.get("name")
    if name not in catalog:
        return f"unknown tool {name!r}"
    return arguments_problem(call.get("arguments"), catalog[name].parameters)
