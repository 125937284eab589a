"""A packaged template with its intrinsic functions resolved, as CloudFormation would.

Only what the template uses is supported (Ref, Fn::GetAtt, Fn::Sub, Fn::FindInMap,
Fn::If/Equals/Not); anything else fails loudly rather than resolving to a guess.
"""

from __future__ import annotations

import re
from typing import Any

ACCOUNT = "123456789012"  # moto's default account, so ARNs compare with moto's calls
REGION = "us-east-1"
# A stream's ARN ends in its label, the time it was created: unknown until then.
STREAM = "*"
REST_API_ID = "a1b2c3d4e5"  # what Ref of the REST API answers
NO_VALUE = object()

_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


class Stack:
    def __init__(self, template: dict[str, Any], stack_name: str = "notify") -> None:
        self.template = template
        self.resources: dict[str, Any] = template["Resources"]
        self.parameters = {
            name: spec.get("Default") for name, spec in template.get("Parameters", {}).items()
        }
        self.pseudo = {
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": REGION,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack_name,
            "AWS::NoValue": NO_VALUE,
        }

    @property
    def stage(self) -> str:
        return str(self.parameters["Stage"])

    # --- reading resources ------------------------------------------------------------

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: res for name, res in self.resources.items() if res["Type"] == kind}

    def properties(self, logical_id: str) -> dict[str, Any]:
        resolved: dict[str, Any] = self.resolve(self.resources[logical_id].get("Properties", {}))
        return resolved

    # --- intrinsic functions ----------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in map(self.resolve, value) if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key.startswith("Fn::"):
                return self._function(key, argument)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def _function(self, key: str, argument: Any) -> Any:
        if key == "Fn::GetAtt":
            name, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
            return self.get_att(name, attribute)
        if key == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            return self.sub(text, self.resolve(variables))
        if key == "Fn::FindInMap":
            mapping, first, second = self.resolve(argument)
            return self.template["Mappings"][mapping][first][second]
        if key == "Fn::If":
            condition, if_true, if_false = argument
            return self.resolve(if_true if self.condition(condition) else if_false)
        raise NotImplementedError(key)

    def condition(self, name: str) -> bool:
        return bool(self._evaluate(self.template["Conditions"][name]))

    def _evaluate(self, expression: Any) -> Any:
        if isinstance(expression, dict) and len(expression) == 1:
            ((key, argument),) = expression.items()
            if key == "Fn::Equals":
                left, right = (self._evaluate(item) for item in argument)
                return left == right
            if key == "Fn::Not":
                return not self._evaluate(argument[0])
            if key == "Condition":
                return self.condition(argument)
        return self.resolve(expression)

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        kind = self.resources[name]["Type"]
        props = self.properties(name)
        if kind == "AWS::DynamoDB::Table":
            return props["TableName"]
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{props['QueueName']}"
        if kind == "AWS::Serverless::Function":
            return props["FunctionName"]
        if kind == "AWS::Logs::LogGroup":
            return props["LogGroupName"]
        if kind == "AWS::Serverless::Api":
            return REST_API_ID
        if kind == "AWS::S3::Bucket":
            return props["BucketName"]
        raise NotImplementedError(f"Ref {kind}")

    def get_att(self, name: str, attribute: str) -> str:
        kind = self.resources[name]["Type"]
        props = self.properties(name)
        if kind == "AWS::DynamoDB::Table" and attribute == "Arn":
            return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{props['TableName']}"
        if kind == "AWS::DynamoDB::Table" and attribute == "StreamArn":
            assert "StreamSpecification" in props, name
            return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{props['TableName']}/stream/{STREAM}"
        if kind == "AWS::SQS::Queue" and attribute == "Arn":
            return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{props['QueueName']}"
        if kind == "AWS::SQS::Queue" and attribute == "QueueName":
            return str(props["QueueName"])
        if kind == "AWS::Serverless::Function" and attribute == "Arn":
            return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{props['FunctionName']}"
        if kind == "AWS::Serverless::Api" and attribute == "Stage":
            return str(props["StageName"])  # SAM's ${Api.Stage}: the stage's name
        if kind == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:aws:s3:::{props['BucketName']}"  # S3's ARNs name no region or account
        if kind == "AWS::IAM::Role" and attribute == "Arn":
            return f"arn:aws:iam::{ACCOUNT}:role/{name}"
        raise NotImplementedError(f"GetAtt {kind}.{attribute}")

    def sub(self, text: str, variables: dict[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return self.get_att(*name.split(".", 1))
            return str(self.ref(name))

        return _SUB_VARIABLE.sub(replace, text)
