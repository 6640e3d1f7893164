"""Accounts over the API: API tokens (list, revoke, rotate) and, for admins, users (list, disable,
enable, change groups).

After a change that takes access away, this process's token cache forgets the tokens concerned,
so the change holds here at once; other processes drop them within ``auth.tokens.CACHE_SECONDS``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Query
from pydantic import Field

from jitgate.api.deps import Caller, Ctx, RuntimeDep
from jitgate.api.schemas import Body
from jitgate.domain.durations import duration_argument
from jitgate.store.accounts import UserRow
from jitgate.workflow import tokens, users
from jitgate.workflow.views import _iso

router = APIRouter(prefix="/api/v1")


class RotateBody(Body):
    expires_in: str | None = Field(default=None, max_length=32, examples=["30d"])


class GroupsBody(Body):
    add: list[str] = Field(default_factory=list, max_length=100)
    remove: list[str] = Field(default_factory=list, max_length=100)


def user_json(user: UserRow) -> dict[str, Any]:
    return {
        "name": user.name,
        "kind": user.kind.value,
        "groups": list(user.groups),
        "admin": user.admin,
        "disabled": user.disabled,
        "created_at": _iso(user.created_at),
    }


@router.get("/tokens")
def list_tokens(
    identity: Caller, ctx: Ctx, user: str | None = Query(default=None, max_length=128)
) -> list[dict[str, Any]]:
    """Your tokens; admins may pass ``user=NAME``, or ``user=*`` for everyone's."""
    now = ctx.clock.now()
    return [tokens.token_json(t, now) for t in tokens.list_tokens(ctx, identity, user=user)]


@router.post("/tokens/{token_id}/revoke")
def revoke_token(token_id: str, identity: Caller, rt: RuntimeDep) -> dict[str, Any]:
    done = tokens.revoke(rt.ctx, identity, token_id)
    rt.tokens.forget(token_id=token_id)
    return tokens.token_json(done, rt.ctx.clock.now())


@router.post("/tokens/{token_id}/rotate", status_code=201)
def rotate_token(token_id: str, body: RotateBody, identity: Caller, rt: RuntimeDep) -> dict[str, Any]:
    """A new token (shown once, in ``token``) for the same user; the old one is revoked at once."""
    settings = rt.settings
    lifetime = users.checked_lifetime(
        duration_argument(body.expires_in) if body.expires_in else None,
        default=timedelta(seconds=settings.token_lifetime_seconds),
        maximum=timedelta(seconds=settings.token_max_lifetime_seconds),
    )
    created, secret = tokens.rotate(rt.ctx, identity, token_id, lifetime=lifetime)
    rt.tokens.forget(token_id=token_id)
    return {**tokens.token_json(created, rt.ctx.clock.now()), "token": secret, "replaces": token_id}


@router.get("/users")
def list_users(identity: Caller, ctx: Ctx) -> list[dict[str, Any]]:
    return [user_json(u) for u in users.list_users(ctx, identity)]


@router.post("/users/{name}/disable")
def disable_user(name: str, identity: Caller, rt: RuntimeDep) -> dict[str, Any]:
    """Disable a user: tokens and web sessions stop working, grants are revoked, requests cancelled."""
    done = users.set_disabled(rt.ctx, identity, name, disabled=True)
    rt.tokens.forget(user=name)
    return user_json(done)


@router.post("/users/{name}/enable")
def enable_user(name: str, identity: Caller, rt: RuntimeDep) -> dict[str, Any]:
    return user_json(users.set_disabled(rt.ctx, identity, name, disabled=False))


@router.post("/users/{name}/groups")
def change_groups(name: str, body: GroupsBody, identity: Caller, rt: RuntimeDep) -> dict[str, Any]:
    done = users.change_groups(rt.ctx, identity, name, add=body.add, remove=body.remove)
    rt.tokens.forget(user=name)  # groups decide what the user may do: no stale groups here
    return user_json(done)
