"""The HTTP edge: reading requests, shaping answers, and the SPEC error format.

Routes stay thin: they call :func:`json_body`, :func:`path_id` and the query helpers,
hand the result to a service, and return :func:`ok`. Domain errors become answers in
:func:`endpoint`; errors Chalice itself produces (415, 405, 500) are rewritten into the
same ``{"error", "message", "fields"}`` shape by the middleware.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from chalice.app import Chalice, CORSConfig, Request, Response

from chalicelib import logs, safejson

if TYPE_CHECKING:
    from pydantic import BaseModel
from chalicelib.errors import (
    BadRequest,
    InvalidCursor,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    ValidationFailed,
)

log = logs.get_logger("http")

MAX_BODY_BYTES = 64 * 1024
# No request body of this API nests beyond 3 levels; deeper is hostile, not data.
MAX_BODY_DEPTH = safejson.MAX_DEPTH
MAX_ID = 2**63 - 1
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
JSON_CONTENT_TYPE = "application/json"
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_ID_RE = re.compile(r"[0-9]{1,19}")
_STATUS: dict[str, int] = {
    "validation_error": 400,
    "bad_request": 400,
    "unauthorized": 401,
    "not_found": 404,
    "conflict": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
}
# Chalice answers some requests itself with {"Code", "Message"}; name them our way.
_CHALICE_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal_error",
}

F = TypeVar("F", bound=Callable[..., Response])

# Every list takes its page cursor as the ``cursor`` query parameter.
INVALID_CURSOR = ValidationFailed(
    "The cursor is not valid.", {"cursor": "not a cursor from this list"}
)

# API Gateway's authorizer result cache: a revoked key may live this long in AWS.
AUTH_CACHE_SECONDS = 30


# The deployed gateway's answer to a missing or refused key (infra/gateway_responses.py).
UNAUTHORIZED_MESSAGE = "A valid API key is required: Authorization: Bearer <key>."


def _refusal_base() -> type[Exception]:
    """``chalice local`` answers its own ``NotAuthorizedError`` with a 401 and the error's
    headers and body (anything else the authorizer raises drops the connection there).
    In Lambda only ``chalice.app`` is packaged: there the base is a plain Exception."""
    try:
        from chalice.local import NotAuthorizedError  # noqa: PLC0415
    except ImportError:
        return Exception
    return NotAuthorizedError


class AuthorizerRejected(_refusal_base()):  # type: ignore[misc]
    """Raised by the authorizer to refuse a request.

    API Gateway answers 401 when an authorizer fails with exactly ``Unauthorized``; the
    stack's gateway responses (and ``make run``'s gateway, ``local/gateway.py``) give that
    401 the SPEC body. Under plain ``chalice local`` the exception is itself that answer.
    """

    CODE = 401

    def __init__(self) -> None:
        Exception.__init__(self, "Unauthorized")
        self.headers = dict(json_headers())
        self.body = json.dumps(error_body("unauthorized", UNAUTHORIZED_MESSAGE)).encode()


def json_headers() -> dict[str, str | list[str]]:
    return {"Content-Type": JSON_CONTENT_TYPE}


def cors_config(origin: str | None) -> CORSConfig | None:
    """CORS stays off unless an origin is configured (``CORS_ALLOW_ORIGIN``)."""
    if not origin:
        return None
    return CORSConfig(
        allow_origin=origin,
        allow_headers=["Authorization", "Content-Type"],
        expose_headers=["X-Request-Id"],
        max_age=600,
    )


def error_body(code: str, message: str, fields: Mapping[str, str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code, "message": message}
    if fields:
        body["fields"] = dict(fields)
    return body


def error_response(error: ServiceError) -> Response:
    return Response(
        body=error_body(error.code, error.message, error.fields),
        status_code=_STATUS.get(error.code, 400),
        headers=json_headers(),
    )


def ok(body: BaseModel | None, status: int = 200) -> Response:
    if body is None:
        return Response(body="", status_code=status)
    return Response(body=body.model_dump(mode="json"), status_code=status, headers=json_headers())


def endpoint(view: F) -> F:
    """Turn the domain errors a view raises into SPEC-format answers."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            return view(*args, **kwargs)
        except ServiceError as error:
            return error_response(error)
        except InvalidCursor:
            return error_response(INVALID_CURSOR)
        except Exception:
            log.exception("unhandled error")
            return Response(
                body=error_body("internal_error", "An internal error occurred."),
                status_code=500,
                headers=json_headers(),
            )

    return wrapper  # type: ignore[return-value]


def json_body(request: Request) -> Any:
    raw = request.raw_body or b""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The body is larger than {MAX_BODY_BYTES} bytes.")
    if not raw.strip():
        raise BadRequest("The request needs a JSON body.")
    try:
        return safejson.loads(raw, max_depth=MAX_BODY_DEPTH)
    except safejson.TooDeep:
        raise BadRequest(
            f"The body nests arrays or objects deeper than {MAX_BODY_DEPTH} levels."
        ) from None
    except ValueError:  # UnicodeDecodeError included
        raise BadRequest("The body is not valid JSON.") from None


def path_id(value: str, entity: str) -> int:
    """A path id that is not a positive 64-bit integer names nothing: 404."""
    if not _ID_RE.fullmatch(value) or int(value) > MAX_ID:
        raise NotFound(f"{entity} {value!r} does not exist.")
    return int(value)


def query(request: Request, allowed: Collection[str]) -> dict[str, str]:
    params: dict[str, str] = dict(request.query_params or {})
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValidationFailed(
            "Unknown query parameters.", dict.fromkeys(unknown, "unknown query parameter")
        )
    return params


def page_limit(params: Mapping[str, str]) -> int:
    raw = params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not re.fullmatch(r"[0-9]{1,4}", raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValidationFailed(
            "The limit is out of range.", {"limit": f"must be an integer from 1 to {MAX_LIMIT}"}
        )
    return int(raw)


def _request_id(request: Request) -> str:
    context = request.context or {}
    value = context.get("requestId")
    return value if isinstance(value, str) and value else str(uuid.uuid4())


def install(app: Chalice) -> None:
    """Add the request log line and the error-format rewrite to every route."""

    @app.middleware("http")
    def request_log(event: Request, get_response: Callable[[Request], Response]) -> Response:
        request_id = _request_id(event)
        with logs.bind(request_id=request_id), logs.invocation(event.lambda_context):
            watch = logs.Stopwatch()
            if _body_size(event) > MAX_BODY_BYTES:
                response = error_response(
                    PayloadTooLarge(f"The body is larger than {MAX_BODY_BYTES} bytes.")
                )
            else:
                response = _spec_shaped(get_response(event))
            response.headers["X-Request-Id"] = request_id
            log.info(
                "request",
                extra={
                    "method": event.method,
                    "path": logged_path((event.context or {}).get("path"), event.path),
                    "route": event.path,
                    "status": response.status_code,
                    "latency_ms": watch.elapsed_ms,
                },
            )
        return response


def logged_path(path: str | None, route: str) -> str | None:
    """The request's path with the segment a route names ``{phone}`` masked (a path
    carries a phone: ``DELETE /api/stoplist/{phone}``). Aligned from the end, as a
    deployed path starts with the stage's (``/v1``)."""
    if path is None or "{phone}" not in route:
        return path
    trimmed = path.rstrip("/")
    parts, names = trimmed.split("/"), route.rstrip("/").split("/")
    for offset, name in enumerate(reversed(names), start=1):
        if name == "{phone}" and offset <= len(parts):
            parts[-offset] = logs.mask_phone(parts[-offset])
    return "/".join(parts) + path[len(trimmed) :]


def _body_size(request: Request) -> int:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit():
        return int(length)
    return len(request.raw_body or b"")


def _spec_shaped(response: Response) -> Response:
    body = response.body
    if response.status_code < 400 or not isinstance(body, dict) or "Code" not in body:
        return response
    status = response.status_code
    code = _CHALICE_CODES.get(status, "error")
    message = "An internal error occurred." if status >= 500 else str(body.get("Message", code))
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-type"}
    headers.update(json_headers())
    return Response(body=error_body(code, message), status_code=status, headers=headers)
