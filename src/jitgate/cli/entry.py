"""The ``jitgate`` program's entry point, with a fast path for ``jitgate ssh``.

Loading the whole command line (Typer, Rich, pydantic, httpx, the policy model) costs a few hundred
milliseconds, which every ``jitgate ssh`` would otherwise add to the user's connection. ``ssh`` is
therefore read here (``ssh_arguments``) and run by ``cli/sshsession.py``; everything else,
``jitgate ssh --help`` included, goes to the command table (``cli/commands.py``), which loads only
the module of the command asked for.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing's own, without importing typing on the way to --version
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-V"]):
        from jitgate import __version__

        print(f"jitgate {__version__}")
        return
    if args[:1] == ["ssh"]:
        code = fast_ssh(args[1:])
        if code is not None:
            end_now(code)
    from jitgate.cli.commands import run

    run(args)


# ``jitgate ssh``'s options as the full command defines them: those that take a value, by every name.
VALUE_OPTIONS = {"--login": "login", "-l": "login", "--ssh-option": "options", "-o": "options"}
VALUE_OPTIONS |= {"--url": "url", "--token": "token"}
FLAGS = {"--unsafe-accept-unknown-host": "accept_unknown_host", "--via-gateway": "via_gateway"}


def ssh_arguments(options: list[str]) -> dict[str, Any] | None:
    """``jitgate ssh``'s options before ``--``, read the way the full command reads them, or ``None``
    for anything else (help, an unknown option, a missing value, a second target): the full command
    explains those."""
    found: dict[str, Any] = {"target": None, "login": None, "options": [], "url": None, "token": None}
    found |= dict.fromkeys(FLAGS.values(), False)
    words = iter(options)
    for word in words:
        name, value = word, None
        if word.startswith("--") and "=" in word:
            name, value = word.split("=", 1)
        elif len(word) > 2 and word[0] == "-" and word[1] != "-":
            name, value = word[:2], word[2:]  # -lroot, -oUser=x
        if name in FLAGS and value is None:
            found[FLAGS[name]] = True
        elif name in VALUE_OPTIONS:
            value = next(words, None) if value is None else value
            if value is None or value.startswith("-"):
                return None
            if VALUE_OPTIONS[name] == "options":
                found["options"].append(value)
            else:
                found[VALUE_OPTIONS[name]] = value
        elif word.startswith("-") or found["target"] is not None:
            return None
        else:
            found["target"] = word
    if found["target"] is None or (found["via_gateway"] and found["accept_unknown_host"]):
        return None
    return found


def end_now(code: int) -> None:
    """Exit with ``code`` once the session is over and its directory removed, skipping the
    interpreter's teardown of every loaded module: that alone adds about ten milliseconds to each
    ``jitgate ssh``, and nothing is left for it to do (no atexit handlers, no open files)."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def fast_ssh(args: list[str]) -> int | None:
    """Run ``jitgate ssh`` without the full CLI; ``None`` hands over to it (help, odd arguments)."""
    split = args.index("--") if "--" in args else len(args)
    parsed = ssh_arguments(args[:split])
    if parsed is None:
        return None
    command = args[split + 1 :]

    from jitgate import errors
    from jitgate.cli.exitcodes import exit_code
    from jitgate.cli.signals import ProgramMissing
    from jitgate.cli.sshsession import COMMAND_NOT_FOUND, connect

    try:
        if parsed.pop("via_gateway"):
            from jitgate.cli.gatewayssh import connect_via_gateway

            del parsed["accept_unknown_host"]
            return connect_via_gateway(parsed.pop("target"), command=command, **parsed)
        return connect(parsed.pop("target"), command=command, **parsed)
    except ProgramMissing as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return COMMAND_NOT_FOUND
    except errors.JitgateError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return exit_code(exc)
