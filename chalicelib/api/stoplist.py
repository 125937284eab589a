"""The stop list (issue 18): its routes, their OpenAPI description, and the HTTP edge's
mapping from request models to domain values and from domain values to answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalice.app import Blueprint, Response

from chalicelib import http
from chalicelib.api.auth import PROTECTED
from chalicelib.api.operation import PAGED, Operation
from chalicelib.bootstrap import services
from chalicelib.domain.clients import normalize_phone
from chalicelib.domain.stoplist import NOT_ON_THE_LIST, StopEntry
from chalicelib.domain.tasks import format_instant
from chalicelib.errors import NotFound
from chalicelib.schemas import Page as PageOut
from chalicelib.schemas import StopEntryCreate, StopEntryOut, parse

# For the type checker only (see chalicelib/api/clients.py).
if TYPE_CHECKING:
    from chalicelib.ports import Page

bp = Blueprint(__name__)

ENTRY_IN = {"phone": "79001234567", "reason": "asked not to be contacted"}
ENTRY = {**ENTRY_IN, "created_at": "2026-11-28T12:00:00Z"}
STOPPED_ALREADY = "This phone is on the stop list already."


@bp.route("/api/stoplist", methods=["POST"], **PROTECTED)
@Operation(
    "Stop a phone",
    "stop list",
    "No message goes to this phone from now on: a message whose turn comes while it is "
    "on the list becomes `suppressed`. The phone need not be a client's; the entry stays "
    "when the client is deleted.",
    body=StopEntryCreate,
    body_examples={
        "with a reason": ENTRY_IN,
        "phone as an integer, no reason": {"phone": 79001234568},
    },
    status=201,
    answer=StopEntryOut,
    answer_example=ENTRY,
    conflict="The phone is on the stop list already.",
    conflict_example=STOPPED_ALREADY,
)
@http.endpoint
def stop_phone() -> Response:
    data = parse(StopEntryCreate, http.json_body(bp.current_request))
    entry = services().stoplist.add(data.phone, data.reason)
    return http.ok(entry_out(entry), status=201)


@bp.route("/api/stoplist", methods=["GET"], **PROTECTED)
@Operation(
    "List the stop list",
    "stop list",
    "Every stopped phone, a page at a time.",
    query=PAGED,
    answer=PageOut[StopEntryOut],
    answer_example={"items": [ENTRY], "next": None},
)
@http.endpoint
def list_stoplist() -> Response:
    params = http.query(bp.current_request, PAGED)
    page = services().stoplist.list(limit=http.page_limit(params), cursor=params.get("cursor"))
    return http.ok(page_out(page))


@bp.route("/api/stoplist/{phone}", methods=["DELETE"], **PROTECTED)
@Operation(
    "Unstop a phone",
    "stop list",
    "Takes the phone off the stop list: messages may go to it again.",
    status=204,
    answer_description="Removed; the answer has no body.",
)
@http.endpoint
def unstop_phone(phone: str) -> Response:
    services().stoplist.remove(path_phone(phone))
    return http.ok(None, status=204)


def path_phone(value: str) -> str:
    """A path that is not a phone names no entry: 404, as an id that is not one."""
    try:
        return normalize_phone(value)
    except ValueError:
        raise NotFound(NOT_ON_THE_LIST) from None


def entry_out(entry: StopEntry) -> StopEntryOut:
    return StopEntryOut(
        phone=entry.phone, reason=entry.reason, created_at=format_instant(entry.created_at)
    )


def page_out(page: Page[StopEntry]) -> PageOut[StopEntryOut]:
    return PageOut[StopEntryOut](items=[entry_out(e) for e in page.items], next=page.next)
