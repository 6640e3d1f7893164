"""The console: server-rendered pages under ``/ui``, one module per part, joined in one router.

See ``pages.py`` for what keeps them safe (server-side sessions, CSRF, CSP, escaping).
"""

from __future__ import annotations

from fastapi import APIRouter

from jitgate.web import (
    access_pages,
    admin_accounts,
    admin_pages,
    audit_pages,
    grant_pages,
    oidc_signin,
    request_pages,
    role_pages,
    signin,
    static,
)

router = APIRouter()
for part in (
    static,
    signin,
    oidc_signin,
    access_pages,
    request_pages,
    grant_pages,
    role_pages,
    audit_pages,
    admin_pages,
    admin_accounts,
):
    router.include_router(part.router)
