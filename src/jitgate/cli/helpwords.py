"""``--help`` in words: what a value is (``ROLE``, ``DURATION``, ``FILE``), never a Python type.

Typer 0.29 labels every parameter in the help with its annotation (``<str>``, ``<list[str]>``,
``<bool>`` even beside a flag such as ``--json``). Its parameter classes take no override for that
label, so ``use_words`` replaces the two methods that make it, once, before any help is shown:
an option shows its ``metavar`` (else its name in capitals, ``--reason REASON``), a flag shows
nothing, and an argument is named by its ``metavar`` or its name in capitals (``REQUEST-ID``) with
no type beside it. ``tests/unit/cli/test_help_words.py`` walks every command's help and fails on a
type name, so a Typer upgrade that changes these methods is noticed.
"""

from __future__ import annotations

from typing import Any

from typer import core


def word(name: str | None) -> str:
    """A parameter's name as the word its help shows: ``request_id`` -> ``REQUEST-ID``."""
    return (name or "value").upper().replace("_", "-")


def _option_label(self: core.TyperOption, ctx: Any) -> str | None:  # noqa: ARG001 - Typer's signature
    if self.is_flag or self.count:
        return None
    label = self.metavar or word(self.name)
    return f"{label}..." if self.nargs != 1 else label


def _argument_label(self: core.TyperArgument, ctx: Any) -> str | None:  # noqa: ARG001 - Typer's signature
    return None  # the argument's name column already says what it is


def _argument_name(self: core.TyperArgument) -> str:
    return self.metavar or word(self.name)


def use_words() -> None:
    """Make Typer's help show words for every option and argument (idempotent)."""
    core.TyperOption.display_type_rich = _option_label  # type: ignore[method-assign]
    core.TyperArgument.display_type_rich = _argument_label  # type: ignore[assignment,method-assign]
    core.TyperArgument.display_name_raw = property(_argument_name)  # type: ignore[assignment,method-assign]
