"""Every piece of free text a user sets and others read is checked once, in the workflow, before
anything is written: reasons, review comments, extension reasons, revocation comments, and the
names a request echoes back (role, targets, requester). Refused whole, audited as a refusal."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from jitgate.clock import FrozenClock
from jitgate.domain.model import Verdict
from jitgate.errors import InvalidInput, InvalidText
from jitgate.store.tables import audit_events, grants, requests, reviews
from jitgate.workflow import grants as grant_svc
from jitgate.workflow import requests as svc
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.users import add_user
from support import ALICE, BOB, CAROL

ESCAPE = "INC-1 \x1b[2J\x1b[1;1Happroved by security"
BIDI = "INC-1 \u202eevil\u202c"


def snapshot(ctx: WorkflowContext) -> dict[str, Any]:
    with ctx.db.read() as conn:
        counts = {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (requests, reviews, grants)
        }
        counts["states"] = sorted(conn.execute(sa.select(requests.c.id, requests.c.state)).all())
        counts["grant_states"] = sorted(conn.execute(sa.select(grants.c.id, grants.c.state)).all())
    return counts


def last_action(ctx: WorkflowContext) -> tuple[str, dict[str, Any]]:
    with ctx.db.read() as conn:
        body = conn.execute(sa.select(audit_events.c.body).order_by(audit_events.c.seq.desc())).first()
    assert body is not None
    record = json.loads(body[0])
    return record["action"], record["details"]


def submit(ctx: WorkflowContext, bad: str) -> Callable[[], object]:
    return lambda: svc.submit(ctx, ALICE, role="prod-shell", reason=bad)


def review(ctx: WorkflowContext, bad: str, verdict: Verdict) -> Callable[[], object]:
    rid = svc.submit(ctx, ALICE, role="prod-shell", reason="INC-1")["id"]
    return lambda: svc.review(ctx, BOB, rid, verdict=verdict, comment=bad)


def extend(ctx: WorkflowContext, bad: str) -> Callable[[], object]:
    gid = svc.submit(ctx, CAROL, role="prod-shell", reason="INC-1", duration="1h")["grant"]["id"]
    return lambda: grant_svc.extend(ctx, CAROL, gid, duration="30m", reason=bad)


def revoke(ctx: WorkflowContext, bad: str) -> Callable[[], object]:
    gid = svc.submit(ctx, CAROL, role="prod-shell", reason="INC-1", duration="1h")["grant"]["id"]
    return lambda: grant_svc.revoke(ctx, CAROL, gid, comment=bad)


PATHS: dict[str, Callable[[WorkflowContext, str], Callable[[], object]]] = {
    "request reason": submit,
    "approve comment": lambda ctx, bad: review(ctx, bad, Verdict.APPROVE),
    "deny comment": lambda ctx, bad: review(ctx, bad, Verdict.DENY),
    "extension reason": extend,
    "revocation comment": revoke,
    "target name": lambda ctx, bad: (
        lambda: svc.submit(ctx, ALICE, role="prod-shell", reason="INC-1", targets=(bad,))
    ),
    "role name": lambda ctx, bad: lambda: svc.submit(ctx, ALICE, role=bad, reason="INC-1"),
    "requester name": lambda ctx, bad: (
        lambda: svc.submit(ctx, ALICE, role="prod-shell", reason="INC-1", requester=bad)
    ),
}


@pytest.mark.parametrize("bad", [ESCAPE, BIDI], ids=["escape", "bidi"])
@pytest.mark.parametrize("path", PATHS.values(), ids=PATHS.keys())
def test_hostile_text_is_refused_before_anything_is_written(
    ctx: WorkflowContext, path: Callable[[WorkflowContext, str], Callable[[], object]], bad: str
) -> None:
    attempt = path(ctx, bad)
    before = snapshot(ctx)
    with pytest.raises(InvalidText, match=r"contains U\+(001B|202E)"):
        attempt()
    assert snapshot(ctx) == before
    action, details = last_action(ctx)
    assert action == "access.refused"
    assert details["error"] == "invalid_text"


def test_overlong_comments_are_refused_too(ctx: WorkflowContext) -> None:
    attempt = review(ctx, "x" * 2001, Verdict.DENY)
    with pytest.raises(InvalidText, match="comment is longer than 2000 characters"):
        attempt()
    assert (
        svc.request_view_for(
            ctx, svc.visible_requests(ctx, BOB, mine=False, reviewable=True, states=()).items[0].id
        )["state"]
        == "PENDING"
    )


def test_chat_and_markup_characters_are_data_and_pass(ctx: WorkflowContext) -> None:
    made = svc.submit(ctx, ALICE, role="prod-shell", reason="INC-1 <!channel> [bold]x[/bold] & 東京")
    assert made["reason"] == "INC-1 <!channel> [bold]x[/bold] & 東京"


def test_user_and_group_names_cannot_end_in_a_newline(ctx: WorkflowContext, clock: FrozenClock) -> None:
    with pytest.raises(InvalidInput, match="is not a valid user name"):
        add_user(ctx.db, ctx.audit, clock, actor="admin", name="alice\n", groups=["engineers"])
    with pytest.raises(InvalidInput, match="is not a valid group name"):
        add_user(ctx.db, ctx.audit, clock, actor="admin", name="alice", groups=["ops\n"])
