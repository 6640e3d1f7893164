"""The admin pages of accounts: users and service accounts, their API tokens, their SSH keys and
everyone's console sessions, with the forms that disable or enable a user, revoke a token, remove
a key and end a person's console sessions (also of identities from the provider, which have no
user to disable).

A token is shown by its id, owner and dates; its secret exists only in its holder's hands (the
broker keeps a hash) and no page could show it. Admins only, checked as in ``admin_pages.py``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from jitgate.domain.identity import Identity
from jitgate.store import accounts
from jitgate.store.paging import page_keys, page_tokens, page_users
from jitgate.web.admin_pages import admin_form, admin_page, done
from jitgate.web.pages import WEB_PAGE, pager, runtime
from jitgate.workflow import keys, tokens, users
from jitgate.workflow.views import _iso

router = APIRouter(prefix="/ui", include_in_schema=False)
USERS = "/ui/admin/users"
TOKENS = "/ui/admin/tokens"
KEYS = "/ui/admin/keys"
CONSOLE = "/ui/admin/console"
CONSOLE_SHOWN = 200


def _wanted_user(request: Request) -> str | None:
    return request.query_params.get("user", "").strip()[:128] or None


@router.get("/admin/users")
def admin_users(request: Request) -> Response:
    ctx = runtime(request).ctx
    params = request.query_params

    def listing(_: Identity) -> dict[str, Any]:
        with ctx.db.read() as conn:
            found = page_users(
                conn,
                limit=WEB_PAGE,
                older_than=params.get("users_cursor"),
                newer_than=params.get("users_before"),
            )
        rows = [
            {
                "name": user.name,
                "kind": user.kind.value,
                "groups": list(user.groups),
                "admin": user.admin,
                "disabled": user.disabled,
                "created_at": _iso(user.created_at),
            }
            for user in found.items
        ]
        return {"users": rows, "users_pages": pager(request, "users", found)}

    return admin_page(request, "admin_users.html", "users", listing)


@router.post("/admin/users/{name}/disabled")
def admin_set_disabled(
    request: Request, name: str, csrf: str = Form(""), disabled: str = Form(pattern="^(yes|no)$")
) -> Response:
    found = admin_form(request, csrf, USERS)
    if isinstance(found, Response):
        return found
    ctx, who = runtime(request).ctx, found.identity

    def change() -> str:
        # Disabling ends the user's sessions, grants and open requests at once (workflow/users.py).
        changed = users.set_disabled(ctx, who, name, disabled=disabled == "yes")
        return f"user {changed.name} {'disabled' if changed.disabled else 'enabled'}"

    return done(request, found, USERS, change)


@router.get("/admin/tokens")
def admin_tokens(request: Request) -> Response:
    ctx = runtime(request).ctx
    params = request.query_params
    user = _wanted_user(request)

    def listing(_: Identity) -> dict[str, Any]:
        now = ctx.clock.now()
        with ctx.db.read() as conn:
            found = page_tokens(
                conn,
                user=user,
                limit=WEB_PAGE,
                older_than=params.get("tokens_cursor"),
                newer_than=params.get("tokens_before"),
            )
        rows = [tokens.token_json(token, now) for token in found.items]
        return {"tokens": rows, "user": user or "", "tokens_pages": pager(request, "tokens", found)}

    return admin_page(request, "admin_tokens.html", "API tokens", listing)


@router.post("/admin/tokens/{token_id}/revoke")
def admin_revoke_token(request: Request, token_id: str, csrf: str = Form("")) -> Response:
    found = admin_form(request, csrf, TOKENS)
    if isinstance(found, Response):
        return found
    ctx, who = runtime(request).ctx, found.identity

    def revoke() -> str:
        revoked = tokens.revoke(ctx, who, token_id)
        return f"token {revoked.id} of {revoked.user} revoked"

    return done(request, found, TOKENS, revoke)


@router.get("/admin/keys")
def admin_keys(request: Request) -> Response:
    ctx = runtime(request).ctx
    params = request.query_params
    user = _wanted_user(request)

    def listing(_: Identity) -> dict[str, Any]:
        now = ctx.clock.now()
        with ctx.db.read() as conn:
            found = page_keys(
                conn,
                holder=user,
                limit=WEB_PAGE,
                older_than=params.get("keys_cursor"),
                newer_than=params.get("keys_before"),
            )
        rows = [keys.key_json(key, now) for key in found.items]
        return {"keys": rows, "user": user or "", "keys_pages": pager(request, "keys", found)}

    return admin_page(request, "admin_keys.html", "SSH keys", listing)


@router.post("/admin/keys/{key_id}/remove")
def admin_remove_key(request: Request, key_id: str, csrf: str = Form("")) -> Response:
    found = admin_form(request, csrf, KEYS)
    if isinstance(found, Response):
        return found
    ctx, who = runtime(request).ctx, found.identity

    def remove() -> str:
        removed = keys.remove_key(ctx, who, key_id)
        return f"key {removed.fingerprint} of {removed.holder} removed"

    return done(request, found, KEYS, remove)


@router.get("/admin/console")
def admin_console_sessions(request: Request) -> Response:
    ctx = runtime(request).ctx

    def listing(_: Identity) -> dict[str, Any]:
        with ctx.db.read() as conn:
            rows = accounts.live_sessions(conn, ctx.clock.now(), limit=CONSOLE_SHOWN)
        shown = [
            {
                "user": row["user_name"],
                "display_name": accounts.shown_display_name(row["identity"]),
                "how": "identity provider" if row["signed_in_at_provider"] else "API token",
                "created_at": _iso(row["created_at"]),
                "last_seen_at": _iso(row["last_seen_at"]),
                "expires_at": _iso(row["expires_at"]),
            }
            for row in rows
        ]
        return {"sessions": shown, "at_most": CONSOLE_SHOWN}

    return admin_page(request, "admin_console.html", "console sessions", listing)


@router.post("/admin/console/{name}/end")
def admin_end_console_sessions(request: Request, name: str, csrf: str = Form("")) -> Response:
    found = admin_form(request, csrf, CONSOLE)
    if isinstance(found, Response):
        return found
    ctx, who = runtime(request).ctx, found.identity

    def end() -> str:
        ended = users.end_console_sessions(ctx, who, name)
        return f"{ended} console session{'s' if ended != 1 else ''} of {name} ended"

    return done(request, found, CONSOLE, end)
