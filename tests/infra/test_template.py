"""The deployable template (`make package`): what it creates, and that it agrees with
the code: tables with the PynamoDB models, names with the stage's config, gateway
answers with the local gateway, the queue with the sender's timeout."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import pytest
from chalice.app import BuiltinAuthConfig

import app as app_module
from chalicelib import http
from chalicelib.domain.exports import KEEP_DAYS
from chalicelib.domain.imports import file_key, report_key, report_part_key
from chalicelib.settings import Settings
from chalicelib.storage.models import MODELS, VIEWS
from infra.gateway_responses import GATEWAY_RESPONSES
from local import resources as local_resources
from tests.conftest import stage_environment
from tests.infra.conftest import ROOT, Packaged
from tests.infra.iam import FUNCTIONS, IMPORT_PREFIXES, folder, grants_of, role_of
from tests.infra.stack import ACCOUNT, REGION, REST_API_ID, Stack


def chalice_config() -> dict[str, Any]:
    return dict(json.loads((ROOT / ".chalice" / "config.json").read_text()))


def settings_of(stage: str) -> Settings:
    return Settings.from_env(stage_environment(stage))


def test_cfn_lint_finds_nothing(package: Packaged) -> None:
    # .cfnlintrc.yaml: every rule, informational ones too, except those named there.
    run = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "cfn-lint"), "-t", str(package.path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (run.returncode, run.stdout + run.stderr) == (0, "")


def test_the_package_only_deploys_as_its_own_stage(package: Packaged) -> None:
    stage = package.template["Parameters"]["Stage"]
    assert stage["AllowedValues"] == [package.stage]
    assert stage["Default"] == package.stage


# --- DynamoDB ---------------------------------------------------------------------------


def _key_schema(entries: Iterable[dict[str, str]]) -> dict[str, str]:
    return {entry["AttributeName"]: entry["KeyType"] for entry in entries}


def _attributes(entries: Iterable[dict[str, str]]) -> dict[str, str]:
    return {entry["AttributeName"]: entry["AttributeType"] for entry in entries}


def test_tables_are_the_pynamodb_models_under_the_stage_names(stack: Stack) -> None:
    settings = settings_of(stack.stage)
    tables = {
        props["TableName"]: props
        for props in map(stack.properties, stack.of_type("AWS::DynamoDB::Table"))
    }
    assert len(tables) == len(MODELS)
    for model in MODELS:
        schema = model._get_schema()
        name = getattr(settings, f"{model.Meta.logical_name}_table")
        table = tables[name]  # the name the functions are configured with
        assert _key_schema(table["KeySchema"]) == _key_schema(schema["key_schema"]), name
        assert _attributes(table["AttributeDefinitions"]) == _attributes(
            schema["attribute_definitions"]
        ), name
        expected_indexes = {
            index["index_name"]: (_key_schema(index["key_schema"]), index["projection"])
            for index in schema["global_secondary_indexes"]
        }
        indexes = {
            index["IndexName"]: (_key_schema(index["KeySchema"]), index["Projection"])
            for index in table.get("GlobalSecondaryIndexes", [])
        }
        assert indexes == expected_indexes, name
        assert not schema["local_secondary_indexes"] and "LocalSecondaryIndexes" not in table
        assert table["BillingMode"] == "PAY_PER_REQUEST"
        assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert table["DeletionProtectionEnabled"] == ("true" if stack.stage == "prod" else "false")


def test_the_expected_indexes_exist(stack: Stack) -> None:
    """The access patterns the code relies on, spelled out (the model check is generic)."""
    indexes = {
        (props["TableName"].rsplit("-", 1)[-1], index["IndexName"]): _key_schema(index["KeySchema"])
        for props in map(stack.properties, stack.of_type("AWS::DynamoDB::Table"))
        for index in props.get("GlobalSecondaryIndexes", [])
    }
    assert indexes == {
        ("clients", "by_code"): {"code": "HASH", "id": "RANGE"},
        ("clients", "by_tag"): {"tag_key": "HASH", "id": "RANGE"},
        ("tasks", "open_by_start"): {"open_shard": "HASH", "start_ms": "RANGE"},
        ("messages", "parked_by_wake"): {"task_id": "HASH", "wake_ms": "RANGE"},
    }
    messages = stack.properties("MessagesTable")
    assert _key_schema(messages["KeySchema"]) == {"task_id": "HASH", "client_id": "RANGE"}


def test_tasks_messages_and_exports_expire_by_the_models_ttl_attribute(stack: Stack) -> None:
    """DynamoDB's TTL on the attribute the code stamps (RETENTION_DAYS, README "Data
    retention"; an export record's KEEP_DAYS, in the counters table); the other tables
    keep their items."""
    settings = settings_of(stack.stage)
    ttl = {
        props["TableName"]: props.get("TimeToLiveSpecification")
        for props in map(stack.properties, stack.of_type("AWS::DynamoDB::Table"))
    }
    expiring = {settings.tasks_table, settings.messages_table, settings.counters_table}
    stamped: dict[str, set[str]] = {}
    for model in MODELS + VIEWS:
        name = getattr(settings, f"{model.Meta.logical_name}_table")
        attribute = model._ttl_attribute()  # type: ignore[no-untyped-call]
        if attribute is not None:
            stamped.setdefault(name, set()).add(attribute.attr_name)
    assert set(stamped) == expiring
    for name in expiring:
        (attribute,) = stamped[name]
        assert ttl[name] == {"AttributeName": attribute, "Enabled": True}, name
    assert {name for name, spec in ttl.items() if spec} == expiring


# --- SQS --------------------------------------------------------------------------------


def test_send_queue_has_a_dead_letter_queue_and_outlasts_the_sender(stack: Stack) -> None:
    settings = settings_of(stack.stage)
    queue = stack.properties("SendQueue")
    dlq = stack.properties("SendDeadLetterQueue")
    assert queue["QueueName"] == settings.send_queue  # app.py subscribes the sender to it
    assert dlq["QueueName"] == local_resources.dead_letter_queue_name(settings.send_queue)
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": stack.get_att("SendDeadLetterQueue", "Arn"),
        "maxReceiveCount": local_resources.MAX_RECEIVE_COUNT,
    }
    sender_timeout = stack.properties("Send")["Timeout"]
    assert queue["VisibilityTimeout"] >= 6 * sender_timeout
    # The emulated queue (make run, tests) has the same shape.
    assert queue["VisibilityTimeout"] == local_resources.VISIBILITY_TIMEOUT_SECONDS


def test_sender_reports_partial_batch_failures_from_the_send_queue(stack: Stack) -> None:
    (source,) = stack.properties("Send")["Events"].values()
    assert source["Type"] == "SQS"
    props = source["Properties"]
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["Queue"] == stack.get_att("SendQueue", "Arn")
    assert props["BatchSize"] == 10


def test_senders_at_once_are_one_number_for_the_queue_and_the_function(stack: Stack) -> None:
    """Issue 18: the send queue's mapping starts at most SEND_WORKERS senders, and the
    function keeps exactly that many for itself: neither throttles the other (a mapping
    above the reserved concurrency gets throttled invocations; below it, the reserve is
    idle), and rate limits are shared by a known number of senders."""
    send = stack.properties("Send")
    (source,) = send["Events"].values()
    workers = app_module.SEND_WORKERS
    assert source["Properties"]["ScalingConfig"] == {"MaximumConcurrency": workers}
    assert send["ReservedConcurrentExecutions"] == workers


def test_the_counts_follow_the_messages_stream_exactly(stack: Stack) -> None:
    """The counting function reads the messages table's stream (old and new images: a
    change of status), in batches, retried without limit and halved on an error (a
    skipped record would leave the counts wrong for good), with the partial batch
    response, one batch per shard at a time, and the shard's id in each event (the
    tumbling window's), which the exactly-once marks are kept by."""
    messages = stack.properties("MessagesTable")
    assert messages["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    (source,) = stack.properties("CountMessages")["Events"].values()
    assert source["Type"] == "DynamoDB"
    props = source["Properties"]
    assert props["Stream"] == stack.get_att("MessagesTable", "StreamArn")
    assert props["StartingPosition"] == "TRIM_HORIZON"
    assert props["BatchSize"] == 1000
    assert 0 < props["MaximumBatchingWindowInSeconds"] <= 10
    assert props["BisectBatchOnFunctionError"] is True
    assert props["MaximumRetryAttempts"] == -1
    assert props["MaximumRecordAgeInSeconds"] == -1
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["ParallelizationFactor"] == 1
    assert 0 < props["TumblingWindowInSeconds"] <= 900


# --- S3: the import bucket and its queue -----------------------------------------------


def function_settings(stack: Stack, logical: str) -> Settings:
    """The settings a function reads: its stage's config with what the template adds."""
    return Settings.from_env(stack.properties(logical)["Environment"]["Variables"])


def test_the_import_bucket_is_the_one_its_users_are_configured_with(stack: Stack) -> None:
    """Its name holds the account and region (bucket names are global), which the stage's
    config cannot know: the template gives it to the functions that use the bucket."""
    bucket = stack.properties("ImportBucket")["BucketName"]
    assert bucket == f"notify-{stack.stage}-imports-{ACCOUNT}-{REGION}"
    arn = stack.get_att("ImportBucket", "Arn")
    users = {
        function
        for function in FUNCTIONS
        if any(grant.resource.startswith(arn) for grant in grants_of(stack, function))
    }
    # The API signs the upload and report URLs; the import function reads and writes.
    assert users == {"api_handler", "import_files"}
    for function in users:
        logical = FUNCTIONS[function]
        assert stack.properties(logical)["Environment"]["Variables"]["IMPORT_BUCKET"] == bucket
        assert function_settings(stack, logical).import_bucket == bucket


def test_the_import_bucket_is_private_and_encrypted(stack: Stack) -> None:
    props = stack.properties("ImportBucket")
    assert props["BucketEncryption"] == {
        "ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        ]
    }
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    # ACLs off: the bucket owns every object, whoever uploaded it.
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}


def test_the_import_bucket_refuses_plain_http(stack: Stack) -> None:
    bucket = stack.properties("ImportBucket")["BucketName"]
    arn = stack.get_att("ImportBucket", "Arn")
    (policy,) = [
        props
        for props in map(stack.properties, stack.of_type("AWS::S3::BucketPolicy"))
        if props["Bucket"] == bucket
    ]
    assert policy["PolicyDocument"]["Statement"] == [
        {
            "Sid": "HttpsOnly",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [arn, f"{arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ]


def test_import_files_and_reports_expire_as_the_readme_says(stack: Stack) -> None:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"files and reports expire after (\d+) days", readme)
    assert found, "README, Bulk import and export: the lifecycle's days"
    days = int(found.group(1))
    rules = stack.properties("ImportBucket")["LifecycleConfiguration"]["Rules"]
    assert all(rule["Status"] == "Enabled" for rule in rules)
    expiring = {rule["Prefix"]: rule["ExpirationInDays"] for rule in rules if "Prefix" in rule}
    assert expiring == dict.fromkeys(IMPORT_PREFIXES, days)
    assert days == KEEP_DAYS  # an export record lives as long as its file
    # A browser's or a CLI's multipart upload left unfinished: its parts go after a day,
    # wherever they are (they are billed and no listing shows them).
    (aborting,) = [rule for rule in rules if "AbortIncompleteMultipartUpload" in rule]
    assert "Prefix" not in aborting and "Filter" not in aborting
    assert aborting["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}


def test_browsers_may_put_and_get_only_from_the_apis_own_origin(stack: Stack) -> None:
    """The console, served by the API, PUTs a file to its upload URL and GETs a report."""
    base = urlsplit(stack.resolve(stack.template["Outputs"]["BaseUrl"])["Value"])
    ((rule,),) = stack.properties("ImportBucket")["CorsConfiguration"].values()
    assert rule["AllowedOrigins"] == [f"{base.scheme}://{base.netloc}"]
    assert sorted(rule["AllowedMethods"]) == ["GET", "PUT"]


def test_an_uploaded_file_is_announced_to_the_import_queue(stack: Stack) -> None:
    """Only files under the uploads' folder: the reports the import writes must not start
    imports of their own."""
    uploads = folder(file_key(1))
    assert uploads not in {folder(report_key(1)), folder(report_part_key(1, 0))}
    notification = stack.properties("ImportBucket")["NotificationConfiguration"]
    assert notification == {
        "QueueConfigurations": [
            {
                "Event": "s3:ObjectCreated:*",
                "Queue": stack.get_att("ImportQueue", "Arn"),
                "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": uploads}]}},
            }
        ]
    }
    # S3 checks it may send to the queue when the notification is set.
    assert stack.resources["ImportBucket"]["DependsOn"] == "ImportQueuePolicy"


def test_only_this_buckets_events_may_enter_the_import_queue(stack: Stack) -> None:
    (policy,) = [
        props
        for props in map(stack.properties, stack.of_type("AWS::SQS::QueuePolicy"))
        if props["Queues"] == [stack.ref("ImportQueue")]
    ]
    assert policy["PolicyDocument"]["Statement"] == [
        {
            "Sid": "ImportBucketEvents",
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": stack.get_att("ImportQueue", "Arn"),
            "Condition": {
                "ArnEquals": {"aws:SourceArn": stack.get_att("ImportBucket", "Arn")},
                "StringEquals": {"aws:SourceAccount": ACCOUNT},
            },
        }
    ]


def test_import_queue_has_a_dead_letter_queue_and_outlasts_the_import_function(
    stack: Stack,
) -> None:
    settings = function_settings(stack, "ImportFiles")
    queue = stack.properties("ImportQueue")
    dlq = stack.properties("ImportDeadLetterQueue")
    assert queue["QueueName"] == settings.import_queue  # app.py subscribes the function to it
    assert dlq["QueueName"] == local_resources.dead_letter_queue_name(settings.import_queue)
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": stack.get_att("ImportDeadLetterQueue", "Arn"),
        "maxReceiveCount": local_resources.MAX_RECEIVE_COUNT,
    }
    assert queue["VisibilityTimeout"] >= 6 * stack.properties("ImportFiles")["Timeout"]


def test_the_import_function_takes_one_message_at_a_time_from_its_queue(stack: Stack) -> None:
    """One import an invocation: its budget is the invocation's time (app.import_files)."""
    ((name, source),) = stack.properties("ImportFiles")["Events"].items()
    assert source["Type"] == "SQS"
    assert source["Properties"]["Queue"] == stack.get_att("ImportQueue", "Arn")
    assert source["Properties"]["BatchSize"] == 1
    # A reference, not a name: CloudFormation creates the queue before the mapping.
    raw = stack.resources["ImportFiles"]["Properties"]["Events"][name]["Properties"]["Queue"]
    assert raw == {"Fn::Sub": "${ImportQueue.Arn}"}


def test_every_queue_mapping_references_its_queue(stack: Stack) -> None:
    """Chalice names a function's queue by an ARN built from the queue's name, so
    CloudFormation may create the mapping before the queue and the first deploy fails:
    each mapping must reference a queue of the template."""
    queues = stack.of_type("AWS::SQS::Queue")
    for logical in FUNCTIONS.values():
        for name, event in stack.resources[logical]["Properties"].get("Events", {}).items():
            if event["Type"] != "SQS":
                continue
            raw = event["Properties"]["Queue"]
            assert isinstance(raw, dict), (logical, name, raw)
            assert set(raw) == {"Fn::Sub"}, (logical, name, raw)
            reference = re.fullmatch(r"\$\{(\w+)\.Arn\}", str(raw["Fn::Sub"]))
            assert reference and reference[1] in queues, (logical, name, raw)


# --- functions --------------------------------------------------------------------------


def test_dispatcher_runs_every_minute_with_room_for_its_budget(stack: Stack) -> None:
    dispatch = stack.properties("Dispatch")
    (event,) = dispatch["Events"].values()
    assert event == {"Type": "Schedule", "Properties": {"Schedule": "rate(1 minute)"}}
    budget = settings_of(stack.stage).dispatch_budget_seconds
    assert dispatch["Timeout"] >= budget + 30
    # One run at a time (issue 17): a tick that comes while a run is still going is
    # throttled and retried by Lambda after it, never run beside it over the same tasks.
    assert dispatch["ReservedConcurrentExecutions"] == 1
    assert budget < 60  # and a run normally ends before the next tick


def test_fan_out_workers_take_one_segment_each_and_as_many_as_allowed(stack: Stack) -> None:
    fan_out = stack.properties("FanOut")
    (event,) = fan_out["Events"].values()
    assert event["Type"] == "SQS"
    source = event["Properties"]
    assert source["Queue"].endswith(f":notify-{stack.stage}-fanout")
    assert source["BatchSize"] == 1
    assert source["ScalingConfig"] == {"MaximumConcurrency": app_module.FANOUT_WORKERS}
    queue = stack.properties("FanoutQueue")
    assert queue["VisibilityTimeout"] >= 6 * fan_out["Timeout"]
    dead_letters = queue["RedrivePolicy"]["deadLetterTargetArn"]
    assert dead_letters == stack.get_att("FanoutDeadLetterQueue", "Arn")
    assert fan_out["Timeout"] > app_module.FANOUT_MARGIN_SECONDS


def test_function_timeouts_and_names(stack: Stack) -> None:
    props = {name: stack.properties(logical) for name, logical in FUNCTIONS.items()}
    # The API's under API Gateway's 29-second integration limit: a slow request ends in
    # the function's own error answer, never in the gateway cutting it off (issue 17).
    assert {name: p["Timeout"] for name, p in props.items()} == {
        "api_handler": 25,
        "bearer_key": 10,
        "dispatch": 90,
        "fan_out": 60,
        "send": 30,
        "count_messages": 60,
        "import_files": 300,
    }
    short = {
        "api_handler": "api",
        "bearer_key": "authorizer",
        "dispatch": "dispatch",
        "fan_out": "fan-out",
        "send": "send",
        "count_messages": "count-messages",
        "import_files": "import-files",
    }
    for name, p in props.items():
        assert p["FunctionName"] == f"notify-{stack.stage}-{short[name]}"


def test_every_function_logs_to_a_group_with_the_stage_retention(stack: Stack) -> None:
    retention = chalice_config()["stages"][stack.stage]["log_retention_in_days"]
    groups = {
        props["LogGroupName"]: props["RetentionInDays"]
        for props in map(stack.properties, stack.of_type("AWS::Logs::LogGroup"))
    }
    names = {stack.properties(logical)["FunctionName"] for logical in FUNCTIONS.values()}
    assert groups == {f"/aws/lambda/{name}": retention for name in names}


def test_provider_token_is_a_parameter_name_never_a_value(stack: Stack) -> None:
    parameter = settings_of(stack.stage).sender_token_parameter
    assert parameter == f"/notify/{stack.stage}/sender-token"
    for logical in FUNCTIONS.values():
        env = stack.properties(logical)["Environment"]["Variables"]
        assert "SENDER_TOKEN" not in env
        assert env["SENDER_TOKEN_PARAMETER"] == parameter
    output = stack.resolve(stack.template["Outputs"]["SenderTokenParameterName"])
    assert output["Value"] == parameter


# --- alarms -----------------------------------------------------------------------------


def test_alarms_watch_the_dead_letter_queue_and_the_functions_errors(stack: Stack) -> None:
    alarms = {
        props["AlarmName"]: props
        for props in map(stack.properties, stack.of_type("AWS::CloudWatch::Alarm"))
    }
    prefix = f"notify-{stack.stage}"
    # A send job in its dead-letter queue leaves messages pending; an import's leaves the
    # import `running` for good (README, "Bulk import and export").
    # A fan-out job's leaves its segment to the dispatcher's watchdog (a slow restart).
    for alarm, queue in (
        ("send-dead-letters", "send-dlq"),
        ("import-dead-letters", "imports-dlq"),
        ("fanout-dead-letters", "fanout-dlq"),
    ):
        dlq = alarms[f"{prefix}-{alarm}"]
        assert dlq["Namespace"] == "AWS/SQS"
        assert dlq["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert dlq["Dimensions"] == [{"Name": "QueueName", "Value": f"{prefix}-{queue}"}]
        assert (dlq["Threshold"], dlq["ComparisonOperator"]) == (
            1,
            "GreaterThanOrEqualToThreshold",
        )
    for alarm, function in (
        ("sender-errors", "send"),
        ("dispatcher-errors", "dispatch"),
        ("import-errors", "import-files"),
        ("fan-out-errors", "fan-out"),
        ("count-errors", "count-messages"),
    ):
        errors = alarms[f"{prefix}-{alarm}"]
        assert (errors["Namespace"], errors["MetricName"]) == ("AWS/Lambda", "Errors")
        assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": f"{prefix}-{function}"}]
    # Without a topic the alarms carry no action (an empty AlarmActions list would be odd).
    assert all("AlarmActions" not in props for props in alarms.values())


def test_alarms_watch_the_api_throttles_and_the_queues_oldest_job(stack: Stack) -> None:
    """Issue 17: API 5XX and latency, throttles, and the age of the oldest send job."""
    alarms = {
        props["AlarmName"]: props
        for props in map(stack.properties, stack.of_type("AWS::CloudWatch::Alarm"))
    }
    prefix = f"notify-{stack.stage}"
    # A REST API's metrics are named by the API's name: the definition's title.
    title = stack.properties("RestAPI")["DefinitionBody"]["info"]["title"]
    assert title == prefix
    api = [{"Name": "ApiName", "Value": prefix}, {"Name": "Stage", "Value": "v1"}]
    errors, latency = alarms[f"{prefix}-api-5xx"], alarms[f"{prefix}-api-latency"]
    assert (errors["Namespace"], errors["MetricName"], errors["Dimensions"]) == (
        "AWS/ApiGateway",
        "5XXError",
        api,
    )
    assert (latency["MetricName"], latency["ExtendedStatistic"], latency["Dimensions"]) == (
        "Latency",
        "p95",
        api,
    )
    throttles = alarms[f"{prefix}-throttles"]["Metrics"]
    watched = {
        metric["MetricStat"]["Metric"]["Dimensions"][0]["Value"]
        for metric in throttles
        if "MetricStat" in metric
    }
    assert watched == {stack.properties(logical)["FunctionName"] for logical in FUNCTIONS.values()}
    assert {m["MetricStat"]["Metric"]["MetricName"] for m in throttles if "MetricStat" in m} == {
        "Throttles"
    }
    age = alarms[f"{prefix}-send-queue-age"]
    assert (age["MetricName"], age["Dimensions"]) == (
        "ApproximateAgeOfOldestMessage",
        [{"Name": "QueueName", "Value": f"{prefix}-send"}],
    )
    # Longer than the longest wait the engine asks of a job (the queue's maximum delay).
    settings = Settings.from_env(stage_environment(stack.stage))
    assert age["Threshold"] > settings.queue_max_delay_seconds


# --- API Gateway ------------------------------------------------------------------------


def gateway_responses(stack: Stack) -> dict[str, Any]:
    definition = stack.properties("RestAPI")["DefinitionBody"]
    return dict(definition["x-amazon-apigateway-gateway-responses"])


def test_gateway_answers_are_the_shared_definition_word_for_word(stack: Stack) -> None:
    responses = gateway_responses(stack)
    expected = {}
    for response_type, answer in GATEWAY_RESPONSES.items():
        entry: dict[str, Any] = {"responseTemplates": {"application/json": answer.body()}}
        if answer.status is not None:
            entry["statusCode"] = str(answer.status)
        expected[response_type] = entry
    assert responses == expected


@pytest.mark.parametrize(
    ("response_type", "status", "error"),
    [
        ("UNAUTHORIZED", "401", "unauthorized"),
        ("MISSING_AUTHENTICATION_TOKEN", "404", "not_found"),
        ("ACCESS_DENIED", "403", "forbidden"),
        ("DEFAULT_4XX", None, "bad_request"),
        ("DEFAULT_5XX", None, "internal_error"),
    ],
)
def test_gateway_answers_follow_the_spec_error_format(
    stack: Stack, response_type: str, status: str | None, error: str
) -> None:
    response = gateway_responses(stack)[response_type]
    assert response.get("statusCode") == status
    body = json.loads(response["responseTemplates"]["application/json"])
    assert set(body) == {"error", "message"}
    assert body["error"] == error
    assert body["message"]


# SPEC: every route but these needs `Authorization: Bearer <key>`.
PUBLIC_PATHS = {
    "/api/health",
    "/docs",
    "/docs/{asset}",
    "/openapi.json",
    "/admin",
    "/admin/{file}",
}


def rest_api_definition(stack: Stack) -> dict[str, Any]:
    return dict(stack.properties("RestAPI")["DefinitionBody"])


def the_app_authorizer() -> BuiltinAuthConfig:
    (authorizer,) = app_module.app.builtin_auth_handlers
    return authorizer


def function_invoked_by(stack: Stack, uri: str) -> str:
    """The logical id of the function an API Gateway integration or authorizer URI calls."""
    functions = stack.of_type("AWS::Serverless::Function")
    invoked = [
        logical
        for logical in functions
        if uri
        == (
            f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/"
            f"{stack.get_att(logical, 'Arn')}/invocations"
        )
    ]
    assert len(invoked) == 1, uri
    return invoked[0]


def test_every_protected_operation_uses_the_bearer_key_authorizer(stack: Stack) -> None:
    """API Gateway calls the app's authorizer function, with the app's cache TTL, on the
    Authorization header, before every protected operation (and no usage-plan key)."""
    definition = rest_api_definition(stack)
    schemes = definition.get("securityDefinitions", {})
    authorizer = the_app_authorizer()
    assert authorizer.ttl_seconds == http.AUTH_CACHE_SECONDS
    protected = 0
    for path, methods in definition["paths"].items():
        for method, spec in methods.items():
            if method == "options" or path in PUBLIC_PATHS:
                continue
            protected += 1
            security = spec.get("security")
            assert isinstance(security, list) and len(security) == 1, (method, path, security)
            ((name, scopes),) = security[0].items()
            assert scopes == [], (method, path)
            scheme = schemes.get(name, {})
            assert scheme.get("x-amazon-apigateway-authtype") == "custom", (method, path, scheme)
            # A token authorizer's identity source is the header the scheme names.
            assert (scheme["type"], scheme["in"], scheme["name"]) == (
                "apiKey",
                "header",
                "Authorization",
            ), (method, path)
            config = stack.resolve(scheme["x-amazon-apigateway-authorizer"])
            assert config["type"] == "token", (method, path)
            assert config.get("identitySource", "method.request.header.Authorization") == (
                "method.request.header.Authorization"
            )
            assert config["authorizerResultTtlInSeconds"] == authorizer.ttl_seconds
            function = function_invoked_by(stack, config["authorizerUri"])
            props = stack.properties(function)
            assert props["FunctionName"] == f"notify-{stack.stage}-authorizer", (method, path)
            assert props["Handler"] == authorizer.handler_string
    assert protected >= 15
    # Chalice's own api_key_required scheme (a usage-plan key in x-api-key) is not used.
    assert all(scheme.get("name") != "x-api-key" for scheme in schemes.values()), schemes


def test_the_public_operations_need_no_key(stack: Stack) -> None:
    paths = rest_api_definition(stack)["paths"]
    assert set(paths) >= PUBLIC_PATHS
    for path in PUBLIC_PATHS:
        for method, spec in paths[path].items():
            assert "security" not in spec, (method, path)
    assert "security" not in rest_api_definition(stack)  # no default for every operation


def test_api_gateway_may_invoke_the_authorizer(stack: Stack) -> None:
    functions = {
        props["FunctionName"].rsplit(":", 1)[-1]  # a name or an ARN
        for props in map(stack.properties, stack.of_type("AWS::Lambda::Permission"))
        if props["Principal"] == "apigateway.amazonaws.com"
        and props["Action"] == "lambda:InvokeFunction"
    }
    assert f"notify-{stack.stage}-authorizer" in functions


# --- the deployed URLs -------------------------------------------------------------------


def test_base_url_plus_a_documented_path_is_that_route(stack: Stack) -> None:
    """The stack's BaseUrl output plus a path of openapi.json, unchanged, is the route."""
    base = stack.resolve(stack.template["Outputs"]["BaseUrl"])["Value"]
    assert not base.endswith("/")  # base + "/api/health", one slash
    health = urlsplit(base + "/api/health")
    assert health.scheme == "https"
    assert health.netloc == f"{REST_API_ID}.execute-api.{REGION}.amazonaws.com"
    # The first path segment is the API Gateway stage; the rest is the route.
    stage_name = stack.properties("RestAPI")["StageName"]
    assert stage_name == chalice_config()["stages"][stack.stage]["api_gateway_stage"]
    assert health.path == f"/{stage_name}/api/health"
    route = health.path.removeprefix(f"/{stage_name}")
    paths = rest_api_definition(stack)["paths"]
    assert "get" in paths[route]
    assert "security" not in paths[route]["get"]
    # Every documented path is a resource of the deployed API under the same base.
    documented = json.loads((ROOT / "openapi.json").read_text())["paths"]
    for path, operations in documented.items():
        assert path in paths, path
        assert set(operations) <= set(paths[path]), path


def test_deploy_uploads_and_deploys_what_package_wrote() -> None:
    """`make deploy` cannot run here (no AWS account); its commands can be read."""
    run = subprocess.run(
        ["make", "-n", "--no-print-directory", "deploy", "STAGE=dev", "S3_BUCKET=artifacts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = run.stdout.splitlines()
    package_at = next(i for i, line in enumerate(lines) if "chalice package" in line)
    upload_at = next(i for i, line in enumerate(lines) if "cloudformation package" in line)
    assert package_at < upload_at
    commands = " ".join(run.stdout.split())
    assert "--merge-template infra/template.yaml build/dev" in commands
    assert "--template-file build/dev/sam.yaml --s3-bucket artifacts" in commands
    assert "cloudformation deploy --template-file build/dev/packaged.yaml" in commands
    assert "--stack-name notify-dev" in commands
    assert "--capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND" in commands
    assert "/notify/" not in commands  # the token parameter's name comes from config.json


def test_the_api_stage_is_throttled(stack: Stack) -> None:
    """A runaway integrator gets 429s in the error format (the THROTTLED gateway response)
    before it can run up the account's Lambda concurrency (issue 17)."""
    (settings,) = stack.properties("RestAPI")["MethodSettings"]
    assert settings["ResourcePath"] == "/*" and settings["HttpMethod"] == "*"
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (100, 200)


@pytest.mark.parametrize("tracing", ["PassThrough", "Active"])
def test_tracing_is_optional_and_granted_only_when_on(stack: Stack, tracing: str) -> None:
    stack.parameters["Tracing"] = tracing
    active = tracing == "Active"
    for logical in FUNCTIONS.values():
        assert stack.properties(logical)["Tracing"] == tracing
    assert stack.properties("RestAPI")["TracingEnabled"] is active
    policy = stack.resources["TracingPolicy"]
    assert stack.condition(policy["Condition"]) is active
    roles = {role["Ref"] for role in policy["Properties"]["Roles"]}
    assert roles == {role_of(stack, function) for function in FUNCTIONS}
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
