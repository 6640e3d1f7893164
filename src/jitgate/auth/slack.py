"""Who is clicking in Slack: the signature Slack puts on each request, and the map of Slack users.

Slack signs every request it sends with the app's signing secret: ``X-Slack-Signature`` is
``v0=`` and the hex HMAC-SHA256 of ``v0:TIMESTAMP:BODY``, where TIMESTAMP is the header
``X-Slack-Request-Timestamp`` (Unix seconds) and BODY the raw body as sent. A request is believed
only if that signature matches the bytes received, compared in constant time, and its timestamp
is within ``WINDOW`` of the broker's clock, either way: a request stamped for the future is as
suspect as an old one. A signature seen before inside the window is a replay; the workflow keeps
the signatures it has seen (``store/chat.py``).

A Slack user is not a jitgate identity. The operator says which local user each Slack account is,
in a file (``JITGATE_SLACK_USERS_FILE``)::

    T0123ABCD:U0456EFGH: bob      # this user of this workspace
    U0789IJKL: erin               # this user, in any workspace the app is installed in

Only local users can be named. An OpenID identity's groups come from the token of a sign-in at
its provider, and a click in Slack carries no sign-in, so it could not be resolved to groups and
is refused when the file is read.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import yaml

from jitgate.domain.identity import local_name_problem
from jitgate.errors import InvalidInput, Unauthenticated

WINDOW = timedelta(minutes=5)
"""How far a request's timestamp may be from the broker's clock, either way (Slack's own figure)."""
VERSION = "v0"
MAX_USERS_FILE_BYTES = 1024 * 1024

TEAM_ID = re.compile(r"^[TE][A-Z0-9]{2,30}$")
USER_ID = re.compile(r"^[UW][A-Z0-9]{2,30}$")
"""Slack user ids; the map and mentions (``<@U…>``) only ever hold ids of this shape."""
_KEY = re.compile(r"^(?:(?P<team>[TE][A-Z0-9]{2,30}):)?(?P<user>[UW][A-Z0-9]{2,30})$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")


def expected_signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Slack-Signature`` Slack sends with ``body`` stamped at ``timestamp``."""
    base = f"{VERSION}:{timestamp}:".encode() + body
    return f"{VERSION}=" + hmac.new(secret, base, hashlib.sha256).hexdigest()


def verify_request(
    secret: bytes, *, timestamp: str | None, signature: str | None, body: bytes, now: datetime
) -> None:
    """Return if Slack signed ``body`` with ``secret`` close enough to ``now``; else ``Unauthenticated``."""
    if not timestamp:
        raise Unauthenticated("missing X-Slack-Request-Timestamp")
    if not _TIMESTAMP.match(timestamp):
        raise Unauthenticated("X-Slack-Request-Timestamp is not a Unix time")
    skew = abs(now.timestamp() - int(timestamp))
    if skew > WINDOW.total_seconds():
        raise Unauthenticated(
            f"X-Slack-Request-Timestamp is more than {int(WINDOW.total_seconds())} s from the broker's clock"
        )
    if not signature:
        raise Unauthenticated("missing X-Slack-Signature")
    wanted = expected_signature(secret, timestamp, body)
    if not hmac.compare_digest(signature.encode("utf-8", "replace"), wanted.encode()):
        raise Unauthenticated("X-Slack-Signature does not match the request")


def signature_digest(signature: str) -> str:
    """What the broker keeps of a signature it acted on, to refuse it a second time."""
    return hashlib.sha256(signature.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class SlackUsers:
    """Slack accounts and the local jitgate users they are. Built by ``load_slack_users``."""

    by_account: dict[tuple[str | None, str], str] = field(default_factory=dict)

    def local_name(self, team: str, user: str) -> str | None:
        """The jitgate user for Slack ``user`` of workspace ``team``, or None if not mapped."""
        return self.by_account.get((team, user)) or self.by_account.get((None, user))

    def slack_id(self, name: str) -> str | None:
        """The Slack user id of jitgate user ``name`` (for a mention), or None."""
        return next((user for (_team, user), local in self.by_account.items() if local == name), None)


def load_slack_users(path: Path) -> SlackUsers:
    """The map in ``path``; ``InvalidInput`` naming the file and line of the first problem."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path.name}: cannot read the Slack user map: {exc.strerror}") from None
    if len(raw) > MAX_USERS_FILE_BYTES:
        raise InvalidInput(f"{path.name}: larger than {MAX_USERS_FILE_BYTES} bytes")
    try:
        root = yaml.compose(raw.decode("utf-8"), Loader=yaml.SafeLoader)
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f":{where.line + 1}" if where is not None else ""
        raise InvalidInput(f"{path.name}{line}: not a YAML mapping of Slack users to jitgate users") from None
    if root is None:
        return SlackUsers()
    if not isinstance(root, yaml.MappingNode):
        raise InvalidInput(
            f"{path.name}:{root.start_mark.line + 1}: expected `SLACK_USER: jitgate-user` lines"
        )
    found: dict[tuple[str | None, str], str] = {}
    names: dict[str, int] = {}
    users: dict[str, int] = {}
    for key_node, value_node in root.value:
        line = key_node.start_mark.line + 1
        where = f"{path.name}:{line}"
        if not isinstance(key_node, yaml.ScalarNode) or not isinstance(value_node, yaml.ScalarNode):
            raise InvalidInput(f"{where}: expected `SLACK_USER: jitgate-user`")
        match = _KEY.match(key_node.value)
        if match is None:
            raise InvalidInput(
                f"{where}: {key_node.value[:80]!r} is not a Slack user id (U…, or TEAM:U… for one workspace)"
            )
        name = value_node.value
        problem = local_name_problem(name)
        if problem is not None:
            hint = "; only local users can be named" if ":" in name else ""
            raise InvalidInput(f"{where}: {problem}{hint}")
        user = match["user"]
        if user in users:
            raise InvalidInput(f"{where}: Slack user {user} is mapped already (line {users[user]})")
        if name in names:
            raise InvalidInput(f"{where}: {name} is mapped already (line {names[name]}); one Slack user each")
        users[user] = names[name] = line
        found[(match["team"], user)] = name
    return SlackUsers(found)
