"""CloudWatch metrics in Embedded Metric Format: one JSON log line a batch, no API call.

CloudWatch turns a log line carrying an ``_aws`` block into metrics, so the handlers
publish counts and latencies without calling PutMetricData. Dimensions stay
low-cardinality (service and stage): ids belong in log fields, not in metrics.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from chalicelib import logs

NAMESPACE = "NotificationService"
SERVICE = "notify"

log = logs.get_logger("metrics")

Value = float | int | Sequence[float]


def emf_document(
    values: Mapping[str, Value], units: Mapping[str, str], stage: str
) -> dict[str, object]:
    """The EMF object for these metrics (exposed for tests)."""
    dimensions = {"Service": SERVICE, "Stage": stage}
    present = {name: value for name, value in values.items() if value or value == 0}
    return {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [
                        {"Name": name, "Unit": units.get(name, "Count")} for name in present
                    ],
                }
            ],
        },
        **dimensions,
        **{
            name: list(value) if isinstance(value, Sequence) else value
            for name, value in present.items()
        },
    }


def emit(values: Mapping[str, Value], units: Mapping[str, str], stage: str) -> None:
    """Publish metrics; names with nothing to report (an empty list) are left out, and
    a run with nothing at all to report writes no line (alarms treat it as zero)."""
    values = {k: v for k, v in values.items() if not (isinstance(v, Sequence) and not v)}
    if not any(values.values()):
        return
    log.info("metrics", extra={"emf": emf_document(values, units, stage)})
