"""The client directory: its routes, their OpenAPI description, and the HTTP edge's
mapping from request models to domain values and from domain values to answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalice.app import Blueprint, Response

from chalicelib import http
from chalicelib.api.auth import PROTECTED
from chalicelib.api.operation import CHANGED_MEANWHILE, PAGED, Operation
from chalicelib.bootstrap import services
from chalicelib.domain.clients import Client, ClientChanges, ClientProfile
from chalicelib.schemas import ClientCreate, ClientFilter, ClientOut, ClientUpdate, parse
from chalicelib.schemas import Page as PageOut

# For the type checker only: the modules behind them import boto3, which the app's
# import (every function's cold start) should not pay for here (see bootstrap.py).
if TYPE_CHECKING:
    from chalicelib.ports import Page

bp = Blueprint(__name__)

CLIENT_IN = {"phone": "79001234567", "code": "900", "tag": "vip", "utc": "Europe/Moscow"}
CLIENT = {"id": 1, **CLIENT_IN}
PHONE_TAKEN = "Another client already has this phone."
LIST_QUERY = ("code", "tag", *PAGED)


@bp.route("/api/clients", methods=["POST"], **PROTECTED)
@Operation(
    "Add a client",
    "clients",
    "All four fields are required. The service assigns the id.",
    body=ClientCreate,
    body_examples={
        "phone as a string": CLIENT_IN,
        "phone as an integer": {**CLIENT_IN, "phone": 79001234568, "utc": "+03:00"},
    },
    status=201,
    answer=ClientOut,
    answer_example=CLIENT,
    conflict=PHONE_TAKEN,
    conflict_example=PHONE_TAKEN,
)
@http.endpoint
def create_client() -> Response:
    data = parse(ClientCreate, http.json_body(bp.current_request))
    client = services().clients.create(profile(data))
    return http.ok(client_out(client), status=201)


@bp.route("/api/clients", methods=["GET"], **PROTECTED)
@Operation(
    "List clients",
    "clients",
    "Optionally only those with an operator code and/or a tag, a page at a time.",
    query=LIST_QUERY,
    answer=PageOut[ClientOut],
    answer_example={"items": [CLIENT], "next": None},
)
@http.endpoint
def list_clients() -> Response:
    params = http.query(bp.current_request, LIST_QUERY)
    filters = parse(ClientFilter, {k: v for k, v in params.items() if k in {"code", "tag"}})
    page = services().clients.list(
        code=filters.code,
        tag=filters.tag,
        limit=http.page_limit(params),
        cursor=params.get("cursor"),
    )
    return http.ok(page_out(page))


@bp.route("/api/clients/{client_id}", methods=["GET"], **PROTECTED)
@Operation("Read a client", "clients", answer=ClientOut, answer_example=CLIENT)
@http.endpoint
def get_client(client_id: str) -> Response:
    client = services().clients.get(http.path_id(client_id, "Client"))
    return http.ok(client_out(client))


@bp.route("/api/clients/{client_id}", methods=["POST", "PATCH"], **PROTECTED)
@Operation(
    "Change a client",
    "clients",
    "Partial update: only the fields given change; `null` is refused.",
    alias="POST",
    body=ClientUpdate,
    body_examples={"new tag": {"tag": "gold"}, "new zone": {"utc": "Asia/Yekaterinburg"}},
    answer=ClientOut,
    answer_example={**CLIENT, "tag": "gold"},
    conflict=f"{PHONE_TAKEN} Or the client was {CHANGED_MEANWHILE}.",
    conflict_example=PHONE_TAKEN,
)
@http.endpoint
def update_client(client_id: str) -> Response:
    target = http.path_id(client_id, "Client")
    data = parse(ClientUpdate, http.json_body(bp.current_request))
    client = services().clients.update(target, changes(data))
    return http.ok(client_out(client))


@bp.route("/api/clients/{client_id}", methods=["DELETE"], **PROTECTED)
@Operation(
    "Delete a client",
    "clients",
    "Frees the phone for another client.",
    status=204,
    answer_description="Deleted; the answer has no body.",
    conflict=f"The client was {CHANGED_MEANWHILE}.",
    conflict_example="The client was changed by another request; try again.",
)
@http.endpoint
def delete_client(client_id: str) -> Response:
    services().clients.delete(http.path_id(client_id, "Client"))
    return http.ok(None, status=204)


def profile(data: ClientCreate) -> ClientProfile:
    return ClientProfile(phone=data.phone, code=data.code, tag=data.tag, utc=data.utc)


def changes(data: ClientUpdate) -> ClientChanges:
    return ClientChanges(phone=data.phone, code=data.code, tag=data.tag, utc=data.utc)


def client_out(client: Client) -> ClientOut:
    return ClientOut(
        id=client.id, phone=client.phone, code=client.code, tag=client.tag, utc=client.utc
    )


def page_out(page: Page[Client]) -> PageOut[ClientOut]:
    return PageOut[ClientOut](items=[client_out(c) for c in page.items], next=page.next)
