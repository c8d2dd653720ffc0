"""Fixtures shared by every test folder: a moto server and the tables of template.yaml."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import boto3
import pytest
from mypy_boto3_dynamodb.client import DynamoDBClient

from dealsync_local.aws import LocalAws
from dealsync_local.template import table_create_kwargs

# Tests never talk to real AWS: dummy credentials and a fixed region for every client they build.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "DealsyncTest")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on a free loopback port, shared by the session (DynamoDB requests serialised as
    in the local world: moto's backend is not thread-safe, AWS is)."""
    server = LocalAws().start()
    yield server.endpoint_url
    server.stop()


@pytest.fixture
def dynamodb_client(moto_endpoint: str) -> DynamoDBClient:
    client: DynamoDBClient = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    return client


@pytest.fixture
def sync_table_name(dynamodb_client: DynamoDBClient) -> str:
    """A fresh SyncTable, created from its definition in template.yaml."""
    name = f"SyncTable-{uuid.uuid4().hex[:8]}"
    dynamodb_client.create_table(**table_create_kwargs("SyncTable", name))
    return name
