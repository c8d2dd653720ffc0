"""The local runtime's pure parts: schedule expressions, EventBridge input rendering and patterns, the
template resolver and function discovery, batch-failure rules, API Gateway response mapping."""

from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Any

import pytest

from dealsync_local.eventbridge import json_path, matches, render_template, scheduled_event, target_input
from dealsync_local.httpapi import Route, is_text_content_type, to_http_response
from dealsync_local.invoke import Invocation, LocalFunction
from dealsync_local.pollers import failed_message_ids, sqs_record
from dealsync_local.scheduler import (
    CronExpression,
    ScheduledJob,
    ScheduleExpressionError,
    Scheduler,
    rate_seconds,
)
from dealsync_local.template import (
    Resolver,
    RuleTarget,
    event_rule_definitions,
    function_definitions,
    load_template,
    module_for,
)

UTC = dt.UTC


# --- schedules ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "seconds"), [
    ("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(1 hour)", 3600), ("rate(2 days)", 172800),
])
def test_rate_expressions(expression: str, seconds: int) -> None:
    assert rate_seconds(expression) == seconds


@pytest.mark.parametrize(("expression", "after", "expected"), [
    ("cron(17 3 * * ? *)", dt.datetime(2026, 11, 27, 14, 0, tzinfo=UTC), dt.datetime(2026, 11, 28, 3, 17, tzinfo=UTC)),
    ("cron(17 3 * * ? *)", dt.datetime(2026, 11, 27, 3, 0, tzinfo=UTC), dt.datetime(2026, 11, 27, 3, 17, tzinfo=UTC)),
    ("cron(0/15 9-17 ? * MON-FRI *)", dt.datetime(2026, 11, 28, 14, 0, tzinfo=UTC),  # a Saturday
     dt.datetime(2026, 11, 30, 9, 0, tzinfo=UTC)),
    ("cron(0 10 ? * 6L 2027)", dt.datetime(2026, 11, 27, tzinfo=UTC), dt.datetime(2027, 1, 29, 10, 0, tzinfo=UTC)),
    ("cron(0 10 ? * 2#1 *)", dt.datetime(2026, 11, 27, tzinfo=UTC), dt.datetime(2026, 12, 7, 10, 0, tzinfo=UTC)),
    ("cron(0 10 L * ? *)", dt.datetime(2026, 11, 27, tzinfo=UTC), dt.datetime(2026, 11, 30, 10, 0, tzinfo=UTC)),
    ("cron(0 10 15W * ? *)", dt.datetime(2026, 11, 27, tzinfo=UTC), dt.datetime(2026, 12, 15, 10, 0, tzinfo=UTC)),
    ("cron(30 12 1 JAN,JUL ? *)", dt.datetime(2026, 2, 1, tzinfo=UTC), dt.datetime(2026, 7, 1, 12, 30, tzinfo=UTC)),
])
def test_cron_next_fire_time(expression: str, after: dt.datetime, expected: dt.datetime) -> None:
    assert CronExpression.parse(expression).next_after(after) == expected


@pytest.mark.parametrize("expression", [
    "cron(0 10 * * *)", "cron(0 10 * * * *)", "cron(0 10 ? * ? *)", "cron(61 10 * * ? *)", "at(2026-01-01T00:00:00)",
])
def test_bad_schedule_expressions_are_refused(expression: str) -> None:
    with pytest.raises(ScheduleExpressionError):
        ScheduledJob("x", expression, fire=lambda when: None)


def test_scheduler_fires_rate_jobs_on_the_override_interval_and_on_demand() -> None:
    fired: list[dt.datetime] = []
    done = threading.Event()

    def fire(when: dt.datetime) -> str:
        fired.append(when)
        if len(fired) >= 2:
            done.set()
        return "ok"

    scheduler = Scheduler([ScheduledJob("Poll", "rate(5 minutes)", fire=fire, interval_override=0.1),
                           ScheduledJob("Nightly", "cron(17 3 * * ? *)", fire=fire, enabled=False)]).start()
    try:
        assert done.wait(5)
        assert scheduler.run_now("Nightly") == "ok"  # a disabled job still runs on demand
        assert scheduler.jobs["Nightly"].next_run is None
    finally:
        scheduler.stop()
    assert scheduler.thread is not None and not scheduler.thread.is_alive()


# --- EventBridge -------------------------------------------------------------------------------------

def test_input_transformer_renders_values_as_json_outside_strings_and_raw_inside() -> None:
    event = scheduled_event("arn:aws:events:us-east-1:123456789012:rule/x",
                            now=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    target = RuleTarget("t", "arn", input_paths_map={"time": "$.time", "id": "$.id", "missing": "$.detail.nope"},
                        input_template='{"time": <time>, "text": "at <time>", "id": <id>, "gone": <missing>}')
    rendered = json.loads(target_input(target, event))
    assert rendered == {"time": "2026-01-02T03:04:05Z", "text": "at 2026-01-02T03:04:05Z", "id": event["id"],
                        "gone": None}
    assert json.loads(target_input(RuleTarget("t", "arn"), event)) == event
    assert json.loads(target_input(RuleTarget("t", "arn", input='{"fixed": 1}'), event)) == {"fixed": 1}
    assert json.loads(target_input(RuleTarget("t", "arn", input_path="$.detail"), event)) == {}
    assert render_template('"<a>"', {"a": 'say "hi"'}) == '"say \\"hi\\""'


def test_json_path_and_patterns() -> None:
    document = {"a": {"b": [{"c": 1}]}, "d-e": 2}
    assert json_path(document, "$.a.b[0].c") == 1
    assert json_path(document, "$['d-e']") == 2
    assert json_path(document, "$.x.y") is None
    pattern = {"detail-type": ["OpportunityChangeEvent"], "detail": {"payload": {"ChangeEventHeader": {
        "changeType": [{"anything-but": "GAP_OVERFLOW"}]}}}}
    header = {"changeType": "UPDATE"}
    event = {"detail-type": "OpportunityChangeEvent", "detail": {"payload": {"ChangeEventHeader": header}}}
    assert matches(pattern, event)
    assert not matches(pattern, {**event, "detail-type": "LeadChangeEvent"})


# --- the template -------------------------------------------------------------------------------------

def test_resolver_evaluates_intrinsics_with_local_values() -> None:
    template = load_template()
    resolver = Resolver(template, parameters={"CrmSecretArn": "dealsync/local/crm",
                                              "SalesforcePartnerEventBusName": "aws.partner/salesforce.com/x/y"},
                        refs={"SyncTable": "dealsync-local-SyncTable"},
                        attributes={("SalesforceChangesQueue", "Arn"): "arn:q", ("RollupQueue", "Arn"): "arn:r"})
    assert resolver.resolve({"Ref": "SyncTable"}) == "dealsync-local-SyncTable"
    assert resolver.resolve({"Ref": "LogLevel"}) == "INFO"
    assert resolver.resolve({"Fn::Sub": "${AWS::StackName}-common"}) == "dealsync-local-common"
    assert resolver.resolve({"Fn::GetAtt": ["SalesforceChangesQueue", "Arn"]}) == "arn:q"
    assert resolver.condition("HasPartnerEventBus") is True
    assert Resolver(template, parameters={"CrmSecretArn": "x"}).condition("HasPartnerEventBus") is False

    rules = event_rule_definitions(template, resolver=resolver)
    assert rules["SalesforceChangeEventsRule"].event_bus_name == "aws.partner/salesforce.com/x/y"
    assert rules["SalesforcePollSchedule"].schedule_expression == "rate(5 minutes)"
    assert rules["RollupRecomputeSchedule"].targets[0].input_paths_map == {"time": "$.time", "id": "$.id"}


def test_functions_are_discovered_from_the_template() -> None:
    assert module_for("functions/sf_change/", "app.lambda_handler") == ("sf_change.app", "lambda_handler")
    assert module_for("src/receiver", "handlers/main.handle") == ("receiver.handlers.main", "handle")
    template: dict[str, Any] = {
        "Globals": {"Function": {"Timeout": 30, "MemorySize": 256, "Environment": {"Variables": {"A": "1"}}}},
        "Resources": {
            "Queue": {"Type": "AWS::SQS::Queue"},
            "Worker": {"Type": "AWS::Serverless::Function", "Properties": {
                "CodeUri": "functions/worker/", "Handler": "app.lambda_handler", "Timeout": 60,
                "Environment": {"Variables": {"B": "2"}},
                "Events": {
                    "Jobs": {"Type": "SQS", "Properties": {"Queue": {"Fn::GetAtt": ["Queue", "Arn"]}, "BatchSize": 50,
                                                          "MaximumBatchingWindowInSeconds": 2,
                                                          "FunctionResponseTypes": ["ReportBatchItemFailures"]}},
                    "Hook": {"Type": "HttpApi", "Properties": {"Path": "/hook/{id}", "Method": "post"}},
                    "Nightly": {"Type": "Schedule", "Properties": {"Schedule": "cron(0 1 * * ? *)"}},
                },
            }},
        },
    }
    worker = function_definitions(template, module_overrides={})["Worker"]
    assert (worker.module, worker.attribute, worker.timeout_seconds, worker.memory_size) == (
        "worker.app", "lambda_handler", 60, 256)
    assert worker.environment == {"A": "1", "B": "2"}
    source = worker.sqs_sources[0]
    assert (source.queue_logical_id, source.batch_size, source.batching_window_seconds,
            source.report_batch_item_failures) == ("Queue", 50, 2, True)
    assert worker.http_routes[0].route_key == "POST /hook/{id}"
    assert worker.schedules[0].expression == "cron(0 1 * * ? *)"
    overridden = function_definitions(template, module_overrides={"Worker": "tests.fake:handle"})["Worker"]
    assert (overridden.module, overridden.attribute, overridden.directory_name) == ("tests.fake", "handle", "worker")


# --- pollers and the HTTP API ------------------------------------------------------------------------

def test_batch_item_failure_rules() -> None:
    ids = ["a", "b", "c"]

    def outcome(result: Any = None, error: BaseException | None = None) -> Invocation:
        return Invocation("F", "r", result=result, error=error)

    assert failed_message_ids(outcome({"batchItemFailures": [{"itemIdentifier": "b"}]}), ids, True) == {"b"}
    assert failed_message_ids(outcome({"batchItemFailures": []}), ids, True) == set()
    assert failed_message_ids(outcome(None), ids, True) == set()
    assert failed_message_ids(outcome({}), ids, True) == set()
    assert failed_message_ids(outcome({"batchItemFailures": [{"itemIdentifier": "zzz"}]}), ids, True) == set(ids)
    assert failed_message_ids(outcome({"batchItemFailures": [{"itemIdentifier": ""}]}), ids, True) == set(ids)
    assert failed_message_ids(outcome({"batchItemFailures": [{"id": "b"}]}), ids, True) == set(ids)
    assert failed_message_ids(outcome("nope"), ids, True) == set(ids)
    assert failed_message_ids(outcome(error=RuntimeError()), ids, True) == set(ids)
    # without ReportBatchItemFailures the response is ignored: success unless the handler raised
    assert failed_message_ids(outcome({"batchItemFailures": [{"itemIdentifier": "b"}]}), ids, False) == set()


def test_sqs_record_shape() -> None:
    record = sqs_record({"MessageId": "m", "ReceiptHandle": "r", "Body": "b", "MD5OfBody": "x",
                         "Attributes": {"ApproximateReceiveCount": "1"},
                         "MessageAttributes": {"bin": {"DataType": "Binary", "BinaryValue": b"\x01"}}},
                        "arn:aws:sqs:us-east-1:123456789012:q")
    assert list(record) == ["messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody",
                            "eventSource", "eventSourceARN", "awsRegion"]
    assert record["messageAttributes"]["bin"] == {"binaryValue": "AQ==", "stringListValues": [],
                                                  "binaryListValues": [], "dataType": "Binary"}


def test_api_gateway_response_mapping() -> None:
    response = to_http_response({"statusCode": 302, "headers": {"Location": "/x"}, "cookies": ["a=1", "b=2"]})
    assert response.status_code == 302
    assert response.headers.getlist("Set-Cookie") == ["a=1", "b=2"]
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    plain = to_http_response(["any", "json"])
    assert (plain.status_code, plain.mimetype, plain.get_data()) == (200, "application/json", b'["any", "json"]')
    with pytest.raises(TypeError):
        to_http_response({"statusCode": 200, "body": {"not": "a string"}})
    assert is_text_content_type("application/json; charset=utf-8")
    assert is_text_content_type("application/vnd.api+json")
    assert is_text_content_type("text/xml")
    assert not is_text_content_type("application/x-www-form-urlencoded")
    assert not is_text_content_type(None)


def test_route_priority_follows_api_gateway() -> None:
    function: Any = LocalFunction.__new__(LocalFunction)
    routes = sorted([Route("ANY", "/{proxy+}", function), Route("GET", "/items/{id}", function),
                     Route("GET", "/items/special", function), Route("ANY", "$default", function),
                     Route("ANY", "/items/special", function)], key=lambda route: route.priority)
    assert [route.route_key for route in routes] == [
        "GET /items/special", "ANY /items/special", "GET /items/{id}", "ANY /{proxy+}", "$default"]
    assert routes[2].match("GET", "/items/42") == {"id": "42"}
    assert routes[3].match("POST", "/a/b/c") == {"proxy": "a/b/c"}
    assert routes[2].match("POST", "/items/42") is None
