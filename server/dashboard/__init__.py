"""The facility manager's dashboard: FastAPI with server-rendered pages and /api/v1.

`app.create_web_app(store, settings)` builds it. Backend pieces: `auth` (login, sessions, roles),
`csrf`, `ratelimit`, `api` (/api/v1 JSON), `exports` (CSV / JSON downloads), `apidocs`. The pages
(`pages`, `live`, templates, static files, `i18n`) show what server/reports computes.
"""
