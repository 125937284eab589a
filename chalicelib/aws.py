"""boto3 clients: one per service and settings per container, always with timeouts."""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config


@functools.cache
def client(
    service: str,
    region: str,
    endpoint: str | None,
    *,
    connect_timeout: float,
    read_timeout: float,
    attempts: int,
) -> Any:
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": attempts, "mode": "standard"},
    )
    return boto3.client(service, region_name=region, endpoint_url=endpoint, config=config)
