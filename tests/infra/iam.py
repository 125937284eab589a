"""Reading the packaged IAM policies, and turning recorded AWS calls into IAM requests."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, NamedTuple

from chalicelib.domain.exports import export_key
from chalicelib.domain.imports import file_key, report_key, report_part_key
from tests.infra.stack import ACCOUNT, REGION, Stack

# Chalice function name -> the logical id of its function in the packaged template.
FUNCTIONS = {
    "api_handler": "APIHandler",
    "bearer_key": "BearerKey",
    "dispatch": "Dispatch",
    "fan_out": "FanOut",
    "send": "Send",
    "count_messages": "CountMessages",
    "import_files": "ImportFiles",
}


def folder(key: str) -> str:
    return key.split("/", 1)[0] + "/"


# The import bucket's folders, where the code keeps its objects (the uploaded files, the
# error reports and their parts: chalicelib/domain/imports.py names them; the exports'
# files: chalicelib/domain/exports.py).
IMPORT_PREFIXES = tuple(
    sorted(
        {folder(key) for key in (file_key(1), report_key(1), report_part_key(1, 0), export_key(1))}
    )
)


class Request(NamedTuple):
    """One action on one resource as IAM authorizes it, with the condition keys the call
    carries that a grant may test (a listing's s3:prefix)."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Grant:
    sid: str
    action: str
    resource: str
    # (operator, key, values): the call's key must match one of the values.
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    def allows(self, action: str, resource: str, context: tuple[tuple[str, str], ...] = ()) -> bool:
        # IAM wildcards (* and ?) read like shell patterns; ARNs hold no [ ].
        if action.lower() != self.action.lower() or not fnmatchcase(resource, self.resource):
            return False
        keys = dict(context)
        return all(_holds(op, keys.get(key), values) for op, key, values in self.conditions)


def _holds(operator: str, value: str | None, values: tuple[str, ...]) -> bool:
    """One condition: a key the call does not carry matches nothing, as in IAM."""
    if value is None:
        return False
    if operator == "StringLike":
        return any(fnmatchcase(value, pattern) for pattern in values)
    if operator == "StringEquals":
        return value in values
    raise NotImplementedError(operator)


def role_of(stack: Stack, function: str) -> str:
    role = stack.resources[FUNCTIONS[function]]["Properties"]["Role"]
    name, attribute = role["Fn::GetAtt"]
    assert attribute == "Arn"
    return str(name)


def grants_of(stack: Stack, function: str) -> list[Grant]:
    """Every (action, resource) the function's role allows, resolved for the stack."""
    grants = []
    for policy in stack.properties(role_of(stack, function))["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            actions = _listed(statement["Action"])
            resources = _listed(statement["Resource"])
            conditions = tuple(
                (operator, key, tuple(map(str, _listed(value))))
                for operator, pairs in statement.get("Condition", {}).items()
                for key, value in pairs.items()
            )
            grants += [
                Grant(statement["Sid"], action, resource, conditions)
                for action in actions
                for resource in resources
            ]
    return grants


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def iam_requests(service: str, operation: str, params: dict[str, Any]) -> list[Request]:
    """The requests IAM authorizes for one API call."""
    if service == "dynamodb":
        return _dynamodb(operation, params)
    if service == "sqs":
        # Batch calls are authorized as their single-message action.
        action = operation.removesuffix("Batch")
        name = params.get("QueueName") or str(params["QueueUrl"]).rsplit("/", 1)[1]
        return [Request(f"sqs:{action}", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")]
    if service == "dynamodbstreams":
        # Lambda's event source mapping reads the stream with the function's role.
        if operation == "ListStreams":
            return [Request("dynamodb:ListStreams", f"{_table(params['TableName'])}/stream/*")]
        arn = str(params.get("StreamArn") or _stream_of_iterator(params))
        return [Request(f"dynamodb:{operation}", arn)]
    if service == "ssm":
        name = str(params["Name"])
        path = name if name.startswith("/") else f"/{name}"
        return [Request(f"ssm:{operation}", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{path}")]
    if service == "s3":
        return [_s3(operation, params)]
    raise AssertionError(f"unexpected AWS service {service}.{operation}")


# The object operations the code makes, as IAM authorizes them: a HEAD as the GET, the
# parts of a multipart upload (upload_fileobj past its threshold) as the PUT.
_S3_OBJECT_ACTIONS = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
}


def _s3(operation: str, params: dict[str, Any]) -> Request:
    bucket = f"arn:aws:s3:::{params['Bucket']}"  # S3's ARNs name no region or account
    if operation in _S3_OBJECT_ACTIONS:
        return Request(_S3_OBJECT_ACTIONS[operation], f"{bucket}/{params['Key']}")
    if operation in ("ListObjectsV2", "ListObjects"):
        # A listing is authorized on the bucket, the prefix asked for as s3:prefix.
        prefix = params.get("Prefix")
        return Request("s3:ListBucket", bucket, () if prefix is None else (("s3:prefix", prefix),))
    raise AssertionError(f"unexpected S3 operation {operation}")


def missing_key_request(service: str, operation: str, params: dict[str, Any]) -> Request | None:
    """The request S3 authorizes besides a read's own when the key is missing: it answers
    404 only to a caller that may list that key (s3:ListBucket, the key as s3:prefix), and
    403 to any other, which the code cannot tell from a refusal. None for other calls."""
    if service != "s3" or operation not in ("GetObject", "HeadObject"):
        return None
    bucket = f"arn:aws:s3:::{params['Bucket']}"
    return Request("s3:ListBucket", bucket, (("s3:prefix", str(params["Key"])),))


_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def _table(name: str) -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"


def _dynamodb(operation: str, params: dict[str, Any]) -> list[Request]:
    if operation in ("TransactWriteItems", "TransactGetItems"):
        # A transaction is authorized item by item, as the matching single-item action.
        requests = []
        for item in params["TransactItems"]:
            ((kind, body),) = item.items()
            action = f"dynamodb:{_TRANSACT_ACTIONS[kind]}"
            requests.append(Request(action, _table(body["TableName"])))
        return requests
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [Request(f"dynamodb:{operation}", _table(name)) for name in params["RequestItems"]]
    resource = _table(params["TableName"])
    if "IndexName" in params:
        resource += f"/index/{params['IndexName']}"
    return [Request(f"dynamodb:{operation}", resource)]


def _stream_of_iterator(params: dict[str, Any]) -> str:
    # GetRecords names a shard iterator; moto's (like DynamoDB's) holds the stream's ARN.
    iterator = str(params["ShardIterator"])
    start = iterator.index("arn:aws:dynamodb:")
    arn = iterator[start:]
    return arn.split("|")[0]
