"""The command table: each top-level command's name, the module that defines it and its one line of
help, so that ``jitgate CMD`` imports one command module and ``jitgate --help`` none.

Importing every command module at start costs several hundred milliseconds (the server side comes
with them: FastAPI, SQLAlchemy, pydantic settings, the policy model) for a client command that needs
none of it. ``LazyCommands`` is the root group: it lists the table, and only when a command is run
(or asked for its own help) imports the module that defines it, registers that module on a Typer
app of its own and hands over the real command, its plain values checked without pydantic
(``cli/quickparams.py``). ``cli/main.py`` assembles the full application from the same modules; a
test holds the two to the same names, modules, help and help pages.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

import typer
from typer.core import TyperCommand, TyperGroup

from jitgate.cli.helpwords import use_words
from jitgate.cli.quickparams import install

# Typer's click is vendored and private: its context, command and formatter types go by these names.
Context = Any
Command = Any
Formatter = Any

HELP = "Just-in-time privileged access: ask for a role, for a reason, for a while."


class Entry(NamedTuple):
    module: str
    help: str


ADMIN, ACCESS, SSH = "jitgate.cli.admin", "jitgate.cli.access", "jitgate.cli.ssh"

# In the order ``jitgate --help`` lists them (that of ``cli/main.py``).
COMMANDS: dict[str, Entry] = {
    "server": Entry(
        ADMIN,
        "Run the broker: API, scheduler (expiry, revocation retries), SSH CA and, if asked, SSH gateway.",
    ),
    "init": Entry(ADMIN, "Create the data directory, database schema, audit key and SSH CAs."),
    "demo": Entry(ADMIN, "Start a broker with the demo policy and demo users, and print what to try."),
    "login": Entry(
        ACCESS,
        "Store URL and a token the broker accepts (mode 0600); --oidc signs in at its identity provider.",
    ),
    "whoami": Entry(ACCESS, "Who the broker thinks you are."),
    "roles": Entry(ACCESS, "Roles in the policy and whether you may request or approve them."),
    "request": Entry(ACCESS, "Ask for a role. Prints the request; with --wait, waits until it is usable."),
    "requests": Entry(ACCESS, "Requests you made or may review, newest first: all of them, page after page."),
    "show": Entry(ACCESS, "One request with its reviews and grant."),
    "approve": Entry(ACCESS, "Approve a pending request (never your own)."),
    "deny": Entry(ACCESS, "Deny a pending request, saying why."),
    "cancel": Entry(ACCESS, "Withdraw your own request before it starts."),
    "grants": Entry(
        ACCESS, "Your grants with time left, what they changed at targets, pending revocations: every page."
    ),
    "revoke": Entry(ACCESS, "End a grant now (holder, an approver of its role, or an admin)."),
    "extend": Entry(
        ACCESS, "Ask to lengthen a grant (within the role's maximum, through its approval rule)."
    ),
    "ssh": Entry(SSH, "Connect to TARGET with a certificate minted now for a key that lives only in memory."),
    "ssh-cert": Entry(SSH, "A certificate for an existing key (for tools that bring their own ssh)."),
    "ssh-config": Entry(SSH, "Print ssh_config stanzas so that plain `ssh TARGET` goes through jitgate."),
    "host-cert": Entry(
        SSH, "A host certificate from the broker's host CA, for sshd's HostCertificate (admins)."
    ),
    "db": Entry(
        SSH, "A fresh database login under your grant on TARGET: PG* variables, DSN, or psql itself."
    ),
    "logout": Entry(
        "jitgate.cli.oidc_login",
        "Delete the stored login; an OpenID sign-in's refresh token is revoked at the provider.",
    ),
    "policy": Entry(ADMIN, "Check and explain policy files."),
    "ca": Entry(ADMIN, "The SSH certificate authorities."),
    "audit": Entry("jitgate.cli.audit", "The tamper-evident audit log."),
    "users": Entry("jitgate.cli.accounts", "Local users and service accounts."),
    "tokens": Entry("jitgate.cli.accounts", "API tokens: your own, or anyone's for admins."),
    "keys": Entry("jitgate.cli.keys", "SSH public keys for the SSH gateway: yours, or anyone's for admins."),
    "sessions": Entry("jitgate.cli.sessions", "Sessions through the SSH gateway and their recordings."),
    "target": Entry("jitgate.cli.targets", "What a target needs to trust jitgate."),
}


class Listed(TyperCommand):
    """A command as the table knows it: name and help, enough to be listed, never to be run."""


def module_command(module_name: str, name: str) -> Command:
    """The command ``name`` as Typer builds it for the full application, from the module that
    registers it; the module's other commands are left unbuilt (building reads their signatures)."""
    module = importlib.import_module(module_name)
    app = typer.Typer(add_completion=False)
    module.register(app)
    app.registered_commands = [
        info
        for info in app.registered_commands
        if (info.name or typer.main.get_command_name(getattr(info.callback, "__name__", ""))) == name
    ]
    # A group added without a name lends its commands to the parent: kept, it may hold ``name``.
    app.registered_groups = [
        info for info in app.registered_groups if not isinstance(info.name, str) or info.name == name
    ]
    group: TyperGroup = install(typer.main.get_group(app))
    return group.commands[name]


class LazyCommands(TyperGroup):
    """The root ``jitgate`` group, importing a command's module only when that command is wanted."""

    def __init__(self, **attrs: Any) -> None:
        attrs.pop("commands", None)
        listed = [Listed(name=name, help=entry.help) for name, entry in COMMANDS.items()]
        super().__init__(commands=listed, **attrs)
        self._listing = False

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        command = self.commands.get(cmd_name)
        if isinstance(command, Listed) and not self._listing:
            command = module_command(COMMANDS[cmd_name].module, cmd_name)
            self.commands[cmd_name] = command
        return command

    def format_help(self, ctx: Context, formatter: Formatter) -> None:
        self._listing = True  # the list of commands needs their names and help only
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def run(args: list[str]) -> None:
    """Parse ``args`` and run the one command they name, as ``jitgate`` (exits like any click program)."""
    use_words()
    root = install(LazyCommands(name="jitgate", help=HELP, no_args_is_help=True))
    root.main(args=args, prog_name="jitgate")
