"""The API reference at ``/docs`` is the broker's own page: no CDN, no script, every route listed."""

from __future__ import annotations

from starlette.testclient import TestClient


def test_the_api_docs_need_nothing_from_the_internet_and_list_every_route(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    html = page.text.lower()
    assert "<script" not in html
    assert "http://" not in html
    assert "https://" not in html
    schema = client.get("/openapi.json").json()
    for path in schema["paths"]:
        assert f"<code>{path}</code>" in page.text, path
    assert client.get("/redoc").status_code == 404


def test_a_description_cannot_inject_markup_into_the_page() -> None:
    from jitgate.api.docs_page import render

    page = render(
        {"info": {"title": "<b>x</b>"}, "paths": {"/a<script>": {"get": {"summary": "<img src=x>"}}}}
    )
    assert "<script>" not in page
    assert "<img" not in page
    assert "&lt;script&gt;" in page
