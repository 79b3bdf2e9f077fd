"""The facility manager's dashboard: FastAPI with server-rendered pages and /api/v1.

`app.create_web_app(store, settings)` builds it. Backend pieces: `auth` (login, sessions, roles),
`csrf`, `ratelimit`, `search_handles`, `state`, `api` (/api/v1 JSON), `downloads` (CSV / JSON),
`apidocs`. The pages (`pages`, `password_page`, `live`, `views`, templates, static files, `i18n/`)
show what `reports/` computes.
"""
