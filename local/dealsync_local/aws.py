"""AWS, locally: moto in server mode on a port, with the tables and queues of ``template.yaml`` and the
CRM secret in Secrets Manager.

moto keeps its state per process: every moto server (and ``mock_aws``) in one process shares it. So the
resources carry the world's stack name (``dealsync-local-<LogicalId>``) and are deleted again on stop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

import dealsync_local.moto_patches  # noqa: F401 - corrects moto before any server starts
from dealsync_local.template import (
    ACCOUNT_ID,
    REGION,
    STACK_NAME,
    local_name,
    queue_definitions,
    resources_of_type,
    table_create_kwargs,
    table_ttl_attribute,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

for _name in ("werkzeug", "moto", "botocore.credentials"):
    logging.getLogger(_name).setLevel(logging.ERROR)

DUMMY_ACCESS_KEY_ID = "testing"
DUMMY_SECRET_ACCESS_KEY = "testing"


@dataclass
class AwsResources:
    """Physical names of what was created from the template."""

    tables: dict[str, str] = field(default_factory=dict)  # logical id → table name
    table_arns: dict[str, str] = field(default_factory=dict)
    queues: dict[str, str] = field(default_factory=dict)  # logical id → queue URL
    queue_names: dict[str, str] = field(default_factory=dict)
    queue_arns: dict[str, str] = field(default_factory=dict)
    dead_letter_queues: dict[str, str] = field(default_factory=dict)  # queue logical id → DLQ logical id
    secret_id: str | None = None
    secret_arn: str | None = None

    def refs(self) -> dict[str, str]:
        """What ``!Ref`` gives for each resource: a table's name, a queue's URL."""
        return {**self.tables, **self.queues}

    def attributes(self) -> dict[tuple[str, str], str]:
        """What ``!GetAtt`` gives: ``Arn`` of tables and queues, ``QueueName``/``QueueUrl`` of queues."""
        result: dict[tuple[str, str], str] = {}
        for logical_id, arn in self.table_arns.items():
            result[(logical_id, "Arn")] = arn
        for logical_id, arn in self.queue_arns.items():
            result[(logical_id, "Arn")] = arn
            result[(logical_id, "QueueName")] = self.queue_names[logical_id]
            result[(logical_id, "QueueUrl")] = self.queues[logical_id]
        return result


class SerializedDynamoDB:
    """WSGI middleware: one DynamoDB request at a time.

    moto's DynamoDB backend is not thread-safe (a query copies items while a concurrent write changes
    them: "dictionary changed size during iteration", answered as a 500). AWS has no such race, so the
    local world serialises DynamoDB requests. Other services pass straight through: an SQS long poll
    must not hold up the table.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB"):
            return self.app(environ, start_response)
        with self.lock:
            return list(self.app(environ, start_response))  # the whole body, inside the lock


class LocalAws:
    """A moto server on a background thread, and clients for it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, region: str = REGION,
                 stack_name: str = STACK_NAME) -> None:
        self.region = region
        self.stack_name = stack_name
        self._server: BaseWSGIServer = make_server(
            host, port, SerializedDynamoDB(DomainDispatcherApplication(create_backend_app)), threaded=True,
            request_handler=MotoRequestHandler,
        )
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)
        self.resources = AwsResources()
        self._client_config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5,
                                     read_timeout=70)

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    @property
    def endpoint_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def start(self) -> LocalAws:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever: only when it runs
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    # --- clients ---------------------------------------------------------------------------
    def client(self, service: str) -> Any:
        return boto3.client(  # type: ignore[call-overload]
            service, endpoint_url=self.endpoint_url, region_name=self.region,
            aws_access_key_id=DUMMY_ACCESS_KEY_ID, aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
            config=self._client_config,
        )

    def sqs(self) -> SQSClient:
        client: SQSClient = self.client("sqs")
        return client

    def dynamodb(self) -> DynamoDBClient:
        client: DynamoDBClient = self.client("dynamodb")
        return client

    def secretsmanager(self) -> SecretsManagerClient:
        client: SecretsManagerClient = self.client("secretsmanager")
        return client

    # --- resources -------------------------------------------------------------------------
    def provision(self, template: dict[str, Any]) -> AwsResources:
        """Create the template's tables and queues; return their names."""
        resources = self.resources
        dynamodb = self.dynamodb()
        for logical_id in resources_of_type("AWS::DynamoDB::Table", template):
            name = local_name(logical_id, self.stack_name)
            with contextlib.suppress(dynamodb.exceptions.ResourceInUseException):
                dynamodb.create_table(**table_create_kwargs(logical_id, name, template))
            description = dynamodb.describe_table(TableName=name)["Table"]
            resources.tables[logical_id] = name
            resources.table_arns[logical_id] = description.get(
                "TableArn", f"arn:aws:dynamodb:{self.region}:{ACCOUNT_ID}:table/{name}")
            ttl = table_ttl_attribute(logical_id, template)
            if ttl:
                with contextlib.suppress(Exception):
                    dynamodb.update_time_to_live(
                        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl})

        sqs = self.sqs()
        for definition in queue_definitions(template):
            name = local_name(definition.logical_id, self.stack_name)
            if definition.fifo:
                name += ".fifo"
            attributes = dict(definition.attributes)
            if definition.dead_letter_logical_id:
                attributes["RedrivePolicy"] = json.dumps({
                    "deadLetterTargetArn": resources.queue_arns[definition.dead_letter_logical_id],
                    "maxReceiveCount": str(definition.max_receive_count),
                })
                resources.dead_letter_queues[definition.logical_id] = definition.dead_letter_logical_id
            url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]  # type: ignore[arg-type]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            resources.queues[definition.logical_id] = url
            resources.queue_names[definition.logical_id] = name
            resources.queue_arns[definition.logical_id] = arn

        return resources

    def put_secret(self, name: str, value: Mapping[str, Any]) -> str:
        """Create (or give a new version to) a JSON secret; return its ARN."""
        secrets = self.secretsmanager()
        text = json.dumps(value, indent=2)
        try:
            arn = secrets.create_secret(Name=name, SecretString=text,
                                        Description="dealsync local world: CRM credentials")["ARN"]
        except secrets.exceptions.ResourceExistsException:
            arn = secrets.put_secret_value(SecretId=name, SecretString=text)["ARN"]
        self.resources.secret_id = name
        self.resources.secret_arn = arn
        return arn

    def cleanup(self) -> None:
        """Delete what :meth:`provision` created (moto's state outlives this server in the process)."""
        resources = self.resources
        dynamodb = self.dynamodb()
        for name in resources.tables.values():
            with contextlib.suppress(Exception):
                dynamodb.delete_table(TableName=name)
        sqs = self.sqs()
        for url in resources.queues.values():
            with contextlib.suppress(Exception):
                sqs.delete_queue(QueueUrl=url)
        if resources.secret_id:
            with contextlib.suppress(Exception):
                self.secretsmanager().delete_secret(SecretId=resources.secret_id, ForceDeleteWithoutRecovery=True)
        self.resources = AwsResources()
