import json

import pytest

from conftest import SHARED
from fnedge.catalog import call_problem, load_catalog, parse_catalog
from fnedge.errors import FnedgeError


def tool(name="t", **props):
    return {"type": "function", "function": {"name": name, "description": "d",
            "parameters": {"type": "object", "properties": props, "required": list(props)[:1]}}}


def test_default_catalog_equals_shared_copy():
    shared = SHARED / "catalog" / "default_tools.json"
    if not shared.is_file():
        pytest.skip("shared/ not checked out beside the repo")
    assert load_catalog().to_openai() == json.loads(shared.read_text())


def test_bad_json_names_file(tmp_path):
    bad = tmp_path / "tools.json"
    bad.write_text('[{"type": "function",')
    with pytest.raises(FnedgeError, match=r"tools.json: not valid JSON"):
        load_catalog(bad)


def test_missing_catalog_file(tmp_path):
    with pytest.raises(FnedgeError, match="catalog file not found"):
        load_catalog(tmp_path / "nope.json")


def test_duplicate_name():
    with pytest.raises(FnedgeError, match="duplicate tool name 'a'"):
        parse_catalog([tool("a", x={"type": "string"}), tool("a", y={"type": "string"})])


def test_unsupported_type_names_tool_and_field():
    with pytest.raises(FnedgeError, match=r"tool 'lamp'.*parameters\.level: unsupported type 'float'"):
        parse_catalog([tool("lamp", level={"type": "float"})])


def test_unsupported_keyword():
    with pytest.raises(FnedgeError, match=r"parameters\.x: unsupported schema keyword"):
        parse_catalog([tool("a", x={"type": "string", "pattern": "^a$"})])


def test_required_must_exist():
    entry = tool("a", x={"type": "string"})
    entry["function"]["parameters"]["required"] = ["y"]
    with pytest.raises(FnedgeError, match="required property 'y' is not defined"):
        parse_catalog([entry])


def test_bad_default_is_refused():
    with pytest.raises(FnedgeError, match="default 500 is above the maximum 100"):
        parse_catalog([tool("a", n={"type": "integer", "maximum": 100, "default": 500})])


def test_call_validation():
    catalog = load_catalog()
    assert call_problem({"name": "get_weather", "arguments": {"city": "北京"}}, catalog) is None
    assert "unknown tool" in call_problem({"name": "fly", "arguments": {}}, catalog)
    assert "missing required argument 'city'" in call_problem({"name": "get_weather", "arguments": {}}, catalog)
    assert "unknown argument 'town'" in call_problem(
        {"name": "get_weather", "arguments": {"city": "x", "town": "y"}}, catalog)
    assert "not one of" in call_problem(
        {"name": "control_light", "arguments": {"room": "x", "action": "dim"}}, catalog)
    assert "above the maximum" in call_problem(
        {"name": "control_light", "arguments": {"room": "x", "action": "on", "brightness": 120}}, catalog)
    assert "not an integer" in call_problem({"name": "search_hotels", "arguments": {"city": "x", "nights": 1.5}}, catalog)
    assert "not a number" in call_problem(
        {"name": "convert_units", "arguments": {"value": "3", "from_unit": "km", "to_unit": "mi"}}, catalog)
    assert call_problem({"name": "convert_units", "arguments": {"value": True, "from_unit": "a", "to_unit": "b"}},
                        catalog) == "argument 'value' is not a number"
