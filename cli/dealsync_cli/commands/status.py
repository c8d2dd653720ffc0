"""``dealsync status [--json]``: what the sync is doing.

Toggles, pipelines (Salesforce record type ⇄ HubSpot pipeline, and how many of the account's limit
they use), the poll watermark, queue and DLQ depths, running jobs, sync errors by category and the
API usage of both CRMs where known (Salesforce: the org's daily requests; HubSpot does not report a
private app's daily usage through the APIs dealsync uses). A CRM that cannot be reached shows why;
the exit status is then 1 (everything else is still printed).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from dealsync_cli.target import Target, add_target_arguments, connect


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "status", help="toggles, pipelines, queues, jobs, errors and API usage", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_target_arguments(parser)
    parser.set_defaults(func=run)


def _queue_depths(target: Target) -> dict[str, dict[str, int | None]]:
    import boto3

    sqs = boto3.client("sqs")
    depths: dict[str, dict[str, int | None]] = {}
    for name, url in target.queues.items():
        attributes = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        dlq: int | None = None
        if name in target.dead_letter_queues:
            dlq_attributes = sqs.get_queue_attributes(
                QueueUrl=target.dead_letter_queues[name], AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
            dlq = int(dlq_attributes.get("ApproximateNumberOfMessages", 0))
        depths[name] = {"visible": int(attributes.get("ApproximateNumberOfMessages", 0)),
                        "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
                        "dlq": dlq}
    return depths


def collect(target: Target) -> tuple[dict[str, Any], list[str]]:
    """The status document and the problems met while reading it."""
    from dealsync.clients.errors import CrmError
    from dealsync.services.imports import running_jobs
    from dealsync.services.pipelines import TIER_PIPELINE_LIMITS
    from dealsync.services.poll import CURSOR

    context = target.context
    store = context.store
    problems: list[str] = []
    options = store.settings.options()
    config = store.config.load()
    pipelines = sorted(config.stage_maps.values(), key=lambda mapping: mapping.record_type_id)
    limit: int | None = None
    limit_source = "unknown"
    try:
        limit = context.hubspot.pipeline_limit()
        limit_source = "hubspot"
    except CrmError as error:
        problems.append(f"HubSpot: {error}")
    if limit is None:
        limit = options.pipeline_limit or TIER_PIPELINE_LIMITS.get(options.hubspot_tier)
        limit_source = "configuration" if limit is not None else "unknown"
    salesforce_usage: dict[str, Any] | None = None
    try:
        daily = context.salesforce.limits().get("DailyApiRequests") or {}
        if daily:
            maximum = int(daily.get("Max", 0))
            salesforce_usage = {"used": maximum - int(daily.get("Remaining", 0)), "limit": maximum,
                                "dealsync_share": options.salesforce_api_share}
    except CrmError as error:
        problems.append(f"Salesforce: {error}")
    watermark = store.cursors.get(CURSOR)
    document: dict[str, Any] = {
        "target": target.description,
        "toggles": store.settings.toggles().model_dump(mode="json"),
        "pipelines": {
            "limit": limit, "limit_source": limit_source, "used": len(pipelines),
            "record_types": [{"record_type_id": mapping.record_type_id, "pipeline_id": mapping.pipeline_id,
                              "label": mapping.label, "stages": len(mapping.stages)} for mapping in pipelines],
        },
        "poll_watermark": watermark.isoformat() if watermark else None,
        "queues": _queue_depths(target),
        "running_jobs": [job.model_dump(mode="json") for job in running_jobs(context)],
        "errors": {str(category): count for category, count in store.errors.counts().items()},
        "api_usage": {"salesforce": salesforce_usage, "hubspot": None},
        "problems": problems,
    }
    return document, problems


def _on(value: bool) -> str:
    return "on" if value else "off"


def render(document: dict[str, Any]) -> list[str]:
    toggles = document["toggles"]
    pipelines = document["pipelines"]
    lines = [
        f"dealsync status ({document['target']})",
        f"  company sync {_on(toggles['company_sync'])} · account import "
        f"{'completed' if toggles['account_import_completed'] else 'not completed'} · deal sync "
        f"{_on(toggles['deal_sync'])}",
        f"pipelines: {pipelines['used']} of {pipelines['limit'] if pipelines['limit'] is not None else '?'} "
        f"({pipelines['limit_source']})",
    ]
    lines += [f"  {item['record_type_id']:<20} -> {item['pipeline_id']:<12} {item['label']} ({item['stages']} stages)"
              for item in pipelines["record_types"]]
    lines.append(f"poll watermark: {document['poll_watermark'] or 'never polled'}")
    lines.append("queues:        visible  in flight  DLQ")
    for name, depth in document["queues"].items():
        dlq = "-" if depth["dlq"] is None else str(depth["dlq"])
        lines.append(f"  {name:<18}{depth['visible']:>5}{depth['in_flight']:>11}{dlq:>5}")
    jobs = document["running_jobs"]
    lines.append(f"running jobs: {len(jobs) or 'none'}")
    lines += [f"  {job['job_id']}  {job['kind']:<14} {job['status']:<8} {job['done'] + job['failed']}/{job['total']}"
              f" (failed {job['failed']})" for job in jobs]
    errors = {category: count for category, count in document["errors"].items() if count}
    lines.append("sync errors: " + (", ".join(f"{category} {count}" for category, count in sorted(errors.items()))
                                    or "none"))
    usage = document["api_usage"]["salesforce"]
    salesforce = (f"{usage['used']}/{usage['limit']} daily requests (dealsync share {usage['dealsync_share']:.0%})"
                  if usage else "unknown")
    lines.append(f"API usage: Salesforce {salesforce} · HubSpot unknown")
    lines += [f"problem: {problem}" for problem in document["problems"]]
    return lines


def run(args: argparse.Namespace) -> int:
    target = connect(args)
    document, problems = collect(target)
    if args.json:
        print(json.dumps(document, default=str))
    else:
        print("\n".join(render(document)))
    return 1 if problems else 0
