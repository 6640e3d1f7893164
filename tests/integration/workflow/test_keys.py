"""Registered SSH keys: people add, list and remove their own; a key names exactly one person;
the gateway learns from a key who is connecting, as that person's row says now."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from jitgate.audit.query import query
from jitgate.clock import FrozenClock
from jitgate.domain.identity import Identity, IdentityKind
from jitgate.errors import Conflict, InvalidInput, InvalidText, NotFound, PolicyDenied
from jitgate.providers.ssh.ca import CaKind, CaStore
from jitgate.providers.ssh.provider import SshCertificateProvider
from jitgate.providers.ssh.wire import fingerprint
from jitgate.store import accounts
from jitgate.store import queries as q
from jitgate.store.keys import KeyRow
from jitgate.store.tables import user_keys
from jitgate.workflow import keys
from jitgate.workflow.context import WorkflowContext
from support import ADMIN, ALICE, BOB
from support.sshkeys import blob_of, certificate_line, dsa_line, public_line

YEAR = timedelta(days=365)
SERVICE = Identity("deployer", frozenset({"robots"}), kind=IdentityKind.SERVICE)


@pytest.fixture
def people(ctx: WorkflowContext, clock: FrozenClock) -> None:
    with ctx.db.write() as conn:
        for who in (ALICE, BOB, ADMIN, SERVICE):
            q.insert_user(
                conn,
                name=who.name,
                groups=sorted(who.groups),
                admin=who.admin,
                kind=who.kind,
                now=clock.now(),
            )


@pytest.fixture
def ca(ctx: WorkflowContext, clock: FrozenClock, tmp_path: Path) -> CaStore:
    store = CaStore(tmp_path / "ca")
    ctx.providers["ssh"] = SshCertificateProvider(store, clock)
    return store


def add(
    ctx: WorkflowContext, who: Identity, line: str, *, lifetime: timedelta = YEAR, comment: str | None = None
) -> KeyRow:
    return keys.add_key(ctx, who, line, comment=comment, lifetime=lifetime, max_lifetime=YEAR)


def events(ctx: WorkflowContext, action: str) -> list[dict[str, object]]:
    with ctx.db.read() as conn:
        return [e.details for e in query(conn, limit=1000) if e.action == action]


pytestmark = pytest.mark.usefixtures("people", "ca")


def security_key_line(_: Path) -> str:
    """A FIDO key line (``ssh-keygen -t ed25519-sk`` needs a token plugged in to make one)."""
    return "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t alice@yubikey"


@pytest.mark.parametrize(
    ("args", "key_type"),
    [
        (("-t", "ed25519"), "ssh-ed25519"),
        (("-t", "ecdsa", "-b", "384"), "ecdsa-sha2-nistp384"),
        (("-t", "rsa", "-b", "2048"), "ssh-rsa"),
    ],
)
def test_a_user_registers_a_key_of_every_accepted_type(
    ctx: WorkflowContext, clock: FrozenClock, tmp_path: Path, args: tuple[str, ...], key_type: str
) -> None:
    line = public_line(tmp_path, "id", *args, comment="alice@laptop")
    row = add(ctx, ALICE, line, lifetime=timedelta(days=30))
    assert row.id.startswith("k-")
    assert len(row.id) == 18
    assert (row.holder, row.key_type, row.comment, row.ephemeral) == (
        "alice",
        key_type,
        "alice@laptop",
        False,
    )
    assert row.fingerprint == fingerprint(blob_of(line))
    assert row.public_key == " ".join(line.split()[:2])
    assert row.expires_at == clock.now() + timedelta(days=30)
    [added] = events(ctx, "key.added")
    assert added == {
        "key_id": row.id,
        "fingerprint": row.fingerprint,
        "key_type": key_type,
        "comment": "alice@laptop",
        "expires_at": keys.key_json(row, clock.now())["expires_at"],
        "ephemeral": False,
    }


def test_a_comment_given_replaces_the_lines_and_must_be_printable_and_short(
    ctx: WorkflowContext, tmp_path: Path
) -> None:
    assert add(
        ctx, ALICE, public_line(tmp_path, "a", "-t", "ed25519", comment="x"), comment="work"
    ).comment == ("work")
    line = public_line(tmp_path, "b", "-t", "ed25519")
    with pytest.raises(InvalidText, match="comment contains U\\+001B"):
        add(ctx, ALICE, line, comment="\x1b[31mred")
    with pytest.raises(InvalidText, match="longer than 200"):
        add(ctx, ALICE, line, comment="c" * 201)


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (dsa_line, "DSA keys"),
        (lambda d: public_line(d, "short", "-t", "rsa", "-b", "1024"), "1024 bits; at least 2048"),
        (certificate_line, "a certificate is not accepted"),
        (security_key_line, "security keys"),
    ],
    ids=["dsa", "rsa-1024", "certificate", "security-key"],
)
def test_keys_the_broker_does_not_accept_are_refused_and_the_refusal_audited(
    ctx: WorkflowContext, tmp_path: Path, make: object, why: str
) -> None:
    line = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(InvalidInput, match=why):
        add(ctx, ALICE, line)
    [refused] = events(ctx, "access.refused")
    assert refused["attempted"] == "key.added"
    assert events(ctx, "key.added") == []


@pytest.mark.parametrize("kind", [CaKind.USER, CaKind.HOST])
def test_the_brokers_own_ca_keys_are_refused(
    ctx: WorkflowContext, ca: CaStore, clock: FrozenClock, kind: CaKind
) -> None:
    with pytest.raises(InvalidInput, match="the broker's own CA keys"):
        add(ctx, ADMIN, ca.active(kind, clock.now()).public_line)


def test_a_key_is_registered_once_by_anyone_and_the_refusal_names_nobody(
    ctx: WorkflowContext, tmp_path: Path
) -> None:
    line = public_line(tmp_path, "id", "-t", "ed25519")
    add(ctx, ALICE, line)
    for who in (ALICE, BOB):
        with pytest.raises(Conflict) as refused:
            add(ctx, who, line)
        assert refused.value.message == "this key is already registered"
    with pytest.raises(Conflict):
        keys.register_ephemeral(ctx, BOB, line, ttl=timedelta(minutes=5))


def test_a_lifetime_must_be_positive_and_within_the_maximum(ctx: WorkflowContext, tmp_path: Path) -> None:
    line = public_line(tmp_path, "id", "-t", "ed25519")
    with pytest.raises(InvalidInput, match="at most 365 days"):
        add(ctx, ALICE, line, lifetime=YEAR + timedelta(seconds=1))
    with pytest.raises(InvalidInput, match="positive"):
        add(ctx, ALICE, line, lifetime=timedelta(0))


def test_identities_the_broker_does_not_keep_cannot_register_keys(
    ctx: WorkflowContext, tmp_path: Path
) -> None:
    oidc = Identity("oidc:1234", frozenset({"engineers"}), source="oidc")
    with pytest.raises(PolicyDenied, match="only local users and service accounts"):
        add(ctx, oidc, public_line(tmp_path, "id", "-t", "ed25519"))


def test_people_list_their_own_keys_and_admins_anyones(ctx: WorkflowContext, tmp_path: Path) -> None:
    mine = add(ctx, ALICE, public_line(tmp_path, "a", "-t", "ed25519"))
    brief = keys.register_ephemeral(
        ctx, ALICE, public_line(tmp_path, "e", "-t", "ed25519"), ttl=timedelta(minutes=5)
    )
    theirs = add(ctx, BOB, public_line(tmp_path, "b", "-t", "ed25519"))
    listed = {k.id: k.ephemeral for k in keys.list_keys(ctx, ALICE)}  # made at the same instant
    assert listed == {mine.id: False, brief.id: True}
    with pytest.raises(PolicyDenied):
        keys.list_keys(ctx, ALICE, user="bob")
    assert [k.id for k in keys.list_keys(ctx, ADMIN, user="bob")] == [theirs.id]
    assert {k.id for k in keys.list_keys(ctx, ADMIN, user="*")} == {mine.id, brief.id, theirs.id}


def test_a_key_is_removed_by_its_holder_or_an_admin_and_is_unknown_to_anyone_else(
    ctx: WorkflowContext, clock: FrozenClock, tmp_path: Path
) -> None:
    line = public_line(tmp_path, "a", "-t", "ed25519")
    row = add(ctx, ALICE, line)
    with pytest.raises(NotFound, match=f"no key {row.id}"):
        keys.remove_key(ctx, BOB, row.id)
    assert keys.identity_for_key(ctx, blob_of(line), clock.now()) is not None
    assert keys.remove_key(ctx, ALICE, row.id).id == row.id
    assert keys.identity_for_key(ctx, blob_of(line), clock.now()) is None
    with pytest.raises(NotFound):
        keys.remove_key(ctx, ALICE, row.id)
    other = add(ctx, BOB, public_line(tmp_path, "b", "-t", "ed25519"))
    assert keys.remove_key(ctx, ADMIN, other.id).holder == "bob"
    assert [e["key_id"] for e in events(ctx, "key.removed")] == [row.id, other.id]
    assert events(ctx, "key.removed")[1]["user"] == "bob"
    assert len([e for e in events(ctx, "access.refused") if e["attempted"] == "key.removed"]) == 2


def test_an_ephemeral_key_ends_after_its_ttl_and_the_holders_ended_ones_are_swept(
    ctx: WorkflowContext, clock: FrozenClock, tmp_path: Path
) -> None:
    first_line = public_line(tmp_path, "e1", "-t", "ed25519")
    first = keys.register_ephemeral(ctx, ALICE, first_line, ttl=timedelta(minutes=5))
    kept = add(ctx, ALICE, public_line(tmp_path, "a", "-t", "ed25519"), lifetime=timedelta(minutes=1))
    assert first.ephemeral
    assert first.expires_at == clock.now() + timedelta(minutes=5)
    clock.advance(timedelta(minutes=5))
    assert keys.identity_for_key(ctx, blob_of(first_line), clock.now()) is None
    assert keys.key_json(first, clock.now())["state"] == "expired"
    second = keys.register_ephemeral(
        ctx, ALICE, public_line(tmp_path, "e2", "-t", "ed25519"), ttl=timedelta(minutes=5)
    )
    # The ended ephemeral key is gone; the ended registered key stays until its holder removes it.
    assert [k.id for k in keys.list_keys(ctx, ALICE)] == [kept.id, second.id]
    last = events(ctx, "key.added")[-1]
    assert last["ephemeral"] is True
    assert last["removed_ended_key_ids"] == [first.id]


def test_a_key_identifies_its_holder_as_their_row_says_now(
    ctx: WorkflowContext, clock: FrozenClock, tmp_path: Path
) -> None:
    line = public_line(tmp_path, "a", "-t", "ed25519")
    row = add(ctx, ALICE, line)
    found = keys.identity_for_key(ctx, blob_of(line), clock.now())
    assert found is not None
    identity, key = found
    assert (identity.name, identity.groups, identity.admin, identity.kind) == (
        "alice",
        frozenset({"engineers"}),
        False,
        IdentityKind.USER,
    )
    assert identity.source == "ssh-key"
    assert identity.expires_at == row.expires_at
    assert key.id == row.id
    with ctx.db.write() as conn:
        accounts.set_user_groups(conn, "alice", ["engineers", "oncall"])
    again = keys.identity_for_key(ctx, blob_of(line), clock.now())
    assert again is not None
    assert again[0].groups == frozenset({"engineers", "oncall"})


def test_service_accounts_and_admins_are_identified_with_their_kind_and_rights(
    ctx: WorkflowContext, clock: FrozenClock, tmp_path: Path
) -> None:
    robot, boss = public_line(tmp_path, "r", "-t", "ed25519"), public_line(tmp_path, "b", "-t", "ed25519")
    add(ctx, SERVICE, robot)
    add(ctx, ADMIN, boss)
    found_robot = keys.identity_for_key(ctx, blob_of(robot), clock.now())
    found_boss = keys.identity_for_key(ctx, blob_of(boss), clock.now())
    assert found_robot is not None
    assert found_robot[0].kind is IdentityKind.SERVICE
    assert found_boss is not None
    assert found_boss[0].admin


def test_a_disabled_users_key_no_longer_identifies_them(
    ctx: WorkflowContext, clock: FrozenClock, tmp_path: Path
) -> None:
    line = public_line(tmp_path, "a", "-t", "ed25519")
    add(ctx, ALICE, line)
    with ctx.db.write() as conn:
        accounts.set_user_disabled(conn, "alice", True)
    assert keys.identity_for_key(ctx, blob_of(line), clock.now()) is None
    with pytest.raises(PolicyDenied, match="disabled"):
        add(ctx, ALICE, public_line(tmp_path, "b", "-t", "ed25519"))


def test_a_key_stops_identifying_its_holder_when_it_expires(
    ctx: WorkflowContext, clock: FrozenClock, tmp_path: Path
) -> None:
    line = public_line(tmp_path, "a", "-t", "ed25519")
    add(ctx, ALICE, line, lifetime=timedelta(days=1))
    clock.advance(timedelta(days=1) - timedelta(seconds=1))
    assert keys.identity_for_key(ctx, blob_of(line), clock.now()) is not None
    clock.advance(timedelta(seconds=1))
    assert keys.identity_for_key(ctx, blob_of(line), clock.now()) is None


def test_unknown_keys_identify_nobody(ctx: WorkflowContext, clock: FrozenClock, tmp_path: Path) -> None:
    assert (
        keys.identity_for_key(ctx, blob_of(public_line(tmp_path, "a", "-t", "ed25519")), clock.now()) is None
    )
    assert keys.identity_for_key(ctx, b"not a key at all", clock.now()) is None


def test_the_last_use_is_recorded_at_most_once_a_minute(
    ctx: WorkflowContext, clock: FrozenClock, tmp_path: Path
) -> None:
    line = public_line(tmp_path, "a", "-t", "ed25519")
    row = add(ctx, ALICE, line)

    def last_used() -> object:
        with ctx.db.read() as conn:
            return conn.execute(
                sa.select(user_keys.c.last_used_at).where(user_keys.c.id == row.id)
            ).scalar_one()

    first = clock.now()
    keys.identity_for_key(ctx, blob_of(line), first)
    assert last_used() == first
    clock.advance(timedelta(seconds=59))
    keys.identity_for_key(ctx, blob_of(line), clock.now())
    assert last_used() == first
    clock.advance(timedelta(seconds=1))
    keys.identity_for_key(ctx, blob_of(line), clock.now())
    assert last_used() == clock.now()
