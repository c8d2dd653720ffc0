"""``dealsync status [--json]``: what the sync is doing.

Toggles, pipelines (Salesforce record type ⇄ HubSpot pipeline, and how many of the account's limit
they use), the poll watermark, queue and DLQ depths, running jobs, sync errors by category and the
API usage of both CRMs for the current UTC day: Salesforce's daily requests (the org's, all
integrations together, and dealsync's own against its configured share), HubSpot's daily allowance
as its headers last reported it and dealsync's own calls, and whether batch work (the poll, imports)
is paused by the budget, with why and until when. A CRM that cannot be reached shows why; the exit
status is then 1 (everything else is still printed).
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


def api_usage_document(context: Any, live: dict[str, Any] | None) -> dict[str, Any]:
    """Today's usage of both CRMs (``live``: Salesforce's ``DailyApiRequests`` read just now, if it could be)."""
    from dealsync.services.budget import usage_report

    report = usage_report(context)
    salesforce, hubspot, verdict = report.salesforce, report.hubspot, report.verdict
    used, limit, source = salesforce.used, salesforce.limit, "Sforce-Limit-Info"
    if live:
        used, limit, source = live["used"], live["limit"], "limits"
    return {
        "day": report.day,
        "salesforce": None if limit is None and not salesforce.calls else {
            "used": used, "limit": limit, "source": source, "dealsync_share": report.share,
            "dealsync_allowance": report.allowance, "dealsync_calls": salesforce.calls,
        },
        "hubspot": None if hubspot.limit is None and hubspot.remaining is None and not hubspot.calls else {
            "daily_limit": hubspot.limit, "daily_remaining": hubspot.remaining, "dealsync_calls": hubspot.calls,
            "daily_limit_reached": hubspot.remaining is not None and hubspot.remaining <= 0,
        },
        "batch_work": {"allowed": verdict.allowed, "paused_by": verdict.crm, "reason": verdict.reason,
                       "resumes_at": verdict.resumes_at.isoformat() if verdict.resumes_at else None},
        "paused_jobs": report.paused_jobs,
    }


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
    live_usage: dict[str, Any] | None = None
    try:
        daily = context.salesforce.limits().get("DailyApiRequests") or {}
        if daily:
            maximum = int(daily.get("Max", 0))
            live_usage = {"used": maximum - int(daily.get("Remaining", 0)), "limit": maximum}
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
        "api_usage": api_usage_document(context, live_usage),
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
    lines += render_usage(document["api_usage"])
    lines += [f"problem: {problem}" for problem in document["problems"]]
    return lines


def render_usage(usage: dict[str, Any]) -> list[str]:
    salesforce, hubspot = usage.get("salesforce"), usage.get("hubspot")
    sf_text = "unknown"
    if salesforce and salesforce.get("limit") is not None:
        sf_text = (f"org {salesforce['used'] if salesforce['used'] is not None else '?'}/{salesforce['limit']}"
                   f" · dealsync {salesforce['dealsync_calls']} of {salesforce['dealsync_allowance']}"
                   f" ({salesforce['dealsync_share']:.0%})")
    elif salesforce:
        sf_text = f"dealsync {salesforce['dealsync_calls']} calls (the org's allocation not seen yet)"
    hs_text = "unknown"
    if hubspot:
        left = ("daily limit reached" if hubspot["daily_limit_reached"] else
                f"{hubspot['daily_remaining']} of {hubspot['daily_limit']} left" if hubspot["daily_limit"] else
                "daily allowance not reported")
        hs_text = f"{left} · dealsync {hubspot['dealsync_calls']}"
    day = f" today ({usage['day']} UTC)" if usage.get("day") else ""
    lines = [f"API usage{day}:", f"  Salesforce {sf_text}", f"  HubSpot {hs_text}"]
    batch = usage.get("batch_work")
    if batch and not batch["allowed"]:
        lines.append(f"  batch work PAUSED (API_BUDGET, {batch['paused_by']}): {batch['reason']}")
        when = f"after {batch['resumes_at']}" if batch["resumes_at"] else "when the org has requests left"
        lines.append(f"  resumes {when}; paused jobs: {', '.join(usage.get('paused_jobs') or []) or 'none'}")
    return lines


def run(args: argparse.Namespace) -> int:
    target = connect(args)
    document, problems = collect(target)
    if args.json:
        print(json.dumps(document, default=str))
    else:
        print("\n".join(render(document)))
    return 1 if problems else 0
