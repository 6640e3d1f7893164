"""The console's own style sheet and scripts, served from the package: no CDN, nothing inline.

Only files that ship in ``web/static`` are served, by exact name, with their content type fixed
by their suffix; the CSP of every page admits styles and scripts from here alone.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

router = APIRouter(prefix="/ui/static", include_in_schema=False)
_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
_FILES = {
    item.name: (item.read_bytes(), _TYPES[suffix])
    for item in (files("jitgate") / "web" / "static").iterdir()
    if (suffix := "." + item.name.rpartition(".")[2]) in _TYPES
}
_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=3600"}


@router.get("/{name}")
def static_file(name: str) -> Response:
    found = _FILES.get(name)
    if found is None:
        return Response("not found\n", status_code=404, media_type="text/plain", headers=_HEADERS)
    body, media_type = found
    return Response(body, media_type=media_type, headers=_HEADERS)
