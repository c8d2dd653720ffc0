"""API budgets (DESIGN §3): how much of each CRM's daily allowance dealsync may spend, and on what.

* Salesforce: the org's daily allocation is shared with every other integration. dealsync's batch work
  (the poll, imports) may spend ``salesforce_api_share`` of it per UTC day; past that, or when the org
  has nothing left, batch work pauses with ``API_BUDGET`` and resumes in the next window. Live sync of
  single changes is not held back by the share: only the org's real exhaustion stops it.
* HubSpot: every worker draws from two shared rate limiters (the tier's burst per 10 s, search's 5/s)
  kept in DynamoDB, so concurrent workers together stay under HubSpot's limits; a ``DAILY`` 429 pauses
  batch work until the reset.

What the clients observe (each request, ``Sforce-Limit-Info``, HubSpot's daily headers) is added up in
memory by a :class:`UsageMeter` and written to DynamoDB at most once a second per container (and before
every budget decision), so counting costs a few writes, not one per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from dealsync.clients.errors import CrmError
from dealsync.clients.ratelimit import (
    BURST_INTERVAL_SECONDS,
    BURST_PER_TEN_SECONDS,
    SEARCH_PER_SECOND,
    GcraParameters,
    SlidingWindowLimiter,
    gcra_parameters,
)
from dealsync.models.domain import ErrorCategory
from dealsync.observability import logger
from dealsync.store.usage import HUBSPOT, SALESFORCE, CrmDayUsage, UsageStore

if TYPE_CHECKING:
    from dealsync.services.context import SyncContext

FLUSH_SECONDS = 1.0
PROBE_AFTER = timedelta(minutes=1)  # an exhausted org is asked again (one /limits call) after this
BURST_LIMITER = "hubspot#burst"
SEARCH_LIMITER = "hubspot#search"


# --- the arithmetic (pure) ----------------------------------------------------------------------------


def salesforce_allowance(share: float, org_limit: int | None) -> int | None:
    """dealsync's requests per day: its share of the org's allocation (None while the allocation is unknown)."""
    if org_limit is None:
        return None
    return int(share * org_limit)


def next_window(moment: datetime) -> datetime:
    """The next UTC midnight: when dealsync's daily counts (and HubSpot's daily limit here) start again."""
    day = moment.astimezone(UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True)
class BudgetVerdict:
    """May batch work spend calls now? When not: why, on which CRM, and from when it may again."""

    allowed: bool
    crm: str | None = None
    reason: str | None = None
    resumes_at: datetime | None = None  # None: when the org's rolling usage drops (checked at each poll)
    org_exhausted: bool = False


ALLOWED = BudgetVerdict(True)


def batch_verdict(salesforce: CrmDayUsage, hubspot: CrmDayUsage, share: float, now: datetime) -> BudgetVerdict:
    """The decision for batch work (poll, imports) from the day's usage of both CRMs."""
    if salesforce.used is not None and salesforce.limit is not None and salesforce.used >= salesforce.limit:
        return BudgetVerdict(False, SALESFORCE, f"the Salesforce org has used all {salesforce.limit} of its daily "
                                                "API requests (all integrations together)", None, org_exhausted=True)
    allowance = salesforce_allowance(share, salesforce.limit)
    if allowance is not None and salesforce.calls >= allowance:
        return BudgetVerdict(False, SALESFORCE, f"dealsync used its share of Salesforce API requests for today: "
                                                f"{salesforce.calls} of {allowance} ({share:.0%} of the org's "
                                                f"{salesforce.limit})", next_window(now))
    if hubspot.remaining is not None and hubspot.remaining <= 0:
        return BudgetVerdict(False, HUBSPOT, "HubSpot's daily API limit is reached", next_window(now))
    return ALLOWED


# --- what the clients observed, added up and shared -------------------------------------------------------


@dataclass
class _Pending:
    calls: int = 0
    used: int | None = None
    limit: int | None = None
    remaining: int | None = None

    def take(self) -> _Pending:
        taken = _Pending(self.calls, self.used, self.limit, self.remaining)
        self.calls, self.used, self.limit, self.remaining = 0, None, None, None
        return taken

    def give_back(self, taken: _Pending) -> None:
        """A flush failed: keep its counts for the next one (newer figures win)."""
        self.calls += taken.calls
        self.used = self.used if self.used is not None else taken.used
        self.limit = self.limit if self.limit is not None else taken.limit
        self.remaining = self.remaining if self.remaining is not None else taken.remaining

    @property
    def empty(self) -> bool:
        return not self.calls and self.used is None and self.limit is None and self.remaining is None


class _HubSpotListener:
    def __init__(self, meter: UsageMeter) -> None:
        self._meter = meter

    def answered(self, daily_limit: int | None, daily_remaining: int | None) -> None:
        self._meter.note(HUBSPOT, limit=daily_limit, remaining=daily_remaining)

    def daily_limit_reached(self) -> None:
        self._meter.note(HUBSPOT, calls=0, remaining=0, urgent=True)


class UsageMeter:
    """Counts one container's CRM requests and keeps the CRMs' latest figures; writes them to the
    shared day items at most every ``flush_seconds`` (and on :meth:`flush`)."""

    def __init__(self, usage: UsageStore, now: Callable[[], datetime], flush_seconds: float = FLUSH_SECONDS) -> None:
        self.usage = usage
        self.now = now
        self.flush_seconds = flush_seconds
        self._pending = {SALESFORCE: _Pending(), HUBSPOT: _Pending()}
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self.hubspot = _HubSpotListener(self)

    def salesforce(self, org_used: int | None, org_limit: int | None) -> None:
        self.note(SALESFORCE, used=org_used, limit=org_limit)

    def note(self, crm: str, calls: int = 1, used: int | None = None, limit: int | None = None,
             remaining: int | None = None, urgent: bool = False) -> None:
        with self._lock:
            pending = self._pending[crm]
            pending.calls += calls
            pending.used = used if used is not None else pending.used
            pending.limit = limit if limit is not None else pending.limit
            pending.remaining = remaining if remaining is not None else pending.remaining
            due = urgent or time.monotonic() - self._last_flush >= self.flush_seconds
        if due:
            self.flush()

    def flush(self) -> None:
        """Write what was counted since the last flush (one UpdateItem per CRM with news)."""
        with self._lock:
            taken = {crm: pending.take() for crm, pending in self._pending.items()}
            self._last_flush = time.monotonic()
        moment = self.now()
        for crm, counts in taken.items():
            if counts.empty:
                continue
            try:
                self.usage.add(crm, moment, counts.calls, used=counts.used, limit=counts.limit,
                               remaining=counts.remaining)
            except (BotoCoreError, ClientError) as error:  # counting must never fail a CRM call
                logger.warning("API usage not recorded yet; kept for the next flush",
                               extra={"crm": crm, "cause": str(error)[:200]})
                with self._lock:
                    self._pending[crm].give_back(counts)


class SharedRateLimiter:
    """A GCRA limiter whose state lives in DynamoDB, so every worker of the stack draws from one bucket.

    Usually one conditional UpdateItem per request; when the bucket is full, one read tells how long to
    wait. If DynamoDB cannot be reached the container falls back to an in-process limiter (and HubSpot's
    own 429s, which the client waits out)."""

    def __init__(self, usage: UsageStore, name: str, limit: int, interval: float,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.usage = usage
        self.name = name
        self.parameters: GcraParameters = gcra_parameters(limit, interval)
        self._clock = clock
        self._sleep = sleep
        self._last_tat = 0.0
        self._fallback = SlidingWindowLimiter(limit, interval)
        self.waited = 0.0

    def acquire(self) -> float:
        waited = 0.0
        emission, tolerance = self.parameters.emission, self.parameters.tolerance
        while True:
            now = self._clock()
            try:
                tat = self.usage.take_slot(self.name, now, emission, tolerance, busy_first=self._last_tat >= now)
                current = self.usage.limiter_tat(self.name) if tat is None else None
            except (BotoCoreError, ClientError) as error:
                logger.warning("shared rate limiter unavailable; limiting in this container only",
                               extra={"limiter": self.name, "cause": str(error)[:200]})
                return waited + self._fallback.acquire()
            if tat is not None:
                self._last_tat = tat
                self.waited += waited
                return waited
            # Full: the next slot opens when the theoretical arrival time is within the tolerance again.
            pause = max(0.001, (current if current is not None else now) - tolerance - now)
            self._sleep(pause)
            waited += pause


# --- wiring and decisions on a SyncContext -------------------------------------------------------------


def install(context: SyncContext, tier: str) -> UsageMeter:
    """Make the context's clients count into DynamoDB and draw from the shared HubSpot limiters."""
    meter = UsageMeter(context.store.usage, lambda: context.now())
    context.salesforce.usage_listener = meter.salesforce
    context.hubspot.usage_listener = meter.hubspot
    burst = BURST_PER_TEN_SECONDS.get(tier, min(BURST_PER_TEN_SECONDS.values()))
    context.hubspot.burst = SharedRateLimiter(context.store.usage, BURST_LIMITER, burst, BURST_INTERVAL_SECONDS)
    context.hubspot.search_limit = SharedRateLimiter(context.store.usage, SEARCH_LIMITER, SEARCH_PER_SECOND, 1.0)
    context.usage_meter = meter
    return meter


@dataclass(frozen=True)
class UsageReport:
    """Today's figures for ``dealsync status``."""

    day: str
    salesforce: CrmDayUsage
    hubspot: CrmDayUsage
    share: float
    allowance: int | None
    verdict: BudgetVerdict
    paused_jobs: list[str] = field(default_factory=list)


def _today(context: SyncContext) -> tuple[datetime, dict[str, CrmDayUsage]]:
    if context.usage_meter is not None:
        context.usage_meter.flush()
    now = context.now()
    return now, context.store.usage.day(now.astimezone(UTC).date())


def check_batch(context: SyncContext) -> BudgetVerdict:
    """May batch work (the poll, an import) spend CRM calls now?"""
    now, usage = _today(context)
    share = context.options().salesforce_api_share
    verdict = batch_verdict(usage[SALESFORCE], usage[HUBSPOT], share, now)
    seen = usage[SALESFORCE].seen_at
    if verdict.org_exhausted and (seen is None or now - seen >= PROBE_AFTER):
        # The org's allocation is rolling: ask again (one call) whether requests have aged out since.
        try:
            context.salesforce.limits()
        except CrmError as error:
            logger.info("Salesforce still refuses requests", extra={"cause": error.message[:200]})
        now, usage = _today(context)
        verdict = batch_verdict(usage[SALESFORCE], usage[HUBSPOT], share, now)
    return verdict


def usage_report(context: SyncContext) -> UsageReport:
    now, usage = _today(context)
    share = context.options().salesforce_api_share
    paused = [job.job_id for job in context.store.jobs.paused()]
    return UsageReport(now.astimezone(UTC).date().isoformat(), usage[SALESFORCE], usage[HUBSPOT], share,
                       salesforce_allowance(share, usage[SALESFORCE].limit),
                       batch_verdict(usage[SALESFORCE], usage[HUBSPOT], share, now), paused)


def describe_pause(verdict: BudgetVerdict) -> str:
    when = (f"resumes after {verdict.resumes_at.isoformat()}" if verdict.resumes_at
            else "resumes when the org has requests left")
    return f"paused (API_BUDGET): {verdict.reason}; {when}"


def record_pause(context: SyncContext, record_type: str, record_id: str, verdict: BudgetVerdict) -> None:
    """The API_BUDGET sync error of a paused piece of batch work (attempts count the refusals)."""
    context.store.errors.record(ErrorCategory.API_BUDGET, record_type, record_id, describe_pause(verdict),
                                {"crm": verdict.crm or ""})
    logger.warning("batch work paused by the API budget", extra={"record_type": record_type, "record_id": record_id,
                                                                  "crm": verdict.crm, "reason": verdict.reason})


def pause_job(context: SyncContext, job_id: str, verdict: BudgetVerdict) -> bool:
    """Pause an import job (its pending chunks stay pending, nothing is counted as failed) and record one
    API_BUDGET sync error for it. False when it was paused already."""
    if not context.store.jobs.pause(job_id, describe_pause(verdict)):
        return False
    record_pause(context, "ImportJob", job_id, verdict)
    return True


def verdict_from_error(context: SyncContext, error: CrmError) -> BudgetVerdict:
    """A CRM refusal met mid-work (REQUEST_LIMIT_EXCEEDED, HubSpot DAILY) as a verdict."""
    now = context.now()
    if error.crm == HUBSPOT:
        return BudgetVerdict(False, HUBSPOT, f"HubSpot refused: {error.message[:200]}", next_window(now))
    return BudgetVerdict(False, SALESFORCE, f"Salesforce refused: {error.message[:200]}", None, org_exhausted=True)
