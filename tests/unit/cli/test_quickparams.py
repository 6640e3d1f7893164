"""The quick conversion of plain command-line values gives what Typer's own gives, for every
parameter of every command: the same value, or the same refusal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer._click.exceptions import BadParameter
from typer._coercion import build_runtime_param

from jitgate.cli.main import app
from jitgate.cli.quickparams import QuickValue, install

SAMPLES: dict[Any, list[Any]] = {
    str: ["web-1", "", "ünïcode", "--x", " spaced "],
    bool: [True, False, "true", "no"],
    int: [0, 1, 500, "1", "42", "0", "-3", "x", "1.5", " 7", "٣"],
    float: [3600, 0.5, "3600", "2.5", "x", "0"],
    Path: ["data", Path("demo-data"), "/nonexistent/policy.yaml", ""],
}


def parameters(command: Any, path: str = "jitgate") -> list[tuple[str, Any]]:
    found = []
    for name, inner in getattr(command, "commands", {}).items():
        found.extend(parameters(inner, f"{path} {name}"))
    found.extend((f"{path} {param.name}", param) for param in command.params)
    return found


ROOT = install(typer.main.get_group(app))
QUICK = [(where, param) for where, param in parameters(ROOT) if isinstance(param._runtime_param, QuickValue)]


def outcome(runtime: Any, value: Any, param: Any) -> tuple[str, Any]:
    try:
        result = runtime.coerce(value, param=param, ctx=None)
    except BadParameter as exc:
        return "refused", exc.message
    return type(result).__name__, result


def test_the_plain_parameters_are_most_of_them() -> None:
    assert len(QUICK) > 0.9 * len(parameters(ROOT))


@pytest.mark.parametrize(("where", "param"), QUICK, ids=[where for where, _ in QUICK])
def test_a_quick_value_is_typers_value(where: str, param: Any) -> None:
    typers = build_runtime_param(param.type_descriptor)
    annotation = param.type_descriptor.annotation
    many = getattr(annotation, "__origin__", None) is list
    kind = annotation.__args__[0] if many else annotation
    values = [[v] for v in SAMPLES[kind]] + [SAMPLES[kind][:2]] if many else list(SAMPLES[kind])
    for value in [*values, param.default, None]:
        assert outcome(param._runtime_param, value, param) == outcome(typers, value, param), (where, value)
