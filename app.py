"""HTTP routes and event handlers: each reads its input, calls a service, answers.

Everything else lives in ``chalicelib``; see ``chalicelib/bootstrap.py`` for the wiring.
"""

from __future__ import annotations

from chalice.app import AuthRequest, AuthResponse, Chalice, Request, Response

from chalicelib import http, logs
from chalicelib.bootstrap import Services, bootstrap
from chalicelib.errors import Unauthorized
from chalicelib.schemas import ClientCreate, ClientUpdate, TaskCreate, TaskUpdate, parse
from chalicelib.settings import read_settings_now

app = Chalice(app_name="notify")
logs.configure()  # JSON from the first line; bootstrap() applies the configured level
http.install(app)

# Route CORS is fixed when the app loads (`chalice package` loads it with the stage's env).
CORS = http.cors_config(read_settings_now().cors_allow_origin)

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


@app.authorizer(ttl_seconds=http.AUTH_CACHE_SECONDS)
def api_key(auth_request: AuthRequest) -> AuthResponse:
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


@app.route("/api/clients", methods=["POST"], authorizer=api_key, cors=CORS)
@http.endpoint
def create_client() -> Response:
    data = parse(ClientCreate, http.json_body(_request()))
    return http.ok(services().clients.create(data), status=201)


@app.route("/api/clients", methods=["GET"], authorizer=api_key, cors=CORS)
@http.endpoint
def list_clients() -> Response:
    params = http.query(_request(), {"code", "tag", "limit", "cursor"})
    page = services().clients.list(
        code=params.get("code"),
        tag=params.get("tag"),
        limit=http.page_limit(params),
        cursor=params.get("cursor"),
    )
    return http.ok(page)


@app.route("/api/clients/{client_id}", methods=["GET"], authorizer=api_key, cors=CORS)
@http.endpoint
def get_client(client_id: str) -> Response:
    return http.ok(services().clients.get(http.path_id(client_id, "Client")))


@app.route("/api/clients/{client_id}", methods=["POST", "PATCH"], authorizer=api_key, cors=CORS)
@http.endpoint
def update_client(client_id: str) -> Response:
    target = http.path_id(client_id, "Client")
    data = parse(ClientUpdate, http.json_body(_request()))
    return http.ok(services().clients.update(target, data))


@app.route("/api/clients/{client_id}", methods=["DELETE"], authorizer=api_key, cors=CORS)
@http.endpoint
def delete_client(client_id: str) -> Response:
    services().clients.delete(http.path_id(client_id, "Client"))
    return http.ok(None, status=204)


@app.route("/api/tasks", methods=["POST"], authorizer=api_key, cors=CORS)
@http.endpoint
def create_task() -> Response:
    data = parse(TaskCreate, http.json_body(_request()))
    return http.ok(services().tasks.create(data), status=201)


@app.route("/api/tasks", methods=["GET"], authorizer=api_key, cors=CORS)
@http.endpoint
def list_tasks() -> Response:
    params = http.query(_request(), {"limit", "cursor"})
    page = services().tasks.list(limit=http.page_limit(params), cursor=params.get("cursor"))
    return http.ok(page)


@app.route("/api/tasks/{task_id}", methods=["GET"], authorizer=api_key, cors=CORS)
@http.endpoint
def get_task(task_id: str) -> Response:
    return http.ok(services().tasks.get(http.path_id(task_id, "Task")))


@app.route("/api/tasks/{task_id}", methods=["POST", "PATCH"], authorizer=api_key, cors=CORS)
@http.endpoint
def update_task(task_id: str) -> Response:
    target = http.path_id(task_id, "Task")
    data = parse(TaskUpdate, http.json_body(_request()))
    return http.ok(services().tasks.update(target, data))


@app.route("/api/tasks/{task_id}", methods=["DELETE"], authorizer=api_key, cors=CORS)
@http.endpoint
def delete_task(task_id: str) -> Response:
    services().tasks.delete(http.path_id(task_id, "Task"))
    return http.ok(None, status=204)
