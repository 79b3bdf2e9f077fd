"""`GET /metrics`: the Prometheus text, for a `metrics` token (or an admin) only.

How it is protected (docs/security.md): an API token with the `metrics` role, sent as
`Authorization: Bearer gst_...` (Prometheus' `authorization` scrape setting). That role opens
nothing else (server/dashboard/auth.py refuses it everywhere else); an admin may read it too,
a viewer or manager may not (403), and no credentials or a wrong token get 401, never the
login page: a scraper follows no redirect to a form.

The registry is made once per web app (`metrics_registry`), never per request: its one
Collector (families.py) reads everything afresh at each scrape.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from server.accounts.users import Account, Role
from server.metrics.families import GatescanMetrics, MetricSources

METRICS_PATH = "/metrics"
READERS = frozenset({Role.METRICS, Role.ADMIN})

# Who is asking: the account, or None without credentials or with a wrong token.
WhoAsks = Callable[[Request], Account | None]


def metrics_registry(sources: MetricSources) -> CollectorRegistry:
    """A registry of its own (not prometheus_client's global one: one app per test, and no
    metric of a library leaking in), with the process's CPU, memory and open files."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatescanMetrics(sources))
    ProcessCollector(registry=registry)
    return registry


def metrics_router(registry: CollectorRegistry, who_asks: WhoAsks) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get(METRICS_PATH)
    def metrics(request: Request) -> Response:
        """A plain def: the scrape's queries run in the thread pool, not on the event loop."""
        account = who_asks(request)
        if account is None:
            return PlainTextResponse(
                "authentication required", 401, headers={"WWW-Authenticate": "Bearer"}
            )
        if account.role not in READERS:
            return PlainTextResponse("/metrics needs a metrics token or an admin", 403)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
