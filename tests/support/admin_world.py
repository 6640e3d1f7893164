"""What the admin pages list, made the way the broker makes it: a grant in force, a live gateway
session under it, a registered SSH key (from the real ``ssh-keygen``) and a pending revocation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from jitgate.domain.identity import Identity
from jitgate.runtime import Runtime
from jitgate.store import issuance
from jitgate.store import queries as q
from jitgate.workflow import keys, requests, sessions
from support.sshkeys import public_line


@dataclass(frozen=True)
class Furnished:
    grant: str
    session: str
    key: str
    fingerprint: str
    revocation_grant: str


def furnish(runtime: Runtime, alice: Identity, keys_dir: Path) -> Furnished:
    """``alice`` (an engineer) holds a stage-shell grant with a live session and one SSH key; a
    second grant of hers has a credential whose revocation failed once and is due again."""
    ctx = runtime.ctx
    held = requests.submit(ctx, alice, role="stage-shell", reason="", duration="20m")["grant"]["id"]
    with ctx.db.read() as conn:
        grant = q.get_grant(conn, held)
    assert grant is not None
    session = sessions.open_session(
        ctx,
        alice,
        grant=grant,
        target="stage-1",
        login="deploy",
        credential_serial="7",
        source="127.0.0.1:50000",
        gateway="gw-1",
    )
    line = public_line(keys_dir, "alice", "-t", "ed25519", comment="alice@laptop")
    key = keys.add_key(ctx, alice, line, lifetime=timedelta(days=30), max_lifetime=timedelta(days=90))
    ended = requests.submit(ctx, alice, role="stage-shell", reason="", duration="10m")["grant"]["id"]
    now = ctx.clock.now()
    with ctx.db.write() as conn:
        credential = issuance.insert_credential(
            conn,
            grant_id=ended,
            holder=alice.name,
            target="stage-1",
            kind="ssh",
            handle="serial-41",
            state="issued",
            now=now,
            record={},
        )
        issuance.enqueue_revocation(
            conn,
            credential_id=credential,
            grant_id=ended,
            target="stage-1",
            kind="ssh",
            handle="serial-41",
            now=now,
        )
        (queued,) = issuance.pending_revocations(conn, [ended])
        issuance.claim_revocation(conn, queued["id"], until=now)
        issuance.retry_revocation(
            conn,
            queued["id"],
            error="target <unreachable>",
            next_attempt_at=now + timedelta(minutes=2),
            claimed_until=now,
        )
    return Furnished(held, session, key.id, key.fingerprint, ended)
