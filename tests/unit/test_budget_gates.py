"""Scheduled batch work (the nightly rollup recompute, the weekly reconcile) is skipped while the API budget
is spent, and runs when it is not."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from dealsync.services import reconcile, rollup_recompute
from dealsync.services.budget import ALLOWED, BudgetVerdict
from dealsync.services.context import SyncContext

REFUSED = BudgetVerdict(False, "salesforce", "dealsync used its share of Salesforce API requests for today")
NIGHTLY = {"messageId": "m1", "body": json.dumps({"kind": "scheduled", "task": "rollup_full_recompute",
                                                  "time": "2026-11-27T03:17:00Z", "event_id": "e1"})}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    for module in (rollup_recompute, reconcile):
        monkeypatch.setattr(module, "record_pause",
                            lambda _context, record_type, record_id, verdict: seen.append(f"pause {record_type}"))

    def enqueue_full_recompute(_context: SyncContext) -> int:
        seen.append("recompute")
        return 0

    monkeypatch.setattr(rollup_recompute, "enqueue_full_recompute", enqueue_full_recompute)
    monkeypatch.setattr(reconcile, "run_scheduled_reconcile", lambda _context, _task: seen.append("reconcile"))
    return seen


@pytest.mark.parametrize(("verdict", "expected"), [(REFUSED, ["pause RollupRecompute"]), (ALLOWED, ["recompute"])])
def test_nightly_recompute_waits_for_the_budget(monkeypatch: pytest.MonkeyPatch, calls: list[str],
                                                verdict: BudgetVerdict, expected: list[str]) -> None:
    monkeypatch.setattr(rollup_recompute, "check_batch", lambda _context: verdict)
    response = rollup_recompute.process_rollup_messages([NIGHTLY], cast(SyncContext, object()))
    assert response["batchItemFailures"] == []  # acknowledged either way: the next night covers it
    assert calls == expected


@pytest.mark.parametrize(("verdict", "expected"), [(REFUSED, ["pause Reconcile"]), (ALLOWED, ["reconcile"])])
def test_weekly_reconcile_waits_for_the_budget(monkeypatch: pytest.MonkeyPatch, calls: list[str],
                                               verdict: BudgetVerdict, expected: list[str]) -> None:
    monkeypatch.setattr(reconcile, "check_batch", lambda _context: verdict)
    task: Any = object()
    assert reconcile.reconcile_task(cast(SyncContext, object()), task) is True
    assert calls == expected
