"""EMF documents: the metric names, units and dimensions the README promises."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from aws_lambda_powertools.metrics.exceptions import MetricUnitError

from chalicelib import logs, metrics


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger(logs.LOGGER_NAME)
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def test_the_document_has_the_namespace_the_two_dimensions_and_the_units(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Powertools would add a ``service`` dimension of its own from this variable.
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "something-else")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "SomethingElse")
    doc = metrics.emf_document(
        {"MessagesSent": 3, "MessagesFailed": 0, "ProviderLatency": [12.5, 40]},
        {"ProviderLatency": "Milliseconds"},
        "prod",
    )
    (definition,) = doc["_aws"]["CloudWatchMetrics"]
    assert definition["Namespace"] == "NotificationService"
    assert definition["Dimensions"] == [["Service", "Stage"]]
    assert definition["Metrics"] == [
        {"Name": "MessagesSent", "Unit": "Count"},
        {"Name": "MessagesFailed", "Unit": "Count"},
        {"Name": "ProviderLatency", "Unit": "Milliseconds"},
    ]
    assert (doc["Service"], doc["Stage"]) == ("notify", "prod")
    assert "service" not in doc
    assert doc["MessagesSent"] == [3.0]
    assert doc["MessagesFailed"] == [0.0]  # a zero beside other figures is reported
    assert doc["ProviderLatency"] == [12.5, 40.0]
    assert isinstance(doc["_aws"]["Timestamp"], int)


def test_a_line_is_the_document_itself_and_nothing_to_report_writes_none(
    lines: io.StringIO,
) -> None:
    metrics.emit({"MessagesSent": 0, "ProviderLatency": []}, {}, "dev")
    assert lines.getvalue() == ""
    metrics.emit(
        {"MessagesSent": 1, "ProviderLatency": [], "DispatchLag": [2.5]},
        {"DispatchLag": "Seconds"},
        "dev",
    )
    (line,) = lines.getvalue().splitlines()
    doc = json.loads(line)
    names = [m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert names == ["MessagesSent", "DispatchLag"]  # the empty list is left out
    assert doc["DispatchLag"] == [2.5]
    assert set(doc) == {"_aws", "Service", "Stage", "MessagesSent", "DispatchLag"}


def test_a_unit_cloudwatch_does_not_know_is_refused() -> None:
    with pytest.raises(MetricUnitError):
        metrics.emf_document({"ProviderLatency": [1.0]}, {"ProviderLatency": "Millis"}, "dev")
