"""The Lambda entry module: the app, its blueprints (one per resource, in
``chalicelib/api/``) and the event handlers (the schedule, the send, fan-out and import
queues and the messages table's stream).

Each handler reads its input, calls a service, answers; the wiring is in
``chalicelib/bootstrap.py``, whose ``services()`` and ``use_services()`` are re-exported
here for the tests and the local runner.
"""

from __future__ import annotations

from typing import Any

from chalice.app import Chalice, CloudWatchEvent, DynamoDBEvent, Rate, SQSEvent

from chalicelib import http, logs
from chalicelib.api import (
    audience,
    auth,
    clients,
    console,
    docs,
    exports,
    health,
    imports,
    stats,
    stoplist,
    tasks,
    test_sends,
    timeline,
)
from chalicelib.bootstrap import services, use_services
from chalicelib.domain.exports import export_id_of
from chalicelib.settings import read_settings_now

__all__ = [
    "app",
    "count_messages",
    "dispatch",
    "fan_out",
    "import_files",
    "send",
    "services",
    "use_services",
]

# Chalice's own log handler would print every line of the service's logger (also named
# "notify") a second time, as text: Powertools' handler is the only one (chalicelib/logs.py).
app = Chalice(app_name="notify", configure_logs=False)
http.install(app)
# In the order of the paths in openapi.json (auth holds the authorizer, no route).
for blueprint in (
    auth,
    health,
    clients,
    tasks,
    stats,
    timeline,
    test_sends,
    audience,
    stoplist,
    imports,
    exports,
    docs,
    console,
):
    app.register_blueprint(blueprint.bp)

# Fixed when the app loads (`chalice package` loads it with the stage's environment):
# the log level and style from the first line, and the queue the sender consumes.
_LOAD_SETTINGS = read_settings_now()
logs.configure(_LOAD_SETTINGS.log_level, _LOAD_SETTINGS.log_style)
SEND_QUEUE = _LOAD_SETTINGS.send_queue
SEND_BATCH_SIZE = 10
# Senders at once: the send queue's mapping's maximum concurrency, and the function's
# reserved concurrency in .chalice/config.json (tests/infra checks they agree).
SEND_WORKERS = 50
FANOUT_QUEUE = _LOAD_SETTINGS.fanout_queue
# Fan-out workers at once (docs/performance.md, "Fan-out": what the tables and the send
# queue allow), and the seconds a worker keeps for itself out of its Lambda timeout.
FANOUT_WORKERS = 50
FANOUT_MARGIN_SECONDS = 10
# The stream's ARN exists once the table does: infra/template.yaml points the mapping at
# the messages table's StreamArn (and sets its tumbling window, retries and bisection).
MESSAGES_STREAM = (
    f"arn:aws:dynamodb:{_LOAD_SETTINGS.aws_region}:000000000000:table/"
    f"{_LOAD_SETTINGS.messages_table}/stream/set-by-infra-template"
)
# Bulk imports: S3 tells this queue when a file is uploaded (chalice package cannot
# package @app.on_s3_event, and a queue also carries an import's next job when a file
# takes longer than one invocation); the seconds an invocation keeps for its last chunk
# and the error report out of its Lambda timeout (.chalice/config.json).
IMPORT_QUEUE = _LOAD_SETTINGS.import_queue
IMPORT_MARGIN_SECONDS = 60
COUNT_BATCH_SIZE = 1000
COUNT_BATCHING_WINDOW_SECONDS = 5


@app.schedule(Rate(1, unit=Rate.MINUTES))
def dispatch(event: CloudWatchEvent) -> None:
    """Every minute: start due tasks, continue their fan-out, expire and finish them; then
    remove what is left of deleted tasks."""
    with logs.invocation(event.context):
        wired = services()
        wired.dispatcher.dispatch_due(wired.settings.dispatch_budget_seconds)
        wired.purger.purge_deleted(wired.settings.purge_budget_seconds)


@app.on_sqs_message(queue=FANOUT_QUEUE, batch_size=1, maximum_concurrency=FANOUT_WORKERS)
def fan_out(event: SQSEvent) -> None:
    """A fan-out worker: one segment of a task's audience (chalicelib/domain/fanout.py)."""
    with logs.invocation(event.context):
        wired = services()
        context: Any = event.context  # Lambda's context object
        for record in event:
            budget = context.get_remaining_time_in_millis() / 1000 - FANOUT_MARGIN_SECONDS
            wired.dispatcher.fanout.run_body(record.body, max(budget, 1.0))


@app.on_sqs_message(queue=SEND_QUEUE, batch_size=SEND_BATCH_SIZE, maximum_concurrency=SEND_WORKERS)
def send(event: SQSEvent) -> dict[str, Any]:
    """Send jobs; a job that fails is reported alone (partial batch response, built here
    rather than by Powertools' BatchProcessor: why in ``chalicelib/services/send_batch.py``)."""
    with logs.invocation(event.context):
        result = services().sender.handle_event(record.to_dict() for record in event)
    return {"batchItemFailures": [{"itemIdentifier": rid} for rid in result.failed_record_ids]}


@app.on_sqs_message(queue=IMPORT_QUEUE, batch_size=1)
def import_files(event: SQSEvent) -> None:
    """A bulk import: started by the bucket's "object created" event, carried on from its
    checkpoint by its own next job (chalicelib/services/imports.py); or an export's job
    (chalicelib/services/exports.py)."""
    with logs.invocation(event.context):
        wired = services()
        context: Any = event.context  # Lambda's context object
        for record in event:
            budget = max(context.get_remaining_time_in_millis() / 1000 - IMPORT_MARGIN_SECONDS, 1.0)
            export_id = export_id_of(record.body)
            if export_id is not None:
                wired.exports.run(export_id, budget)
            else:
                wired.imports.handle_job(record.body, budget)


@app.on_dynamodb_record(
    stream_arn=MESSAGES_STREAM,
    batch_size=COUNT_BATCH_SIZE,
    starting_position="TRIM_HORIZON",
    maximum_batching_window_in_seconds=COUNT_BATCHING_WINDOW_SECONDS,
)
def count_messages(event: DynamoDBEvent) -> dict[str, Any]:
    """The message counts, from the messages table's stream (one shard's batch, in order;
    a failed task's first record is reported, and Lambda delivers from there again)."""
    with logs.invocation(event.context):
        return services().counting.handle_event(event.to_dict()).response()
