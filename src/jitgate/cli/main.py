"""The ``jitgate`` entry point: assembles the command groups.

The program starts from ``cli/entry.py``, which runs one command through the table in
``cli/commands.py`` and imports only that command's module; a test holds the table to this
application, so a new command module is registered here and listed there.
"""

from __future__ import annotations

import typer

from jitgate.cli import access, accounts, admin, audit, keys, oidc_login, sessions, ssh, targets
from jitgate.cli.helpwords import use_words

app = typer.Typer(
    name="jitgate",
    help="Just-in-time privileged access: ask for a role, for a reason, for a while.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
use_words()
admin.register(app)
audit.register(app)
accounts.register(app)
keys.register(app)
access.register(app)
ssh.register(app)
sessions.register(app)
targets.register(app)
oidc_login.register(app)
