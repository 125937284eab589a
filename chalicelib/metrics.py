"""CloudWatch metrics in Embedded Metric Format: one JSON log line a batch, no API call.

CloudWatch turns a log line carrying an ``_aws`` block into metrics, so the handlers
publish counts and latencies without calling PutMetricData. Powertools for AWS Lambda
builds and validates the document (names, units, dimension limits); the service's
logger writes it, so it goes out in order with the other lines and reads as one line at
a terminal (``LOG_STYLE=pretty``). Dimensions stay low-cardinality (``Service`` and
``Stage``, README "Logs and metrics"): ids belong in log fields, not in metrics.

Each call builds its own document: Powertools' ``Metrics`` class keeps one metric set
for the whole process, which the local stack's concurrent pollers and dispatcher would
share (and flush for each other).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
    AmazonCloudWatchEMFProvider,
)

from chalicelib import logs

NAMESPACE = "NotificationService"
SERVICE = "notify"

log = logs.get_logger("metrics")

Value = float | int | Sequence[float]


def emf_document(
    values: Mapping[str, Value], units: Mapping[str, str], stage: str
) -> dict[str, Any]:
    """The EMF object for these metrics (exposed for tests): a number is one value, a
    sequence one value each; every metric's values are a list, as Powertools writes them."""
    # service="" rather than None: POWERTOOLS_SERVICE_NAME in the environment would add
    # a third dimension (lower-case ``service``) and split every metric from its history.
    document = AmazonCloudWatchEMFProvider(namespace=NAMESPACE, service="")
    document.add_dimension(name="Service", value=SERVICE)
    document.add_dimension(name="Stage", value=stage)
    for name, value in values.items():
        samples = value if isinstance(value, Sequence) else [value]
        for sample in samples:
            document.add_metric(name=name, unit=units.get(name, "Count"), value=sample)
    return dict(document.serialize_metric_set())


def emit(values: Mapping[str, Value], units: Mapping[str, str], stage: str) -> None:
    """Publish metrics; names with nothing to report (an empty list) are left out, and
    a run with nothing at all to report writes no line (alarms treat it as zero)."""
    values = {k: v for k, v in values.items() if not (isinstance(v, Sequence) and not v)}
    if not any(values.values()):
        return
    log.info("metrics", extra={"emf": emf_document(values, units, stage)})
