"""The litestar application: routes, dependencies (settings, backend, repository), errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from app import __version__
from app.config import Settings
from app.core.app_directory import AppDirectory
from app.core.chat_runs import ChatRunList
from app.core.service import StatsService
from app.fleet import Fleet
from app.http.admission import AdmissionMiddleware, InflightGate
from app.http.auth import CredentialsMiddleware
from app.http.console_auth import ConsoleAuthorizer
from app.http.errors import EXCEPTION_HANDLERS
from app.http.middleware import cancel_on_disconnect_middleware, request_id_middleware
from app.http.routes.console import console_router
from app.http.routes.discovery import discovery_router
from app.http.routes.grafana import grafana_router
from app.http.routes.health import healthz, prometheus_metrics, readyz
from app.http.routes.native import native_router
from app.http.routes.schema import RENDER_PLUGINS, SCHEMA_PATH, schema_router
from app.metrics import Metrics
from app.stores.backend import Backend
from app.stores.messages import MessageReader
from app.stores.node_logstore import NodeLogstore
from app.stores.node_repository import NodeExecutionRepository
from app.stores.people import PeopleReader
from app.stores.repository import StatsRepository
from app.stores.run_export import RunExport
from app.stores.sources import build_sources

MAX_BODY_BYTES = 1_048_576  # Grafana's largest bodies are a few kB


def openapi_config() -> OpenAPIConfig:
    """The document, served as JSON and YAML only (/schema/openapi.json, /schema/openapi.yaml): the
    interactive viewers load their scripts from a CDN, which an offline deployment cannot reach.
    Its router is new per application (litestar adds the document's handlers to it)."""
    return OpenAPIConfig(
        title="dify-stats",
        version=__version__,
        description="Exact statistics of Dify workflow runs kept in an append-only log store. Native and "
        "Grafana routes take `Authorization: Bearer <key>`; console routes are authorized by Dify.",
        path=SCHEMA_PATH,
        render_plugins=list(RENDER_PLUGINS),
        openapi_router=schema_router(),
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer", description="STATS_API_KEYS")
            }
        ),
    )


def create_app(
    settings: Settings,
    backend: Backend | None,
    workflow_runs: Backend | None = None,
    node_logstore: NodeLogstore | None = None,
) -> Litestar:
    """`backend` reads the LogStore, `workflow_runs` Dify's own tables (either may be the only
    source; both during a migration, see app/stores/sources.py). Opened on start-up, closed on shutdown.
    `node_logstore`: what the start-up probe found of the node LogStore (default: present until
    a statement finds it missing)."""
    sources = build_sources(settings, backend, workflow_runs)
    repository = StatsRepository(sources, settings)
    run_export = RunExport(sources)
    node_logstore = node_logstore or NodeLogstore()
    people = PeopleReader(workflow_runs)  # Dify's database names who ran runs and nodes
    nodes = NodeExecutionRepository(sources, settings, node_logstore, people)
    metrics = Metrics()
    fleet = Fleet(settings, metrics)  # what replicas share, if they share a Redis
    service = StatsService(repository, settings, fleet.shared, nodes=nodes, people=people)
    gate = InflightGate(settings.max_inflight, settings.tenant_share)
    # Chatflow run lists name each run's chat message, from Dify's database like its people.
    chat_runs = ChatRunList(
        repository, people, MessageReader(workflow_runs, settings.time_slack), service.cache, settings
    )
    authorizer = ConsoleAuthorizer(settings)
    app_directory = AppDirectory(repository, settings)  # who has which app: never read from Redis
    for source in sources:
        source.backend.metrics = metrics
        source.backend.budget = fleet.budget(source.backend.identity, source.backend.budget)
    metrics.watch_pools({source.name: source.backend.pool for source in sources})
    metrics.watch_kept_runs(lambda: service.kept_runs.runs)

    @asynccontextmanager
    async def backend_lifespan(_: Litestar) -> AsyncIterator[None]:
        await fleet.start()
        for source in sources:
            await source.backend.open()
        try:
            yield
        finally:
            await authorizer.close()
            for source in sources:
                await source.backend.close()
            await fleet.close()

    app = Litestar(
        route_handlers=[
            healthz,
            readyz,
            prometheus_metrics,
            native_router,
            discovery_router,
            console_router,
            grafana_router,
        ],
        state=State({"settings": settings, "metrics": metrics}),
        dependencies={
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
            "repository": Provide(lambda: repository, use_cache=True, sync_to_thread=False),
            "service": Provide(lambda: service, use_cache=True, sync_to_thread=False),
            "run_export": Provide(lambda: run_export, use_cache=True, sync_to_thread=False),
            "chat_runs": Provide(lambda: chat_runs, use_cache=True, sync_to_thread=False),
            "authorizer": Provide(lambda: authorizer, use_cache=True, sync_to_thread=False),
            "app_directory": Provide(lambda: app_directory, use_cache=True, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=[
            request_id_middleware,
            CredentialsMiddleware(),  # before admission: a request without a key counts against nothing
            AdmissionMiddleware(gate),
            cancel_on_disconnect_middleware,
        ],
        lifespan=[backend_lifespan],
        request_max_body_size=MAX_BODY_BYTES,
        logging_config=None,  # app/logging.py owns the root logger; litestar's would replace it
        openapi_config=openapi_config(),
    )
    app.state.service = service  # for operations and tests that need to reach it
    app.state.run_export = run_export
    app.state.node_logstore = node_logstore if backend is not None else None
    app.state.inflight = gate
    app.state.fleet = fleet
    return app
