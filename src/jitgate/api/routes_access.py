"""Roles, requests, reviews and grants."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from jitgate.api.deps import Caller, Ctx
from jitgate.api.schemas import ExtendBody, RequestCreate, ReviewCreate, RevokeBody
from jitgate.domain.durations import format_duration
from jitgate.domain.model import RequestState, Verdict
from jitgate.errors import InvalidInput
from jitgate.policy.decision import explain, may_approve, may_request
from jitgate.store import issuance
from jitgate.store.paging import DEFAULT_PAGE, MAX_PAGE, Page, page_grants
from jitgate.workflow import grants, requests
from jitgate.workflow.elevation_views import attach, elevations_by_grant
from jitgate.workflow.views import grant_json, request_json

router = APIRouter(prefix="/api/v1")


def _states(raw: list[str] | None) -> tuple[RequestState, ...]:
    try:
        return tuple(RequestState(s.upper()) for s in raw or ())
    except ValueError:
        raise InvalidInput(
            f"unknown state in {raw}; use {', '.join(s.value for s in RequestState)}"
        ) from None


def _link_pages(request: Request, response: Response, page: Page[Any]) -> None:
    """RFC 8288 ``Link`` header to the pages beside this one (the body stays a plain list):
    ``next`` goes on to older entries with ``cursor``, ``prev`` back to newer ones with ``before``."""
    links = []
    for rel, param, value in (("next", "cursor", page.older), ("prev", "before", page.newer)):
        if value is not None:
            url = request.url.remove_query_params(["cursor", "before"]).include_query_params(**{param: value})
            links.append(f'<{url.path}?{url.query}>; rel="{rel}"')
    if links:
        response.headers["Link"] = ", ".join(links)


# Annotated, not shared Query() defaults: FastAPI writes each parameter's name into its FieldInfo.
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
CursorParam = Annotated[str | None, Query(max_length=200)]


@router.get("/whoami")
def whoami(identity: Caller) -> dict[str, Any]:
    return {
        "name": identity.name,
        "display_name": identity.display_name,
        "source": identity.source,
        "groups": sorted(identity.groups),
        "admin": identity.admin,
    }


@router.get("/roles")
def roles(identity: Caller, ctx: Ctx) -> list[dict[str, Any]]:
    """Every role, with whether the caller may request or approve it."""
    out = []
    for role in ctx.policy.roles:
        out.append(
            {
                "name": role.name,
                "description": role.description,
                "targets": [t.name for t in ctx.policy.targets_of(role)],
                "default_duration": format_duration(role.duration_default),
                "max_duration": format_duration(role.max_duration),
                "may_request": may_request(identity, role),
                "may_approve": may_approve(identity, role),
                "approval": role.approval if not role.auto_approve else "rules",
                "break_glass": role.break_glass,
                "reason_required": role.reason.required,
            }
        )
    return out


@router.get("/roles/{name}/explain")
def explain_role(name: str, identity: Caller, ctx: Ctx) -> dict[str, Any]:
    found = explain(ctx.policy, identity, name)
    return {"user": found.user, "role": found.role, "may_request": found.may_request, "lines": found.lines}


@router.post("/requests", status_code=201)
def create_request(body: RequestCreate, identity: Caller, ctx: Ctx) -> dict[str, Any]:
    return requests.submit(
        ctx,
        identity,
        role=body.role,
        reason=body.reason,
        duration=body.duration,
        targets=tuple(body.targets),
        start_at=body.start_at,
        requester=body.requester,
    )


@router.get("/requests")
def list_requests(
    request: Request,
    response: Response,
    identity: Caller,
    ctx: Ctx,
    state: list[str] | None = Query(default=None),  # noqa: B008 - FastAPI's declaration style
    mine: bool = False,
    reviewable: bool = False,
    limit: Limit = DEFAULT_PAGE,
    cursor: CursorParam = None,
    before: CursorParam = None,
) -> list[dict[str, Any]]:
    """One page of requests, newest first; the ``Link`` header leads to the others."""
    page = requests.visible_requests(
        ctx,
        identity,
        mine=mine,
        reviewable=reviewable,
        states=_states(state),
        limit=limit,
        older_than=cursor,
        newer_than=before,
    )
    _link_pages(request, response, page)
    return [request_json(r) for r in page.items]


@router.get("/requests/{request_id}")
def get_request(request_id: str, identity: Caller, ctx: Ctx) -> dict[str, Any]:
    return requests.visible_request_view(ctx, identity, request_id)


@router.post("/requests/{request_id}/reviews")
def review(request_id: str, body: ReviewCreate, identity: Caller, ctx: Ctx) -> dict[str, Any]:
    return requests.review(ctx, identity, request_id, verdict=Verdict(body.verdict), comment=body.comment)


@router.post("/requests/{request_id}/cancel")
def cancel(request_id: str, identity: Caller, ctx: Ctx) -> dict[str, Any]:
    return requests.cancel(ctx, identity, request_id)


@router.get("/grants")
def list_grants(
    request: Request,
    response: Response,
    identity: Caller,
    ctx: Ctx,
    state: list[str] | None = Query(default=None),  # noqa: B008 - FastAPI's declaration style
    all_holders: bool = Query(default=False, alias="all"),
    limit: Limit = DEFAULT_PAGE,
    cursor: CursorParam = None,
    before: CursorParam = None,
) -> list[dict[str, Any]]:
    """One page of grants, latest start first, each with what its elevations changed at their
    targets; the ``Link`` header leads to the others."""
    now = ctx.clock.now()
    holder = None if (all_holders and identity.admin) else identity.name
    with ctx.db.read() as conn:
        page = page_grants(
            conn, holder=holder, states=_states(state), limit=limit, older_than=cursor, newer_than=before
        )
        found = page.items
        ids = [g.id for g in found]
        pending = issuance.pending_revocations(conn, ids) if found else []
        changed = elevations_by_grant(conn, ids)
    by_grant: dict[str, list[dict[str, Any]]] = {}
    for row in pending:
        by_grant.setdefault(row["grant_id"], []).append(
            {"target": row["target"], "attempts": row["attempts"], "last_error": row["last_error"]}
        )
    out = []
    for grant in found:
        item = attach(grant_json(grant, now), changed)
        item["pending_revocations"] = by_grant.get(grant.id, [])
        out.append(item)
    _link_pages(request, response, page)
    return out


@router.get("/grants/{grant_id}")
def get_grant(grant_id: str, identity: Caller, ctx: Ctx) -> dict[str, Any]:
    return grants.visible_grant_view(ctx, identity, grant_id)


@router.post("/grants/{grant_id}/revoke")
def revoke(grant_id: str, body: RevokeBody, identity: Caller, ctx: Ctx) -> dict[str, Any]:
    return grants.revoke(ctx, identity, grant_id, comment=body.comment)


@router.post("/grants/{grant_id}/extend")
def extend(grant_id: str, body: ExtendBody, identity: Caller, ctx: Ctx) -> dict[str, Any]:
    return grants.extend(ctx, identity, grant_id, duration=body.duration, reason=body.reason)
