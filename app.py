"""HTTP routes and event handlers: each reads its input, calls a service, answers.

Everything else lives in ``chalicelib``; see ``chalicelib/bootstrap.py`` for the wiring.
"""

from __future__ import annotations

from typing import Any

from chalice.app import (
    AuthRequest,
    AuthResponse,
    Chalice,
    CloudWatchEvent,
    Rate,
    Request,
    Response,
    SQSEvent,
)

from chalicelib import apidocs, http, logs
from chalicelib.api import clients as clients_api
from chalicelib.api import stats as stats_api
from chalicelib.api import tasks as tasks_api
from chalicelib.bootstrap import Services, bootstrap
from chalicelib.errors import Unauthorized
from chalicelib.schemas import (
    ClientCreate,
    ClientFilter,
    ClientUpdate,
    ProcessReport,
    TaskCreate,
    TaskUpdate,
    parse,
)
from chalicelib.settings import read_settings_now

# Chalice's own log handler would print every line of the service's logger (also named
# "notify") a second time, as text: Powertools' handler is the only one (chalicelib/logs.py).
app = Chalice(app_name="notify", configure_logs=False)
http.install(app)

# Fixed when the app loads (`chalice package` loads it with the stage's environment):
# the log level and style from the first line, route CORS and the queue the sender consumes.
_LOAD_SETTINGS = read_settings_now()
logs.configure(_LOAD_SETTINGS.log_level, _LOAD_SETTINGS.log_style)
CORS = http.cors_config(_LOAD_SETTINGS.cors_allow_origin)
SEND_QUEUE = _LOAD_SETTINGS.send_queue
SEND_BATCH_SIZE = 10

_services: Services | None = None


def services() -> Services:
    """The wired services, built on first use (settings are read lazily)."""
    global _services  # noqa: PLW0603 - one composition per Lambda container
    if _services is None:
        _services = bootstrap()
    return _services


def use_services(replacement: Services | None) -> None:
    """Swap the wiring (tests pass a frozen clock; None rebuilds from the environment)."""
    global _services  # noqa: PLW0603
    _services = replacement


def _request() -> Request:
    request = app.current_request
    assert request is not None
    return request


# Not named ``api_key``: Chalice keeps that name for its own ``api_key_required`` scheme
# (a usage-plan key in ``x-api-key``), which would replace this authorizer in the
# packaged API definition (tests/infra checks every protected operation calls it).
@app.authorizer(ttl_seconds=http.AUTH_CACHE_SECONDS)
def bearer_key(auth_request: AuthRequest) -> AuthResponse:
    """Every route but health and the docs needs ``Authorization: Bearer <key>``."""
    try:
        key = services().api_keys.authenticate(auth_request.token)
    except Unauthorized:
        raise http.AuthorizerRejected from None
    return AuthResponse(routes=["*"], principal_id=key.key_id, context={"key_name": key.name})


@app.route("/api/health", methods=["GET"])
@http.endpoint
def health() -> Response:
    return Response(body={"status": "ok"}, status_code=200, headers=http.json_headers())


@app.route("/api/metrics", methods=["GET"], authorizer=bearer_key, cors=CORS)
@http.endpoint
def prometheus_metrics() -> Response:
    """Messages by status, tasks by status and queue depth, in Prometheus text format."""
    http.query(_request(), set())
    return Response(
        body=services().gauges.prometheus_text(),
        status_code=200,
        headers={"Content-Type": http.PROMETHEUS_CONTENT_TYPE},
    )


@app.route("/api/clients", methods=["POST"], authorizer=bearer_key, cors=CORS)
@http.endpoint
def create_client() -> Response:
    data = parse(ClientCreate, http.json_body(_request()))
    client = services().clients.create(clients_api.profile(data))
    return http.ok(clients_api.client_out(client), status=201)


@app.route("/api/clients", methods=["GET"], authorizer=bearer_key, cors=CORS)
@http.endpoint
def list_clients() -> Response:
    params = http.query(_request(), {"code", "tag", "limit", "cursor"})
    filters = parse(ClientFilter, {k: v for k, v in params.items() if k in {"code", "tag"}})
    page = services().clients.list(
        code=filters.code,
        tag=filters.tag,
        limit=http.page_limit(params),
        cursor=params.get("cursor"),
    )
    return http.ok(clients_api.page_out(page))


@app.route("/api/clients/{client_id}", methods=["GET"], authorizer=bearer_key, cors=CORS)
@http.endpoint
def get_client(client_id: str) -> Response:
    client = services().clients.get(http.path_id(client_id, "Client"))
    return http.ok(clients_api.client_out(client))


@app.route("/api/clients/{client_id}", methods=["POST", "PATCH"], authorizer=bearer_key, cors=CORS)
@http.endpoint
def update_client(client_id: str) -> Response:
    target = http.path_id(client_id, "Client")
    data = parse(ClientUpdate, http.json_body(_request()))
    client = services().clients.update(target, clients_api.changes(data))
    return http.ok(clients_api.client_out(client))


@app.route("/api/clients/{client_id}", methods=["DELETE"], authorizer=bearer_key, cors=CORS)
@http.endpoint
def delete_client(client_id: str) -> Response:
    services().clients.delete(http.path_id(client_id, "Client"))
    return http.ok(None, status=204)


@app.route("/api/tasks/process", methods=["POST"], authorizer=bearer_key, cors=CORS)
@http.endpoint
def process_due_tasks() -> Response:
    """SPEC 31: what the schedule does, now; answers before any message is sent."""
    wired = services()
    report = wired.dispatcher.dispatch_due(wired.settings.api_dispatch_budget_seconds, wait=False)
    return http.ok(
        ProcessReport(tasks=report.tasks, enqueued=report.enqueued, finished=report.finished),
        status=202,
    )


@app.route("/api/tasks/stats", methods=["GET"], authorizer=bearer_key, cors=CORS)
@http.endpoint
def task_stats() -> Response:
    """SPEC 22: every task with its message counts by status."""
    params = http.query(_request(), {"limit", "cursor"})
    page = services().stats.overview(limit=http.page_limit(params), cursor=params.get("cursor"))
    return http.ok(stats_api.overview_out(page))


@app.route("/api/tasks/{task_id}/stats", methods=["GET"], authorizer=bearer_key, cors=CORS)
@http.endpoint
def task_detail_stats(task_id: str) -> Response:
    """SPEC 23: one task, its counts, and its messages (paged, ``?status=``)."""
    target = http.path_id(task_id, "Task")
    params = http.query(_request(), {"status", "limit", "cursor"})
    limit = http.page_limit(params)  # a bad limit is named before a bad status
    detail = services().stats.detail(
        target,
        status=stats_api.message_status(params.get("status")),
        limit=limit,
        cursor=params.get("cursor"),
    )
    return http.ok(stats_api.detail_out(detail))


@app.route("/api/tasks", methods=["POST"], authorizer=bearer_key, cors=CORS)
@http.endpoint
def create_task() -> Response:
    data = parse(TaskCreate, http.json_body(_request()))
    task = services().tasks.create(tasks_api.plan(data))
    return http.ok(tasks_api.task_out(task), status=201)


@app.route("/api/tasks", methods=["GET"], authorizer=bearer_key, cors=CORS)
@http.endpoint
def list_tasks() -> Response:
    params = http.query(_request(), {"limit", "cursor"})
    page = services().tasks.list(limit=http.page_limit(params), cursor=params.get("cursor"))
    return http.ok(tasks_api.page_out(page))


@app.route("/api/tasks/{task_id}", methods=["GET"], authorizer=bearer_key, cors=CORS)
@http.endpoint
def get_task(task_id: str) -> Response:
    task = services().tasks.get(http.path_id(task_id, "Task"))
    return http.ok(tasks_api.task_out(task))


@app.route("/api/tasks/{task_id}", methods=["POST", "PATCH"], authorizer=bearer_key, cors=CORS)
@http.endpoint
def update_task(task_id: str) -> Response:
    target = http.path_id(task_id, "Task")
    data = parse(TaskUpdate, http.json_body(_request()))
    task = services().tasks.update(target, tasks_api.changes(data))
    return http.ok(tasks_api.task_out(task))


@app.route("/api/tasks/{task_id}", methods=["DELETE"], authorizer=bearer_key, cors=CORS)
@http.endpoint
def delete_task(task_id: str) -> Response:
    services().tasks.delete(http.path_id(task_id, "Task"))
    return http.ok(None, status=204)


@app.schedule(Rate(1, unit=Rate.MINUTES))
def dispatch(event: CloudWatchEvent) -> None:
    """Every minute: start due tasks, continue their fan-out, expire and finish them."""
    with logs.invocation(event.context):
        wired = services()
        wired.dispatcher.dispatch_due(wired.settings.dispatch_budget_seconds)


@app.on_sqs_message(queue=SEND_QUEUE, batch_size=SEND_BATCH_SIZE)
def send(event: SQSEvent) -> dict[str, Any]:
    """Send jobs; a job that fails is reported alone (partial batch response, built here
    rather than by Powertools' BatchProcessor: why in ``chalicelib/services/send_batch.py``)."""
    with logs.invocation(event.context):
        result = services().sender.handle_event(record.to_dict() for record in event)
    return {"batchItemFailures": [{"itemIdentifier": rid} for rid in result.failed_record_ids]}


# The documentation: public (no authorizer), served from files packaged with the code.
@app.route("/openapi.json", methods=["GET"])
@http.endpoint
def openapi_document() -> Response:
    return apidocs.document()


@app.route("/docs", methods=["GET"])
@http.endpoint
def docs_page() -> Response:
    return apidocs.page()


@app.route("/docs/{asset}", methods=["GET"])
@http.endpoint
def docs_asset(asset: str) -> Response:
    return apidocs.asset(asset)
