"""API budgets without a network: the budget arithmetic, the GCRA limiter's guarantee against a rolling
window, the shared limiter's waiting, the usage meter's batching, the CRM header parsers and how
``dealsync status`` shows a paused budget."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from dealsync.clients.ratelimit import (
    BURST_PER_TEN_SECONDS,
    gcra_parameters,
    gcra_take,
    parse_hubspot_daily,
    parse_salesforce_limit_info,
)
from dealsync.services.budget import (
    SharedRateLimiter,
    UsageMeter,
    batch_verdict,
    describe_pause,
    next_window,
    salesforce_allowance,
)
from dealsync.store.usage import HUBSPOT, SALESFORCE, CrmDayUsage, UsageStore

NOW = datetime(2026, 11, 27, 16, 30, tzinfo=UTC)
TODAY = NOW.date()


def salesforce(calls: int = 0, used: int | None = None, limit: int | None = None) -> CrmDayUsage:
    return CrmDayUsage(SALESFORCE, TODAY, calls=calls, used=used, limit=limit)


def hubspot(remaining: int | None = None, limit: int | None = None) -> CrmDayUsage:
    return CrmDayUsage(HUBSPOT, TODAY, remaining=remaining, limit=limit)


# --- the arithmetic ---------------------------------------------------------------------------------------


def test_the_allowance_is_the_share_of_the_org_limit_rounded_down() -> None:
    assert salesforce_allowance(0.25, 1000) == 250
    assert salesforce_allowance(0.25, 1003) == 250
    assert salesforce_allowance(1.0, 15_000) == 15_000
    assert salesforce_allowance(0.25, None) is None


def test_batch_work_stops_exactly_at_the_share() -> None:
    assert batch_verdict(salesforce(calls=249, used=400, limit=1000), hubspot(), 0.25, NOW).allowed
    refused = batch_verdict(salesforce(calls=250, used=400, limit=1000), hubspot(), 0.25, NOW)
    assert not refused.allowed and refused.crm == SALESFORCE and not refused.org_exhausted
    assert refused.reason is not None and "250 of 250 (25% of the org's 1000)" in refused.reason
    assert refused.resumes_at == datetime(2026, 11, 28, tzinfo=UTC)


def test_an_exhausted_org_stops_batch_work_whatever_the_share() -> None:
    refused = batch_verdict(salesforce(calls=3, used=1000, limit=1000), hubspot(), 1.0, NOW)
    assert not refused.allowed and refused.org_exhausted and refused.resumes_at is None
    assert refused.reason is not None and "all 1000" in refused.reason


def test_unknown_usage_allows_and_hubspot_daily_exhaustion_refuses() -> None:
    assert batch_verdict(salesforce(calls=10_000), hubspot(), 0.25, NOW).allowed  # allocation not seen yet
    assert batch_verdict(salesforce(), hubspot(remaining=12, limit=1000), 0.25, NOW).allowed
    refused = batch_verdict(salesforce(), hubspot(remaining=0, limit=1000), 0.25, NOW)
    assert not refused.allowed and refused.crm == HUBSPOT
    assert refused.resumes_at == next_window(NOW)
    assert describe_pause(refused).startswith("paused (API_BUDGET): HubSpot's daily API limit is reached; resumes "
                                              "after 2026-11-28T00:00:00+00:00")


def test_the_next_window_is_the_next_utc_midnight() -> None:
    assert next_window(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)
    plus_five = datetime(2026, 11, 28, 1, 0, tzinfo=UTC).astimezone(__import__("datetime").timezone(
        timedelta(hours=5)))
    assert next_window(plus_five) == datetime(2026, 11, 29, tzinfo=UTC)


# --- parsing what the CRMs say ---------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "expected"), [
    ("api-usage=18/5000", (18, 5000)),
    ("api-usage=10018/100000, per-app-api-usage=17/250(appName=dealsync)", (10018, 100000)),
    ("per-app-api-usage=17/250(appName=x)", None),
    ("", None),
    (None, None),
])
def test_sforce_limit_info(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_salesforce_limit_info(header) == expected


def test_hubspot_daily_headers_any_case() -> None:
    assert parse_hubspot_daily({"X-HubSpot-RateLimit-Daily": "625000",
                                "x-hubspot-ratelimit-daily-remaining": "624990"}) == (625000, 624990)
    assert parse_hubspot_daily({"X-HubSpot-RateLimit-Max": "190"}) == (None, None)
    assert parse_hubspot_daily({"X-HubSpot-RateLimit-Daily": "lots"}) == (None, None)
    assert parse_hubspot_daily(None) == (None, None)


# --- the limiter -------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class InMemorySlots(UsageStore):
    """The limiter's bucket in memory, deciding as the conditional writes do (gcra_take)."""

    def __init__(self) -> None:
        self.tats: dict[str, float] = {}
        self.writes = 0

    def take_slot(self, name: str, now: float, emission: float, tolerance: float, busy_first: bool) -> float | None:
        self.writes += 1
        new = gcra_take(self.tats.get(name), now, emission, tolerance)
        if new is not None:
            self.tats[name] = new
        return new

    def limiter_tat(self, name: str) -> float | None:
        return self.tats.get(name)


def most_in_any_window(stamps: list[float], interval: float) -> int:
    """The largest number of stamps in a half-open window (t - interval, t], as a rolling limit counts
    (a microsecond narrower: stamps exactly one interval apart must not meet through float rounding)."""
    ordered = sorted(stamps)
    span = interval - 1e-6
    return max(index + 1 - bisect.bisect_right(ordered, stamp - span) for index, stamp in enumerate(ordered))


@pytest.mark.parametrize(("limit", "interval"), [(190, 10.0), (100, 10.0), (10, 1.0), (5, 1.0)])
def test_greedy_workers_sharing_the_bucket_never_exceed_a_rolling_window(limit: int, interval: float) -> None:
    clock = FakeClock()
    slots = InMemorySlots()
    workers = [SharedRateLimiter(slots, "burst", limit, interval, clock=clock.time, sleep=clock.sleep)
               for _ in range(3)]
    stamps: list[float] = []
    for turn in range(limit * 6):
        workers[turn % 3].acquire()
        stamps.append(clock.now)
    assert most_in_any_window(stamps, interval) <= int(limit * 0.9)  # the limit less its margin
    parameters = workers[0].parameters
    # Never slower than the design: the burst at once, then one request per emission interval...
    assert stamps[-1] - stamps[0] <= (len(stamps) - parameters.burst) * parameters.emission + 1e-6
    assert 1 / parameters.emission >= 0.6 * limit / interval  # ...which stays close to the limit


def test_a_burst_goes_out_at_once_then_requests_are_paced() -> None:
    clock = FakeClock()
    limiter = SharedRateLimiter(InMemorySlots(), "burst", 190, 10.0, clock=clock.time, sleep=clock.sleep)
    burst = limiter.parameters.burst
    waits = [limiter.acquire() for _ in range(burst)]
    assert waits == [0.0] * burst  # a single change's few calls never wait
    assert limiter.acquire() > 0
    assert limiter.parameters.burst == gcra_parameters(BURST_PER_TEN_SECONDS["professional"], 10.0).burst


def test_an_idle_bucket_does_not_bank_credit() -> None:
    clock = FakeClock()
    limiter = SharedRateLimiter(InMemorySlots(), "search", 5, 1.0, clock=clock.time, sleep=clock.sleep)
    clock.now += 3600  # an hour of silence
    stamps = []
    for _ in range(40):
        limiter.acquire()
        stamps.append(clock.now)
    assert most_in_any_window(stamps, 1.0) <= 4


def test_gcra_parameters_are_refused_when_meaningless() -> None:
    with pytest.raises(ValueError, match="positive"):
        gcra_parameters(0, 10.0)
    one = gcra_parameters(1, 1.0)
    assert one.burst == 1 and one.tolerance < 1e-3 and one.emission == 1.0


class BrokenSlots(UsageStore):
    def __init__(self) -> None:
        pass

    def take_slot(self, name: str, now: float, emission: float, tolerance: float, busy_first: bool) -> float | None:
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                          "UpdateItem")


def test_the_limiter_falls_back_to_the_container_when_dynamodb_fails() -> None:
    limiter = SharedRateLimiter(BrokenSlots(), "burst", 3, 60.0)
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]  # in-process window of 3 per minute


# --- the usage meter ---------------------------------------------------------------------------------------


class RecordingUsage(UsageStore):
    def __init__(self, fail: int = 0) -> None:
        self.adds: list[tuple[str, date, int, Mapping[str, int | None]]] = []
        self.fail = fail

    def add(self, crm: str, moment: datetime, calls: int, *, used: int | None = None, limit: int | None = None,
            remaining: int | None = None) -> None:
        if self.fail:
            self.fail -= 1
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}}, "UpdateItem")
        self.adds.append((crm, moment.date(), calls, {"used": used, "limit": limit, "remaining": remaining}))


def test_the_meter_adds_up_calls_and_keeps_the_latest_figures() -> None:
    usage = RecordingUsage()
    meter = UsageMeter(usage, lambda: NOW, flush_seconds=3600)
    meter.salesforce(10, 1000)
    meter.salesforce(None, None)  # a response without Sforce-Limit-Info still counts
    meter.salesforce(12, 1000)
    meter.hubspot.answered(625_000, 624_000)
    assert usage.adds == []  # nothing written before the interval
    meter.flush()
    assert sorted(usage.adds) == [
        (HUBSPOT, TODAY, 1, {"used": None, "limit": 625_000, "remaining": 624_000}),
        (SALESFORCE, TODAY, 3, {"used": 12, "limit": 1000, "remaining": None}),
    ]
    meter.flush()
    assert len(usage.adds) == 2  # nothing new, nothing written


def test_a_daily_429_is_written_at_once_without_counting_twice() -> None:
    usage = RecordingUsage()
    meter = UsageMeter(usage, lambda: NOW, flush_seconds=3600)
    meter.hubspot.answered(1000, 0)  # the 429 response itself
    meter.hubspot.daily_limit_reached()
    assert usage.adds == [(HUBSPOT, TODAY, 1, {"used": None, "limit": 1000, "remaining": 0})]


def test_a_failed_flush_keeps_its_counts_for_the_next() -> None:
    usage = RecordingUsage(fail=1)
    meter = UsageMeter(usage, lambda: NOW, flush_seconds=3600)
    meter.salesforce(5, 100)
    meter.flush()
    assert usage.adds == []
    meter.salesforce(6, 100)
    meter.flush()
    assert usage.adds == [(SALESFORCE, TODAY, 2, {"used": 6, "limit": 100, "remaining": None})]


# --- dealsync status -----------------------------------------------------------------------------------------


def test_status_shows_usage_and_a_paused_budget() -> None:
    from dealsync_cli.commands.status import render_usage

    lines = render_usage({
        "day": "2026-11-27",
        "salesforce": {"used": 600, "limit": 1000, "source": "limits", "dealsync_share": 0.25,
                       "dealsync_allowance": 250, "dealsync_calls": 251},
        "hubspot": {"daily_limit": 1000, "daily_remaining": 0, "dealsync_calls": 40, "daily_limit_reached": True},
        "batch_work": {"allowed": False, "paused_by": "salesforce", "reason": "dealsync used its share",
                       "resumes_at": "2026-11-28T00:00:00+00:00"},
        "paused_jobs": ["abc123"],
    })
    assert lines == [
        "API usage today (2026-11-27 UTC):",
        "  Salesforce org 600/1000 · dealsync 251 of 250 (25%)",
        "  HubSpot daily limit reached · dealsync 40",
        "  batch work PAUSED (API_BUDGET, salesforce): dealsync used its share",
        "  resumes after 2026-11-28T00:00:00+00:00; paused jobs: abc123",
    ]
    assert render_usage({"salesforce": None, "hubspot": None})[1:] == ["  Salesforce unknown", "  HubSpot unknown"]


def test_the_share_is_a_fraction_or_a_percentage_and_nothing_else() -> None:
    from dealsync_cli.commands.budget import parse_share
    from dealsync_cli.errors import CommandError

    assert parse_share("0.25") == 0.25
    assert parse_share(" 25% ") == 0.25
    assert parse_share("1") == 1.0
    for nonsense in ("0", "0%", "1.5", "101%", "-0.1", "nan", "inf", "a quarter", ""):
        with pytest.raises(CommandError, match="more than 0 and at most 1") as refused:
            parse_share(nonsense)
        assert refused.value.status == 2
