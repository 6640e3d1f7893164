"""Load a policy file: YAML in, a validated ``Policy`` out, every problem as ``file:line: what``.

PyYAML's node tree keeps the line of every key; pydantic's error locations are mapped back to it.
Duplicate keys, which YAML loaders usually let the last one win, are refused.

A policy is small and written out in full: aliases (``*name``) are refused where they appear, so a
few hundred bytes cannot expand into billions of nodes ("billion laughs"), and a file larger than
``MAX_POLICY_BYTES`` is refused before it is parsed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from jitgate.errors import PolicyFileError
from jitgate.policy.model import Policy

Loc = tuple[str | int, ...]
MAX_POLICY_BYTES = 1024 * 1024


class _AliasFound(Exception):
    def __init__(self, line: int, anchor: str) -> None:
        super().__init__(anchor)
        self.line = line
        self.anchor = anchor


class _NoAliasLoader(yaml.SafeLoader):
    """The safe loader, refusing an alias as soon as the parser meets it (before any expansion)."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call] # PyYAML's stubs leave it untyped
            raise _AliasFound(event.start_mark.line + 1, str(event.anchor))
        return super().compose_node(parent, index)


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; raises ``PolicyFileError`` naming file and line."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_POLICY_BYTES:
            raise PolicyFileError(f"{path}: policy is larger than {MAX_POLICY_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyFileError(f"{path}: cannot read policy: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise PolicyFileError(f"{path}: policy is not UTF-8 text") from exc
    return parse_policy(text, path.name)


def parse_policy(text: str, filename: str = "policy.yaml") -> Policy:
    if len(text) > MAX_POLICY_BYTES:
        raise PolicyFileError(f"{filename}: policy is larger than {MAX_POLICY_BYTES} bytes")
    try:
        node = yaml.compose(text, Loader=_NoAliasLoader)
    except _AliasFound as exc:
        raise PolicyFileError(
            f"{filename}:{exc.line}: YAML alias *{exc.anchor} is not allowed in a policy; write the value out"
        ) from None
    except RecursionError:
        raise PolicyFileError(f"{filename}: policy is nested too deeply") from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise PolicyFileError(f"{filename}:{line}: malformed YAML: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise PolicyFileError(f"{filename}: malformed YAML: {exc}") from exc
    if node is None:
        return Policy()
    lines: dict[Loc, int] = {}
    problems: list[str] = []
    data = _construct(node, (), lines, problems, filename)
    if problems:
        raise _failure(problems)
    if not isinstance(data, dict):
        raise PolicyFileError(f"{filename}:1: the policy must be a mapping with targets: and roles:")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise _failure([_describe(err, lines, filename) for err in exc.errors()]) from None


def _failure(problems: list[str]) -> PolicyFileError:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return PolicyFileError(problems[0] + more, problems)


def _construct(node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[str], filename: str) -> Any:
    """Build plain Python data from the node tree, recording the line of every location."""
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key_value = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            if key_value in out:
                problems.append(f"{filename}:{key_node.start_mark.line + 1}: duplicate key {key_value!r}")
                continue
            child = (*loc, str(key_value))
            lines[child] = key_node.start_mark.line + 1
            out[key_value] = _construct(value_node, child, lines, problems, filename)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*loc, i), lines, problems, filename) for i, item in enumerate(node.value)]
    loader = yaml.SafeLoader("")
    return loader.construct_object(node, deep=True)


def _describe(err: Any, lines: dict[Loc, int], filename: str) -> str:
    loc: Loc = tuple(part for part in err["loc"] if not (isinstance(part, str) and "[" in part))
    line = 1
    for size in range(len(loc), -1, -1):
        if loc[:size] in lines:
            line = lines[loc[:size]]
            break
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif err["type"] == "missing":
        message = "is required"
    where = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[")
    return f"{filename}:{line}: {where}: {message}" if where else f"{filename}:{line}: {message}"
