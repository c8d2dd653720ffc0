"""The webhook receivers, through their real Lambda handlers, against moto over real sockets.

Tables and queues come from template.yaml; the CRM secret lives in (moto's) Secrets Manager.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from mypy_boto3_sqs.client import SQSClient

from dealsync.services.receivers import reset_cached_context
from dealsync.settings import get_settings
from dealsync.webhooks.hubspot_signature import sign_v1, sign_v3
from dealsync_local.template import queue_definitions, table_create_kwargs
from hs_webhook.app import lambda_handler as hubspot_handler
from sf_outbound.app import lambda_handler as outbound_handler

pytestmark = pytest.mark.integration

EVENTS = Path(__file__).resolve().parents[2] / "events"
CLIENT_SECRET = "test-app-secret"
ORG_ID = "00D5f000005KcCnEAK"
PUBLIC_URL = "https://k3x9q2w7ab.execute-api.us-east-1.amazonaws.com"


class FakeContext:
    function_name = "receiver"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:receiver"
    aws_request_id = "req-1"


@pytest.fixture
def world(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    session = boto3.Session(region_name="us-east-1")
    dynamodb = session.client("dynamodb", endpoint_url=moto_endpoint)
    sqs = session.client("sqs", endpoint_url=moto_endpoint)
    secrets = session.client("secretsmanager", endpoint_url=moto_endpoint)
    table = f"SyncTable-{suffix}"
    dynamodb.create_table(**table_create_kwargs("SyncTable", table))
    urls: dict[str, str] = {}
    for queue in queue_definitions():
        urls[queue.logical_id] = sqs.create_queue(QueueName=f"{queue.logical_id}-{suffix}")["QueueUrl"]
    secret_id = f"dealsync/test/{suffix}"
    secrets.create_secret(Name=secret_id, SecretString=json.dumps({
        "salesforce": {"auth": "client_credentials", "login_url": "https://sf.invalid", "client_id": "x",
                       "client_secret": "y", "org_id": ORG_ID},
        # The portal and app of events/hubspot_webhook.json: the receiver refuses other portals' deliveries.
        "hubspot": {"access_token": "token", "app_id": "3261847", "client_secret": CLIENT_SECRET,
                    "portal_id": "44102938"},
        "webhook": {"public_base_url": PUBLIC_URL},
    }))
    env = {
        "AWS_ENDPOINT_URL": moto_endpoint, "SYNC_TABLE_NAME": table, "CRM_SECRET_ID": secret_id,
        "SALESFORCE_CHANGES_QUEUE_URL": urls["SalesforceChangesQueue"],
        "HUBSPOT_CHANGES_QUEUE_URL": urls["HubSpotChangesQueue"],
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    # Providers hold a boto3 client built against the previous endpoint: start from none.
    from aws_lambda_powertools.utilities.parameters import base as parameters_base

    parameters_base.DEFAULT_PROVIDERS.clear()  # type: ignore[attr-defined]
    reset_cached_context()
    from dealsync.queues import sqs_client

    sqs_client.cache_clear()
    yield env
    get_settings.cache_clear()
    reset_cached_context()
    sqs_client.cache_clear()


def _drain(sqs: SQSClient, url: str) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def _sqs(moto_endpoint: str) -> SQSClient:
    client: SQSClient = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    return client


def _hubspot_event(timestamp_ms: int | None = None, secret: str = CLIENT_SECRET) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "hubspot_webhook.json").read_text())
    body = event["body"].encode()
    timestamp = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
    event["headers"]["x-hubspot-request-timestamp"] = timestamp
    event["headers"]["x-hubspot-signature-v3"] = sign_v3(secret, "POST", PUBLIC_URL + event["rawPath"], body,
                                                         timestamp)
    event["headers"]["x-hubspot-signature"] = sign_v1(secret, body)
    return event


def test_signed_hubspot_batch_is_enqueued(world: dict[str, str], moto_endpoint: str) -> None:
    response = hubspot_handler(_hubspot_event(), FakeContext())
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"accepted": 7}
    queued = _drain(_sqs(moto_endpoint), world["HUBSPOT_CHANGES_QUEUE_URL"])
    assert len(queued) == 1
    assert queued[0]["kind"] == "hubspot_changes"
    assert len(queued[0]["events"]) == 7
    assert queued[0]["events"][0]["subscriptionType"].startswith("deal.")


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: e["headers"].update({"x-hubspot-signature-v3": "AAAA" + e["headers"]["x-hubspot-signature-v3"][4:]}),
         "v3 signature does not match"),
        (lambda e: e.update({"body": e["body"].replace("deal.creation", "deal.deletion", 1)}),
         "v3 signature does not match"),
        (lambda e: [e["headers"].pop("x-hubspot-signature-v3"), e["headers"].pop("x-hubspot-signature")],
         "no HubSpot signature header"),
    ],
)
def test_bad_signature_is_401_and_enqueues_nothing(world: dict[str, str], moto_endpoint: str, mutate: Any,
                                                   reason: str) -> None:
    event = _hubspot_event()
    mutate(event)
    response = hubspot_handler(event, FakeContext())
    assert response["statusCode"] == 401
    assert reason in json.loads(response["body"])["message"]
    assert _drain(_sqs(moto_endpoint), world["HUBSPOT_CHANGES_QUEUE_URL"]) == []


def test_stale_and_future_timestamps_are_refused(world: dict[str, str], moto_endpoint: str) -> None:
    now = int(time.time() * 1000)
    for timestamp, reason in ((now - 6 * 60_000, "older than 5 minutes"), (now + 6 * 60_000, "in the future")):
        response = hubspot_handler(_hubspot_event(timestamp), FakeContext())
        assert response["statusCode"] == 401
        assert reason in json.loads(response["body"])["message"]
    assert _drain(_sqs(moto_endpoint), world["HUBSPOT_CHANGES_QUEUE_URL"]) == []


def test_signed_but_malformed_batch_is_400(world: dict[str, str], moto_endpoint: str) -> None:
    event = _hubspot_event()
    event["body"] = json.dumps([{"eventId": 1, "subscriptionType": "deal.unknownThing", "objectId": 5}])
    event = _resign(event)
    response = hubspot_handler(event, FakeContext())
    assert response["statusCode"] == 400
    assert "malformed webhook batch" in json.loads(response["body"])["message"]
    assert _drain(_sqs(moto_endpoint), world["HUBSPOT_CHANGES_QUEUE_URL"]) == []


def _resign(event: dict[str, Any]) -> dict[str, Any]:
    timestamp = event["headers"]["x-hubspot-request-timestamp"]
    event["headers"]["x-hubspot-signature-v3"] = sign_v3(CLIENT_SECRET, "POST", PUBLIC_URL + event["rawPath"],
                                                         event["body"].encode(), timestamp)
    return event


def _outbound_event() -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "salesforce_outbound_message.json").read_text())
    return event


def test_outbound_message_is_enqueued_acked_and_deduplicated(world: dict[str, str], moto_endpoint: str) -> None:
    response = outbound_handler(_outbound_event(), FakeContext())
    assert response["statusCode"] == 200
    assert "<Ack>true</Ack>" in response["body"]
    queued = _drain(_sqs(moto_endpoint), world["SALESFORCE_CHANGES_QUEUE_URL"])
    assert len(queued) == 1
    assert queued[0]["object"] == "Opportunity"
    assert queued[0]["source"] == "outbound_message"
    assert sorted(queued[0]["ids"]) == ["0065f00000AbCdEAAV", "0065f00000BxRtQAAV"]
    # Salesforce retries a message it thinks was not acknowledged: acked again, enqueued once.
    again = outbound_handler(_outbound_event(), FakeContext())
    assert again["statusCode"] == 200
    assert "<Ack>true</Ack>" in again["body"]
    assert _drain(_sqs(moto_endpoint), world["SALESFORCE_CHANGES_QUEUE_URL"]) == []


def test_foreign_org_and_malformed_outbound_messages_are_refused(world: dict[str, str], moto_endpoint: str) -> None:
    foreign = _outbound_event()
    foreign["body"] = foreign["body"].replace(ORG_ID, "00D000000000001AAA")
    response = outbound_handler(foreign, FakeContext())
    assert response["statusCode"] == 403
    assert "Ack" not in response["body"]

    entity = copy.deepcopy(_outbound_event())
    entity["body"] = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]>'
                      + entity["body"].split("?>", 1)[1])
    response = outbound_handler(entity, FakeContext())
    assert response["statusCode"] == 400
    assert "malformed Outbound Message" in response["body"]

    truncated = _outbound_event()
    truncated["body"] = truncated["body"][:400]
    assert outbound_handler(truncated, FakeContext())["statusCode"] == 400
    assert _drain(_sqs(moto_endpoint), world["SALESFORCE_CHANGES_QUEUE_URL"]) == []
