"""The reliability soak's pure parts: canonical values, the lost-update oracle, the crash injector and
the engines' fault points (no world)."""

from __future__ import annotations

import pytest

from dealsync import faultpoints
from dealsync.models.domain import Side
from dealsync_local.soak import (
    CrashInjector,
    Lifecycle,
    Write,
    accepted_values,
    canonical_amount,
    canonical_date,
    hubspot_deletes,
    named_records,
    pair_starts,
    records_that_ended_wrong,
)


def _write(at: float, side: Side, value: str | None, seen: str | None) -> Write:
    return Write(at, side, "006000000000001AAA", "9000", "amount", value, seen)


def test_canonical_values_compare_both_sides() -> None:
    assert canonical_amount(48000.0) == canonical_amount("48000") == "48000"
    assert canonical_amount("51000.50") == "51000.5"
    assert canonical_amount("") is None and canonical_amount(None) is None
    assert canonical_date("2027-03-31") == canonical_date("2027-03-31T00:00:00Z") == "2027-03-31"
    assert canonical_date("1806451200000") == "2027-03-31"  # HubSpot webhooks: epoch milliseconds
    assert canonical_date("") is None


def test_the_last_write_wins_when_its_author_had_seen_the_other_side() -> None:
    writes = [_write(1.0, Side.HUBSPOT, "10", None), _write(2.0, Side.SALESFORCE, "20", "10")]
    last, accepted = accepted_values(writes) or (None, set())
    assert last is not None and last.value == "20"
    assert accepted == {"20"}


def test_racing_writes_accept_either_but_never_an_older_value() -> None:
    writes = [_write(1.0, Side.SALESFORCE, "5", None), _write(2.0, Side.HUBSPOT, "10", None),
              _write(3.0, Side.SALESFORCE, "20", "5")]  # HubSpot's 10 had not reached Salesforce
    last, accepted = accepted_values(writes) or (None, set())
    assert last is not None and last.value == "20"
    assert accepted == {"20", "10"}
    assert "5" not in accepted
    assert accepted_values([]) is None


def test_a_salesforce_write_within_a_second_of_hubspots_may_lose_to_it() -> None:
    # Salesforce's change times are whole seconds: 0.4 s after HubSpot's write may be stamped before it.
    within = [_write(10.2, Side.HUBSPOT, "10", "5"), _write(10.6, Side.SALESFORCE, "20", "10")]
    assert (accepted_values(within) or (None, set()))[1] == {"20", "10"}
    apart = [_write(10.2, Side.HUBSPOT, "10", "5"), _write(11.3, Side.SALESFORCE, "20", "10")]
    assert (accepted_values(apart) or (None, set()))[1] == {"20"}
    # HubSpot's times are milliseconds: a HubSpot write after Salesforce's is plainly the later one.
    hubspot_last = [_write(10.2, Side.SALESFORCE, "10", "5"), _write(10.6, Side.HUBSPOT, "20", "10")]
    assert (accepted_values(hubspot_last) or (None, set()))[1] == {"20"}


def test_crash_injector_kills_every_nth_arrival_per_point() -> None:
    injector = CrashInjector(every=3)
    outcomes = []
    for _ in range(6):
        try:
            injector("a")
            outcomes.append("ok")
        except faultpoints.SimulatedCrash:
            outcomes.append("crash")
    with pytest.raises(faultpoints.SimulatedCrash):
        injector("b")  # the first arrival at every point
    assert outcomes == ["crash", "ok", "ok", "crash", "ok", "ok"]
    assert injector.crashed == {"a": 2, "b": 1}
    injector.enabled = False
    for _ in range(3):
        injector("b")
    assert injector.crashed == {"a": 2, "b": 1}


def test_fault_points_do_nothing_until_a_harness_installs_a_handler() -> None:
    faultpoints.reach(faultpoints.OPPORTUNITY_SYNC_AFTER_HUBSPOT_WRITE)  # production: nothing happens
    seen: list[str] = []
    faultpoints.install(seen.append)
    try:
        faultpoints.reach(faultpoints.DEAL_SYNC_AFTER_SALESFORCE_WRITE)
    finally:
        faultpoints.install(None)
    faultpoints.reach(faultpoints.DEAL_SYNC_AFTER_SALESFORCE_WRITE)
    assert seen == [faultpoints.DEAL_SYNC_AFTER_SALESFORCE_WRITE]


@pytest.mark.parametrize("value", ["abc", "1e"])
def test_an_unreadable_amount_is_named_not_hidden(value: str) -> None:
    assert canonical_amount(value) == f"invalid:{value}"


def test_dead_letters_are_traced_to_the_records_they_name() -> None:
    webhook = ('{"kind": "hubspot_changes", "events": [{"objectId": 9000000019, "propertyName": "amount"}, '
               '{"fromObjectId": 9000000026, "toObjectId": 1004}]}')
    change = '{"object": "Opportunity", "ids": ["0068d0000000007AAA"], "source": "outbound_message"}'
    assert named_records(webhook) == {"9000000019", "9000000026"}
    assert named_records(change) == {"0068d0000000007AAA"}
    assert named_records("not json") == set()


def test_a_pair_starts_afresh_at_its_last_delete_undelete_or_restore_unless_the_deal_outlived_it() -> None:
    opportunity, deal = "006000000000001AAA", "9000"
    deleted_and_back = [Lifecycle(1.0, "sf_delete", opportunity, deal),
                        Lifecycle(2.0, "sf_undelete", opportunity, None)]
    # the undeleted opportunity synced as a new deal: writes before the undelete were to the old pair
    assert pair_starts(deleted_and_back, {opportunity: "9001"}, {}) == {opportunity: 2.0}
    # the opportunity ends with the deal it had when deleted: the sync never archived it, nothing restarts
    assert pair_starts(deleted_and_back, {opportunity: deal}, {}) == {}
    restored = [Lifecycle(3.0, "hs_delete", None, deal), Lifecycle(4.0, "hs_restore", None, deal)]
    assert pair_starts(deleted_and_back + restored, {opportunity: deal}, {deal: opportunity}) == {opportunity: 4.0}


def test_a_hubspot_delete_is_the_opportunitys_by_the_person_by_the_journal_or_by_the_ended_link() -> None:
    seen, learned, unseen = "006000000000001AAA", "006000000000002AAA", "006000000000003AAA"
    deletes = [Lifecycle(1.0, "hs_delete", seen, "9001"), Lifecycle(2.0, "hs_delete", None, "9002"),
               Lifecycle(3.0, "hs_delete", None, "9003"), Lifecycle(4.0, "hs_restore", None, "9003"),
               Lifecycle(5.0, "hs_delete", None, "9004")]
    # 9002's opportunity is known from the journal; 9003's and 9004's only from their links (the person never
    # saw the opportunity's id); a restore is no delete.
    assert hubspot_deletes(deletes, {"9002": learned}, {"9003": unseen}) == {seen: 1.0, learned: 2.0, unseen: 3.0}
    assert hubspot_deletes(deletes, {"9002": learned}, {"9004": unseen}) == {seen: 1.0, learned: 2.0, unseen: 5.0}


def test_a_dead_letter_is_unexplained_only_by_a_record_problem_not_by_another_dead_letter() -> None:
    problems = ["lost update: 0068d000000000sAAA/9000000034 contact:0038d0000000001AAA is 'in', not 'out'"]
    assert records_that_ended_wrong({"9000000034", "9000000042"}, problems) == ["9000000034"]
    assert records_that_ended_wrong({"9000000042", "9000000044"}, problems) == []
