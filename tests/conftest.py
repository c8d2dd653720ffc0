"""Fixtures shared by every test folder: a moto server and the tables of template.yaml."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer
from mypy_boto3_dynamodb.client import DynamoDBClient

from dealsync_local.template import table_create_kwargs

# Tests never talk to real AWS: dummy credentials and a fixed region for every client they build.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "DealsyncTest")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on a free loopback port, shared by the session."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
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
