"""Reads ``template.yaml`` so the local world and the tests create exactly the tables, queues, routes,
schedules and event sources that a deployment would: nothing about them is written down twice.

Two layers:

* plain readers of the template (``load_template``, ``resources_of_type``, ``table_create_kwargs``,
  ``queue_definitions``), unchanged in meaning for the tests that create tables from the template;
* a :class:`Resolver` that evaluates the intrinsic functions (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``,
  ``Fn::If`` and the condition functions) against the local physical names, and typed views of the
  functions (:func:`function_definitions`) and EventBridge rules (:func:`event_rule_definitions`)
  that the local runtime wires up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"
FUNCTIONS_ROOT = PROJECT_ROOT / "functions"

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
STACK_NAME = "dealsync-local"


class TemplateError(ValueError):
    """The template uses something the local world cannot evaluate."""


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that turns CloudFormation short-form tags into their long form."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


@cache
def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return loaded


def resources_of_type(resource_type: str, template: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    template = template if template is not None else load_template()
    return {
        logical_id: resource
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == resource_type
    }


def local_name(logical_id: str, prefix: str) -> str:
    """The physical name a resource gets in the local world (CloudFormation would generate one)."""
    return f"{prefix}-{logical_id}"


def table_create_kwargs(logical_id: str, table_name: str,
                        template: dict[str, Any] | None = None) -> dict[str, Any]:
    """``dynamodb.create_table`` arguments for a table declared in the template."""
    properties = resources_of_type("AWS::DynamoDB::Table", template)[logical_id]["Properties"]
    kwargs: dict[str, Any] = {
        "TableName": table_name,
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if "GlobalSecondaryIndexes" in properties:
        kwargs["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
    if "LocalSecondaryIndexes" in properties:
        kwargs["LocalSecondaryIndexes"] = properties["LocalSecondaryIndexes"]
    if "StreamSpecification" in properties:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, **properties["StreamSpecification"]}
    return kwargs


def table_ttl_attribute(logical_id: str, template: dict[str, Any] | None = None) -> str | None:
    """The TTL attribute of a table, when its TimeToLiveSpecification is enabled."""
    properties = resources_of_type("AWS::DynamoDB::Table", template)[logical_id].get("Properties", {})
    spec = properties.get("TimeToLiveSpecification") or {}
    if spec.get("Enabled") in (True, "true", "True"):
        return str(spec["AttributeName"])
    return None


@dataclass(frozen=True)
class QueueDefinition:
    logical_id: str
    attributes: dict[str, str]
    dead_letter_logical_id: str | None
    max_receive_count: int | None
    fifo: bool = False


def queue_definitions(template: dict[str, Any] | None = None) -> list[QueueDefinition]:
    """Queues in creation order: dead-letter queues before the queues that redrive into them."""
    definitions: list[QueueDefinition] = []
    for logical_id, resource in resources_of_type("AWS::SQS::Queue", template).items():
        properties = resource.get("Properties", {})
        attributes = {
            key: str(properties[key])
            for key in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds")
            if key in properties
        }
        fifo = properties.get("FifoQueue") in (True, "true", "True")
        if fifo:
            attributes["FifoQueue"] = "true"
            if properties.get("ContentBasedDeduplication") in (True, "true", "True"):
                attributes["ContentBasedDeduplication"] = "true"
        redrive = properties.get("RedrivePolicy")
        dead_letter = None
        max_receive = None
        if redrive:
            dead_letter = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
            max_receive = int(redrive["maxReceiveCount"])
        definitions.append(QueueDefinition(logical_id, attributes, dead_letter, max_receive, fifo))
    definitions.sort(key=lambda definition: definition.dead_letter_logical_id is not None)
    return definitions


# --- evaluating intrinsic functions against the local world ------------------------------------

_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class Resolver:
    """Evaluates CloudFormation intrinsic functions with local values.

    ``refs`` maps a logical id to what ``!Ref`` returns for it (table name, queue URL, ...);
    ``attributes`` maps ``(logical id, attribute)`` to what ``!GetAtt`` returns. Parameters take their
    template default unless overridden in ``parameters``.
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        parameters: Mapping[str, str] | None = None,
        refs: Mapping[str, str] | None = None,
        attributes: Mapping[tuple[str, str], str] | None = None,
        region: str = REGION,
        account_id: str = ACCOUNT_ID,
        stack_name: str = STACK_NAME,
    ) -> None:
        self.template = template
        self.region = region
        self.account_id = account_id
        self.stack_name = stack_name
        self.parameters: dict[str, str] = {}
        for name, declaration in (template.get("Parameters") or {}).items():
            if "Default" in declaration:
                default = declaration["Default"]
                self.parameters[name] = (
                    ",".join(str(item) for item in default) if isinstance(default, list) else str(default)
                )
        self.parameters.update(parameters or {})
        self.refs = dict(refs or {})
        self.attributes = dict(attributes or {})
        self._conditions: dict[str, bool] = {}

    @property
    def pseudo_parameters(self) -> dict[str, str]:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/local",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::Partition": "aws",
        }

    def ref(self, name: str) -> str:
        if name in self.parameters:
            return self.parameters[name]
        pseudo = self.pseudo_parameters
        if name in pseudo:
            return pseudo[name]
        if name in self.refs:
            return self.refs[name]
        if name in (self.template.get("Parameters") or {}):
            raise TemplateError(f"parameter {name} has no default and no local value")
        if name in (self.template.get("Resources") or {}):
            return local_name(name, self.stack_name)
        raise TemplateError(f"!Ref to unknown name {name}")

    def get_att(self, logical_id: str, attribute: str) -> str:
        try:
            return self.attributes[(logical_id, attribute)]
        except KeyError:
            raise TemplateError(f"!GetAtt {logical_id}.{attribute} has no local value") from None

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            conditions = self.template.get("Conditions") or {}
            if name not in conditions:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = bool(self.resolve(conditions[name]))
        return self._conditions[name]

    def is_enabled(self, resource: Mapping[str, Any]) -> bool:
        """Whether a resource exists under the local parameter values (its ``Condition``)."""
        condition = resource.get("Condition")
        return True if condition is None else self.condition(str(condition))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), = value.items()
            if key == "Ref":
                return self.ref(str(argument))
            if key == "Fn::GetAtt":
                parts = argument if isinstance(argument, list) else str(argument).split(".", 1)
                return self.get_att(str(parts[0]), str(self.resolve(parts[1])))
            if key == "Fn::Sub":
                return self._sub(argument)
            if key == "Fn::Join":
                delimiter, items = argument
                return str(delimiter).join(str(item) for item in self.resolve(items))
            if key == "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                delimiter, text = argument
                return str(self.resolve(text)).split(str(delimiter))
            if key == "Fn::If":
                name, when_true, when_false = argument
                return self.resolve(when_true if self.condition(str(name)) else when_false)
            if key == "Fn::Equals":
                left, right = (self.resolve(item) for item in argument)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.resolve(argument[0])
            if key == "Fn::And":
                return all(self.resolve(item) for item in argument)
            if key == "Fn::Or":
                return any(self.resolve(item) for item in argument)
            if key == "Condition":
                return self.condition(str(argument))
            if key.startswith("Fn::"):
                raise TemplateError(f"{key} is not supported by the local world")
        return {key: self.resolve(item) for key, item in value.items()}

    def _sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = str(argument[0]), {k: self.resolve(v) for k, v in argument[1].items()}
        else:
            text, variables = str(argument), {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            return self.ref(name)

        return _SUB_VARIABLE.sub(replace, text).replace("${!", "${")


# --- functions and their event sources ----------------------------------------------------------

@dataclass(frozen=True)
class SqsEventSource:
    event_name: str
    queue: Any  # as written in the template (usually {"Fn::GetAtt": [QueueLogicalId, "Arn"]})
    batch_size: int = 10
    batching_window_seconds: int = 0
    report_batch_item_failures: bool = False
    enabled: bool = True
    maximum_concurrency: int | None = None

    @property
    def queue_logical_id(self) -> str | None:
        """The queue's logical id when the source names it with ``!GetAtt X.Arn``."""
        if isinstance(self.queue, dict) and "Fn::GetAtt" in self.queue:
            return str(self.queue["Fn::GetAtt"][0])
        return None


@dataclass(frozen=True)
class HttpApiRoute:
    event_name: str
    method: str  # upper case, or ANY
    path: str
    api_logical_id: str | None
    timeout_seconds: float = 30.0
    payload_format_version: str = "2.0"

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class FunctionSchedule:
    event_name: str
    kind: str  # "Schedule" (EventBridge rule) or "ScheduleV2" (EventBridge Scheduler)
    expression: str
    input: str | None
    enabled: bool = True


@dataclass(frozen=True)
class FunctionEventRule:
    event_name: str
    pattern: dict[str, Any]
    target: RuleTarget
    event_bus_name: Any = None  # as written in the template; None is the default bus


@dataclass(frozen=True)
class FunctionDefinition:
    logical_id: str
    code_uri: str
    handler: str
    module: str  # importable module name, e.g. "sf_change.app"
    attribute: str  # the handler function in that module, e.g. "lambda_handler"
    timeout_seconds: int
    memory_size: int
    environment: dict[str, Any]  # Globals + function variables, unresolved
    sqs_sources: tuple[SqsEventSource, ...] = ()
    http_routes: tuple[HttpApiRoute, ...] = ()
    schedules: tuple[FunctionSchedule, ...] = ()
    event_rules: tuple[FunctionEventRule, ...] = ()
    functions_dir: Path | None = field(default=None, compare=False)

    @property
    def directory_name(self) -> str:
        """The function's folder (``sf_change`` for ``CodeUri: functions/sf_change/``)."""
        name = PurePosixPath(self.code_uri.rstrip("/")).name
        return name or self.module.split(".", 1)[0]

    @property
    def function_name(self) -> str:
        return local_name(self.logical_id, STACK_NAME)


def _truthy(value: Any, default: bool = True) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "disabled", "0", "no")
    return bool(value)


def module_for(code_uri: str, handler: str, functions_root: str = "functions") -> tuple[str, str]:
    """``(module, attribute)`` for ``CodeUri``/``Handler``: ``functions/sf_change/`` with
    ``app.lambda_handler`` is ``("sf_change.app", "lambda_handler")`` (``functions`` is an import root)."""
    path = PurePosixPath(code_uri.rstrip("/"))
    parts = path.parts
    if functions_root in parts:
        parts = parts[parts.index(functions_root) + 1:]
    elif parts:
        parts = parts[-1:]
    module_path, _, attribute = handler.rpartition(".")
    if not module_path or not attribute:
        raise TemplateError(f"handler {handler!r} is not of the form module.function")
    module_parts = [*parts, *module_path.replace("/", ".").split(".")]
    return ".".join(part for part in module_parts if part), attribute


def _globals(template: Mapping[str, Any]) -> dict[str, Any]:
    return dict((template.get("Globals") or {}).get("Function") or {})


def global_environment(template: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``Globals.Function.Environment.Variables``, unresolved."""
    template = template if template is not None else load_template()
    return dict(((_globals(template).get("Environment") or {}).get("Variables")) or {})


def function_definitions(
    template: Mapping[str, Any] | None = None,
    *,
    resolver: Resolver | None = None,
    module_overrides: Mapping[str, str] | None = None,
) -> dict[str, FunctionDefinition]:
    """Every ``AWS::Serverless::Function`` (whose condition holds), keyed by logical id.

    ``module_overrides`` maps a logical id to ``"module"`` or ``"module:function"`` to import the
    handler from somewhere else than ``functions/<dir>/`` (tests use it for fixture functions).
    """
    template = template if template is not None else load_template()
    overrides = dict(module_overrides or {})
    globals_ = _globals(template)
    result: dict[str, FunctionDefinition] = {}
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        if resolver is not None and not resolver.is_enabled(resource):
            continue
        properties = {**globals_, **(resource.get("Properties") or {})}
        code_uri = str(properties.get("CodeUri", ""))
        handler = str(properties.get("Handler", "app.lambda_handler"))
        if logical_id in overrides:
            module, _, attribute = overrides[logical_id].partition(":")
            attribute = attribute or handler.rpartition(".")[2]
        else:
            module, attribute = module_for(code_uri, handler)
        environment = {
            **global_environment(template),
            **(((resource.get("Properties") or {}).get("Environment") or {}).get("Variables") or {}),
        }
        sqs: list[SqsEventSource] = []
        http: list[HttpApiRoute] = []
        schedules: list[FunctionSchedule] = []
        rules: list[FunctionEventRule] = []
        for event_name, event in (properties.get("Events") or {}).items():
            kind = event.get("Type")
            props = event.get("Properties") or {}
            if kind == "SQS":
                scaling = props.get("ScalingConfig") or {}
                sqs.append(SqsEventSource(
                    event_name=event_name,
                    queue=props["Queue"],
                    batch_size=int(props.get("BatchSize", 10)),
                    batching_window_seconds=int(props.get("MaximumBatchingWindowInSeconds", 0)),
                    report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                    enabled=_truthy(props.get("Enabled")),
                    maximum_concurrency=int(scaling["MaximumConcurrency"]) if "MaximumConcurrency" in scaling else None,
                ))
            elif kind == "HttpApi":
                api = props.get("ApiId")
                api_id = str(api["Ref"]) if isinstance(api, dict) and "Ref" in api else None
                http.append(HttpApiRoute(
                    event_name=event_name,
                    method=str(props.get("Method", "ANY")).upper(),
                    path=str(props.get("Path", "$default")),
                    api_logical_id=api_id,
                    timeout_seconds=min(int(props.get("TimeoutInMillis", 30000)), 30000) / 1000.0,
                    payload_format_version=str(props.get("PayloadFormatVersion", "2.0")),
                ))
            elif kind in ("Schedule", "ScheduleV2"):
                expression = props.get("Schedule") if kind == "Schedule" else props.get("ScheduleExpression")
                enabled = _truthy(props.get("Enabled")) and _truthy(props.get("State"))
                schedules.append(FunctionSchedule(
                    event_name=event_name,
                    kind=kind,
                    expression=str(resolver.resolve(expression) if resolver else expression),
                    input=props.get("Input"),
                    enabled=enabled,
                ))
            elif kind in ("EventBridgeRule", "CloudWatchEvent"):
                rules.append(FunctionEventRule(
                    event_name=event_name,
                    pattern=dict(props.get("Pattern") or {}),
                    event_bus_name=props.get("EventBusName"),
                    target=RuleTarget(
                        target_id=event_name,
                        arn=f"function:{logical_id}",
                        input=props.get("Input"),
                        input_path=props.get("InputPath"),
                        input_paths_map=dict((props.get("InputTransformer") or {}).get("InputPathsMap") or {}),
                        input_template=(props.get("InputTransformer") or {}).get("InputTemplate"),
                    ),
                ))
        result[logical_id] = FunctionDefinition(
            logical_id=logical_id,
            code_uri=code_uri,
            handler=handler,
            module=module,
            attribute=attribute,
            timeout_seconds=int(properties.get("Timeout", 3)),
            memory_size=int(properties.get("MemorySize", 128)),
            environment=environment,
            sqs_sources=tuple(sqs),
            http_routes=tuple(http),
            schedules=tuple(schedules),
            event_rules=tuple(rules),
        )
    return result


# --- EventBridge rules ------------------------------------------------------------------------

@dataclass(frozen=True)
class RuleTarget:
    target_id: str
    arn: Any  # resolved ARN (``arn:aws:sqs:...``) or ``function:<LogicalId>`` for SAM function events
    input: str | None = None
    input_path: str | None = None
    input_paths_map: dict[str, str] = field(default_factory=dict)
    input_template: str | None = None

    @property
    def has_transformer(self) -> bool:
        return self.input_template is not None


@dataclass(frozen=True)
class EventRuleDefinition:
    logical_id: str
    schedule_expression: str | None
    event_pattern: dict[str, Any] | None
    event_bus_name: str | None
    targets: tuple[RuleTarget, ...]
    enabled: bool = True
    description: str = ""


def event_rule_definitions(template: Mapping[str, Any] | None = None, *,
                           resolver: Resolver) -> dict[str, EventRuleDefinition]:
    """Every ``AWS::Events::Rule`` whose condition holds under the resolver's parameters."""
    template = template if template is not None else load_template()
    rules: dict[str, EventRuleDefinition] = {}
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") != "AWS::Events::Rule" or not resolver.is_enabled(resource):
            continue
        properties = resource.get("Properties") or {}
        targets = []
        for target in properties.get("Targets") or []:
            transformer = target.get("InputTransformer") or {}
            targets.append(RuleTarget(
                target_id=str(target.get("Id", "")),
                arn=resolver.resolve(target["Arn"]),
                input=resolver.resolve(target["Input"]) if "Input" in target else None,
                input_path=target.get("InputPath"),
                input_paths_map=dict(transformer.get("InputPathsMap") or {}),
                input_template=(
                    resolver.resolve(transformer["InputTemplate"]) if "InputTemplate" in transformer else None
                ),
            ))
        expression = properties.get("ScheduleExpression")
        pattern = properties.get("EventPattern")
        bus = properties.get("EventBusName")
        rules[logical_id] = EventRuleDefinition(
            logical_id=logical_id,
            schedule_expression=str(resolver.resolve(expression)) if expression is not None else None,
            event_pattern=dict(resolver.resolve(pattern)) if pattern is not None else None,
            event_bus_name=str(resolver.resolve(bus)) if bus is not None else None,
            targets=tuple(targets),
            enabled=str(properties.get("State", "ENABLED")).upper() == "ENABLED",
            description=str(properties.get("Description", "")),
        )
    return rules
