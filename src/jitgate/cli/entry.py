"""The ``jitgate`` program's entry point, with a fast path for ``jitgate ssh``.

Loading the whole command line (Typer, Rich, pydantic, httpx, the policy model) costs a few hundred
milliseconds, which every ``jitgate ssh`` would otherwise add to the user's connection. ``ssh`` is
therefore parsed here with the standard library and run by ``cli/sshsession.py``; everything else,
``jitgate ssh --help`` included, goes to the full Typer application.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-V"]):
        from jitgate import __version__

        print(f"jitgate {__version__}")
        return
    if args[:1] == ["ssh"]:
        code = fast_ssh(args[1:])
        if code is not None:
            sys.exit(code)
    from jitgate.cli.commands import run

    run(args)


def fast_ssh(args: list[str]) -> int | None:
    """Run ``jitgate ssh`` without the full CLI; ``None`` hands over to it (help, odd arguments)."""
    split = args.index("--") if "--" in args else len(args)
    options, command = args[:split], args[split + 1 :]
    if {"-h", "--help"} & set(options):
        return None
    parser = argparse.ArgumentParser(prog="jitgate ssh", add_help=False, allow_abbrev=False)
    parser.add_argument("target")
    parser.add_argument("--login", "-l")
    parser.add_argument("--ssh-option", "-o", action="append", default=[])
    parser.add_argument("--unsafe-accept-unknown-host", action="store_true")
    parser.add_argument("--via-gateway", action="store_true")
    parser.add_argument("--url")
    parser.add_argument("--token")
    parsed, unknown = parser.parse_known_args(options)
    if unknown or (parsed.via_gateway and parsed.unsafe_accept_unknown_host):
        return None  # let the full CLI explain what is wrong with them

    from jitgate import errors
    from jitgate.cli.exitcodes import exit_code
    from jitgate.cli.signals import ProgramMissing
    from jitgate.cli.sshsession import COMMAND_NOT_FOUND, connect

    try:
        if parsed.via_gateway:
            from jitgate.cli.gatewayssh import connect_via_gateway

            return connect_via_gateway(
                parsed.target,
                command=command,
                login=parsed.login,
                options=parsed.ssh_option,
                url=parsed.url,
                token=parsed.token,
            )
        return connect(
            parsed.target,
            command=command,
            login=parsed.login,
            options=parsed.ssh_option,
            accept_unknown_host=parsed.unsafe_accept_unknown_host,
            url=parsed.url,
            token=parsed.token,
        )
    except ProgramMissing as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return COMMAND_NOT_FOUND
    except errors.JitgateError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return exit_code(exc)
