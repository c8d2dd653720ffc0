"""The e2e session's local world: template.yaml's own resources (tables, queues, rules, schedules, the
HTTP API) plus three test functions from ``fixture_functions/`` in place of the product's handlers,
which their own tests cover:

* ``EchoFunction`` polls ``EchoQueue`` (DLQ ``EchoDLQ`` after 2 receives), reporting partial failures;
* ``HttpEchoFunction`` serves ``/test/...`` routes on the webhook API;
* ``WebhookRecorderFunction`` sits on the two webhook routes and records what the emulators send.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from dealsync_local.log_privacy import log_privacy  # noqa: F401 - the session's logs hold no personal data
from dealsync_local.pytest_fixtures import start_world
from dealsync_local.template import load_template
from dealsync_local.world import LocalWorld

# The package pytest imported this folder as (``tests.e2e`` from the repository root).
PACKAGE = __name__.rpartition(".")[0]
FIXTURE_FUNCTIONS = f"{PACKAGE}.fixture_functions"
E2E_STACK = "dealsync-e2e"
E2E_SECRET = "dealsync/e2e/crm"
DEMO_SEED = 11
DEMO_SIZE = 100


def fixture_module(name: str) -> ModuleType:
    """A test function's module, as the world imported it."""
    return importlib.import_module(f"{FIXTURE_FUNCTIONS}.{name}.app")


def _http_event(path: str, method: str, **extra: Any) -> dict[str, Any]:
    return {"Type": "HttpApi", "Properties": {"ApiId": {"Ref": "WebhookApi"}, "Path": path, "Method": method, **extra}}


def e2e_template() -> dict[str, Any]:
    template = copy.deepcopy(load_template())
    resources: dict[str, Any] = template["Resources"]
    for logical_id in [key for key, value in resources.items() if value["Type"] == "AWS::Serverless::Function"]:
        del resources[logical_id]
    resources["EchoDLQ"] = {"Type": "AWS::SQS::Queue", "Properties": {"MessageRetentionPeriod": 1209600}}
    resources["EchoQueue"] = {"Type": "AWS::SQS::Queue", "Properties": {
        "VisibilityTimeout": 30,
        "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": ["EchoDLQ", "Arn"]}, "maxReceiveCount": 2},
    }}
    resources["EchoFunction"] = {"Type": "AWS::Serverless::Function", "Properties": {
        "CodeUri": "functions/sqs_echo/", "Handler": "app.lambda_handler", "Timeout": 5, "MemorySize": 256,
        "Events": {"Queue": {"Type": "SQS", "Properties": {
            "Queue": {"Fn::GetAtt": ["EchoQueue", "Arn"]}, "BatchSize": 10,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        }}},
    }}
    resources["HttpEchoFunction"] = {"Type": "AWS::Serverless::Function", "Properties": {
        "CodeUri": "functions/http_echo/", "Handler": "app.lambda_handler",
        "Events": {
            "Echo": _http_event("/test/echo", "post"),
            "Plain": _http_event("/test/plain", "get"),
            "Boom": _http_event("/test/boom", "ANY"),
            "Slow": _http_event("/test/slow", "get", TimeoutInMillis=500),
            "Binary": _http_event("/test/binary", "get"),
            "Item": _http_event("/test/items/{id}", "get"),
        },
    }}
    resources["WebhookRecorderFunction"] = {"Type": "AWS::Serverless::Function", "Properties": {
        "CodeUri": "functions/recorder/", "Handler": "app.lambda_handler",
        "Events": {
            "HubSpot": _http_event("/webhooks/hubspot", "POST"),
            "OutboundMessage": _http_event("/webhooks/salesforce/outbound-message", "POST"),
        },
    }}
    return template


MODULE_OVERRIDES = {
    "EchoFunction": f"{FIXTURE_FUNCTIONS}.sqs_echo.app",
    "HttpEchoFunction": f"{FIXTURE_FUNCTIONS}.http_echo.app",
    "WebhookRecorderFunction": f"{FIXTURE_FUNCTIONS}.recorder.app",
}


@pytest.fixture(scope="session")
def e2e_template_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("e2e-template") / "template.yaml"
    path.write_text(yaml.safe_dump(e2e_template(), sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def local_world(tmp_path_factory: pytest.TempPathFactory, e2e_template_path: Path) -> Iterator[LocalWorld]:
    """The e2e world (overrides the generic fixture of ``dealsync_local.pytest_fixtures`` here)."""
    world = start_world(
        tmp_path_factory.mktemp("e2e-state"),
        template_path=e2e_template_path,
        module_overrides=MODULE_OVERRIDES,
        stack_name=E2E_STACK,
        secret_name=E2E_SECRET,
        seed="demo",
        size=DEMO_SIZE,
        demo_seed=DEMO_SEED,
    )
    try:
        yield world
    finally:
        world.stop()
