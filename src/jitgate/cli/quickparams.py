"""Typer's checking of command-line values, without loading pydantic for the plain ones.

Typer (0.29, pinned) turns every option's text into its Python type through a pydantic
``TypeAdapter``; the first one built costs well over 100 ms (pydantic's import and its schema
machinery), more than the rest of a client command together. The values our commands take are
plain: text, flags, whole and decimal numbers (some with a minimum), paths, and lists of those.
``install`` gives each such parameter a ``QuickValue`` that converts a well-formed value directly;
anything else (a malformed number, one out of range, a path sshd could not read, another type)
goes to the conversion Typer would have used, so that its answer and its error message stay
exactly Typer's. The test suite checks both ways give the same value for every parameter.

This sets each parameter's ``_runtime_param``, which Typer fills lazily on first use: an internal
of the pinned Typer, which is why the suite also fails if a client command loads pydantic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from typer import Context, models
from typer._coercion import RuntimeParam, build_runtime_param

_PLAIN = (str, bool, int, float, Path)
_UNCHANGED = object()  # "not a plain value: let Typer decide"


def _number(kind: type[Any], value: Any, info: models.ParameterInfo) -> Any:
    if type(value) is kind or (kind is float and type(value) is int):
        number: Any = kind(value)
    elif type(value) is str and value.isascii() and value.isdigit():
        number = kind(value)
    else:
        return _UNCHANGED
    if (
        info.clamp
        or (info.min is not None and number < info.min)
        or (info.max is not None and number > info.max)
    ):
        return _UNCHANGED
    return number


def _path(value: Any, info: models.ParameterInfo) -> Any:
    flags = (info.exists, info.resolve_path, info.allow_dash, info.writable, info.path_type)
    if any(flags) or not (info.file_okay and info.dir_okay) or type(value) not in {str, Path}:
        return _UNCHANGED
    path = Path(value)
    if info.readable and path.exists() and not os.access(path, os.R_OK):
        return _UNCHANGED  # Typer's own message says why
    return path


def quick(kind: type[Any], value: Any, info: models.ParameterInfo) -> Any:
    """``value`` as ``kind`` when it is a plain, valid one; ``_UNCHANGED`` when Typer must look."""
    if kind is str:
        return value if type(value) is str else _UNCHANGED
    if kind is bool:
        return value if type(value) is bool else _UNCHANGED
    if kind in {int, float}:
        return _number(kind, value, info)
    if kind is Path:
        return _path(value, info)
    return _UNCHANGED


@dataclass(frozen=True)
class QuickValue(RuntimeParam):
    """A plain parameter's conversion, with Typer's own kept for everything that is not plain."""

    typer_param: Any

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        kind, many = plain_kind(self.annotation)
        if many and isinstance(value, list | tuple):
            items = [quick(kind, item, self.parameter_info) for item in value]
            if all(item is not _UNCHANGED for item in items):
                return items
        elif not many:
            converted = quick(kind, value, self.parameter_info)
            if converted is not _UNCHANGED:
                return converted
        return self._typers()._coerce_value(value, param=param, ctx=ctx)

    def _typers(self) -> RuntimeParam:
        built: RuntimeParam = build_runtime_param(self.typer_param.type_descriptor)
        return built


def plain_kind(annotation: Any) -> tuple[Any, bool]:
    """(the item type, whether a list of them) if the annotation is plain, else (None, False)."""
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        return (item, True) if item in _PLAIN else (None, False)
    return (annotation, False) if annotation in _PLAIN else (None, False)


def install(command: Any) -> Any:
    """Give every plain parameter of ``command`` a ``QuickValue``: its options, its ``--help``, and
    for a group those of every command in it."""
    for inner in getattr(command, "commands", {}).values():
        install(inner)
    help_option = command.get_help_option(Context(command))
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None or descriptor.file_annotation is not None:
            continue
        if plain_kind(descriptor.annotation)[0] is None or descriptor.parameter_info.parser is not None:
            continue
        if param._runtime_param is None:
            param._runtime_param = QuickValue(
                parameter_info=descriptor.parameter_info, annotation=descriptor.annotation, typer_param=param
            )
    return command
