"""Executors for the default catalog's tools that can run on the device itself.

`save_file` writes under a workspace folder, `calculate` evaluates arithmetic, `convert_units`
converts between a few units. Tools that need the outside world (weather, hotels, messages,
music, lights, alarms, calendar) belong to the app: register your own functions for them.
"""

from __future__ import annotations

import ast
import operator
from pathlib import Path
from typing import Any

from fnedge.catalog import is_number
from fnedge.io import write_text_atomic
from fnedge.runtime.tools import Executor

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
              ast.Mod: operator.mod, ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos}

# Factors to a base unit per quantity; temperatures are converted by formula.
_LINEAR = {"km": ("length", 1000.0), "m": ("length", 1.0), "cm": ("length", 0.01), "mi": ("length", 1609.344),
           "ft": ("length", 0.3048), "in": ("length", 0.0254), "kg": ("mass", 1.0), "g": ("mass", 0.001),
           "lb": ("mass", 0.45359237), "oz": ("mass", 0.028349523125), "l": ("volume", 1.0),
           "ml": ("volume", 0.001), "gal": ("volume", 3.785411784)}


def builtin_executors(workspace: str | Path) -> dict[str, Executor]:
    root = Path(workspace).resolve()
    return {"save_file": lambda args: save_file(root, args["path"], args["content"]),
            "calculate": lambda args: {"result": calculate(args["expression"])},
            "convert_units": lambda args: {"result": convert_units(args["value"], args["from_unit"], args["to_unit"])}}


def save_file(root: Path, path: str, content: str) -> dict[str, Any]:
    target = (root / path).resolve()
    if root not in target.parents:
        raise ValueError(f"path {path!r} leaves the workspace")
    write_text_atomic(target, content)
    return {"saved": str(target.relative_to(root)), "chars": len(content)}


def calculate(expression: str) -> float | int:
    """+ - * / % ** and parentheses on numbers; anything else is refused (no eval)."""
    expression = expression.replace("×", "*").replace("÷", "/").replace("^", "**")

    def value(node: ast.AST) -> float | int:
        if isinstance(node, ast.Constant) and is_number(node.value):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.operand))
        raise ValueError(f"unsupported expression: {expression!r}")

    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from None
    return value(tree.body)


def convert_units(amount: float, from_unit: str, to_unit: str) -> float:
    source, target = from_unit.lower(), to_unit.lower()
    if source in ("c", "f") and target in ("c", "f"):
        celsius = amount if source == "c" else (amount - 32) * 5 / 9
        return round(celsius if target == "c" else celsius * 9 / 5 + 32, 6)
    if source not in _LINEAR or target not in _LINEAR or _LINEAR[source][0] != _LINEAR[target][0]:
        raise ValueError(f"cannot convert {from_unit} to {to_unit}")
    return round(amount * _LINEAR[source][1] / _LINEAR[target][1], 6)
