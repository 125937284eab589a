"""Reading the packaged IAM policies, and turning recorded AWS calls into IAM requests."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

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


@dataclass(frozen=True)
class Grant:
    sid: str
    action: str
    resource: str
    conditions: tuple[tuple[str, str, str], ...] = ()

    def allows(self, action: str, resource: str) -> bool:
        # IAM wildcards (* and ?) read like shell patterns; ARNs hold no [ ].
        return action.lower() == self.action.lower() and fnmatchcase(resource, self.resource)


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
                (operator, key, str(value))
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


def iam_requests(service: str, operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """The (action, resource ARN) pairs IAM authorizes for one API call."""
    if service == "dynamodb":
        return _dynamodb(operation, params)
    if service == "sqs":
        # Batch calls are authorized as their single-message action.
        action = operation.removesuffix("Batch")
        name = params.get("QueueName") or str(params["QueueUrl"]).rsplit("/", 1)[1]
        return [(f"sqs:{action}", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")]
    if service == "dynamodbstreams":
        # Lambda's event source mapping reads the stream with the function's role.
        if operation == "ListStreams":
            return [("dynamodb:ListStreams", f"{_table(params['TableName'])}/stream/*")]
        arn = str(params.get("StreamArn") or _stream_of_iterator(params))
        return [(f"dynamodb:{operation}", arn)]
    if service == "ssm":
        name = str(params["Name"])
        path = name if name.startswith("/") else f"/{name}"
        return [(f"ssm:{operation}", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{path}")]
    raise AssertionError(f"unexpected AWS service {service}.{operation}")


_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def _table(name: str) -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"


def _dynamodb(operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    if operation in ("TransactWriteItems", "TransactGetItems"):
        # A transaction is authorized item by item, as the matching single-item action.
        requests = []
        for item in params["TransactItems"]:
            ((kind, body),) = item.items()
            requests.append((f"dynamodb:{_TRANSACT_ACTIONS[kind]}", _table(body["TableName"])))
        return requests
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [(f"dynamodb:{operation}", _table(name)) for name in params["RequestItems"]]
    resource = _table(params["TableName"])
    if "IndexName" in params:
        resource += f"/index/{params['IndexName']}"
    return [(f"dynamodb:{operation}", resource)]


def _stream_of_iterator(params: dict[str, Any]) -> str:
    # GetRecords names a shard iterator; moto's (like DynamoDB's) holds the stream's ARN.
    iterator = str(params["ShardIterator"])
    start = iterator.index("arn:aws:dynamodb:")
    arn = iterator[start:]
    return arn.split("|")[0]
