"""The service's configuration: one frozen object, read lazily from the environment.

Nothing else in the code reads ``os.environ``. ``chalice.test.Client`` patches the
environment only while a call runs, so the settings are read on first use, not at
import time.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from chalicelib.domain.imports import MAX_FILE_BYTES
from chalicelib.domain.ratelimit import MAX_PER_SECOND
from chalicelib.domain.retention import Retention

DEFAULT_SENDER_URL = "https://probe.fbrq.cloud/v1"


@dataclass(frozen=True)
class Settings:
    stage: str
    aws_region: str
    # Set only against an emulator (moto server); empty means the real AWS endpoints.
    aws_endpoint_url: str | None
    clients_table: str
    phones_table: str
    counters_table: str
    api_keys_table: str
    tasks_table: str
    messages_table: str
    send_queue: str
    log_level: str
    # "json" (Lambda, CloudWatch) or "pretty" (a terminal: the local stack).
    log_style: str
    # Browser origin allowed to call the API; empty keeps CORS off.
    cors_allow_origin: str | None
    # The external send API (SPEC: provider). The token is a secret: never logged.
    sender_url: str
    sender_token: str = field(repr=False)
    # In AWS: the name of the SSM SecureString parameter holding the token (read at run
    # time, see chalicelib/provider_token.py); when set, ``sender_token`` is not used.
    sender_token_parameter: str | None = None
    provider_connect_timeout: float = 2.0
    provider_read_timeout: float = 10.0
    # Sending: attempts per message, backoff between them, and the claim lease that
    # keeps two deliveries of one job from calling the provider together.
    max_attempts: int = 6
    retry_base_seconds: float = 15.0
    retry_cap_seconds: float = 900.0
    lease_seconds: int = 60
    # How late a delayed job may be before the dispatcher queues another copy.
    watchdog_seconds: float = 60.0
    # The sender reads a task again before a call when its copy is older than this.
    max_check_age_seconds: float = 0.5
    # SQS holds a job back at most 15 minutes; 0 turns delays off (tests on a frozen clock).
    queue_max_delay_seconds: int = 900
    # Fan-out: clients per page, how far the queue may run ahead of the senders, and how
    # long one dispatcher run (schedule) or one API-triggered start may take. Jobs ready
    # in the queue are work every later task waits behind: keep the limit near what the
    # senders take in a few seconds (the local stage: 4 pollers x 10, so 40).
    fanout_page_size: int = 95
    queue_ahead_limit: int = 1000
    # The scheduled run's budget stays under its 55 s Lambda timeout and its 1-minute rate,
    # and the function's reserved concurrency is 1 (.chalice/config.json): two scheduled
    # runs never overlap (the fan-out's long work is the workers', app.fan_out).
    dispatch_budget_seconds: float = 40.0
    api_dispatch_budget_seconds: float = 3.0
    # Parallel fan-out (chalicelib/domain/fanout.py): each audience part is cut into id
    # ranges of about this many clients, at most ``fanout_max_ranks`` of them; workers
    # (``app.fan_out``, on ``fanout_queue``) hold a segment for ``fanout_lease_seconds``,
    # wait ``fanout_wait_seconds`` when the send queue is full, and the dispatcher queues a
    # segment's job again when it has not moved for ``fanout_stall_seconds``.
    fanout_queue: str = "notify-local-fanout"
    fanout_segment_clients: int = 10_000
    fanout_max_ranks: int = 100
    fanout_lease_seconds: int = 60
    fanout_wait_seconds: int = 2
    fanout_stall_seconds: float = 120.0
    # Send windows: a wait longer than this parks the message for the dispatcher to wake
    # (``wake_lead_seconds`` ahead of the opening) instead of a delayed queue job.
    park_after_seconds: float = 900.0
    wake_lead_seconds: float = 60.0
    # DELETE waits this long after marking a task deleted, so that no sender that read
    # the task just before can still reach the provider after the answer: at least the
    # sender's check age plus the provider's connect timeout (see delete_grace()).
    delete_grace_seconds: float | None = None
    # Days a mailing's messages (and the task) are kept after it finished; deleted tasks'
    # go at once. DynamoDB's TTL removes them (chalicelib/domain/retention.py).
    retention_days: int = 180
    # The purge pass after each scheduled dispatcher run (within the function's timeout).
    purge_budget_seconds: float = 20.0
    # The stop list's table (issue 18).
    stoplist_table: str = "notify-local-stoplist"
    # Send rate limits (chalicelib/domain/ratelimit.py): the cap over all tasks together
    # in provider calls per second (None: no cap), and how far ahead of now a sender may
    # reserve call slots. A longer horizon costs fewer requests and loosens the bound
    # over any window of T seconds, rate * (T + horizon) + 1 calls.
    send_rate_limit: int | None = None
    rate_horizon_seconds: float = 0.25
    # Bulk imports (chalicelib/domain/imports.py): the bucket their files and reports go
    # to, the queue its "object created" events and the import's own next jobs go to,
    # how long a pre-signed upload or report URL works, and the largest file an import
    # reads (100 MiB: chalicelib/domain/imports.py, MAX_FILE_BYTES).
    import_bucket: str = "notify-local-imports"
    import_queue: str = "notify-local-imports"
    import_url_seconds: int = 3600
    import_max_bytes: int = MAX_FILE_BYTES

    def rate_horizon(self) -> timedelta:
        return timedelta(seconds=self.rate_horizon_seconds)

    def retention(self) -> Retention:
        return Retention(
            keep=timedelta(days=self.retention_days), lease=timedelta(seconds=self.lease_seconds)
        )

    def delete_grace(self) -> float:
        if self.delete_grace_seconds is not None:
            return self.delete_grace_seconds
        return self.max_check_age_seconds + self.provider_connect_timeout + 0.25

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        stage = env.get("STAGE", "local")
        prefix = env.get("TABLE_PREFIX", f"notify-{stage}")
        return cls(
            stage=stage,
            aws_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            clients_table=env.get("CLIENTS_TABLE", f"{prefix}-clients"),
            phones_table=env.get("PHONES_TABLE", f"{prefix}-phones"),
            counters_table=env.get("COUNTERS_TABLE", f"{prefix}-counters"),
            api_keys_table=env.get("API_KEYS_TABLE", f"{prefix}-api-keys"),
            tasks_table=env.get("TASKS_TABLE", f"{prefix}-tasks"),
            messages_table=env.get("MESSAGES_TABLE", f"{prefix}-messages"),
            send_queue=env.get("SEND_QUEUE", f"{prefix}-send"),
            fanout_queue=env.get("FANOUT_QUEUE", f"{prefix}-fanout"),
            fanout_segment_clients=int(env.get("FANOUT_SEGMENT_CLIENTS", "10000")),
            fanout_max_ranks=int(env.get("FANOUT_MAX_SEGMENTS", "100")),
            fanout_lease_seconds=int(env.get("FANOUT_LEASE_SECONDS", "60")),
            fanout_wait_seconds=int(env.get("FANOUT_WAIT_SECONDS", "2")),
            fanout_stall_seconds=float(env.get("FANOUT_STALL_SECONDS", "120")),
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
            log_style=env.get("LOG_STYLE", "json"),
            cors_allow_origin=env.get("CORS_ALLOW_ORIGIN") or None,
            sender_url=(env.get("SENDER_URL") or DEFAULT_SENDER_URL).rstrip("/"),
            sender_token=env.get("SENDER_TOKEN", ""),
            sender_token_parameter=env.get("SENDER_TOKEN_PARAMETER") or None,
            provider_connect_timeout=float(env.get("PROVIDER_CONNECT_TIMEOUT", "2")),
            provider_read_timeout=float(env.get("PROVIDER_READ_TIMEOUT", "10")),
            max_attempts=int(env.get("MAX_ATTEMPTS", "6")),
            retry_base_seconds=float(env.get("RETRY_BASE_SECONDS", "15")),
            retry_cap_seconds=float(env.get("RETRY_CAP_SECONDS", "900")),
            lease_seconds=int(env.get("LEASE_SECONDS", "60")),
            watchdog_seconds=float(env.get("WATCHDOG_SECONDS", "60")),
            max_check_age_seconds=float(env.get("MAX_CHECK_AGE_SECONDS", "0.5")),
            queue_max_delay_seconds=int(env.get("QUEUE_MAX_DELAY_SECONDS", "900")),
            fanout_page_size=int(env.get("FANOUT_PAGE_SIZE", "95")),
            queue_ahead_limit=int(env.get("QUEUE_AHEAD_LIMIT", "1000")),
            dispatch_budget_seconds=float(env.get("DISPATCH_BUDGET_SECONDS", "40")),
            api_dispatch_budget_seconds=float(env.get("API_DISPATCH_BUDGET_SECONDS", "3")),
            delete_grace_seconds=(
                float(env["DELETE_GRACE_SECONDS"]) if env.get("DELETE_GRACE_SECONDS") else None
            ),
            park_after_seconds=float(env.get("PARK_AFTER_SECONDS", "900")),
            wake_lead_seconds=float(env.get("WAKE_LEAD_SECONDS", "60")),
            retention_days=_positive_days(env, "RETENTION_DAYS", 180),
            stoplist_table=env.get("STOPLIST_TABLE", f"{prefix}-stoplist"),
            send_rate_limit=_rate_limit(env, "SEND_RATE_LIMIT"),
            rate_horizon_seconds=_horizon(env, "RATE_HORIZON_SECONDS", 0.25),
            import_bucket=env.get("IMPORT_BUCKET", f"{prefix}-imports"),
            import_queue=env.get("IMPORT_QUEUE", f"{prefix}-imports"),
            import_url_seconds=int(env.get("IMPORT_URL_SECONDS", "3600")),
            import_max_bytes=int(env.get("IMPORT_MAX_BYTES", str(MAX_FILE_BYTES))),
        )


# Past this, the TTL's epoch seconds would pass year 9999 (datetime's limit).
MAX_RETENTION_DAYS = 36_500


def _positive_days(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        days = int(raw)
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_RETENTION_DAYS:
        raise ValueError(
            f"{name} must be a whole number of days from 1 to {MAX_RETENTION_DAYS}, not {raw!r}"
        )
    return days


def _rate_limit(env: Mapping[str, str], name: str) -> int | None:
    """Calls per second, 1..10,000 (SPEC's range for a task's ``rate_limit``); unset or
    empty: no cap."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        rate = int(raw)
    except ValueError:
        rate = 0
    if not 1 <= rate <= MAX_PER_SECOND:
        raise ValueError(
            f"{name} must be a whole number of calls per second from 1 to {MAX_PER_SECOND}"
            f" (or empty for none), not {raw!r}"
        )
    return rate


# Past half a second, rate * (10 + horizon) would pass SPEC's cap plus 5 % over 10 s.
MAX_RATE_HORIZON_SECONDS = 0.5


def _horizon(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0.001 <= seconds <= MAX_RATE_HORIZON_SECONDS:
        raise ValueError(
            f"{name} must be seconds from 0.001 to {MAX_RATE_HORIZON_SECONDS}, not {raw!r}"
        )
    return seconds


@functools.cache
def get_settings() -> Settings:
    return Settings.from_env(os.environ)


def read_settings_now() -> Settings:
    """Uncached: for the few choices made when the app module loads (CORS on routes)."""
    return Settings.from_env(os.environ)


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment between cases)."""
    get_settings.cache_clear()
