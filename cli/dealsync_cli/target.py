"""Which dealsync an operator command talks to: a running local world (``--state-dir DIR``) or a
deployed stack (``--stack NAME``), turned into the environment and the :class:`SyncContext` the
layer's services need.

Commands run the layer's own services in the operator's process — the same code the functions run,
with the CRM secret read from Secrets Manager — for everything that is quick and needs an answer
(toggles, status, starting a job). Long work is never done here: an import is a message on the
ImportQueue, and the deployed workers do it, so a closed laptop does not stop it.

* ``--state-dir``: names, endpoint and region come from ``DIR/endpoints.json`` (the handlers' own
  environment), so the CLI sees exactly what the local world's handlers see.
* ``--stack``: the table and queue URLs come from the stack's outputs (``SyncTableName``,
  ``*QueueUrl``, ``*DLQUrl``), the secret ARN from its ``CrmSecretArn`` parameter; region and
  credentials from the usual AWS settings (``AWS_PROFILE``, ``AWS_REGION``...).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dealsync_cli.endpoints import WorldNotRunningError, load_endpoints
from dealsync_cli.errors import CommandError

DEFAULT_STATE_DIR = ".state"
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3  # a toggle or import refused by DESIGN 1.1: the message names the missing step
EXIT_FAILURES = 4  # a job completed with failed records
EXIT_TIMEOUT = 5  # --wait gave up before the job ended

# Work queues by the stack output prefix (and the local world's logical ids).
QUEUES = ("SalesforceChanges", "HubSpotChanges", "Import", "Rollup")
_ENV_BY_QUEUE = {
    "SalesforceChanges": "SALESFORCE_CHANGES_QUEUE_URL",
    "HubSpotChanges": "HUBSPOT_CHANGES_QUEUE_URL",
    "Import": "IMPORT_QUEUE_URL",
    "Rollup": "ROLLUP_QUEUE_URL",
}


@dataclass
class Target:
    """The dealsync a command acts on."""

    description: str
    environment: dict[str, str]
    queues: dict[str, str] = field(default_factory=dict)  # "Import" -> URL
    dead_letter_queues: dict[str, str] = field(default_factory=dict)  # "Import" -> DLQ URL
    _context: Any = None

    @property
    def context(self) -> Any:
        """The layer's SyncContext (built on first use: it reads the CRM secret)."""
        if self._context is None:
            from dealsync.services.context import build_context

            self._context = build_context()
        return self._context


def refused(error: Any, as_json: bool, result: dict[str, Any] | None = None) -> int:
    """Report a refusal of DESIGN 1.1 (a ``ToggleRefusedError``): with ``--json`` the document on stdout
    (``result`` and the refusal), always the message and each missing step on stderr; EXIT_REFUSED."""
    if as_json:
        print(json.dumps({**(result or {}), "refused": True, "message": str(error),
                          "missing_steps": error.missing_steps}))
    print(f"dealsync: refused. {error}", file=sys.stderr)
    for step in error.missing_steps:
        print(f"  missing step: {step}", file=sys.stderr)
    return EXIT_REFUSED


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                       help=f"a running local world (default: {DEFAULT_STATE_DIR}, or $DEALSYNC_STATE_DIR)")
    group.add_argument("--stack", default=None, metavar="NAME",
                       help="a deployed stack (names from its outputs; AWS region and credentials as usual)")


def quiet_product_logs(verbose: int = 0) -> None:
    """The layer's JSON logs go to stderr (stdout is the command's output), warnings only unless -v."""
    product = logging.getLogger("dealsync")
    for handler in product.handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.__stderr__ or sys.stderr)
    if not verbose:
        product.setLevel(logging.WARNING)


def _apply(environment: dict[str, str]) -> None:
    os.environ.update(environment)
    from dealsync.settings import get_settings

    get_settings.cache_clear()  # settings are read once per process: read them again


def local_target(state_dir: Path) -> Target:
    try:
        endpoints = load_endpoints(state_dir)
    except WorldNotRunningError as error:
        raise CommandError(str(error)) from error
    environment = dict(endpoints.environment)
    queues = {name: endpoints.resources.queues[f"{name}Queue"] for name in QUEUES
              if f"{name}Queue" in endpoints.resources.queues}
    dlqs = {}
    for name in queues:
        dlq_id = endpoints.resources.dead_letter_queues.get(f"{name}Queue")
        if dlq_id and dlq_id in endpoints.resources.queues:
            dlqs[name] = endpoints.resources.queues[dlq_id]
    return Target(f"local world {endpoints.state_dir or state_dir}", environment, queues, dlqs)


def stack_target(stack_name: str) -> Target:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        stacks = boto3.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except (BotoCoreError, ClientError) as error:
        raise CommandError(f"cannot read stack {stack_name}: {error}") from error
    stack = stacks[0]
    outputs = {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])}
    parameters = {item["ParameterKey"]: item.get("ParameterValue", "") for item in stack.get("Parameters", [])}
    if "SyncTableName" not in outputs or not parameters.get("CrmSecretArn"):
        raise CommandError(f"stack {stack_name} is not a dealsync stack (no SyncTableName output or CrmSecretArn)")
    queues = {name: outputs[f"{name}QueueUrl"] for name in QUEUES if f"{name}QueueUrl" in outputs}
    dlqs = {name: outputs[f"{name}DLQUrl"] for name in QUEUES if f"{name}DLQUrl" in outputs}
    environment = {
        "SYNC_TABLE_NAME": outputs["SyncTableName"],
        "IDEMPOTENCY_TABLE_NAME": outputs.get("IdempotencyTableName", ""),
        "CRM_SECRET_ID": parameters["CrmSecretArn"],
        "POWERTOOLS_SERVICE_NAME": "dealsync",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "Dealsync",
        **{_ENV_BY_QUEUE[name]: url for name, url in queues.items()},
    }
    return Target(f"stack {stack_name}", environment, queues, dlqs)


def connect(args: argparse.Namespace) -> Target:
    """The target named by ``--stack`` / ``--state-dir`` (default: ``$DEALSYNC_STATE_DIR`` or .state),
    with its environment applied to this process."""
    quiet_product_logs(getattr(args, "verbose", 0))
    stack = getattr(args, "stack", None)
    if stack:
        target = stack_target(stack)
    else:
        state_dir = getattr(args, "state_dir", None) or Path(os.environ.get("DEALSYNC_STATE_DIR") or DEFAULT_STATE_DIR)
        target = local_target(state_dir)
    _apply(target.environment)
    return target
