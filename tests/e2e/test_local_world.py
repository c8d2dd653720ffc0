"""The local world end to end: files it writes, the real clients against each endpoint, the HTTP API,
SQS pollers with partial failures and redrive, schedules, the Event Relay sink, the CRM emulators'
notifications, demo data, the CLI, and a clean stop."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests
from hubspot import HubSpot
from simple_salesforce.api import Salesforce

from dealsync_cli.endpoints import WorldNotRunningError, load_endpoints
from dealsync_cli.main import main as cli_main
from dealsync_local.demo import RECORD_TYPES, generate
from dealsync_local.invoke import FunctionLoadError
from dealsync_local.pytest_fixtures import start_world
from dealsync_local.template import load_template, queue_definitions, resources_of_type
from dealsync_local.world import LocalWorld, WorldStartError

from .conftest import DEMO_SIZE, E2E_SECRET, E2E_STACK, fixture_module

pytestmark = pytest.mark.e2e

PROJECT_ROOT = Path(__file__).resolve().parents[2]


# --- helpers ---------------------------------------------------------------------------------------

def wait_for[T](probe: Callable[[], T | None], timeout: float = 15.0, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def drain_queue(world: LocalWorld, logical_id: str, *, wait: int = 0) -> list[dict[str, Any]]:
    """Receive and delete every visible message of a queue (no poller consumes it)."""
    sqs = world.sqs()
    url = world.queue_url(logical_id)
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait).get("Messages", [])
        if not batch:
            return messages
        for message in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            messages.append(dict(message))
        wait = 0


def salesforce_client(world: LocalWorld, *, person: bool = False) -> Salesforce:
    endpoints = world.endpoints
    assert endpoints is not None
    session = requests.Session()
    session.verify = endpoints.salesforce.ca_file
    session.trust_env = False  # this machine exports REQUESTS_CA_BUNDLE, which would override verify
    token = endpoints.salesforce.user_access_token if person else endpoints.salesforce.access_token
    return Salesforce(instance_url=endpoints.salesforce.instance_url, session_id=token, session=session,
                      version=endpoints.salesforce.api_version)


def hubspot_client(world: LocalWorld, *, person: bool = False) -> HubSpot:
    endpoints = world.endpoints
    assert endpoints is not None
    token = endpoints.hubspot.user_access_token if person else endpoints.hubspot.access_token
    return HubSpot(access_token=token, host=endpoints.hubspot.base_url, ssl_ca_cert=endpoints.hubspot.ca_file)


def port_is_free(port: int) -> bool:
    """Whether a new server could listen on the port now. With SO_REUSEADDR, as every server here binds:
    a connection the stopped server closed may linger in TIME_WAIT for a minute (whether it does depends
    on timing), but only a socket still listening makes the bind fail."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def api_request(world: LocalWorld, method: str, path: str, body: bytes | None = None,
                headers: list[tuple[str, str]] | None = None) -> tuple[int, dict[str, list[str]], bytes]:
    """A raw HTTP request (duplicate headers allowed) to the world's HTTP API."""
    assert world.api is not None
    connection = http.client.HTTPConnection("127.0.0.1", world.api.port, timeout=10)
    connection.putrequest(method, path, skip_host=any(name.lower() == "host" for name, _ in headers or []))
    for name, value in headers or []:
        connection.putheader(name, value)
    if body is not None:
        connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    received: dict[str, list[str]] = {}
    for name, value in response.getheaders():
        received.setdefault(name.lower(), []).append(value)
    data = response.read()
    connection.close()
    return response.status, received, data


# --- files and endpoints ---------------------------------------------------------------------------

def test_endpoints_json_describes_the_running_world(local_world: LocalWorld) -> None:
    raw = json.loads((local_world.state_dir / "endpoints.json").read_text())
    for key in ("instance_url", "access_token", "user_access_token", "ca_file", "org_id"):
        assert raw["salesforce"][key]
    for key in ("base_url", "access_token", "user_access_token", "ca_file", "app_id", "client_secret", "portal_id"):
        assert raw["hubspot"][key]
    assert raw["aws"] == {"endpoint_url": local_world.aws.endpoint_url if local_world.aws else "",
                          "region": "us-east-1", "access_key_id": "testing", "secret_access_key": "testing"}
    assert raw["api"]["base_url"].startswith("http://127.0.0.1:")
    assert raw["salesforce"]["instance_url"].startswith("https://127.0.0.1:")
    assert raw["hubspot"]["base_url"].startswith("https://127.0.0.1:")
    assert Path(raw["salesforce"]["ca_file"]).read_text().startswith("-----BEGIN CERTIFICATE-----")

    endpoints = load_endpoints(local_world.state_dir)
    assert endpoints == local_world.endpoints
    assert endpoints.resources.tables == {"SyncTable": f"{E2E_STACK}-SyncTable",
                                          "IdempotencyTable": f"{E2E_STACK}-IdempotencyTable"}
    assert endpoints.resources.dead_letter_queues["SalesforceChangesQueue"] == "SalesforceChangesDLQ"
    assert endpoints.resources.secret_id == E2E_SECRET
    assert endpoints.resources.functions["EchoFunction"].endswith("fixture_functions.sqs_echo.app:lambda_handler")
    assert endpoints.pid == os.getpid()
    assert endpoints.is_running()


def test_env_files_for_sam_and_the_shell(local_world: LocalWorld) -> None:
    assert local_world.aws is not None
    env_json = json.loads((local_world.state_dir / "env.json").read_text())
    assert set(env_json) == {"Parameters", "EchoFunction", "HttpEchoFunction", "WebhookRecorderFunction"}
    for variables in env_json.values():
        assert variables["AWS_ENDPOINT_URL"] == f"http://host.docker.internal:{local_world.aws.port}"
        assert variables["SYNC_TABLE_NAME"] == f"{E2E_STACK}-SyncTable"
        assert variables["CRM_SECRET_ID"] == E2E_SECRET
    shell = (local_world.state_dir / "local.env").read_text()
    assert f"export AWS_ENDPOINT_URL={local_world.aws.endpoint_url}\n" in shell
    assert f"export SYNC_TABLE_NAME={E2E_STACK}-SyncTable\n" in shell


def test_handlers_get_the_globals_environment_resolved_locally(local_world: LocalWorld) -> None:
    template_env = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    assert set(template_env) <= set(local_world.environment)
    expected = {
        "SYNC_TABLE_NAME": f"{E2E_STACK}-SyncTable",
        "IDEMPOTENCY_TABLE_NAME": f"{E2E_STACK}-IdempotencyTable",
        "SALESFORCE_CHANGES_QUEUE_URL": local_world.queue_url("SalesforceChangesQueue"),
        "HUBSPOT_CHANGES_QUEUE_URL": local_world.queue_url("HubSpotChangesQueue"),
        "IMPORT_QUEUE_URL": local_world.queue_url("ImportQueue"),
        "ROLLUP_QUEUE_URL": local_world.queue_url("RollupQueue"),
        "CRM_SECRET_ID": E2E_SECRET,
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "POWERTOOLS_SERVICE_NAME": "dealsync",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    for name, value in expected.items():
        assert local_world.environment[name] == value
        assert os.environ[name] == value  # set in-process for the handlers
    assert os.environ["AWS_ENDPOINT_URL"] == local_world.endpoints.aws.endpoint_url  # type: ignore[union-attr]


# --- the real clients --------------------------------------------------------------------------------

def test_boto3_reaches_the_tables_queues_and_secret_of_the_template(local_world: LocalWorld) -> None:
    template = load_template()
    dynamodb = boto3.client("dynamodb")  # from the environment the world set: AWS_ENDPOINT_URL etc.
    for logical_id, resource in resources_of_type("AWS::DynamoDB::Table", template).items():
        table = dynamodb.describe_table(TableName=local_world.table_name(logical_id))["Table"]
        assert table["KeySchema"] == resource["Properties"]["KeySchema"]
    sync_table = dynamodb.describe_table(TableName=local_world.table_name("SyncTable"))["Table"]
    assert [index["IndexName"] for index in sync_table["GlobalSecondaryIndexes"]] == ["gsi1"]

    sqs = boto3.client("sqs")
    for definition in queue_definitions(template):
        response = sqs.get_queue_attributes(QueueUrl=local_world.queue_url(definition.logical_id),
                                            AttributeNames=["All"])
        attributes = {str(name): value for name, value in response["Attributes"].items()}
        for name, value in definition.attributes.items():
            assert attributes[name] == value
        if definition.dead_letter_logical_id:
            redrive = json.loads(attributes["RedrivePolicy"])
            assert redrive["deadLetterTargetArn"] == local_world.queue_arn(definition.dead_letter_logical_id)
            assert int(redrive["maxReceiveCount"]) == definition.max_receive_count

    secret = json.loads(boto3.client("secretsmanager").get_secret_value(SecretId=E2E_SECRET)["SecretString"])
    endpoints = local_world.endpoints
    assert endpoints is not None
    assert set(secret) == {"salesforce", "hubspot", "webhook"}
    assert set(secret["salesforce"]) == {"auth", "login_url", "instance_url", "client_id", "client_secret",
                                         "api_version", "org_id", "ca_file"}
    assert set(secret["hubspot"]) == {"access_token", "base_url", "app_id", "client_secret", "portal_id", "ca_file"}
    assert secret["salesforce"]["auth"] == "client_credentials"
    assert secret["salesforce"]["instance_url"] == endpoints.salesforce.instance_url
    assert secret["salesforce"]["org_id"] == endpoints.salesforce.org_id
    assert secret["hubspot"]["access_token"] == endpoints.hubspot.access_token
    assert secret["hubspot"]["portal_id"] == str(endpoints.hubspot.portal_id)
    assert secret["hubspot"]["app_id"] == str(endpoints.hubspot.app_id)
    assert secret["webhook"] == {"public_base_url": endpoints.api.base_url}


def test_simple_salesforce_reaches_the_emulator_with_the_secret_credentials(local_world: LocalWorld) -> None:
    secret = json.loads(boto3.client("secretsmanager").get_secret_value(SecretId=E2E_SECRET)["SecretString"])
    sf = secret["salesforce"]
    session = requests.Session()
    session.verify = sf["ca_file"]
    session.trust_env = False
    token = session.post(f"{sf['login_url']}/services/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": sf["client_id"], "client_secret": sf["client_secret"]})
    assert token.status_code == 200, token.text
    client = Salesforce(instance_url=token.json()["instance_url"], session_id=token.json()["access_token"],
                        session=session, version=sf["api_version"])
    assert client.query("SELECT COUNT() FROM Opportunity")["totalSize"] == DEMO_SIZE
    record_types = client.query("SELECT DeveloperName FROM RecordType WHERE SobjectType = 'Opportunity'")["records"]
    assert sorted(row["DeveloperName"] for row in record_types) == sorted(spec.developer_name for spec in RECORD_TYPES)


def test_hubspot_client_sees_the_demo_owners(local_world: LocalWorld) -> None:
    owners = hubspot_client(local_world).crm.owners.owners_api.get_page(limit=100).results
    sf_users = salesforce_client(local_world).query(
        "SELECT Email FROM User WHERE Email LIKE '%@dealsync-demo.example'")["records"]
    assert sorted(owner.email for owner in owners) == sorted(user["Email"] for user in sf_users)
    assert len(owners) == 10


# --- HTTP API ---------------------------------------------------------------------------------------

def test_http_api_builds_a_v2_event_and_returns_the_handler_response(local_world: LocalWorld) -> None:
    assert local_world.api is not None
    host = f"127.0.0.1:{local_world.api.port}"
    body = json.dumps({"hello": "world"}).encode()
    started_ms = int(time.time() * 1000)
    status, headers, data = api_request(local_world, "POST", "/test/echo?a=1&a=2&b=x%20y", body, [
        ("Host", host), ("Content-Type", "application/json"), ("X-Custom", "one"), ("X-Custom", "two"),
        ("Cookie", "c1=v1; c2=v2"), ("User-Agent", "e2e-test/1.0"),
    ])
    assert status == 201
    assert headers["x-echo"] == ["yes"]
    assert headers["set-cookie"] == ["session=abc; Path=/", "theme=dark"]
    assert headers["apigw-requestid"]
    answer = json.loads(data)
    event = answer["event"]
    assert answer["function_name"] == f"{E2E_STACK}-HttpEchoFunction"
    assert 59_000 < answer["remaining_ms"] <= 60_000  # Globals.Function.Timeout
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /test/echo"
    assert event["rawPath"] == "/test/echo"
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["x-custom"] == "one,two"
    assert event["headers"]["content-type"] == "application/json"
    assert event["headers"]["host"] == host
    assert event["headers"]["x-forwarded-proto"] == "http"
    assert all(name == name.lower() for name in event["headers"])
    assert event["body"] == body.decode()
    assert event["isBase64Encoded"] is False
    assert "pathParameters" not in event
    context = event["requestContext"]
    assert context["accountId"] == "123456789012"
    assert context["apiId"] == local_world.api_id
    assert context["domainName"] == host
    assert context["domainPrefix"] == "127"
    assert context["http"] == {"method": "POST", "path": "/test/echo", "protocol": "HTTP/1.1",
                               "sourceIp": "127.0.0.1", "userAgent": "e2e-test/1.0"}
    assert context["routeKey"] == "POST /test/echo"
    assert context["stage"] == "$default"
    assert context["requestId"] == headers["apigw-requestid"][0]
    assert dt.datetime.strptime(context["time"], "%d/%b/%Y:%H:%M:%S %z")
    assert started_ms - 1000 <= context["timeEpoch"] <= int(time.time() * 1000)


def test_http_api_base64_encodes_non_text_bodies(local_world: LocalWorld) -> None:
    for content_type, payload in (("application/octet-stream", b"\x00\xffbinary"),
                                  ("application/x-www-form-urlencoded", b"a=1&b=2")):
        status, _, data = api_request(local_world, "POST", "/test/echo", payload, [("Content-Type", content_type)])
        assert status == 201
        event = json.loads(data)["event"]
        assert event["isBase64Encoded"] is True
        assert base64.b64decode(event["body"]) == payload
    status, _, data = api_request(local_world, "POST", "/test/echo", b"<a/>", [("Content-Type", "text/xml")])
    assert json.loads(data)["event"]["body"] == "<a/>"


def test_http_api_response_rules_and_gateway_errors(local_world: LocalWorld) -> None:
    status, headers, data = api_request(local_world, "GET", "/test/plain")
    assert (status, headers["content-type"], json.loads(data)) == (200, ["application/json"], {"hello": "world"})

    status, headers, data = api_request(local_world, "GET", "/test/binary")
    assert (status, headers["content-type"], data) == (200, ["application/octet-stream"], b"\x00\x01\x02")

    status, _, data = api_request(local_world, "GET", "/test/items/42")
    assert (status, json.loads(data)) == (200, {"id": "42"})

    for method, path in (("GET", "/no/such/route"), ("GET", "/test/echo"), ("DELETE", "/test/items/1")):
        status, headers, data = api_request(local_world, method, path)
        assert (status, json.loads(data)) == (404, {"message": "Not Found"}), (method, path)
        assert headers["content-type"] == ["application/json"]

    status, _, data = api_request(local_world, "POST", "/test/boom", b"{}", [("Content-Type", "application/json")])
    assert (status, json.loads(data)) == (500, {"message": "Internal Server Error"})

    started = time.monotonic()
    status, _, data = api_request(local_world, "GET", "/test/slow")
    assert (status, json.loads(data)) == (503, {"message": "Service Unavailable"})
    assert 0.4 < time.monotonic() - started < 1.4  # the route's TimeoutInMillis (500), not the handler's 1.5 s


# --- SQS pollers -------------------------------------------------------------------------------------

def test_sqs_poller_reports_partial_failures_and_moto_redrives_to_the_dlq(local_world: LocalWorld) -> None:
    echo = fixture_module("sqs_echo")
    sqs = local_world.sqs()
    run = uuid.uuid4().hex
    bodies = [json.dumps({"run": run, "n": 1}), json.dumps({"run": run, "fail": True}),
              json.dumps({"run": run, "n": 2})]
    sqs.send_message_batch(QueueUrl=local_world.queue_url("EchoQueue"), Entries=[
        {"Id": str(n), "MessageBody": body,
         "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "test"}}}
        for n, body in enumerate(bodies)
    ])
    dead = wait_for(lambda: drain_queue(local_world, "EchoDLQ"), timeout=20)
    assert [message["Body"] for message in dead] == [bodies[1]]

    seen = [body for body in echo.bodies() if run in body]
    assert seen.count(bodies[0]) == 1 and seen.count(bodies[2]) == 1  # succeeded once, deleted
    assert seen.count(bodies[1]) == 2  # maxReceiveCount of EchoQueue

    records = [record for event in echo.EVENTS for record in event["Records"] if run in record["body"]]
    record = records[0]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == local_world.queue_arn("EchoQueue")
    assert record["awsRegion"] == "us-east-1"
    assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()  # noqa: S324 - SQS's checksum
    assert set(record["attributes"]) >= {"ApproximateReceiveCount", "SentTimestamp", "SenderId",
                                         "ApproximateFirstReceiveTimestamp"}
    assert record["messageAttributes"] == {"kind": {"stringValue": "test", "stringListValues": [],
                                                    "binaryListValues": [], "dataType": "String"}}
    assert sorted(r["attributes"]["ApproximateReceiveCount"] for r in records if r["body"] == bodies[1]) == ["1", "2"]
    context = echo.CONTEXTS[-1]
    assert context.function_name == f"{E2E_STACK}-EchoFunction"
    assert context.memory_limit_in_mb == 256
    assert context.invoked_function_arn == f"arn:aws:lambda:us-east-1:123456789012:function:{E2E_STACK}-EchoFunction"
    local_world.drain(timeout=10)


def test_sqs_poller_retries_the_whole_batch_when_the_handler_raises(local_world: LocalWorld) -> None:
    echo = fixture_module("sqs_echo")
    body = json.dumps({"run": uuid.uuid4().hex, "raise": True})
    local_world.sqs().send_message(QueueUrl=local_world.queue_url("EchoQueue"), MessageBody=body)
    dead = wait_for(lambda: drain_queue(local_world, "EchoDLQ"), timeout=20)
    assert [message["Body"] for message in dead] == [body]
    assert echo.bodies().count(body) == 2


# --- schedules and the Event Relay sink --------------------------------------------------------------

def test_schedule_run_endpoint_sends_the_rendered_input_template(local_world: LocalWorld) -> None:
    endpoints = local_world.endpoints
    assert endpoints is not None
    drain_queue(local_world, "SalesforceChangesQueue")
    response = requests.post(f"{endpoints.api.control_url}/schedules/SalesforcePollSchedule/run", timeout=10)
    assert response.status_code == 200
    deliveries = response.json()["deliveries"]
    assert [(d["target"], d["kind"]) for d in deliveries] == [("SalesforceChangesQueue", "sqs")]
    messages = drain_queue(local_world, "SalesforceChangesQueue")
    assert [message["MessageId"] for message in messages] == [deliveries[0]["message_id"]]
    body = json.loads(messages[0]["Body"])
    assert set(body) == {"kind", "task", "time", "event_id"}
    assert (body["kind"], body["task"]) == ("scheduled", "salesforce_poll")
    assert dt.datetime.strptime(body["time"], "%Y-%m-%dT%H:%M:%SZ")
    assert uuid.UUID(body["event_id"])

    response = requests.post(f"{endpoints.api.control_url}/schedules/RollupRecomputeSchedule/run", timeout=10)
    assert response.status_code == 200
    rollup = drain_queue(local_world, "RollupQueue")
    assert json.loads(rollup[0]["Body"])["task"] == "rollup_full_recompute"

    missing = requests.post(f"{endpoints.api.control_url}/schedules/NoSuchSchedule/run", timeout=10)
    assert missing.status_code == 404
    assert "SalesforcePollSchedule" in missing.json()["message"]


def _envelope(detail_type: str, record_id: str) -> dict[str, Any]:
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": detail_type,
        "source": "aws.partner/salesforce.com/00D000000000001EAA/0YLxx0000000001",
        "account": "123456789012", "time": "2026-01-01T00:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"payload": {"ChangeEventHeader": {"entityName": detail_type.removesuffix("ChangeEvent"),
                                                     "recordIds": [record_id], "changeType": "UPDATE"}}},
    }


def test_event_relay_sink_delivers_matching_envelopes_unchanged(local_world: LocalWorld) -> None:
    endpoints = local_world.endpoints
    assert endpoints is not None
    drain_queue(local_world, "SalesforceChangesQueue")
    matching = _envelope("OpportunityChangeEvent", "006000000000001AAA")
    other = _envelope("LeadChangeEvent", "00Q000000000001AAA")
    for envelope, expected in ((matching, 1), (other, 0)):
        response = requests.post(endpoints.api.event_relay_url, json=envelope, timeout=10)
        assert response.status_code == 200
        assert len(response.json()["deliveries"]) == expected
    messages = drain_queue(local_world, "SalesforceChangesQueue")
    assert [json.loads(message["Body"]) for message in messages] == [matching]


def test_event_relay_sink_delivers_a_relay_request_of_many_events_one_message_each(local_world: LocalWorld) -> None:
    endpoints = local_world.endpoints
    assert endpoints is not None
    drain_queue(local_world, "SalesforceChangesQueue")
    envelopes = [_envelope("OpportunityChangeEvent", f"006000000000{n:03d}AAA") for n in range(20)]
    envelopes.insert(7, _envelope("LeadChangeEvent", "00Q000000000001AAA"))
    response = requests.post(endpoints.api.event_relay_url, json=envelopes, timeout=10)
    assert response.status_code == 200
    deliveries = response.json()["deliveries"]
    assert len(deliveries) == 20 and all(d["message_id"] and "error" not in d for d in deliveries)
    messages = drain_queue(local_world, "SalesforceChangesQueue")
    bodies = sorted((json.loads(message["Body"]) for message in messages), key=lambda body: body["id"])
    assert bodies == sorted((e for e in envelopes if e["detail-type"] != "LeadChangeEvent"), key=lambda e: e["id"])


def test_salesforce_change_events_and_outbound_messages_reach_the_world(local_world: LocalWorld) -> None:
    recorder = fixture_module("recorder")
    client = salesforce_client(local_world, person=True)
    opportunity = client.query("SELECT Id, Name FROM Opportunity WHERE IsClosed = false LIMIT 1")["records"][0]
    drain_queue(local_world, "SalesforceChangesQueue")
    opportunities: Any = client.Opportunity
    opportunities.update(opportunity["Id"], {"NextStep": f"e2e {uuid.uuid4().hex[:8]}"})

    def change_events() -> list[dict[str, Any]]:
        bodies = [json.loads(m["Body"]) for m in drain_queue(local_world, "SalesforceChangesQueue", wait=1)]
        return [body for body in bodies
                if opportunity["Id"] in body["detail"]["payload"]["ChangeEventHeader"]["recordIds"]]

    event = wait_for(change_events)[0]
    assert event["detail-type"] == "OpportunityChangeEvent"
    assert event["source"].startswith("aws.partner/salesforce.com/")

    path = "/webhooks/salesforce/outbound-message"
    message = wait_for(lambda: [e for e in recorder.events_for(path) if opportunity["Id"] in e["body"]])[0]
    assert message["headers"]["content-type"].startswith("text/xml")
    assert local_world.endpoints is not None
    assert f"<OrganizationId>{local_world.endpoints.salesforce.org_id}</OrganizationId>" in message["body"]


def test_hubspot_webhooks_reach_the_api_signed_v3_for_the_public_url(local_world: LocalWorld) -> None:
    recorder = fixture_module("recorder")
    endpoints = local_world.endpoints
    assert endpoints is not None
    name = f"e2e deal {uuid.uuid4().hex[:8]}"
    response = requests.post(
        f"{endpoints.hubspot.base_url}/crm/v3/objects/deals",
        json={"properties": {"dealname": name, "pipeline": "default", "dealstage": "appointmentscheduled"}},
        headers={"Authorization": f"Bearer {endpoints.hubspot.user_access_token}"},
        verify=endpoints.hubspot.ca_file, timeout=10,
    )
    assert response.status_code == 201, response.text
    deal_id = int(response.json()["id"])
    event = wait_for(lambda: [e for e in recorder.events_for("/webhooks/hubspot")
                              if any(item["objectId"] == deal_id for item in json.loads(e["body"]))])[0]
    headers = event["headers"]
    # What a receiver does: rebuild the URL from the secret's public_base_url and check the signature.
    secret = json.loads(boto3.client("secretsmanager").get_secret_value(SecretId=E2E_SECRET)["SecretString"])
    uri = secret["webhook"]["public_base_url"] + event["rawPath"]
    message = f"POST{uri}{event['body']}{headers['x-hubspot-request-timestamp']}".encode()
    expected = base64.b64encode(hmac.new(secret["hubspot"]["client_secret"].encode(), message,
                                         hashlib.sha256).digest()).decode()
    assert headers["x-hubspot-signature-v3"] == expected
    assert urlsplit(uri).netloc == event["requestContext"]["domainName"]


# --- demo data ---------------------------------------------------------------------------------------

def test_demo_data_is_deterministic_and_realistic() -> None:
    today = dt.date(2026, 6, 1)
    first, again, other = generate(300, seed=5, today=today), generate(300, seed=5, today=today), generate(
        300, seed=6, today=today)
    assert first == again
    assert first.salesforce["Opportunity"] != other.salesforce["Opportunity"]

    sf = first.salesforce
    assert len(sf["Opportunity"]) == 300
    assert len(sf["User"]) == 10 == len(first.hubspot["owners"])
    assert [user["Email"] for user in sf["User"]] == [owner["email"] for owner in first.hubspot["owners"]]
    assert set(first.hubspot) == {"owners"}
    assert len(sf["RecordType"]) == 3
    assert len({tuple(rt["Stages"]) for rt in sf["RecordType"]}) == 3
    stages = {f"@RecordType:{n}": set(rt["Stages"]) for n, rt in enumerate(sf["RecordType"])}
    assert all(opp["StageName"] in stages[opp["RecordTypeId"]] for opp in sf["Opportunity"])
    assert {opp["RecordTypeId"] for opp in sf["Opportunity"]} == set(stages)
    won = [opp for opp in sf["Opportunity"] if opp["StageName"] == "Closed Won"]
    lost = [opp for opp in sf["Opportunity"] if opp["StageName"] == "Closed Lost"]
    assert 30 < len(won) < 90 and 15 < len(lost) < 60
    assert all(opp["CloseDate"] < today.isoformat() for opp in won + lost)
    # Nothing was touched after the start of that day (UTC): loaded that day, no stamp lies in the future.
    assert max(opp["LastModifiedDate"] for opp in sf["Opportunity"]) <= f"{today.isoformat()}T00:00:00.000+0000"
    assert all(len(opp["Name"]) <= 120 and opp["Amount"] > 0 for opp in sf["Opportunity"])
    emails = [contact["Email"] for contact in sf["Contact"]]
    assert len(emails) == len(set(emails))
    roles: dict[str, list[dict[str, Any]]] = {}
    for role in sf["OpportunityContactRole"]:
        roles.setdefault(role["OpportunityId"], []).append(role)
    assert all(1 <= len(items) <= 3 and sum(r["IsPrimary"] for r in items) == 1 for items in roles.values())
    assert len(roles) < 300  # some opportunities have no contact roles
    with pytest.raises(ValueError, match="size"):
        generate(100_001)


# --- CLI ---------------------------------------------------------------------------------------------

def test_cli_invoke_runs_a_handler_against_the_running_world(
        local_world: LocalWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps({"rawPath": "/test/plain"}))
    state = str(local_world.state_dir)
    assert cli_main(["invoke", "HttpEchoFunction", "-e", str(event_file), "--state-dir", state]) == 0
    assert json.loads(capsys.readouterr().out) == {"hello": "world"}

    event_file.write_text(json.dumps({"rawPath": "/test/boom"}))
    assert cli_main(["invoke", "http_echo", "-e", str(event_file), "--state-dir", state]) == 1
    error = json.loads(capsys.readouterr().out)
    assert (error["errorType"], error["errorMessage"]) == ("ValueError", "boom")

    assert cli_main(["invoke", "Nope", "-e", str(event_file), "--state-dir", state]) == 2
    assert "unknown function 'Nope'" in capsys.readouterr().err

    assert cli_main(["invoke", "Nope", "-e", str(event_file), "--state-dir", str(tmp_path / "none")]) == 1
    assert "dealsync local up" in capsys.readouterr().err
    with pytest.raises(WorldNotRunningError):
        load_endpoints(tmp_path / "none")


def _dealsync() -> list[str]:
    script = Path(sys.executable).with_name("dealsync")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dealsync_cli.main"]


def test_dealsync_local_up_runs_until_interrupted_and_stops_cleanly(tmp_path: Path) -> None:
    state = tmp_path / "state"
    process = subprocess.Popen(  # noqa: S603 - our own console script
        [*_dealsync(), "local", "up", "--state-dir", str(state), "--seed", "demo", "--port-base", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=PROJECT_ROOT,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout or []), daemon=True)
    reader.start()
    try:
        endpoints = wait_for(lambda: _loaded(state), timeout=30)
        wait_for(lambda: any("What to try" in line for line in output), timeout=10)
        status = requests.get(f"{endpoints.api.control_url}/status", timeout=10).json()
        assert status["demo"]["salesforce.Opportunity"] == 100
        assert status["queues"]["SalesforceChangesQueue"] == {"visible": 0, "in_flight": 0}

        event_file = tmp_path / "event.json"
        event_file.write_text("{}")
        unknown = subprocess.run(  # noqa: S603
            [*_dealsync(), "invoke", "NoSuchFunction", "-e", str(event_file), "--state-dir", str(state)],
            capture_output=True, text=True, cwd=PROJECT_ROOT, check=False, timeout=60)
        assert unknown.returncode == 2, unknown.stderr
        assert "unknown function 'NoSuchFunction'" in unknown.stderr

        ports = [urlsplit(url).port for url in (endpoints.aws.endpoint_url, endpoints.api.base_url,
                                                endpoints.salesforce.instance_url, endpoints.hubspot.base_url)]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(5)
    text = "".join(output)
    assert "Stopped." in text, text
    assert "Traceback" not in text, text
    assert not (state / "endpoints.json").exists()
    assert all(port is not None and port_is_free(port) for port in ports)


def _loaded(state: Path) -> Any:
    try:
        return load_endpoints(state)
    except WorldNotRunningError:
        return None


# --- stopping ----------------------------------------------------------------------------------------

def test_a_world_stops_cleanly_and_frees_its_ports(tmp_path: Path, local_world: LocalWorld) -> None:
    before = os.environ.get("SYNC_TABLE_NAME")
    world = start_world(tmp_path, stack_name="dealsync-stoptest", secret_name="dealsync/stoptest/crm",
                        set_environ=False, run_schedules=True)
    assert world.aws is not None and world.api is not None and world.crms is not None
    ports = [world.aws.port, world.api.port, world.crms.salesforce.server.port, world.crms.hubspot.server.port]
    assert not any(port_is_free(port) for port in ports)
    started = time.monotonic()
    world.stop()
    assert time.monotonic() - started < 5
    assert all(port_is_free(port) for port in ports)
    assert not (tmp_path / "endpoints.json").exists()
    assert world.threads() and not [thread for thread in world.threads() if thread.is_alive()]
    assert os.environ.get("SYNC_TABLE_NAME") == before
    # The session's world is untouched: its tables are still there.
    boto3.client("dynamodb").describe_table(TableName=local_world.table_name("SyncTable"))
    world.stop()  # idempotent


def test_a_world_that_cannot_start_says_why_and_leaves_nothing_behind(
        tmp_path: Path, local_world: LocalWorld, e2e_template_path: Path) -> None:
    with pytest.raises(WorldStartError, match="already running"):
        LocalWorld(local_world.state_dir, seed="none", set_environ=False).start()
    assert (local_world.state_dir / "endpoints.json").exists()  # the running world's file is left alone

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        world = LocalWorld(tmp_path, seed="none", port_base=port, stack_name="dealsync-busy",
                           secret_name="dealsync/busy/crm", set_environ=False)
        with pytest.raises(WorldStartError, match="cannot bind"):
            world.start()
    assert world.stopped

    broken = LocalWorld(tmp_path / "broken", seed="none", stack_name="dealsync-broken", set_environ=False,
                        secret_name="dealsync/broken/crm", template_path=e2e_template_path,
                        module_overrides={"EchoFunction": "no_such.module"})
    started = time.monotonic()
    with pytest.raises(FunctionLoadError, match="no_such"):
        broken.start()
    assert time.monotonic() - started < 10
    assert broken.aws is not None and broken.api is not None
    assert port_is_free(broken.aws.port) and port_is_free(broken.api.port)
