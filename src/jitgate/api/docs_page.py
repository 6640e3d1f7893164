"""``/docs``: the API reference, rendered by the broker itself from its own OpenAPI schema.

FastAPI's default page loads Swagger UI's scripts and styles from a CDN: a blank page without
internet, and third-party code running next to the broker's origin. This one is plain HTML made on
the server, every value escaped, under the same strict content security policy as the web pages
(no scripts at all). The machine-readable schema stays at ``/openapi.json``.
"""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from jitgate.web.pages import HEADERS

METHODS = ("get", "post", "put", "patch", "delete")


def _schema_name(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return ref.rsplit("/", 1)[-1]
    return str(schema.get("type", "object"))


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    parts = [
        f'<section id="{escape(method)}-{escape(path)}"><p><span class="m">{escape(method)}</span>'
        f"<code>{escape(path)}</code> {escape(op.get('summary', ''))}</p>"
    ]
    if op.get("description"):
        parts.append(f"<p>{escape(op['description'])}</p>")
    params = op.get("parameters", [])
    if params:
        rows = "".join(
            f"<tr><td><code>{escape(p.get('name', ''))}</code></td><td>{escape(p.get('in', ''))}</td>"
            f"<td>{'required' if p.get('required') else ''}</td>"
            f"<td>{escape(_schema_name(p.get('schema', {})))}</td></tr>"
            for p in params
        )
        parts.append(f"<table>{rows}</table>")
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if body:
        parts.append(f"<p>body: <code>{escape(_schema_name(body))}</code></p>")
    codes = ", ".join(escape(str(code)) for code in op.get("responses", {}))
    parts.append(f"<p>answers: {codes}</p></section>")
    return "".join(parts)


def render(schema: dict[str, Any]) -> str:
    info = schema.get("info", {})
    title = f"{info.get('title', 'API')} {info.get('version', '')}"
    sections: dict[str, list[str]] = {}
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is not None:
                tag = (op.get("tags") or ["other"])[0]
                sections.setdefault(tag, []).append(_operation(path, method, op))
    toc = " · ".join(f'<a href="#tag-{escape(t)}">{escape(t)}</a>' for t in sections)
    blocks = "".join(
        f'<h2 id="tag-{escape(tag)}">{escape(tag)}</h2>{"".join(ops)}' for tag, ops in sections.items()
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title><link rel="stylesheet" href="/ui/static/docs.css"></head><body>'
        f"<h1>{escape(title)}</h1><p>{escape(info.get('description', ''))}. Every route takes "
        f"<code>Authorization: Bearer TOKEN</code>; errors are <code>application/problem+json</code>. "
        f'The schema: <a href="/openapi.json">/openapi.json</a>.</p><p>{toc}</p>{blocks}</body></html>'
    )


def install(app: FastAPI) -> None:
    """Serve ``/docs`` from the app's own schema (rendered once, on first use)."""
    page: list[str] = []

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        if not page:
            page.append(render(app.openapi()))
        return HTMLResponse(page[0], headers=HEADERS)
