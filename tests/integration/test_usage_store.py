"""API usage in DynamoDB (moto over real sockets, the table from template.yaml): day counts shared by
workers, the shared GCRA limiter's conditional writes, and pausing jobs."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, date, datetime

import pytest
from mypy_boto3_dynamodb.client import DynamoDBClient

from dealsync.clients.ratelimit import gcra_parameters, gcra_take
from dealsync.models.domain import JobStatus
from dealsync.services.budget import SharedRateLimiter
from dealsync.store import SyncStore
from dealsync.store.usage import HUBSPOT, SALESFORCE

pytestmark = pytest.mark.integration


@pytest.fixture
def store(sync_table_name: str, dynamodb_client: DynamoDBClient) -> SyncStore:
    return SyncStore(sync_table_name, dynamodb_client)


def test_day_counts_add_up_and_keep_the_latest_figures(store: SyncStore) -> None:
    morning = datetime(2026, 11, 27, 8, tzinfo=UTC)
    store.usage.add(SALESFORCE, morning, 5, used=100, limit=1000)
    store.usage.add(SALESFORCE, morning.replace(hour=9), 7)  # no header this time: figures kept
    store.usage.add(HUBSPOT, morning, 3, limit=625_000, remaining=624_000)
    store.usage.add(SALESFORCE, datetime(2026, 11, 28, 0, 0, 1, tzinfo=UTC), 1, used=5, limit=1000)
    today = store.usage.day(date(2026, 11, 27))
    assert (today[SALESFORCE].calls, today[SALESFORCE].used, today[SALESFORCE].limit) == (12, 100, 1000)
    assert (today[HUBSPOT].calls, today[HUBSPOT].limit, today[HUBSPOT].remaining) == (3, 625_000, 624_000)
    assert today[SALESFORCE].seen_at == morning.replace(hour=9)
    tomorrow = store.usage.day(date(2026, 11, 28))
    assert tomorrow[SALESFORCE].calls == 1 and tomorrow[HUBSPOT].calls == 0 and tomorrow[HUBSPOT].limit is None


def test_conditional_writes_decide_as_gcra_does(store: SyncStore) -> None:
    parameters = gcra_parameters(10, 1.0)
    rng = random.Random(8)
    now = 1_000_000.0
    expected: float | None = None
    for step in range(120):
        now += rng.choice([0.0, 0.0, 0.01, 0.05, 0.2, 1.5])
        busy_first = step % 2 == 0  # either order of the two writes gives the same decision
        taken = store.usage.take_slot("test#gcra", now, parameters.emission, parameters.tolerance, busy_first)
        model = gcra_take(expected, now, parameters.emission, parameters.tolerance)
        assert (taken is None) == (model is None), step
        if model is not None:
            assert taken == pytest.approx(model, abs=1e-5)
            expected = model
        assert store.usage.limiter_tat("test#gcra") == pytest.approx(expected, abs=1e-5)


def test_concurrent_workers_share_one_bucket(store: SyncStore) -> None:
    limit, interval = 10, 1.0
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        limiter = SharedRateLimiter(store.usage, "test#shared", limit, interval)
        for _ in range(12):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ordered = sorted(stamps)
    busiest = max(sum(1 for other in ordered if stamp - interval < other <= stamp) for stamp in ordered)
    assert len(ordered) == 36
    assert busiest <= limit  # three workers, one limit (9 with the margin, plus timing noise of one)
    assert ordered[-1] - ordered[0] >= (36 - gcra_parameters(limit, interval).burst) / limit  # paced, not bursting


def test_a_job_pauses_once_and_one_resumer_lifts_it(store: SyncStore) -> None:
    job = store.jobs.create("opportunities")
    assert store.jobs.pause(job.job_id, "paused (API_BUDGET): test")
    assert not store.jobs.pause(job.job_id, "paused again")  # one note, one error per pause
    paused = store.jobs.get(job.job_id)
    assert paused is not None and paused.paused == "paused (API_BUDGET): test" and paused.message == paused.paused
    assert [found.job_id for found in store.jobs.paused()] == [job.job_id]
    assert store.jobs.clear_pause(job.job_id, "resumed")
    assert not store.jobs.clear_pause(job.job_id, "resumed twice")
    lifted = store.jobs.get(job.job_id)
    assert lifted is not None and lifted.paused is None and lifted.status is JobStatus.PENDING
    assert store.jobs.paused() == []
    store.jobs.set_status(job.job_id, JobStatus.COMPLETED, "done")
    assert not store.jobs.pause(job.job_id, "too late")  # a finished job is never paused
    assert not store.jobs.pause("no-such-job", "nothing")
