"""What API Gateway answers by itself, in the SPEC error format.

One definition for both sides: ``infra/template.yaml`` gives these answers to the
deployed REST API as its gateway responses (``tests/infra`` checks it word for word),
and ``local/gateway.py`` gives the same answers where Chalice's local gateway would
make its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from chalicelib.http import UNAUTHORIZED_MESSAGE


@dataclass(frozen=True)
class GatewayAnswer:
    # None keeps the status API Gateway chose (the DEFAULT_4XX / DEFAULT_5XX catch-alls).
    status: int | None
    error: str
    message: str

    def body(self) -> str:
        return json.dumps({"error": self.error, "message": self.message})


INTERNAL_ERROR = GatewayAnswer(None, "internal_error", "An internal error occurred.")

# Keyed by API Gateway's response type.
GATEWAY_RESPONSES: dict[str, GatewayAnswer] = {
    # No Authorization header, or the authorizer refused the key.
    "UNAUTHORIZED": GatewayAnswer(401, "unauthorized", UNAUTHORIZED_MESSAGE),
    # The authorizer allowed the key but not this route (its policy allows every route).
    "ACCESS_DENIED": GatewayAnswer(403, "forbidden", "This key may not call this route."),
    # API Gateway's answer to a path (or a method) it has no route for.
    "MISSING_AUTHENTICATION_TOKEN": GatewayAnswer(404, "not_found", "No such route."),
    "AUTHORIZER_FAILURE": GatewayAnswer(500, INTERNAL_ERROR.error, INTERNAL_ERROR.message),
    "THROTTLED": GatewayAnswer(429, "too_many_requests", "Too many requests; retry later."),
    # Over API Gateway's own 10 MB limit; the app refuses bodies over 64 KiB itself.
    "REQUEST_TOO_LARGE": GatewayAnswer(413, "payload_too_large", "The request is too large."),
    "DEFAULT_4XX": GatewayAnswer(None, "bad_request", "The request was refused."),
    "DEFAULT_5XX": INTERNAL_ERROR,
}
