"""The API-budget session: a world of its own with the demo org (100 opportunities, 60 contacts), company
sync on, the accounts imported and deal sync on, and the poll firing by itself every 2 seconds (as
EventBridge fires it every 5 minutes), because the poll is what resumes paused imports: no test resumes
them by hand. The demo records were last modified two days ago, so the poll does not sync them: only
the imports under test do.

"A day passes" for dealsync by moving the clock of the handlers' context (shared with the tests: one
process) forward by a day; the emulators' daily allowances are reset through their control APIs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dealsync.models.domain import Job, JobStatus
from dealsync.services.context import SyncContext, cached_context
from dealsync.services.imports import start_import
from dealsync.services.toggles import set_company_sync, set_deal_sync
from dealsync_local.demo import generate, load_into
from dealsync_local.pytest_fixtures import WorldView, local_world  # noqa: F401 - the session world
from dealsync_local.world import LocalWorld

POLL_EVERY_SECONDS = 2


@pytest.fixture(scope="session")
def local_world_options() -> dict[str, Any]:
    return {"seed": "none", "run_schedules": True, "poll_interval": POLL_EVERY_SECONDS}


@dataclass
class BudgetWorld(WorldView):
    context: SyncContext  # the handlers' own context (its clock is theirs)

    def advance_one_day(self) -> None:
        """dealsync's clock moves a day forward: a new UTC day, a new budget window."""
        earlier: Callable[[], datetime] = self.context.now
        self.context.now = lambda: earlier() + timedelta(days=1)

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.25)

    def job(self, job_id: str) -> Job:
        job = self.context.store.jobs.get(job_id)
        assert job is not None
        return job

    def hubspot_records(self, object_type: str) -> list[dict[str, str]]:
        store = self.hubspot.store
        with store.lock:
            return [dict(record.values) for record in store.records[object_type].values() if not record.archived]

    def salesforce_ids(self, sobject: str) -> list[str]:
        return sorted(str(row["Id"]) for row in self.salesforce.soql(f"SELECT Id FROM {sobject}"))


@pytest.fixture(scope="session")
def budgets(local_world: LocalWorld) -> BudgetWorld:  # noqa: F811 - the imported fixture
    world = BudgetWorld(local_world, cached_context())
    assert local_world.crms is not None
    world.salesforce.apply_config({"clock_offset_seconds": -2 * 86_400})
    # Records last touched two days ago at the latest, whatever the time of day: outside every poll window,
    # also once the tests move dealsync's clock a day on.
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).date()
    load_into(local_world.crms, generate(100, today=two_days_ago))
    world.salesforce.apply_config({"clock_offset_seconds": 0})
    set_company_sync(world.context, True)
    accounts = start_import(world.context, "accounts")
    world.wait_for("the account import", lambda: world.job(accounts.job_id).status is JobStatus.COMPLETED)
    set_deal_sync(world.context, True)
    world.settle()
    return world
