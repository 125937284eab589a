"""The bearer-key authorizer, and what every protected route is declared with.

Each resource's blueprint passes :data:`PROTECTED` to its routes; the public ones
(health, the documentation) pass nothing. In Lambda this module is the authorizer
function's handler (``chalicelib.api.auth.bearer_key``), so a key check imports neither
the routes nor their schemas.
"""

from __future__ import annotations

from typing import Any, Final

from chalice.app import AuthRequest, AuthResponse, Blueprint

from chalicelib import http
from chalicelib.bootstrap import services
from chalicelib.errors import Unauthorized
from chalicelib.settings import read_settings_now

bp = Blueprint(__name__)


# Not named ``api_key``: Chalice keeps that name for its own ``api_key_required`` scheme
# (a usage-plan key in ``x-api-key``), which would replace this authorizer in the
# packaged API definition (tests/infra checks every protected operation calls it).
@bp.authorizer(ttl_seconds=http.AUTH_CACHE_SECONDS)
def bearer_key(auth_request: AuthRequest) -> AuthResponse:
    """Every route but health and the docs needs ``Authorization: Bearer <key>``."""
    try:
        key = services().api_keys.authenticate(auth_request.token)
    except Unauthorized:
        raise http.AuthorizerRejected from None
    return AuthResponse(routes=["*"], principal_id=key.key_id, context={"key_name": key.name})


# Fixed when the app loads (`chalice package` loads it with the stage's environment).
CORS = http.cors_config(read_settings_now().cors_allow_origin)

# The route options of every operation that needs a key.
PROTECTED: Final[dict[str, Any]] = {"authorizer": bearer_key, "cors": CORS}
