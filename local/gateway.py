"""The local stand-in for API Gateway's *gateway responses*.

In AWS, answers that API Gateway makes itself (no key, a refused key, an unknown route)
get the SPEC error body from the gateway responses in the stack's template. Chalice's
local gateway answers those with its own bodies, so this subclass gives them the same
shape and status, for ``make run`` and for ``chalice.test.Client`` alike; both read
``infra/gateway_responses.py``.
"""

from __future__ import annotations

import json
from typing import Any

from chalice.app import Chalice
from chalice.config import Config
from chalice.local import (
    ChaliceRequestHandler,
    ForbiddenError,
    InvalidAuthorizerError,
    LocalGateway,
    LocalGatewayException,
    NotAuthorizedError,
)

from chalicelib.http import AuthorizerRejected, error_body
from infra.gateway_responses import GATEWAY_RESPONSES


def _answer(response_type: str) -> tuple[int, str, str]:
    """(status, error code, message) of the deployed stack's gateway response."""
    answer = GATEWAY_RESPONSES[response_type]
    assert answer.status is not None
    return answer.status, answer.error, answer.message


UNAUTHORIZED = _answer("UNAUTHORIZED")
UNKNOWN_ROUTE = _answer("MISSING_AUTHENTICATION_TOKEN")
ACCESS_DENIED = _answer("ACCESS_DENIED")
AUTHORIZER_FAILURE = _answer("AUTHORIZER_FAILURE")


class _SpecGatewayError(LocalGatewayException):
    def __init__(self, status: int, code: str, message: str, request_id: str | None) -> None:
        headers = {"Content-Type": "application/json"}
        if request_id:
            headers["x-amzn-RequestId"] = request_id
        super().__init__(headers, json.dumps(error_body(code, message)).encode())
        self.CODE = status


class SpecLocalGateway(LocalGateway):
    def handle_request(self, method: str, path: str, headers: Any, body: Any) -> Any:
        try:
            return super().handle_request(method, path, headers, body)
        except AuthorizerRejected:
            raise _SpecGatewayError(*UNAUTHORIZED, None) from None
        except NotAuthorizedError as error:
            raise _SpecGatewayError(*UNAUTHORIZED, error.headers.get("x-amzn-RequestId")) from None
        except ForbiddenError as error:
            body_text = error.body or b""
            unknown = b"Missing Authentication Token" in body_text or b"Credential" in body_text
            answer = UNKNOWN_ROUTE if unknown else ACCESS_DENIED
            raise _SpecGatewayError(*answer, error.headers.get("x-amzn-RequestId")) from None
        except InvalidAuthorizerError as error:
            raise _SpecGatewayError(
                *AUTHORIZER_FAILURE, error.headers.get("x-amzn-RequestId")
            ) from None


class SpecRequestHandler(ChaliceRequestHandler):
    def __init__(self, request: Any, client_address: Any, server: Any, **kwargs: Any) -> None:
        app_object: Chalice = kwargs["app_object"]
        config: Config = kwargs["config"]
        self._spec_gateway = SpecLocalGateway(app_object, config)
        super().__init__(request, client_address, server, app_object=app_object, config=config)

    def setup(self) -> None:
        super().setup()
        self.local_gateway = self._spec_gateway
