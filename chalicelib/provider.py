"""The external send API client: one pooled session, timeouts on every call."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field

import requests

from chalicelib import logs
from chalicelib.domain.provider import Outcome, ProviderResult, judge
from chalicelib.provider_token import TokenSource, token_source
from chalicelib.settings import Settings

log = logs.get_logger("provider")


@functools.cache
def _session() -> requests.Session:
    # One session per container: connections to the provider are reused across
    # invocations instead of a TLS handshake per message.
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


@dataclass(frozen=True)
class Provider:
    base_url: str
    # Called on each send: in AWS the token is read from Parameter Store on first use.
    token: TokenSource = field(repr=False)
    connect_timeout: float
    read_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Provider:
        return cls(
            base_url=settings.sender_url,
            token=token_source(settings),
            connect_timeout=settings.provider_connect_timeout,
            read_timeout=settings.provider_read_timeout,
        )

    def warm(self) -> str:
        """Read the token now (Parameter Store may take seconds), before the last check
        the sender makes right before the call."""
        return self.token()

    def send(
        self, message_id: int, phone: str, text: str, attempt: int = 1, *, token: str | None = None
    ) -> ProviderResult:
        """POST {base}/send/{msgId}; never raises for the provider's trouble.

        Not having the token (Parameter Store unreachable) is ours, so it raises: the
        sender reports the job as a batch item failure and SQS delivers it again.
        """
        headers = {"Authorization": f"Bearer {token if token is not None else self.token()}"}
        watch = logs.Stopwatch()
        try:
            response = _session().post(
                f"{self.base_url}/send/{message_id}",
                json={"id": message_id, "phone": int(phone), "text": text},
                headers=headers,
                timeout=(self.connect_timeout, self.read_timeout),
            )
        except requests.Timeout:
            result = ProviderResult(Outcome.RETRY, None, "timeout")
        except requests.RequestException as error:
            result = ProviderResult(
                Outcome.RETRY, None, f"connection error: {type(error).__name__}"
            )
        else:
            try:
                body = response.json()
            except (ValueError, json.JSONDecodeError):
                body = None
            result = judge(response.status_code, body)
            if response.status_code == 401:
                self.token.invalidate()  # rotated: the retry reads the new one
        result = ProviderResult(result.outcome, result.status, result.detail, watch.elapsed_ms)
        log.info(
            "provider call",
            extra={
                "message_id": message_id,
                "attempt": attempt,
                "outcome": result.outcome.value,
                "http_status": result.status,
                "detail": result.detail,
                "latency_ms": watch.elapsed_ms,
            },
        )
        return result
