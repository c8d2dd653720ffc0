"""``dealsync rollups recompute [--contact ID ... | --all] [--wait] [--state-dir DIR]``: recompute
contact rollups and lifecycle stages (DESIGN 1.7) in a running local world.

``--contact ID`` (repeatable; Salesforce Contact ids, 15 or 18 characters) puts RollupMessages of at
most 100 contacts on the RollupQueue; ``--all`` puts the nightly task (``rollup_full_recompute``)
there, which the worker fans out into a message per page of the contact index. ``--wait`` then waits
until the RollupQueue has drained (nothing visible or in flight, twice in a row), which is when the
recompute has finished; it prints what was enqueued as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from pydantic import ValidationError

from dealsync.models.events import RollupMessage, ScheduledTask, salesforce_id_18
from dealsync_cli.endpoints import Endpoints, WorldNotRunningError, load_endpoints
from dealsync_cli.errors import CommandError

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

DEFAULT_STATE_DIR = ".state"
QUEUE = "RollupQueue"
MAX_CONTACTS = 100


def register(subparsers: Any) -> None:
    rollups: argparse.ArgumentParser = subparsers.add_parser(
        "rollups", help="contact rollups and lifecycle stage", description="Contact rollups (DESIGN 1.7).")
    commands = rollups.add_subparsers(dest="rollups_command", metavar="COMMAND", required=True)
    recompute = commands.add_parser("recompute", help="recompute contacts' rollups now", description=__doc__,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
    which = recompute.add_mutually_exclusive_group(required=True)
    which.add_argument("--contact", action="append", metavar="ID", help="a Salesforce Contact id (repeatable)")
    which.add_argument("--all", action="store_true", help="every contact of the projection (the nightly task)")
    recompute.add_argument("--wait", action="store_true", help="wait until the rollup queue has drained")
    recompute.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                           help="how long --wait waits (default: 600)")
    recompute.add_argument("--state-dir", default=DEFAULT_STATE_DIR, type=Path,
                           help=f"state directory of the running world (default: {DEFAULT_STATE_DIR})")
    recompute.set_defaults(func=run)


def bodies_for(contacts: list[str] | None, everything: bool, now: datetime | None = None) -> list[str]:
    """The RollupQueue bodies for the request (validated as the worker will validate them)."""
    if everything:
        task = ScheduledTask(task="rollup_full_recompute", time=now or datetime.now(UTC),
                             event_id=f"cli-{uuid.uuid4()}")
        return [task.model_dump_json()]
    try:
        ids = list(dict.fromkeys(salesforce_id_18(contact.strip()) for contact in contacts or []))
        return [RollupMessage(contact_ids=ids[start:start + MAX_CONTACTS]).model_dump_json()
                for start in range(0, len(ids), MAX_CONTACTS)]
    except ValidationError as exc:
        raise CommandError(f"not Salesforce Contact ids: {exc.errors()[0].get('msg', exc)}", 2) from exc
    except ValueError as exc:
        raise CommandError(f"not a Salesforce id: {exc}", 2) from exc


def sqs_client(endpoints: Endpoints) -> SQSClient:
    client: SQSClient = boto3.client(
        "sqs", endpoint_url=endpoints.aws.endpoint_url, region_name=endpoints.aws.region,
        aws_access_key_id=endpoints.aws.access_key_id, aws_secret_access_key=endpoints.aws.secret_access_key)
    return client


def queue_depth(client: SQSClient, queue_url: str) -> int:
    attributes = client.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
        attributes.get("ApproximateNumberOfMessagesNotVisible", 0))


def wait_until_drained(client: SQSClient, queue_url: str, timeout: float, interval: float = 0.5) -> float:
    started = time.monotonic()
    quiet = 0
    while quiet < 2:
        if time.monotonic() - started > timeout:
            raise CommandError(f"the rollup queue did not drain in {timeout:.0f} s "
                               f"({queue_depth(client, queue_url)} messages left)")
        time.sleep(interval)
        quiet = quiet + 1 if queue_depth(client, queue_url) == 0 else 0
    return time.monotonic() - started


def run(args: argparse.Namespace) -> int:
    bodies = bodies_for(args.contact, args.all)
    try:
        endpoints = load_endpoints(args.state_dir)
    except WorldNotRunningError as exc:
        raise CommandError(str(exc)) from exc
    try:
        queue_url = endpoints.queue_url(QUEUE)
    except KeyError as exc:
        raise CommandError(f"the running world has no {QUEUE}") from exc
    client = sqs_client(endpoints)
    for body in bodies:
        client.send_message(QueueUrl=queue_url, MessageBody=body)
    result: dict[str, Any] = {"queue": QUEUE, "messages": len(bodies),
                              "contacts": "all" if args.all else len(set(args.contact or []))}
    if args.wait:
        result["waited_seconds"] = round(wait_until_drained(client, queue_url, args.timeout), 1)
        result["drained"] = True
    print(json.dumps(result))
    return 0
