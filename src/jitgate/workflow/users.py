"""Local users and service accounts: created with one API token, shown once, audited."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

from jitgate.audit.chain import AuditLog
from jitgate.auth.tokens import new_token, token_hash
from jitgate.clock import Clock
from jitgate.domain.identity import Identity, IdentityKind
from jitgate.errors import Conflict, InvalidInput
from jitgate.store import queries as q
from jitgate.store.db import Database

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")


def add_user(
    db: Database,
    audit: AuditLog,
    clock: Clock,
    *,
    actor: str,
    name: str,
    groups: Sequence[str],
    admin: bool = False,
    kind: IdentityKind = IdentityKind.USER,
) -> tuple[Identity, str]:
    """Create a user with one API token; returns the token, which is never stored or shown again."""
    # fullmatch: ``$`` alone would let a trailing newline through into every table and message.
    if not _NAME.fullmatch(name):
        raise InvalidInput(f"{name!r} is not a valid user name")
    for group in groups:
        if not _NAME.fullmatch(group):
            raise InvalidInput(f"{group!r} is not a valid group name")
    token = new_token()
    now = clock.now()
    with db.write() as conn:
        if q.get_identity(conn, name) is not None:
            raise Conflict(f"user {name} already exists")
        q.insert_user(conn, name=name, groups=groups, admin=admin, kind=kind, now=now)
        q.insert_token(conn, token_id=secrets.token_hex(8), token_hash=token_hash(token), user=name, now=now)
        audit.append(
            conn,
            at=now,
            actor=actor,
            action="user.added",
            details={"name": name, "groups": sorted(set(groups)), "admin": admin, "kind": kind.value},
        )
    return Identity(name=name, groups=frozenset(groups), admin=admin, kind=kind, source="token"), token
