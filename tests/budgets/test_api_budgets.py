"""API budgets end to end (DESIGN §3, issue 8): the real handlers, clients and CLI against the local
world. With the emulators' daily allowances set low, batch work (the scheduled poll, imports) pauses with
``API_BUDGET`` instead of failing records, live sync of single changes goes on while the org has calls
left, and the poll itself resumes paused imports once a new window starts; HubSpot's burst 429s are
waited out. The tests build on each other and run in file order."""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from typing import Any

import pytest
import requests

from dealsync.models.domain import ErrorCategory, JobStatus
from dealsync.services.budget import usage_report
from dealsync.services.imports import start_import
from dealsync.services.poll import CURSOR
from dealsync.store.usage import HUBSPOT, SALESFORCE
from dealsync_cli.main import main
from tests.budgets.conftest import BudgetWorld

pytestmark = pytest.mark.e2e


def cli(budgets: BudgetWorld, *args: str) -> tuple[int, str, str]:
    """A ``dealsync`` command in this process: exit status, its own output (the handlers' EMF metrics lines,
    printed on the same stdout, left out) and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([*args, "--state-dir", str(budgets.world.state_dir)])
    own = "\n".join(line for line in out.getvalue().splitlines() if line.strip() and not line.startswith('{"_aws"'))
    return status, own, err.getvalue()


def status_json(budgets: BudgetWorld) -> tuple[int, dict[str, Any]]:
    status, out, _ = cli(budgets, "status", "--json")
    return status, json.loads(out)


def budget_errors(budgets: BudgetWorld, record_id: str) -> list[Any]:
    return [error for error in budgets.context.store.errors.for_record(record_id)
            if error.category is ErrorCategory.API_BUDGET]


def test_status_shows_both_crms_usage(budgets: BudgetWorld) -> None:
    status, document = status_json(budgets)
    assert status == 0, document["problems"]
    usage = document["api_usage"]
    salesforce, hubspot = usage["salesforce"], usage["hubspot"]
    assert salesforce["limit"] == budgets.salesforce.daily_request_limit
    assert 0 < salesforce["used"] <= salesforce["limit"]
    assert salesforce["dealsync_calls"] > 0  # the account import's and the polls' calls, counted in DynamoDB
    assert salesforce["dealsync_allowance"] == int(salesforce["dealsync_share"] * salesforce["limit"])
    assert hubspot["daily_limit"] == budgets.hubspot.get_config()["effective_daily_limit"]
    assert hubspot["dealsync_calls"] > 0 and 0 < hubspot["daily_remaining"] < hubspot["daily_limit"]
    assert hubspot["daily_limit_reached"] is False
    assert usage["batch_work"] == {"allowed": True, "paused_by": None, "reason": None, "resumes_at": None}
    assert usage["paused_jobs"] == []


def test_the_operator_sets_dealsyncs_share_and_nonsense_is_refused(budgets: BudgetWorld) -> None:
    settings = budgets.context.store.settings
    for nonsense in ("150%", "0", "-0.2", "a quarter"):
        status, _, err = cli(budgets, "budget", "--salesforce-share", nonsense)
        assert status == 2 and "more than 0 and at most 1" in err, err
    assert settings.options().salesforce_api_share == 0.25  # the default, untouched
    status, out, _ = cli(budgets, "budget", "--salesforce-share", "40%", "--json")
    assert status == 0
    document = json.loads(out)
    assert document["salesforce_api_share"] == 0.4 and settings.options().salesforce_api_share == 0.4
    assert document["api_usage"]["salesforce"]["dealsync_share"] == 0.4
    status, out, _ = cli(budgets, "budget")
    assert status == 0 and out.startswith("dealsync's share of Salesforce's daily API requests: 40%")
    assert "API usage today" in out and "dealsync" in out


def test_hubspot_daily_limit_pauses_an_import_midway_without_failing_records(budgets: BudgetWorld) -> None:
    contacts = budgets.salesforce_ids("Contact")
    used = budgets.hubspot.limiter.daily_used
    budgets.hubspot.apply_config({"daily_limit": used + 7})  # a few chunks (two calls each) fit
    job = start_import(budgets.context, "contacts", chunk_size=5)
    budgets.wait_for("the contact import to pause", lambda: budgets.job(job.job_id).paused is not None)
    budgets.world.drain(60)

    paused = budgets.job(job.job_id)
    assert paused.status in (JobStatus.PENDING, JobStatus.RUNNING) and paused.failed == 0
    assert paused.paused is not None and "API_BUDGET" in paused.paused and "HubSpot" in paused.paused
    assert paused.chunks_done < len(contacts) / 5  # stopped midway: the rest is pending, not failed
    assert len(budgets.context.store.jobs.pending_chunks(job.job_id)) == paused.chunks_total - paused.chunks_done
    [error] = budget_errors(budgets, job.job_id)
    assert error.record_type == "ImportJob" and error.related_ids == {"crm": HUBSPOT}
    assert not any(budgets.context.store.errors.for_record(contact_id) for contact_id in contacts)

    status, document = status_json(budgets)
    assert status == 1  # HubSpot refuses status's own pipeline-limit read too, and status says so
    assert [problem for problem in document["problems"] if "daily limit" in problem]
    usage = document["api_usage"]
    assert usage["hubspot"]["daily_limit_reached"] is True
    assert usage["batch_work"]["allowed"] is False and usage["batch_work"]["paused_by"] == HUBSPOT
    assert usage["batch_work"]["resumes_at"].endswith("T00:00:00+00:00")
    assert job.job_id in usage["paused_jobs"]
    budgets.wait_for("a refused poll", lambda: bool(budget_errors(budgets, CURSOR)))


def test_after_hubspots_reset_the_poll_resumes_the_import_which_links_each_contact_once(
        budgets: BudgetWorld) -> None:
    [job] = budgets.context.store.jobs.paused()
    endpoints = budgets.world.endpoints
    assert endpoints is not None
    reset = requests.post(f"{endpoints.hubspot.base_url}/__emulator/ratelimits/daily", json={},
                          verify=str(endpoints.hubspot.ca_file), timeout=10)
    assert reset.status_code == 200 and reset.json()["daily_used"] == 0
    budgets.hubspot.apply_config({"daily_limit": None})
    budgets.advance_one_day()  # nobody resumes the job: the next poll does

    budgets.wait_for("the contact import to complete",
                     lambda: budgets.job(job.job_id).status is JobStatus.COMPLETED)
    finished = budgets.job(job.job_id)
    contacts = budgets.salesforce_ids("Contact")
    assert (finished.done, finished.failed, finished.total, finished.paused) == (len(contacts), 0, len(contacts), None)
    emails = Counter(contact["email"] for contact in budgets.hubspot_records("contacts"))
    assert len(emails) == len(contacts) and set(emails.values()) == {1}
    assert budget_errors(budgets, job.job_id) == []  # the pause's error cleared with the resume
    budgets.wait_for("an allowed poll to clear the poll's error", lambda: not budget_errors(budgets, CURSOR))


def test_salesforce_share_pauses_the_poll_and_an_import_while_live_sync_goes_on_through_429s(
        budgets: BudgetWorld) -> None:
    context = budgets.context
    calls = usage_report(context).salesforce.calls  # today's (the new day's) calls so far
    assert calls >= 2
    limit = calls + 100  # the org keeps 100 requests for live sync...
    context.store.settings.set_options(salesforce_api_share=round((calls - 1) / limit, 6))  # ...dealsync's are spent
    budgets.salesforce.apply_config({"daily_request_limit": limit, "daily_requests_used": limit - 100})
    # dealsync learns the new allocation from Sforce-Limit-Info on its next request (the next poll's).
    budgets.wait_for("the budget to refuse", lambda: not usage_report(context).verdict.allowed)

    def refused_polls() -> int:
        return sum(error.attempts for error in budget_errors(budgets, CURSOR))

    before = refused_polls()
    budgets.wait_for("a refused poll", lambda: refused_polls() > before)
    # Read once polls are refused: a poll allowed just before the refusal may still be moving it.
    watermark = context.store.cursors.get(CURSOR)
    refused = refused_polls()
    budgets.wait_for("another refused poll", lambda: refused_polls() > refused)
    [poll_error] = budget_errors(budgets, CURSOR)
    assert poll_error.related_ids == {"crm": SALESFORCE} and "share" in poll_error.message
    assert context.store.cursors.get(CURSOR) == watermark  # the next window's poll covers the gap

    job = start_import(context, "opportunities", chunk_size=10)
    budgets.wait_for("the opportunity import to pause", lambda: budgets.job(job.job_id).paused is not None)
    paused = budgets.job(job.job_id)
    assert (paused.status, paused.total, paused.done, paused.failed) == (JobStatus.PENDING, 0, 0, 0)
    assert paused.paused is not None and "share of Salesforce API requests" in paused.paused
    assert budgets.hubspot_records("deals") == []  # the import wrote nothing

    # Changes made by the person still sync (live sync is held back only by the org's exhaustion), even
    # through a storm of burst 429s (another app took HubSpot's 10-second window): they are waited out.
    changed = budgets.salesforce_ids("Opportunity")[:3]
    rate_limited = context.hubspot.rate_limited
    budgets.hubspot.apply_config({"burst_limit": 3})
    try:
        for number, opportunity_id in enumerate(changed):
            budgets.salesforce.update("Opportunity", opportunity_id, {"Amount": 4321 + number})
        budgets.settle(timeout=300)
    finally:
        budgets.hubspot.apply_config({"burst_limit": None})
    assert context.hubspot.rate_limited > rate_limited
    deals = {deal["salesforce_opportunity_id"]: deal for deal in budgets.hubspot_records("deals")}
    assert [float(deals[opportunity_id]["amount"]) for opportunity_id in changed] == [4321, 4322, 4323]
    assert not any(context.store.errors.for_record(opportunity_id) for opportunity_id in changed)
    assert budgets.job(job.job_id).paused is not None  # and the import still waits
    report = usage_report(context)
    assert not report.verdict.allowed and report.verdict.crm == SALESFORCE and job.job_id in report.paused_jobs
    assert report.salesforce.used is not None and report.salesforce.used < limit


def test_in_the_next_window_the_poll_resumes_the_import_which_imports_every_opportunity_once(
        budgets: BudgetWorld) -> None:
    context = budgets.context
    [job] = context.store.jobs.paused()
    budgets.salesforce.apply_config({"daily_request_limit": 100_000, "daily_requests_used": 0})
    budgets.advance_one_day()

    budgets.wait_for("the opportunity import to complete",
                     lambda: budgets.job(job.job_id).status is JobStatus.COMPLETED, timeout=180)
    # (No settle: the 2-second poll keeps re-reading the opportunities the import just wrote back to.)
    finished = budgets.job(job.job_id)
    opportunities = budgets.salesforce_ids("Opportunity")
    assert (finished.done, finished.failed, finished.total) == (len(opportunities), 0, len(opportunities))
    deals = sorted(deal["salesforce_opportunity_id"] for deal in budgets.hubspot_records("deals"))
    assert deals == opportunities  # the live-synced ones included, each exactly once
    assert budget_errors(budgets, job.job_id) == []
    assert usage_report(context).verdict.allowed
