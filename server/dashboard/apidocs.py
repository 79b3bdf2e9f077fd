"""/api/docs: the OpenAPI description as a plain page (no script, nothing from a CDN).

FastAPI's Swagger UI loads its files from a CDN and starts with an inline script; both break
the dashboard's rule (CSP default-src 'self', no inline script, no network at install time).
This page lists every operation with its parameters and links the machine-readable JSON.
"""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse


def api_docs_router(openapi_url: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/api/docs", response_class=HTMLResponse)
    def api_docs(request: Request) -> HTMLResponse:
        return HTMLResponse(render_api_docs(request.app.openapi(), openapi_url))

    return router


def render_api_docs(schema: dict[str, Any], openapi_url: str) -> str:
    info = schema.get("info", {})
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(info.get('title', 'API'))}</title>",
        "<link rel='stylesheet' href='/static/css/dashboard.css'></head>",
        "<body><main class='content'>",
        f"<h1>{escape(info.get('title', 'API'))} {escape(str(info.get('version', '')))}</h1>",
        "<p>Authenticate with a session (log in) or <code>Authorization: Bearer TOKEN</code> "
        "(<code>gatescan token create NAME --role ROLE</code>). "
        f"OpenAPI JSON: <a href='{escape(openapi_url)}'>{escape(openapi_url)}</a></p>",
    ]
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            parts.append(_operation(path, method, operation))
    parts.append("</main></body></html>")
    return "".join(parts)


def _operation(path: str, method: str, operation: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p.get('in', ''))}</td>"
        f"<td>{'yes' if p.get('required') else ''}</td>"
        f"<td>{escape(p.get('description', ''))}</td></tr>"
        for p in operation.get("parameters", [])
    )
    table = (
        f"<table><tr><th>parameter</th><th>in</th><th>required</th><th></th></tr>{rows}</table>"
        if rows
        else ""
    )
    return (
        f"<section><h2><code>{escape(method.upper())} {escape(path)}</code></h2>"
        f"<p>{escape(operation.get('summary', ''))}</p>{table}</section>"
    )
