"""The provider's token: a secret read at run time, cached, never logged.

In AWS the stage names an SSM SecureString parameter (``SENDER_TOKEN_PARAMETER``); the
token is read with decryption on the first send, not at import or bootstrap, and kept
for ``TOKEN_MAX_AGE_SECONDS`` so that a rotated token reaches warm containers without a
redeploy. Locally and in tests the token comes from ``SENDER_TOKEN``.

Why not Powertools' Parameters (``SSMProvider``), measured for issue 16: its cache
(read, keep ``max_age``, read again) is what this class does in three lines, and not
what matters here: one read for a batch's parallel first sends (its cache has no lock:
ten threads, ten reads), the last good token kept when a refresh fails, without trying
Parameter Store again on every send (its expired entry is read again on each call,
seconds each while SSM is down), and a clock tests move (it reads ``datetime.now()``).
Wrapped to keep those, it would replace only the ``get_parameter`` call below; its
import is cheap (12.8 M instructions under callgrind, +0.8 % of what the sender imports
for its first event), but it would buy nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from chalicelib import aws, logs
from chalicelib.settings import Settings

log = logs.get_logger("provider_token")


class TokenSource(Protocol):
    def __call__(self) -> str: ...

    def invalidate(self) -> None:
        """The provider refused the token (401): read it again on the next call."""
        ...


class StaticToken:
    """A token from the environment (locally and in tests)."""

    def __init__(self, value: str) -> None:
        self._value = value

    def __call__(self) -> str:
        return self._value

    def invalidate(self) -> None:
        return None

    def __repr__(self) -> str:
        return "StaticToken(...)"


TOKEN_MAX_AGE_SECONDS = 900.0


def ssm_client(region: str, endpoint: str | None) -> Any:
    """One SSM client per container; short timeouts: a send waits on it."""
    return aws.client("ssm", region, endpoint, connect_timeout=2, read_timeout=5, attempts=3)


class ParameterToken:
    """The decrypted value of one SecureString parameter, read once and kept a while."""

    def __init__(
        self,
        name: str,
        client: Callable[[], Any],
        *,
        max_age_seconds: float = TOKEN_MAX_AGE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._client = client
        self._max_age = max_age_seconds
        self._monotonic = monotonic
        # The sender calls the provider from several threads: one read, not one each.
        self._lock = threading.Lock()
        self._value: str | None = None
        self._read_at = 0.0

    def __call__(self) -> str:
        with self._lock:
            now = self._monotonic()
            if self._value is None or now - self._read_at >= self._max_age:
                try:
                    self._value = self._read()
                except Exception:
                    if self._value is None:
                        raise
                    # Parameter Store trouble must not stop sending with a token that works.
                    log.warning(
                        "could not refresh the provider token; keeping the cached one",
                        extra={"parameter": self.name},
                        exc_info=True,
                    )
                self._read_at = now
            return self._value

    def invalidate(self) -> None:
        """A rotated token: the next call reads the parameter again, whatever its age."""
        with self._lock:
            if self._value is not None:
                self._read_at = self._monotonic() - self._max_age
                log.info("provider token refused; it is read again", extra={"parameter": self.name})

    def _read(self) -> str:
        answer = self._client().get_parameter(Name=self.name, WithDecryption=True)
        log.info("provider token read", extra={"parameter": self.name})
        return str(answer["Parameter"]["Value"])

    def __repr__(self) -> str:
        return f"ParameterToken({self.name!r})"  # the name only, never the value


def token_source(settings: Settings) -> TokenSource:
    """Where the provider token comes from for these settings; nothing is read yet."""
    if settings.sender_token_parameter:
        region, endpoint = settings.aws_region, settings.aws_endpoint_url
        return ParameterToken(settings.sender_token_parameter, lambda: ssm_client(region, endpoint))
    return StaticToken(settings.sender_token)
