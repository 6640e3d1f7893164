"""A request or a grant with everything its console page shows, for whoever may see it.

Visibility is the API's own (``requests.visible_request``, ``grants.visible_grant``): decided on
the row before anything else is read, the same ``NotFound`` for an unseen id as for a missing one.
On top of the API's views come what a reviewer or holder needs to act: for an extension how far it
moves its grant's end, why this reader may (or may not) review, the credentials issued under a
grant and the extensions asked for it. Plain JSON-ready dicts, no secrets in them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jitgate.audit.query import query
from jitgate.domain.identity import Identity
from jitgate.domain.model import RequestKind, RequestState
from jitgate.policy.decision import review_standing
from jitgate.store import accounts, issuance
from jitgate.store import queries as q
from jitgate.workflow import grants, requests
from jitgate.workflow.context import WorkflowContext
from jitgate.workflow.views import grant_view, request_json, request_view

S = RequestState


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def request_detail(ctx: WorkflowContext, identity: Identity, request_id: str) -> dict[str, Any]:
    """``GET /api/v1/requests/{id}``'s view, plus ``requester_display_name``, ``approvals``,
    ``approvals_required`` (None where the role is approved automatically), ``extension`` (the
    grant's end before and after) and ``standing`` (whether this reader may review, and why)."""
    now = ctx.clock.now()
    with ctx.db.read() as conn:
        req = requests.visible_request(ctx, conn, identity, request_id)
        view = request_view(conn, request_id, now)
        view["requester_display_name"] = accounts.latest_display_name(conn, req.requester)
        extension: dict[str, Any] | None = None
        if req.kind is RequestKind.EXTENSION:
            extension = {"grant_id": req.extends_grant_id, "from": None, "to": None, "applied": False}
            if req.state is S.APPROVED:
                moved = query(conn, request_id=req.id, action="grant.extended", limit=1)
                if moved:
                    details = moved[0].details
                    extension["applied"] = True
                    extension["from"] = _zulu(details.get("from"))
                    extension["to"] = _zulu(details.get("to"))
            elif req.state is S.PENDING:
                grant = q.get_grant(conn, req.extends_grant_id or "")
                if grant is not None:
                    extension["from"] = _iso(grant.expires_at)
                    extension["to"] = _iso(grant.expires_at + req.duration)
    role = ctx.policy.role(req.role)
    standing = review_standing(
        identity,
        role,
        requester=req.requester,
        pending=req.state is S.PENDING,
        reviewers=[r["reviewer"] for r in view["reviews"]],
    )
    view["extension"] = extension
    reviewed = role is not None and role.approval == "manual"
    view["approvals_required"] = role.approvals_required if reviewed and role is not None else None
    view["approvals"] = sum(r["verdict"] == "approve" for r in view["reviews"])
    view["standing"] = {
        "may_approve": standing.may_approve,
        "may_deny": standing.may_deny,
        "why": standing.why,
    }
    return view


def _zulu(value: object) -> str | None:
    """An ISO time from an audit record's details, in the views' ``…Z`` form; None for anything
    else (a record edited since: ``audit verify`` names it, the page still shows the request)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return _iso(moment) if moment.tzinfo is not None else None


def grant_detail(ctx: WorkflowContext, identity: Identity, grant_id: str) -> dict[str, Any]:
    """``GET /api/v1/grants/{id}``'s view, plus its ``credentials`` (revoked ones too, never a
    secret), the ``extensions`` asked for it, and whether this reader ``may_extend`` (its holder,
    while it is active) and ``may_revoke`` it (whoever may see it, while it has not ended)."""
    now = ctx.clock.now()
    with ctx.db.read() as conn:
        grant = grants.visible_grant(ctx, conn, identity, grant_id)
        view = grant_view(conn, grant_id, now)
        view["credentials"] = [
            {
                "kind": row["kind"],
                "target": row["target"],
                "handle": row["handle"],
                "state": row["state"],
                "created_at": _iso(row["created_at"]),
                "valid_before": _iso(row["valid_before"]),
                "revoked_at": _iso(row["revoked_at"]),
            }
            for row in issuance.issued_for_grant(conn, grant_id)
        ]
        view["extensions"] = [request_json(r) for r in q.extensions_of(conn, grant_id)]
    view["may_extend"] = identity.name == grant.holder and grant.is_active_at(now)
    view["may_revoke"] = grant.state in (S.ACTIVE, S.APPROVED)
    view["is_holder"] = identity.name == grant.holder
    return view
