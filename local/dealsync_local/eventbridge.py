"""What EventBridge does between a matched event and a target: the event envelope of a schedule,
pattern matching, and ``Input`` / ``InputPath`` / ``InputTransformer`` rendering."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from moto.events.models import EventPattern

from dealsync_local.template import ACCOUNT_ID, REGION, RuleTarget

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SQS_BATCH_ENTRIES = 10  # SendMessageBatch's limit
_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")
_PATH_TOKEN = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\['([^']+)'\]")


def iso_now(now: dt.datetime | None = None) -> str:
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def scheduled_event(rule_arn: str, *, now: dt.datetime | None = None, region: str = REGION,
                    account_id: str = ACCOUNT_ID) -> dict[str, Any]:
    """The envelope EventBridge builds when a scheduled rule fires."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": iso_now(now),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


def rule_arn(logical_id: str, stack_name: str, *, event_bus_name: str | None = None,
             region: str = REGION, account_id: str = ACCOUNT_ID) -> str:
    name = f"{stack_name}-{logical_id}"
    if event_bus_name and event_bus_name != "default":
        return f"arn:aws:events:{region}:{account_id}:rule/{event_bus_name}/{name}"
    return f"arn:aws:events:{region}:{account_id}:rule/{name}"


def matches(pattern: Mapping[str, Any] | None, event: Mapping[str, Any]) -> bool:
    """EventBridge pattern matching (exact values, prefix, anything-but, exists, numeric, $or, ...)."""
    if not pattern:
        return True
    envelope: Any = dict(event)
    return bool(EventPattern(None, dict(pattern)).matches_event(envelope))


class JsonPathError(ValueError):
    pass


def json_path(document: Any, path: str) -> Any:
    """The subset of JSONPath that EventBridge accepts in ``InputPath`` and ``InputPathsMap``:
    ``$``, ``$.a.b``, ``$.a[0]``, ``$['a-b']``. A missing key gives ``None``."""
    if not path.startswith("$"):
        raise JsonPathError(f"invalid JSON path {path!r}")
    rest = path[1:]
    value = document
    position = 0
    while position < len(rest):
        match = _PATH_TOKEN.match(rest, position)
        if match is None:
            raise JsonPathError(f"invalid JSON path {path!r}")
        position = match.end()
        key, index, quoted = match.groups()
        if index is not None:
            value = value[int(index)] if isinstance(value, list) and int(index) < len(value) else None
        else:
            name = key if key is not None else quoted
            value = value.get(name) if isinstance(value, dict) else None
        if value is None:
            return None
    return value


def render_template(template: str, values: Mapping[str, Any]) -> str:
    """Fill an ``InputTemplate``: outside JSON string literals a placeholder becomes the value's JSON
    (strings quoted); inside a string literal it becomes the raw text, escaped for that string."""
    out: list[str] = []
    in_string = False
    escaped = False
    position = 0
    while position < len(template):
        char = template[position]
        if char == "<":
            match = _PLACEHOLDER.match(template, position)
            if match and match.group(1) in values:
                value = values[match.group(1)]
                if in_string:
                    text = "" if value is None else value if isinstance(value, str) else json.dumps(value)
                    out.append(json.dumps(text)[1:-1])
                else:
                    out.append(json.dumps(value))
                position = match.end()
                continue
        out.append(char)
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        position += 1
    return "".join(out)


def target_input(target: RuleTarget, event: Mapping[str, Any]) -> str:
    """The payload EventBridge delivers to ``target`` for ``event`` (an SQS message body, or the
    JSON of a Lambda event)."""
    if target.input is not None:
        return target.input if isinstance(target.input, str) else json.dumps(target.input)
    if target.input_path is not None:
        return json.dumps(json_path(event, target.input_path))
    if target.input_template is not None:
        values = {name: json_path(event, path) for name, path in target.input_paths_map.items()}
        values.setdefault("aws.events.rule-arn", (event.get("resources") or [None])[0])
        values.setdefault("aws.events.event.ingestion-time", event.get("time"))
        values.setdefault("aws.events.event.json", dict(event))
        return render_template(target.input_template, values)
    return json.dumps(event)


@dataclass(frozen=True)
class Delivery:
    """One event delivered to one target."""

    target_id: str
    target: str  # queue logical id or function logical id
    kind: str  # "sqs" | "lambda"
    message_id: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


class TargetDispatcher:
    """Delivers rendered events to the SQS queues and functions that rules target."""

    def __init__(self, sqs: SQSClient, queues_by_arn: Mapping[str, tuple[str, str]],
                 invoke_function: Callable[[str, Any], Any] | None = None) -> None:
        """``queues_by_arn``: queue ARN → (logical id, queue URL); ``invoke_function(logical_id, event)``."""
        self.sqs = sqs
        self.queues_by_arn = dict(queues_by_arn)
        self.invoke_function = invoke_function

    def deliver(self, target: RuleTarget, event: Mapping[str, Any]) -> Delivery:
        payload = target_input(target, event)
        arn = str(target.arn)
        if arn.startswith("function:"):
            logical_id = arn.removeprefix("function:")
            if self.invoke_function is None:
                return Delivery(target.target_id, logical_id, "lambda", error="no function runtime")
            try:
                self.invoke_function(logical_id, json.loads(payload))
            except Exception as exc:  # the invocation is asynchronous in AWS: report, never raise
                return Delivery(target.target_id, logical_id, "lambda", error=f"{type(exc).__name__}: {exc}")
            return Delivery(target.target_id, logical_id, "lambda")
        if arn in self.queues_by_arn:
            logical_id, url = self.queues_by_arn[arn]
            response = self.sqs.send_message(QueueUrl=url, MessageBody=payload)
            return Delivery(target.target_id, logical_id, "sqs", message_id=response["MessageId"])
        return Delivery(target.target_id, arn, "unsupported", error=f"target {arn} is not local")

    def deliver_many(self, pairs: Sequence[tuple[RuleTarget, Mapping[str, Any]]]) -> list[Delivery]:
        """Several events at once, in order per target: SQS targets get ``SendMessageBatch`` calls of up to 10
        messages (one message per event, as EventBridge delivers them), other targets one call per event."""
        deliveries: list[Delivery | None] = [None] * len(pairs)
        by_queue: dict[str, list[tuple[int, RuleTarget, str]]] = {}
        for index, (target, event) in enumerate(pairs):
            if str(target.arn) in self.queues_by_arn:
                by_queue.setdefault(str(target.arn), []).append((index, target, target_input(target, event)))
            else:
                deliveries[index] = self.deliver(target, event)
        for arn, items in by_queue.items():
            logical_id, url = self.queues_by_arn[arn]
            for start in range(0, len(items), SQS_BATCH_ENTRIES):
                chunk = items[start:start + SQS_BATCH_ENTRIES]
                response = self.sqs.send_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(index), "MessageBody": payload} for index, _, payload in chunk])
                sent = {entry["Id"]: entry["MessageId"] for entry in response.get("Successful", [])}
                failed = {entry["Id"]: entry.get("Message") or entry["Code"] for entry in response.get("Failed", [])}
                for index, target, _ in chunk:
                    deliveries[index] = Delivery(target.target_id, logical_id, "sqs", message_id=sent.get(str(index)),
                                                 error=failed.get(str(index)))
        return [delivery for delivery in deliveries if delivery is not None]
