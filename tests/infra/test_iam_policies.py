"""Least privilege, checked two ways.

Statically: each function has its own role; no wildcard action; every resource is one
of the stack's own (its tables and indexes, the send queue, the function's own log
group, the token parameter), except the KMS key, which is bound by conditions.

By exercise: every path of every function runs on moto with the dev stage's names
while each AWS call is recorded; each call must be allowed by that function's packaged
policy, and each grant must be used by some call (the few exceptions are listed).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

import app as app_module
from chalicelib.bootstrap import Services, bootstrap
from chalicelib.domain.imports import file_key
from chalicelib.domain.ratelimit import RateScope
from chalicelib.ports import StaleExport
from chalicelib.queue import ExportJob
from chalicelib.services.api_keys import ApiKeyService
from chalicelib.settings import reset_settings
from chalicelib.storage.fanout import DynamoFanoutSegments
from chalicelib.storage.models import RateModel
from chalicelib.storage.ratelimit import DynamoRateLimiter
from local.fake_provider import FakeProviderState
from local.lambda_runner import StreamPoller
from tests.conftest import SENDER_TOKEN, Api, FrozenClock, stage_environment
from tests.infra.conftest import Packaged
from tests.infra.iam import (
    FUNCTIONS,
    IMPORT_PREFIXES,
    Grant,
    Request,
    folder,
    grants_of,
    iam_requests,
    missing_key_request,
    role_of,
)
from tests.infra.stack import ACCOUNT, REGION, Stack
from tests.integration.pipeline import Pipeline
from tests.integration.test_imports import drain, put

# --- static checks ------------------------------------------------------------------------


def test_each_function_has_its_own_role(stack: Stack) -> None:
    roles = [role_of(stack, function) for function in FUNCTIONS]
    assert len(set(roles)) == len(roles)
    assert set(stack.of_type("AWS::IAM::Role")) == set(roles)  # no shared DefaultRole


def _own_resources(stack: Stack, function: str) -> set[str]:
    tables = [stack.get_att(name, "Arn") for name in stack.of_type("AWS::DynamoDB::Table")]
    indexes = [
        f"{stack.get_att(name, 'Arn')}/index/{index['IndexName']}"
        for name in stack.of_type("AWS::DynamoDB::Table")
        for index in stack.properties(name).get("GlobalSecondaryIndexes", [])
    ]
    function_name = stack.properties(FUNCTIONS[function])["FunctionName"]
    log_group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{function_name}:*"
    parameter = stack.properties("Send")["Environment"]["Variables"]["SENDER_TOKEN_PARAMETER"]
    token = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{parameter}"
    streams = [
        stack.get_att(name, "StreamArn")
        for name in stack.of_type("AWS::DynamoDB::Table")
        if "StreamSpecification" in stack.properties(name)
    ]
    queues = [stack.get_att(name, "Arn") for name in ("SendQueue", "FanoutQueue", "ImportQueue")]
    bucket = stack.get_att("ImportBucket", "Arn")
    objects = [f"{bucket}/{prefix}*" for prefix in IMPORT_PREFIXES]
    return {*tables, *indexes, *streams, *queues, *objects, log_group, token}


def test_policies_name_actions_and_the_stacks_own_resources(stack: Stack) -> None:
    bucket = stack.get_att("ImportBucket", "Arn")
    for function in FUNCTIONS:
        own = _own_resources(stack, function)
        for grant in grants_of(stack, function):
            assert "*" not in grant.action, grant
            assert grant.resource != "*", grant
            if grant.action == "kms:Decrypt":
                continue  # checked below
            if grant.action == "s3:ListBucket":
                # A listing names the bucket itself: only of keys under the stack's folders.
                assert grant.resource == bucket, grant
                ((operator, key, patterns),) = grant.conditions
                assert (operator, key) == ("StringLike", "s3:prefix"), grant
                assert all(pattern.startswith(IMPORT_PREFIXES) for pattern in patterns), grant
                continue
            assert grant.resource in own, grant
            assert not grant.conditions


def test_only_the_import_function_may_list_and_only_the_uploaded_files(stack: Stack) -> None:
    """S3 answers a read of a missing key 404 only to a caller that may list it, 403 to
    any other: the import function may list imports/ (a file the lifecycle removed before
    its job was redriven fails the import rather than crash it), nothing else."""
    bucket = stack.get_att("ImportBucket", "Arn")
    listings = {
        (function, grant.resource, grant.conditions)
        for function in FUNCTIONS
        for grant in grants_of(stack, function)
        if grant.action == "s3:ListBucket"
    }
    uploads = folder(file_key(1))
    assert listings == {("import_files", bucket, (("StringLike", "s3:prefix", (f"{uploads}*",)),))}


# Who calls the provider: the sender, and the API for the test sends (README, "Test sends").
READ_THE_TOKEN = {"send", "api_handler"}


def test_only_the_provider_callers_read_the_token_and_only_through_ssm(stack: Stack) -> None:
    parameter = stack.properties("Send")["Environment"]["Variables"]["SENDER_TOKEN_PARAMETER"]
    token_arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{parameter}"
    for function in FUNCTIONS:
        secret = [g for g in grants_of(stack, function) if g.action.startswith(("ssm:", "kms:"))]
        if function not in READ_THE_TOKEN:
            assert secret == []
            continue
        kms, ssm = sorted(secret, key=lambda g: g.action)
        assert (ssm.action, ssm.resource) == ("ssm:GetParameter", token_arn)
        # The key (aws/ssm or the operator's own) is unknown to the template: any key of
        # this account and region, but only to decrypt this parameter through SSM.
        assert (kms.action, kms.resource) == (
            "kms:Decrypt",
            f"arn:aws:kms:{REGION}:{ACCOUNT}:key/*",
        )
        assert set(kms.conditions) == {
            ("StringEquals", "kms:ViaService", (f"ssm.{REGION}.amazonaws.com",)),
            ("StringEquals", "kms:EncryptionContext:PARAMETER_ARN", (token_arn,)),
        }


@pytest.mark.parametrize(
    ("function", "queue_name"),
    [("send", "SendQueue"), ("fan_out", "FanoutQueue"), ("import_files", "ImportQueue")],
)
def test_each_consumer_role_lets_lambda_poll_its_queue(
    stack: Stack, function: str, queue_name: str
) -> None:
    queue = stack.get_att(queue_name, "Arn")
    grants = grants_of(stack, function)
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
        assert any(g.allows(action, queue) for g in grants), action


def test_logs_go_to_the_functions_own_group_only(stack: Stack) -> None:
    for function in FUNCTIONS:
        logs = {
            (g.action, g.resource) for g in grants_of(stack, function) if g.action[:5] == "logs:"
        }
        (resource,) = {resource for _, resource in logs}
        assert {action for action, _ in logs} == {"logs:CreateLogStream", "logs:PutLogEvents"}
        name = stack.properties(FUNCTIONS[function])["FunctionName"]
        assert resource.endswith(f":log-group:/aws/lambda/{name}:*")


# --- the exercise -----------------------------------------------------------------------

# Grants no path of this branch uses yet, with the reason.
NOT_EXERCISED = {
    # The detailed stats route (GET /api/tasks/{id}/stats) pages a task's messages
    # (chalicelib/storage/messages.page); the route lands with the stats work.
    ("api_handler", "dynamodb:Query", "MessagesTable"),
}


@dataclass
class Recorder:
    """Every AWS call made while a function is acting, as IAM requests."""

    function: str | None = None
    requests: dict[str, set[Request]] = field(default_factory=dict)

    def record(self, service: str, operation: str, params: dict[str, Any]) -> None:
        if self.function is not None:
            self.requests.setdefault(self.function, set()).update(
                iam_requests(service, operation, params)
            )

    def add(self, request: Request) -> None:
        if self.function is not None:
            self.requests.setdefault(self.function, set()).add(request)


@dataclass
class Containers:
    """One composition per function, as each Lambda function has its own containers."""

    recorder: Recorder
    services: dict[str, Services]

    @contextmanager
    def acting_as(self, function: str) -> Iterator[Services]:
        previous = self.recorder.function
        self.recorder.function = function
        app_module.use_services(self.services[function])
        try:
            yield self.services[function]
        finally:
            self.recorder.function = previous


@pytest.fixture
def dev_names(
    aws_env: None, packaged: dict[str, Packaged], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dev stage's table, queue and parameter names, and the bucket the template names
    for the functions (the test settings stay)."""
    for key, value in stage_environment("dev").items():
        if key.endswith(("_TABLE", "_QUEUE", "_PARAMETER")) or key == "STAGE":
            monkeypatch.setenv(key, value)
    environment = packaged["dev"].stack.properties("ImportFiles")["Environment"]["Variables"]
    monkeypatch.setenv("IMPORT_BUCKET", environment["IMPORT_BUCKET"])
    # The exercise needs every path of a scheduled run within one tick: the tests' 2 s
    # of real time ran out on a loaded machine before the run reached the last tasks (a
    # full make test saw the dispatch role's audience scan unused).
    monkeypatch.setenv("DISPATCH_BUDGET_SECONDS", "20")
    reset_settings()


@pytest.fixture
def containers(
    dev_names: None,
    services: Services,
    api_key: str,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> Containers:
    parameter = services.settings.sender_token_parameter
    assert parameter == "/notify/dev/sender-token"
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=parameter, Value=SENDER_TOKEN, Type="SecureString"
    )
    recorder = Recorder()
    real_call = BaseClient._make_api_call

    def recording_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
        service = client.meta.service_model.service_name
        recorder.record(service, operation, params)
        try:
            return real_call(client, operation, params)
        except ClientError as error:
            # moto answers a missing key 404 whoever asks; S3 only to a caller that may
            # list it: that check is recorded as the function's request too.
            code = str(error.response.get("Error", {}).get("Code", ""))
            listing = missing_key_request(service, operation, params)
            if listing is not None and code in ("404", "NoSuchKey", "NotFound"):
                recorder.add(listing)
            raise

    monkeypatch.setattr(BaseClient, "_make_api_call", recording_call)
    real_params = BaseClient._emit_api_params

    def presigning(
        client: Any, api_params: dict[str, Any], operation_model: Any, context: dict[str, Any]
    ) -> Any:
        if context.get("is_presign_request"):
            # A pre-signed URL makes no call when it is made: whoever follows it makes this
            # request, signed with the signer's credentials, so IAM authorizes it against
            # the signing function's role. Recorded here as that function's request.
            service = client.meta.service_model.service_name
            recorder.record(service, operation_model.name, api_params)
        return real_params(client, api_params, operation_model, context)

    monkeypatch.setattr(BaseClient, "_emit_api_params", presigning)

    real_authenticate = ApiKeyService.authenticate

    def authenticate(self: ApiKeyService, header: str | None) -> Any:
        # API Gateway calls the authorizer function before the API handler.
        previous, recorder.function = recorder.function, "bearer_key"
        try:
            return real_authenticate(self, header)
        finally:
            recorder.function = previous

    monkeypatch.setattr(ApiKeyService, "authenticate", authenticate)
    containers = Containers(recorder, {name: bootstrap(clock=clock) for name in FUNCTIONS})
    real_poll = StreamPoller.drain

    def poll(self: StreamPoller) -> int:
        # The stream's event source mapping and the counting function, whoever reads
        # the counts (tests/conftest.py lets the stream catch up before each read).
        previous, recorder.function = recorder.function, "count_messages"
        wired = app_module.services()
        app_module.use_services(containers.services["count_messages"])
        try:
            return real_poll(self)
        finally:
            recorder.function = previous
            app_module.use_services(wired)

    monkeypatch.setattr(StreamPoller, "drain", poll)
    return containers


def _fail_next_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next fan-out checkpoint write fails: the run dies after writing its page."""
    real = DynamoFanoutSegments.advance
    state = {"failed": False}

    def advance(*args: Any, **kwargs: Any) -> Any:
        if not state["failed"]:
            state["failed"] = True
            raise RuntimeError("killed before the checkpoint")
        return real(*args, **kwargs)

    monkeypatch.setattr(DynamoFanoutSegments, "advance", advance)


def _client(api: Api, n: int, code: str, tag: str) -> int:
    body = {"phone": f"7900000000{n}", "code": code, "tag": tag, "utc": "UTC"}
    response = api.post("/api/clients/", body)
    assert response.status_code == 201, response.body
    return int(response.json_body["id"])


def _task(api: Api, start: str, end: str, **fields: Any) -> int:
    body = {"start_time": f"2026-11-28T{start}:00Z", "end_time": f"2026-11-28T{end}:00Z"}
    response = api.post("/api/tasks/", {**body, "text": "Hello", **fields})
    assert response.status_code == 201, response.body
    return int(response.json_body["id"])


# A window that never opens before these tasks end: their messages stay pending, expire.
CLOSED = {"send_window": {"from": "03:00", "to": "03:01"}}


def _exercise(
    containers: Containers,
    api: Api,
    provider: FakeProviderState,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every path of every function (the clock starts at 12:00Z)."""
    act = containers.acting_as
    with act("send") as sender:
        queue = Pipeline(sender)  # receives and deletes as Lambda's poller would
    with act("api_handler"):
        _client(api, 1, "900", "vip")
        _client(api, 2, "901", "new")
        gone = _client(api, 3, "900", "new")
        _client(api, 4, "902", "vip")
        for query in ("", "?code=900", "?tag=vip"):
            assert api.get(f"/api/clients/{query}").status_code == 200
        assert api.get(f"/api/clients/{gone}").status_code == 200
        assert api.patch(f"/api/clients/{gone}", {"phone": "79000000099"}).status_code == 200
        assert api.delete(f"/api/clients/{gone}").status_code == 204
        _stoplist_paths(api)
        for audience in ({}, {"codes": ["900"], "tags": ["vip"]}, {"tags": ["vip"]}):
            assert api.post("/api/audience/preview", {"filter": audience}).status_code == 200
        by_tag = _task(api, "12:29", "14:00", filter={"tags": ["vip"]})
        _test_send_paths(api, by_tag)
        everyone = _task(api, "12:30", "14:00")
        _task(api, "12:40", "14:00")  # everyone, started by the schedule
        _task(api, "12:05", "12:25", filter={"codes": ["902"]}, **CLOSED)
        assert api.patch(f"/api/tasks/{by_tag}", {"text": "Changed"}).status_code == 200
        assert api.get("/api/tasks/").status_code == 200
        assert api.get(f"/api/tasks/{by_tag}").status_code == 200
        assert api.delete(f"/api/tasks/{_task(api, '13:00', '14:00')}").status_code == 204
        _task(api, "11:00", "12:20", filter={"codes": ["901"]}, **CLOSED)  # started at once
        _fail_next_checkpoint(monkeypatch)
        _task(api, "11:00", "14:00", filter={"codes": ["900"]})  # its start dies midway
    with act("send"):
        provider.mode = "status:500"
        queue.drain()  # attempts recorded, retries queued; closed windows dropped
    _rate_limit_paths(containers, clock)
    clock.advance(minutes=10)
    with act("dispatch"):
        queue.tick()  # resumes the interrupted fan-out; starts the 12:05 task
    clock.advance(minutes=5)
    with act("send"):
        provider.mode = "ok"
        queue.drain()
    clock.advance(minutes=6)  # 12:21: the 12:20 task has ended
    with act("api_handler"):
        assert api.post("/api/tasks/process").status_code == 202  # expires and finishes it
    clock.advance(minutes=5)  # 12:26
    with act("dispatch"):
        queue.tick()  # expires and finishes the 12:25 task
    clock.advance(minutes=4)  # 12:30
    _fail_next_checkpoint(monkeypatch)
    with act("dispatch"), pytest.raises(RuntimeError):
        queue.tick()  # dies midway through the 12:29 task, before the 12:30 one
    clock.advance(seconds=60)  # the dead run's hold on its segment lapses (its lease)
    with act("api_handler"):
        assert api.post("/api/tasks/process").status_code == 202  # resumes them
    clock.advance(minutes=10)  # 12:40
    with act("dispatch"):
        queue.tick()
    with act("send"):
        queue.drain()
    _fan_out_paths(containers, queue, api, clock, monkeypatch)
    assert provider.sends()
    with act("api_handler"):
        # Its sends over time: the stream is counted first (the timeline's transactions).
        assert api.get(f"/api/tasks/{by_tag}/timeline").json_body["points"]
        assert api.delete(f"/api/tasks/{by_tag}").status_code == 204
    with act("dispatch"):
        queue.tick()  # the purge pass removes its messages and counts
    _import_paths(containers, api, monkeypatch)
    _export_paths(containers, api, monkeypatch, everyone)


def _export_paths(
    containers: Containers, api: Api, monkeypatch: pytest.MonkeyPatch, task_id: int
) -> None:
    """An export of a task's messages (README, "Bulk import and export"): the API finds
    the task, writes the export and queues its job on the import queue; the import
    function reads the task's partition and writes a multipart upload, a part an
    invocation (each queuing the next job), its first part's checkpoint lost once to
    another runner (it aborts the upload it began); the API signs the download URL."""
    act = containers.acting_as
    with act("api_handler"):
        created = api.post("/api/exports/", {"task_id": task_id})
        assert created.status_code == 201, created.body
    export_id = created.json_body["id"]
    with act("import_files") as worker:
        monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", 64)
        monkeypatch.setattr(worker.exports, "_part_bytes", 64)
        monkeypatch.setattr(worker.exports, "_page_rows", 1)
        monkeypatch.setattr(worker.exports, "_monotonic", itertools.count(step=3600).__next__)
        repository = worker.exports._exports
        real_save, lost = repository.save, []

        def save_lost_once(record: Any, now_ms: int) -> Any:
            if not lost:
                lost.append(record)
                raise StaleExport
            return real_save(record, now_ms)

        monkeypatch.setattr(repository, "save", save_lost_once)
        assert drain(worker) == 1  # the job: its checkpoint lost, the upload aborted
        worker.import_queue.send(ExportJob(export_id))  # the other runner's
        assert drain(worker) > 2
    with act("api_handler"):
        read = api.get(f"/api/exports/{export_id}").json_body
    assert read["status"] == "done" and read["rows"] > 1, read
    assert read["download_url"]


def _import_paths(containers: Containers, api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bulk import (README, "Bulk import and export"): the API creates it and signs its
    upload URL; the integrator PUTs the file there (as no function); the import function, fed by the
    import queue as Lambda's mapping feeds it, drops S3's test event, starts on the file's
    event, reads a chunk an invocation (each queuing the import's next job), writes the
    rejected rows' report part, lists the parts and joins them into the report; the API
    reads the import and signs the report's URL."""
    act = containers.acting_as
    phones = [f"7900001{n:04d}" for n in range(130)]  # two chunks of CHUNK_ROWS (100)
    with act("api_handler"):
        body = {"phone": phones[0], "code": "907", "tag": "", "utc": "UTC"}
        assert api.post("/api/clients/", body).status_code == 201  # the file updates it
        created = api.post("/api/imports/", {"format": "csv"})
        assert created.status_code == 201, created.body
    rows = [f"{phone},908,imported,UTC\n" for phone in phones]
    rows[50] = "not a phone,908,imported,UTC\n"
    put(created.json_body["upload_url"], "phone,code,tag,utc\n" + "".join(rows))
    with act("import_files") as worker:
        # Each invocation's time runs out after one chunk: it queues the import's next job.
        monkeypatch.setattr(worker.imports, "_monotonic", itertools.count(step=3600).__next__)
        assert drain(worker) == 4  # S3's test event, the file's, then two jobs of its own
    with act("api_handler"):
        read = api.get(f"/api/imports/{created.json_body['id']}").json_body
    assert (read["status"], read["created"], read["updated"], read["rejected"]) == (
        "done",
        128,
        1,
        1,
    )
    assert read["error_report_url"]
    _removed_file_path(containers, api)


def _removed_file_path(containers: Containers, api: Api) -> None:
    """An import whose file the bucket's lifecycle removed before its job was redriven
    from the dead-letter queue: the read finds no key (S3 answers 404 only because the
    function may list imports/) and the import fails cleanly."""
    act = containers.acting_as
    with act("api_handler"):
        created = api.post("/api/imports/", {"format": "csv"})
        assert created.status_code == 201, created.body
    rows = "".join(f"790000{n:05d},908,,UTC\n" for n in range(20000, 20150))
    put(created.json_body["upload_url"], "phone,code,tag,utc\n" + rows)  # two chunks
    import_id = created.json_body["id"]
    with act("import_files") as worker:
        worker.imports.run(import_id, budget_seconds=0)  # a chunk, its next job queued
        bucket = worker.import_files.bucket
    s3 = boto3.client("s3", region_name=REGION)
    s3.delete_object(Bucket=bucket, Key=f"imports/{import_id}.csv")  # as the lifecycle
    with act("import_files") as worker:
        assert drain(worker) == 2  # the file's event, the job: its read finds no key
    with act("api_handler"):
        read = api.get(f"/api/imports/{import_id}").json_body
    assert read["status"] == "failed", read


def _rate_limit_paths(containers: Containers, clock: FrozenClock) -> None:
    """The send rate limits (chalicelib/storage/ratelimit.py): scopes never used (a write
    each); the same scopes from another container, which never saw them (refused writes
    that hand the item back, then writes); a scope whose item is gone (a refused write
    with no item, a read, a write)."""
    scopes = [RateScope("task#1", 10), RateScope("all", 20)]
    with containers.acting_as("send") as sender:
        assert sender.rate_limiter.reserve(scopes, 2, clock.now).slots
        other = DynamoRateLimiter(sender.settings.rate_horizon())
        assert other.reserve(scopes, 2, clock.now).slots
    RateModel("rate#all").delete()  # by the test, as no function
    with containers.acting_as("send") as sender:
        assert sender.rate_limiter.reserve(scopes[1:], 1, clock.now).slots


def _stoplist_paths(api: Api) -> None:
    """The stop list's routes: add (and add again: 409), list, remove (and again: 404)."""
    for status in (201, 409):
        assert api.post("/api/stoplist/", {"phone": "79000000077"}).status_code == status
    assert api.get("/api/stoplist/").status_code == 200
    for status in (204, 404):
        assert api.delete("/api/stoplist/79000000077").status_code == status


def _test_send_paths(api: Api, task_id: int) -> None:
    """A test send: the token read from Parameter Store, the stop list looked up, the
    test sends' counter moved; a stopped phone gets no call."""
    assert api.post("/api/stoplist/", {"phone": "79000000078"}).status_code == 201
    response = api.post(f"/api/tasks/{task_id}/test", {"phones": ["79000000001", "79000000078"]})
    assert response.status_code == 200, response.body
    assert [r["status"] for r in response.json_body["results"]] == ["sent", "suppressed"]
    assert api.delete("/api/stoplist/79000000078").status_code == 204


def _fan_out_paths(
    containers: Containers,
    queue: Pipeline,
    api: Api,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fan-out worker's paths (at 12:40): a full send queue (the segment's next job
    queued), pages of a code's, a tag's and everyone's segments, and a page after a worker
    died (its messages found existing and watched)."""
    act = containers.acting_as
    with act("api_handler"):
        for n in range(10, 17):  # more than the API's first page of 5 (FANOUT_PAGE_SIZE)
            body = {"phone": f"7900000{n:04d}", "code": "905", "tag": "bulk", "utc": "UTC"}
            assert api.post("/api/clients/", body).status_code == 201
        _task(api, "12:40", "14:00", filter={"codes": ["905"]})
        _task(api, "12:40", "14:00", filter={"tags": ["bulk"]})
        _task(api, "12:40", "14:00")  # everyone
    with act("fan_out") as worker:
        settings = worker.dispatcher.fanout._settings
        worker.dispatcher.fanout._settings = replace(settings, queue_ahead_limit=1)
        assert queue.fan_out(max_jobs=30)  # the send queue is full: each job comes back
        worker.dispatcher.fanout._settings = settings
        _fail_next_checkpoint(monkeypatch)
        with pytest.raises(RuntimeError):
            queue.fan_out()  # dies after a page, before its checkpoint
        clock.advance(seconds=settings.fanout_lease_seconds)
        queue.fan_out()


def test_every_call_is_allowed_and_every_grant_is_used(
    packaged: dict[str, Packaged],
    containers: Containers,
    api: Api,
    provider: FakeProviderState,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack = packaged["dev"].stack
    _exercise(containers, api, provider, clock, monkeypatch)
    requests = containers.recorder.requests
    assert set(requests) == set(FUNCTIONS)
    table_arns = {
        stack.get_att(name, "Arn"): name for name in stack.of_type("AWS::DynamoDB::Table")
    }

    denied: dict[str, list[Request]] = {}
    unused: dict[str, list[Grant]] = {}
    for function in FUNCTIONS:
        grants = grants_of(stack, function)
        calls = requests[function]
        denied[function] = sorted(c for c in calls if not any(g.allows(*c) for g in grants))
        unused[function] = [
            grant
            for grant in grants
            if not grant.action.startswith(("logs:", "kms:"))  # Lambda's and SSM's own use
            and (function, grant.action, table_arns.get(grant.resource)) not in NOT_EXERCISED
            and not any(grant.allows(*call) for call in calls)
        ]
    assert denied == {function: [] for function in FUNCTIONS}, json.dumps(denied, indent=1)
    assert unused == {function: [] for function in FUNCTIONS}, unused


def test_the_exercise_would_catch_a_missing_grant(packaged: dict[str, Packaged]) -> None:
    """The matcher itself: a call outside every grant is denied."""

    def grants(function: str) -> list[Grant]:
        return grants_of(packaged["dev"].stack, function)

    phones = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/notify-dev-phones"
    assert any(g.allows("dynamodb:PutItem", phones) for g in grants("api_handler"))
    assert not any(g.allows("dynamodb:PutItem", phones) for g in grants("send"))
    assert not any(g.allows("dynamodb:Scan", phones) for g in grants("api_handler"))
    # A grant's condition holds only for a call that carries a matching key.
    bucket = packaged["dev"].stack.get_att("ImportBucket", "Arn")
    listings = [g for g in grants("import_files") if g.action == "s3:ListBucket"]
    assert listings

    def may_list(*context: tuple[str, str]) -> bool:
        return any(g.allows("s3:ListBucket", bucket, context) for g in listings)

    assert may_list(("s3:prefix", "imports/1.csv"))  # S3's check of a missing key
    assert not may_list(("s3:prefix", "reports/1/part-"))
    assert not may_list(("s3:prefix", "exports/"))
    assert not may_list()
    assert not any(
        g.allows("s3:PutObject", f"{bucket}/reports/1.csv") for g in grants("api_handler")
    )
