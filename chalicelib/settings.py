"""The service's configuration: one frozen object, read lazily from the environment.

Nothing else in the code reads ``os.environ``. ``chalice.test.Client`` patches the
environment only while a call runs, so the settings are read on first use, not at
import time.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass

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
    log_level: str
    # Browser origin allowed to call the API; empty keeps CORS off.
    cors_allow_origin: str | None

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
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
            cors_allow_origin=env.get("CORS_ALLOW_ORIGIN") or None,
        )


@functools.cache
def get_settings() -> Settings:
    return Settings.from_env(os.environ)


def read_settings_now() -> Settings:
    """Uncached: for the few choices made when the app module loads (CORS on routes)."""
    return Settings.from_env(os.environ)


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment between cases)."""
    get_settings.cache_clear()
