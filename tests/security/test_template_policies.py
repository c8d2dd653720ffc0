"""Least privilege in template.yaml, checked on the template itself (pure: no world, no AWS).

Every function is granted exactly what its role needs — the tables it reads and writes, the queues it
sends to and the one it consumes, the CRM secret — and nothing else: an added grant, a wildcard
action, a ``Resource: "*"`` or a secret other than ``CrmSecretArn`` fails. The webhook API has the two
signed webhook routes and nothing else; nothing else is reachable without an authorizer. Queues and
tables are encrypted at rest and every log group expires.

``template_violations`` is the checker; the mutation tests at the bottom prove that it notices each kind
of widening. When a function legitimately needs more, change ``EXPECTED`` with the reason.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from dealsync_local.template import load_template

SECRET_PARAMETER = "CrmSecretArn"  # pragma: allowlist secret - the parameter's name, not a value
WEBHOOK_API = "WebhookApi"
WEBHOOK_ROUTES = frozenset({("POST", "/webhooks/hubspot"), ("POST", "/webhooks/salesforce/outbound-message")})


@dataclass(frozen=True)
class Role:
    """What one function does, and so may touch."""

    tables: frozenset[str] = frozenset()  # DynamoDB tables it reads and writes
    sends_to: frozenset[str] = frozenset()  # queues it sends messages to
    consumes: str | None = None  # the queue its SQS event source polls
    reads_secret: bool = True  # the CRM credentials (HubSpot app secret, Salesforce OAuth)
    routes: frozenset[tuple[str, str]] = frozenset()  # HTTP routes it serves (unauthenticated: signed webhooks)

    def grants(self) -> set[tuple[str, str]]:
        granted = {("table", name) for name in self.tables} | {("send", name) for name in self.sends_to}
        if self.reads_secret:
            granted.add(("secret", SECRET_PARAMETER))
        return granted


EXPECTED: dict[str, Role] = {
    # Checks the HubSpot signature (app secret), enqueues; never touches a table or a CRM.
    "HubSpotWebhookFunction": Role(
        sends_to=frozenset({"HubSpotChangesQueue"}), routes=frozenset({("POST", "/webhooks/hubspot")})),
    # Checks the organization (secret), de-duplicates deliveries in SyncTable, enqueues.
    "SalesforceOutboundMessageFunction": Role(
        tables=frozenset({"SyncTable"}), sends_to=frozenset({"SalesforceChangesQueue"}),
        routes=frozenset({("POST", "/webhooks/salesforce/outbound-message")})),
    # Syncs opportunities; the poll enqueues ids and partial batches are carried onto its own queue;
    # the poll resumes import jobs the API budget paused (their chunks back on the import queue);
    # contact rollups are queued for the rollup worker.
    "SfChangeFunction": Role(
        tables=frozenset({"SyncTable"}),
        sends_to=frozenset({"SalesforceChangesQueue", "ImportQueue", "RollupQueue", "HubSpotChangesQueue"}),
        consumes="SalesforceChangesQueue"),
    # Syncs deals into Salesforce; queues contact rollups.
    # It queues contact rollups, and a deal to resync (on its own queue) when it merged a restored deal into it.
    "HsChangeFunction": Role(
        tables=frozenset({"SyncTable"}), sends_to=frozenset({"RollupQueue", "HubSpotChangesQueue"}),
        consumes="HubSpotChangesQueue"),
    # The nightly full recompute fans out onto its own queue.
    "RollupRecomputeFunction": Role(
        tables=frozenset({"SyncTable"}), sends_to=frozenset({"RollupQueue"}), consumes="RollupQueue"),
    # The coordinator queues chunks on its own queue, re-queues opportunities waiting for their account
    # onto the Salesforce changes queue, and queues contact rollups.
    "ImportBatchFunction": Role(
        tables=frozenset({"SyncTable"}),
        sends_to=frozenset({"ImportQueue", "SalesforceChangesQueue", "RollupQueue"}), consumes="ImportQueue"),
}

# SAM policy templates a function may use: the kind of grant, the parameter naming the resource, and why
# the expansion is acceptable.
SAM_POLICY_TEMPLATES: dict[str, tuple[str, str]] = {
    # GetItem, PutItem, UpdateItem, DeleteItem, Query, Scan, Batch*, DescribeTable, ConditionCheckItem
    # on the table and its indexes: the store uses all of them.
    "DynamoDBCrudPolicy": ("table", "TableName"),
    # sqs:SendMessage* on that queue: the prefix matches exactly SendMessage and SendMessageBatch
    # (queues.send_messages uses the batch call).
    "SQSSendMessagePolicy": ("send", "QueueName"),
}

# The inline actions each kind of grant may use (no wildcard: every action named).
INLINE_ACTIONS: dict[str, frozenset[str]] = {
    "secret": frozenset({"secretsmanager:GetSecretValue"}),
    "table": frozenset({
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query",
        "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem",
        "dynamodb:DescribeTable",
    }),
    "send": frozenset({"sqs:SendMessage", "sqs:SendMessageBatch"}),
}

# Actions that only exist on Resource "*" (no resource-level permissions in IAM):
RESOURCE_STAR_ACTIONS: dict[str, str] = {
    "xray:PutTraceSegments": "X-Ray has no resource-level permissions (Tracing: Active)",
    "xray:PutTelemetryRecords": "X-Ray has no resource-level permissions (Tracing: Active)",
    "cloudwatch:PutMetricData": "CloudWatch metrics have no resource ARN (scope it with a cloudwatch:namespace "
                                "condition); Powertools metrics go through EMF logs and need no grant at all",
}

# What SAM attaches to every generated role by itself (not written in the template, so not checked above):
# AWSLambdaBasicExecutionRole (write the function's logs), AWSXrayWriteOnlyAccess (Tracing: Active) and,
# for an SQS event source, AWSLambdaSQSQueueExecutionRole (receive/delete on the polled queue). A template
# that names its own Role or managed policies instead is reported: this test could not check them.
ROLE_PROPERTIES_NOT_ALLOWED = ("Role", "PermissionsBoundary", "FunctionUrlConfig")
IAM_RESOURCE_TYPES = ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::Lambda::Url")
RAW_API_PREFIXES = ("AWS::ApiGateway::", "AWS::ApiGatewayV2::")
SERVERLESS_API_TYPES = ("AWS::Serverless::HttpApi", "AWS::Serverless::Api")
ROUTE_EVENT_TYPES = {"HttpApi": "ServerlessHttpApi", "Api": "ServerlessRestApi"}  # implicit API when no ApiId
PSEUDO_PARAMETER = re.compile(r"^AWS::")
SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


# --- reading intrinsic functions -------------------------------------------------------------------------

def referenced_ids(value: Any) -> set[str]:
    """Logical ids and parameters a value refers to (Ref, Fn::GetAtt, Fn::Sub), pseudo parameters aside."""
    if isinstance(value, list):
        return set().union(*(referenced_ids(item) for item in value)) if value else set()
    if not isinstance(value, dict):
        return set()
    if "Ref" in value:
        return set() if PSEUDO_PARAMETER.match(value["Ref"]) else {value["Ref"]}
    if "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return {target[0] if isinstance(target, list) else str(target).split(".", 1)[0]}
    if "Fn::Sub" in value:
        body, variables = (value["Fn::Sub"], {}) if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"]
        names = {match.split(".", 1)[0] for match in SUB_VARIABLE.findall(body)}
        names = {name for name in names if name not in variables and not PSEUDO_PARAMETER.match(name)}
        return names | referenced_ids(list(variables.values()))
    return referenced_ids(list(value.values()))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- the checker -------------------------------------------------------------------------------------------

@dataclass
class Checker:
    template: dict[str, Any]
    expected: dict[str, Role]
    violations: list[str] = field(default_factory=list)

    @property
    def resources(self) -> dict[str, Any]:
        resources: dict[str, Any] = self.template.get("Resources", {})
        return resources

    def kind_of(self, logical_id: str) -> str:
        if logical_id in self.template.get("Parameters", {}):
            return "parameter"
        return str(self.resources.get(logical_id, {}).get("Type", "unknown"))

    def fail(self, message: str) -> None:
        self.violations.append(message)

    # A grant's target: the one resource of the expected kind it names.
    def target(self, where: str, grant: str, resource: Any) -> str | None:
        # pragma: allowlist nextline secret - grant kinds, not values
        wanted = {"secret": "parameter", "table": "AWS::DynamoDB::Table", "send": "AWS::SQS::Queue"}[grant]
        ids = referenced_ids(resource)
        if len(ids) != 1:
            self.fail(f"{where}: resource {resource!r} must name exactly one resource of the stack")
            return None
        (logical_id,) = ids
        if self.kind_of(logical_id) != wanted:
            self.fail(f"{where}: {grant} grant on {logical_id} ({self.kind_of(logical_id)}), expected a {wanted}")
            return None
        if grant == "secret" and logical_id != SECRET_PARAMETER:
            self.fail(f"{where}: secret access to {logical_id}: only the {SECRET_PARAMETER} parameter is allowed")
            return None
        return logical_id

    def statement_grants(self, where: str, statement: dict[str, Any]) -> set[tuple[str, str]]:
        if statement.get("Effect") != "Allow":
            return set()  # a Deny only narrows
        for widening in ("NotAction", "NotResource", "NotPrincipal"):
            if widening in statement:
                self.fail(f"{where}: {widening} grants everything not listed")
        actions = [str(action) for action in as_list(statement.get("Action", []))]
        resources = as_list(statement.get("Resource", []))
        for action in actions:
            if "*" in action:
                self.fail(f"{where}: wildcard action {action!r}")
        if any(resource == "*" for resource in resources):
            unjustified = [action for action in actions if action not in RESOURCE_STAR_ACTIONS]
            if unjustified:
                self.fail(f'{where}: Resource "*" for {", ".join(unjustified)} (IAM scopes them to a resource)')
            resources = [resource for resource in resources if resource != "*"]
            if not resources:
                return set()
        granted: set[tuple[str, str]] = set()
        for action in actions:
            grant = next((kind for kind, allowed in INLINE_ACTIONS.items() if action in allowed), None)
            if grant is None:
                self.fail(f"{where}: action {action} is not one a dealsync function needs")
                continue
            for resource in resources:
                target = self.target(where, grant, resource)
                if target is not None:
                    granted.add((grant, target))
        return granted

    def policy_grants(self, name: str, policy: Any) -> set[tuple[str, str]]:
        if isinstance(policy, str) or "Ref" in policy or "Fn::Sub" in policy:
            self.fail(f"{name}: managed policy {policy!r} (grants are written in the template, resource by resource)")
            return set()
        if "Statement" in policy:
            granted: set[tuple[str, str]] = set()
            for index, statement in enumerate(as_list(policy["Statement"])):
                granted |= self.statement_grants(f"{name} statement {index}", statement)
            return granted
        granted = set()
        for template_name, parameters in policy.items():
            if template_name not in SAM_POLICY_TEMPLATES:
                self.fail(f"{name}: SAM policy template {template_name} is not one this test knows to be narrow")
                continue
            grant, parameter = SAM_POLICY_TEMPLATES[template_name]
            target = self.target(f"{name} {template_name}", grant, (parameters or {}).get(parameter))
            if target is not None:
                granted.add((grant, target))
        return granted

    def check_function(self, name: str, properties: dict[str, Any]) -> None:
        role = self.expected.get(name)
        if role is None:
            self.fail(f"{name}: a function this test does not know: declare its role in EXPECTED")
            return
        global_properties = self.template.get("Globals", {}).get("Function", {})
        for key in ROLE_PROPERTIES_NOT_ALLOWED:
            if key in properties or key in global_properties:
                self.fail(f"{name}: {key} is set (the generated role and its policies are what this test checks)")
        granted: set[tuple[str, str]] = set()
        for policy in as_list(properties.get("Policies", [])):
            granted |= self.policy_grants(name, policy)
        for kind, target in sorted(granted - role.grants()):
            self.fail(f"{name}: grants {kind} on {target}, which its role does not use")
        for kind, target in sorted(role.grants() - granted):
            self.fail(f"{name}: lacks {kind} on {target}, which its role needs")
        consumed: set[str] = set()
        for event_name, event in properties.get("Events", {}).items():
            event_type = event.get("Type")
            if event_type == "SQS":
                consumed |= referenced_ids(event.get("Properties", {}).get("Queue"))
            elif event_type not in ROUTE_EVENT_TYPES:
                self.fail(f"{name}: event {event_name} of type {event_type} is not a trigger this test knows")
        if consumed != ({role.consumes} if role.consumes else set()):
            self.fail(f"{name}: consumes {sorted(consumed)}, its role consumes {role.consumes}")
        logging_group = referenced_ids(properties.get("LoggingConfig", {}).get("LogGroup"))
        if not logging_group or any(self.kind_of(group) != "AWS::Logs::LogGroup" for group in logging_group):
            self.fail(f"{name}: logs to a default group that never expires: set LoggingConfig.LogGroup "
                      "to a log group of the template")

    def check_routes(self) -> None:
        apis = {name: resource for name, resource in self.resources.items() if resource["Type"] in SERVERLESS_API_TYPES}
        for name, resource in self.resources.items():
            if resource["Type"].startswith(RAW_API_PREFIXES):
                self.fail(f"{name}: {resource['Type']} defines routes outside the function events this test reads")
        for name, api in apis.items():
            api_properties = api.get("Properties", {})
            for key in ("DefinitionBody", "DefinitionUri"):
                if key in api_properties:
                    self.fail(f"{name}: {key} defines routes outside the function events this test reads")
            if name != WEBHOOK_API:
                self.fail(f"{name}: an API other than {WEBHOOK_API}")
        routes: dict[tuple[str, str], bool] = {}  # route -> reachable without an authorizer
        for function_name, function in self.resources.items():
            if function["Type"] != "AWS::Serverless::Function":
                continue
            for event in function.get("Properties", {}).get("Events", {}).values():
                if event.get("Type") not in ROUTE_EVENT_TYPES:
                    continue
                event_properties = event.get("Properties", {})
                api_ids = referenced_ids(event_properties.get("ApiId") or event_properties.get("RestApiId"))
                api_name = next(iter(api_ids), ROUTE_EVENT_TYPES[event["Type"]])
                route = (str(event_properties.get("Method", "ANY")).upper(), str(event_properties.get("Path")))
                if api_name != WEBHOOK_API:
                    self.fail(f"{function_name}: route {route} on {api_name}, not on {WEBHOOK_API}")
                default = apis.get(api_name, {}).get("Properties", {}).get("Auth", {}).get("DefaultAuthorizer")
                authorizer = event_properties.get("Auth", {}).get("Authorizer", default)
                routes[route] = authorizer in (None, "NONE")
                if route in WEBHOOK_ROUTES and route not in self.expected.get(function_name, Role()).routes:
                    self.fail(f"{function_name}: serves {route}, which its role does not")
        if set(routes) != WEBHOOK_ROUTES:
            self.fail(f"routes are {sorted(routes)}; only the webhook routes {sorted(WEBHOOK_ROUTES)} may exist")
        public = {route for route, unauthenticated in routes.items() if unauthenticated}
        for route in sorted(public - WEBHOOK_ROUTES):
            self.fail(f"route {route} has no authorizer (only the signed webhook routes may be public)")

    def check_resource_policies(self) -> None:
        for name, resource in self.resources.items():
            if resource["Type"] in IAM_RESOURCE_TYPES:
                self.fail(f"{name}: {resource['Type']} grants outside the function policies this test reads")
            if resource["Type"] == "AWS::Lambda::Permission":
                principal = resource.get("Properties", {}).get("Principal")
                if principal == "*" or "SourceArn" not in resource.get("Properties", {}):
                    self.fail(f"{name}: invoke permission for {principal!r} without a SourceArn")
            if resource["Type"] != "AWS::SQS::QueuePolicy":
                continue
            properties = resource.get("Properties", {})
            queues = set().union(*(referenced_ids(queue) for queue in as_list(properties.get("Queues", []))))
            for index, statement in enumerate(as_list(properties.get("PolicyDocument", {}).get("Statement", []))):
                where = f"{name} statement {index}"
                if statement.get("Effect") != "Allow":
                    continue
                principal = statement.get("Principal")
                if not isinstance(principal, dict) or set(principal) != {"Service"}:
                    self.fail(f"{where}: principal {principal!r}: only an AWS service may send to a queue")
                if as_list(statement.get("Action")) != ["sqs:SendMessage"]:
                    self.fail(f"{where}: actions {statement.get('Action')!r}, only sqs:SendMessage")
                if referenced_ids(statement.get("Resource")) - queues or statement.get("Resource") == "*":
                    self.fail(f"{where}: resource beyond the policy's own queues")
                if "aws:SourceArn" not in statement.get("Condition", {}).get("ArnEquals", {}):
                    self.fail(f"{where}: no aws:SourceArn condition: any rule of any account could send")

    def check_encryption_and_retention(self) -> None:
        for name, resource in self.resources.items():
            properties = resource.get("Properties", {})
            if resource["Type"] == "AWS::DynamoDB::Table" and properties.get("SSESpecification", {}).get(
                    "SSEEnabled") is not True:
                self.fail(f"{name}: table without SSESpecification.SSEEnabled")
            if resource["Type"] == "AWS::SQS::Queue" and not (
                    properties.get("SqsManagedSseEnabled") is True or properties.get("KmsMasterKeyId")):
                self.fail(f"{name}: queue not encrypted (SqsManagedSseEnabled or KmsMasterKeyId)")
            if resource["Type"] == "AWS::Logs::LogGroup" and not properties.get("RetentionInDays"):
                self.fail(f"{name}: log group without RetentionInDays")
            if resource["Type"] in SERVERLESS_API_TYPES:
                destination = referenced_ids(properties.get("AccessLogSettings", {}).get("DestinationArn"))
                if any(self.kind_of(group) != "AWS::Logs::LogGroup" for group in destination):
                    self.fail(f"{name}: access logs go to a log group outside the template")

    def run(self) -> list[str]:
        functions = {name: resource for name, resource in self.resources.items()
                     if resource["Type"] == "AWS::Serverless::Function"}
        for name, function in functions.items():
            self.check_function(name, function.get("Properties", {}))
        for name in sorted(set(self.expected) - set(functions)):
            self.fail(f"{name}: declared in EXPECTED but not in the template")
        self.check_routes()
        self.check_resource_policies()
        self.check_encryption_and_retention()
        return self.violations


def template_violations(template: dict[str, Any], expected: dict[str, Role] = EXPECTED) -> list[str]:
    return Checker(template, expected).run()


# --- the template as it is --------------------------------------------------------------------------------

def test_template_grants_each_function_only_what_its_role_uses() -> None:
    assert template_violations(load_template()) == []


def test_every_function_of_the_template_is_checked() -> None:
    functions = {name for name, resource in load_template()["Resources"].items()
                 if resource["Type"] == "AWS::Serverless::Function"}
    assert functions == set(EXPECTED)


def test_referenced_ids_reads_the_intrinsic_functions() -> None:
    assert referenced_ids({"Ref": "CrmSecretArn"}) == {"CrmSecretArn"}
    assert referenced_ids({"Ref": "AWS::Region"}) == set()
    assert referenced_ids({"Fn::GetAtt": ["SyncTable", "Arn"]}) == {"SyncTable"}
    assert referenced_ids({"Fn::GetAtt": "RollupQueue.QueueName"}) == {"RollupQueue"}
    assert referenced_ids({"Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:table/${SyncTable}"}) == {
        "SyncTable"}
    assert referenced_ids({"Fn::Sub": ["${Name}/index/*", {"Name": {"Ref": "IdempotencyTable"}}]}) == {
        "IdempotencyTable"}


# --- the checker notices each widening (mutations of the real template) -----------------------------------

def _props(template: dict[str, Any], name: str) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"][name]["Properties"]
    return properties


def _add_policy(name: str, policy: Any) -> Callable[[dict[str, Any]], None]:
    return lambda template: _props(template, name)["Policies"].append(policy)


def _statement(action: Any, resource: Any) -> dict[str, Any]:
    return {"Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]}


def _set(name: str, path: Iterable[str], value: Any) -> Callable[[dict[str, Any]], None]:
    *parents, last = list(path)

    def mutate(template: dict[str, Any]) -> None:
        node = template["Resources"][name]
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return mutate


def _delete(name: str, path: Iterable[str]) -> Callable[[dict[str, Any]], None]:
    *parents, last = list(path)

    def mutate(template: dict[str, Any]) -> None:
        node = template["Resources"][name]
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        del node[last]
    return mutate


def _secret_statement_of(name: str) -> Callable[[dict[str, Any]], None]:
    def mutate(template: dict[str, Any]) -> None:
        for policy in _props(template, name)["Policies"]:
            for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
                if statement["Action"] == "secretsmanager:GetSecretValue":
                    statement["Resource"] = "*"
    return mutate


def _route(path: str, auth: dict[str, Any] | None = None, api: str = WEBHOOK_API) -> Callable[[dict[str, Any]], None]:
    properties: dict[str, Any] = {"ApiId": {"Ref": api}, "Path": path, "Method": "GET"}
    if auth is not None:
        properties["Auth"] = auth
    event = {"Type": "HttpApi", "Properties": properties}
    return _set("HubSpotWebhookFunction", ["Properties", "Events", "Extra"], event)


def _compose(*mutations: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(template: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(template)
    return mutate


def _add_resource(name: str, resource: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda template: template["Resources"].__setitem__(name, resource)


SYNC_TABLE_ARN = {"Fn::GetAtt": ["SyncTable", "Arn"]}
MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "wildcard action": (_add_policy("HsChangeFunction", _statement("dynamodb:*", SYNC_TABLE_ARN)), "wildcard action"),
    "star action": (_add_policy("HsChangeFunction", _statement("*", SYNC_TABLE_ARN)), "wildcard action"),
    "resource star": (_add_policy("SfChangeFunction", _statement("dynamodb:GetItem", "*")), 'Resource "*"'),
    "secret on star": (_secret_statement_of("HubSpotWebhookFunction"), 'Resource "*"'),
    "another secret": (_add_policy("SfChangeFunction", _statement(
        "secretsmanager:GetSecretValue", "arn:aws:secretsmanager:us-east-1:123456789012:secret:other")),
        "must name exactly one resource"),
    "another secret parameter": (_compose(
        lambda template: template["Parameters"].__setitem__("OtherSecretArn", {"Type": "String"}),
        _add_policy("SfChangeFunction", _statement("secretsmanager:GetSecretValue", {"Ref": "OtherSecretArn"}))),
        "only the CrmSecretArn parameter"),
    "global function url": (lambda template: template["Globals"]["Function"].__setitem__(
        "FunctionUrlConfig", {"AuthType": "NONE"}), "FunctionUrlConfig is set"),
    "secret write": (_add_policy("SfChangeFunction", _statement("secretsmanager:PutSecretValue", {
        "Ref": "CrmSecretArn"})), "not one a dealsync function needs"),
    "extra queue": (_add_policy("HsChangeFunction", {"SQSSendMessagePolicy": {
        "QueueName": {"Fn::GetAtt": ["ImportQueue", "QueueName"]}}}), "grants send on ImportQueue"),
    "extra table": (_add_policy("ImportBatchFunction", {"DynamoDBCrudPolicy": {
        "TableName": {"Ref": "IdempotencyTable"}}}), "grants table on IdempotencyTable"),
    "receiver gets the table": (_add_policy("HubSpotWebhookFunction", _statement(
        "dynamodb:GetItem", SYNC_TABLE_ARN)), "grants table on SyncTable"),
    "broad SAM template": (_add_policy("HsChangeFunction", {"AmazonDynamoDBFullAccess": {}}),
                           "not one this test knows"),
    "managed policy": (_add_policy("HsChangeFunction", "AmazonSQSFullAccess"), "managed policy"),
    "missing grant": (_delete("HsChangeFunction", ["Properties", "Policies"]), "lacks send on RollupQueue"),
    "own role": (_set("HsChangeFunction", ["Properties", "Role"], "arn:aws:iam::123456789012:role/admin"),
                 "Role is set"),
    "function url": (_set("HsChangeFunction", ["Properties", "FunctionUrlConfig"], {"AuthType": "NONE"}),
                     "FunctionUrlConfig is set"),
    "other consumer": (_set("HsChangeFunction", ["Properties", "Events", "Changes", "Properties", "Queue"],
                            {"Fn::GetAtt": ["ImportQueue", "Arn"]}), "consumes ['ImportQueue']"),
    "public route": (_route("/admin"), "has no authorizer"),
    "authorized extra route": (_route("/admin", {"Authorizer": "AWS_IAM"}), "only the webhook routes"),
    "implicit api": (_set("HsChangeFunction", ["Properties", "Events", "Open"], {
        "Type": "HttpApi", "Properties": {"Path": "/open", "Method": "GET"}}), "not on WebhookApi"),
    "another api": (_add_resource("AdminApi", {"Type": "AWS::Serverless::HttpApi", "Properties": {}}),
                    "an API other than WebhookApi"),
    "raw api gateway": (_add_resource("RawApi", {"Type": "AWS::ApiGatewayV2::Api", "Properties": {}}),
                        "defines routes outside"),
    "iam role": (_add_resource("ExtraRole", {"Type": "AWS::IAM::Role", "Properties": {}}), "grants outside"),
    "public queue policy": (_set("RollupQueuePolicy", ["Properties", "PolicyDocument", "Statement"], [
        {"Effect": "Allow", "Principal": "*", "Action": "sqs:*", "Resource": {"Fn::GetAtt": ["RollupQueue", "Arn"]}}]),
        "only an AWS service may send"),
    "queue policy without source": (_delete("SalesforceChangesQueuePolicy", [
        "Properties", "PolicyDocument", "Statement", "0", "Condition"]), "no aws:SourceArn"),
    "unencrypted queue": (_delete("RollupDLQ", ["Properties", "SqsManagedSseEnabled"]),
                          "RollupDLQ: queue not encrypted"),
    "unencrypted table": (_delete("IdempotencyTable", ["Properties", "SSESpecification"]),
                          "IdempotencyTable: table without"),
    "log retention": (_delete("SfChangeLogs", ["Properties", "RetentionInDays"]), "SfChangeLogs: log group without"),
    "default log group": (_delete("HsChangeFunction", ["Properties", "LoggingConfig"]), "never expires"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_the_checker_rejects_a_widened_template(mutation: str) -> None:
    mutate, expected_message = MUTATIONS[mutation]
    template = copy.deepcopy(load_template())
    mutate(template)
    violations = template_violations(template)
    assert any(expected_message in violation for violation in violations), violations
