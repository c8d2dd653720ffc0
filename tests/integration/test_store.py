"""The DynamoDB store against a moto server over real sockets, tables from template.yaml."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest
from mypy_boto3_dynamodb.client import DynamoDBClient

from dealsync.models.domain import (
    ErrorCategory,
    FieldMapping,
    JobStatus,
    LinkKind,
    LinkStatus,
    RollupRow,
    Side,
    StageMapping,
    SyncRule,
)
from dealsync.services.context import SyncContext
from dealsync.services.records import claim_pairs
from dealsync.store import StaleShadowError, SyncStore, ToggleRefusedError
from dealsync.store.rollups import STAGE_SEEN_AT
from dealsync.store.settings import STEP_ACCOUNT_IMPORT, STEP_COMPANY_SYNC, STEP_DEAL_SYNC

pytestmark = pytest.mark.integration


@pytest.fixture
def store(sync_table_name: str, dynamodb_client: DynamoDBClient) -> SyncStore:
    return SyncStore(sync_table_name, dynamodb_client)


def opp_id(number: int) -> str:
    return f"006{number:012d}AAA"


# --- links ----------------------------------------------------------------------------------------

def test_link_is_found_from_both_sides(store: SyncStore) -> None:
    result = store.links.create(LinkKind.OPPORTUNITY, opp_id(1), "1001", shadow={"dealname": "Acme"})
    assert result.created
    by_sf = store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opp_id(1))
    by_hs = store.links.get_by_hubspot_id(LinkKind.OPPORTUNITY, "1001")
    assert by_sf is not None and by_hs is not None
    assert by_sf.hubspot_id == "1001" and by_hs.salesforce_id == opp_id(1)
    assert by_sf.shadow == {"dealname": "Acme"} == by_hs.shadow
    assert store.links.get_by_salesforce_id(LinkKind.ACCOUNT, opp_id(1)) is None  # kinds do not mix


def test_two_concurrent_creators_exactly_one_wins(
    sync_table_name: str, dynamodb_client: DynamoDBClient, moto_endpoint: str
) -> None:
    import boto3

    rounds = 15
    for number in range(rounds):
        barrier = threading.Barrier(2)

        def create(hubspot_id: str, number: int = number, barrier: threading.Barrier = barrier) -> tuple[bool, str]:
            client = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
            own = SyncStore(sync_table_name, client)
            barrier.wait()
            result = own.links.create(LinkKind.OPPORTUNITY, opp_id(100 + number), hubspot_id)
            return result.created, result.link.hubspot_id

        with ThreadPoolExecutor(max_workers=2) as pool:
            outcomes = list(pool.map(create, [f"A{number}", f"B{number}"]))
        created = [outcome for outcome in outcomes if outcome[0]]
        assert len(created) == 1, outcomes
        winner = created[0][1]
        # The loser got the winner's link back, not its own.
        assert {hubspot_id for _, hubspot_id in outcomes} == {winner}
        stored = SyncStore(sync_table_name, dynamodb_client).links.get_by_salesforce_id(
            LinkKind.OPPORTUNITY, opp_id(100 + number)
        )
        assert stored is not None and stored.hubspot_id == winner


def test_creating_a_taken_hubspot_id_returns_the_standing_link(store: SyncStore) -> None:
    store.links.create(LinkKind.OPPORTUNITY, opp_id(2), "2002")
    result = store.links.create(LinkKind.OPPORTUNITY, opp_id(3), "2002")
    assert not result.created
    assert result.link.salesforce_id == opp_id(2)
    assert store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opp_id(3)) is None


def test_tombstone_then_relink(store: SyncStore) -> None:
    link = store.links.create(LinkKind.OPPORTUNITY, opp_id(4), "4004").link
    tombstoned = store.links.tombstone(link, "deleted in HubSpot")
    assert tombstoned.status is LinkStatus.TOMBSTONED
    stored = store.links.get_by_hubspot_id(LinkKind.OPPORTUNITY, "4004")
    assert stored is not None
    assert stored.status is LinkStatus.TOMBSTONED
    assert stored.status_reason == "deleted in HubSpot"

    relinked = store.links.create(LinkKind.OPPORTUNITY, opp_id(4), "4005")
    assert relinked.created and relinked.link.hubspot_id == "4005"
    current = store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opp_id(4))
    assert current is not None and current.status is LinkStatus.ACTIVE and current.hubspot_id == "4005"
    # The old deal id still tells its history.
    old = store.links.get_by_hubspot_id(LinkKind.OPPORTUNITY, "4004")
    assert old is not None and old.status is LinkStatus.TOMBSTONED


def test_a_pair_known_only_once_ended_is_created_ended_and_can_be_linked_again(store: SyncStore) -> None:
    result = store.links.create(LinkKind.OPPORTUNITY, opp_id(71), "7107", status=LinkStatus.TOMBSTONED,
                                status_reason="deal deleted in HubSpot")
    assert result.created
    for side, record_id in ((Side.SALESFORCE, opp_id(71)), (Side.HUBSPOT, "7107")):
        stored = store.links.get(LinkKind.OPPORTUNITY, side, record_id)
        assert stored is not None
        assert (stored.status, stored.status_reason) == (LinkStatus.TOMBSTONED, "deal deleted in HubSpot")
    relinked = store.links.create(LinkKind.OPPORTUNITY, opp_id(71), "7108")
    assert relinked.created and relinked.link.is_active
    # An ended pair is not recorded over a live link.
    refused = store.links.create(LinkKind.OPPORTUNITY, opp_id(71), "7109", status=LinkStatus.PAUSED,
                                 status_reason="deal deleted in HubSpot")
    assert not refused.created and refused.link.hubspot_id == "7108" and refused.link.is_active


def test_an_active_link_is_not_overwritten(store: SyncStore) -> None:
    store.links.create(LinkKind.OPPORTUNITY, opp_id(5), "5005")
    result = store.links.create(LinkKind.OPPORTUNITY, opp_id(5), "5006")
    assert not result.created and result.link.hubspot_id == "5005"
    assert store.links.get_by_hubspot_id(LinkKind.OPPORTUNITY, "5006") is None


def test_pause_and_resume(store: SyncStore) -> None:
    link = store.links.create(LinkKind.OPPORTUNITY, opp_id(6), "6006").link
    paused = store.links.pause(link, "deal moved to a pipeline that does not sync")
    assert paused.status is LinkStatus.PAUSED
    for side, record_id in ((Side.SALESFORCE, opp_id(6)), (Side.HUBSPOT, "6006")):
        stored = store.links.get(LinkKind.OPPORTUNITY, side, record_id)
        assert stored is not None and stored.status is LinkStatus.PAUSED
    assert store.links.pause(paused, "again").status is LinkStatus.PAUSED  # idempotent
    resumed = store.links.resume(paused)
    assert resumed.is_active
    stored = store.links.get_by_hubspot_id(LinkKind.OPPORTUNITY, "6006")
    assert stored is not None and stored.is_active and stored.status_reason is None


def test_shadow_update_with_a_stale_version_is_refused(store: SyncStore) -> None:
    link = store.links.create(LinkKind.OPPORTUNITY, opp_id(7), "7007", shadow={"amount": "10"}).link
    first = store.links.update_shadow(link, {"amount": "20", "dealname": "New"})
    assert first.shadow_version == link.shadow_version + 1
    with pytest.raises(StaleShadowError):
        store.links.update_shadow(link, {"amount": "30"})  # read before `first` was written
    stored = store.links.get_by_hubspot_id(LinkKind.OPPORTUNITY, "7007")
    assert stored is not None
    assert stored.shadow == {"amount": "20", "dealname": "New"}
    assert stored.shadow_version == first.shadow_version
    again = store.links.update_shadow(stored, {"amount": None})
    assert again.shadow["amount"] is None


def test_pending_writes_are_kept_on_both_items_until_the_shadow_is_saved(store: SyncStore) -> None:
    links = [store.links.create(LinkKind.OPPORTUNITY, opp_id(n), f"71{n:02d}", shadow={"Amount": "10"}).link
             for n in range(60)]
    pending: dict[str, dict[str, str | None]] = {"hubspot": {"Amount": "20"}, "salesforce": {"Name": None}}
    marked = store.links.set_pending_many([(link, pending) for link in links])  # two transactions of 50 and 10
    assert [link.pending if link else None for link in marked] == [pending] * 60
    assert [link.shadow_version if link else None for link in marked] == [2] * 60  # the claim moves the version
    from_hubspot = store.links.get_by_hubspot_id(LinkKind.OPPORTUNITY, "7105")
    assert from_hubspot is not None and from_hubspot.pending == pending
    from_salesforce = store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opp_id(5))
    assert from_salesforce is not None and from_salesforce.pending == pending
    assert marked[5] is not None
    saved = store.links.update_shadow(marked[5], {"Amount": "20"})
    assert saved.pending is None
    for stored in (store.links.get_by_hubspot_id(LinkKind.OPPORTUNITY, "7105"),
                   store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opp_id(5))):
        assert stored is not None and stored.pending is None and stored.shadow == {"Amount": "20"}


def test_pending_writes_are_refused_on_a_link_that_moved_since_it_was_read(store: SyncStore) -> None:
    link = store.links.create(LinkKind.OPPORTUNITY, opp_id(80), "7180", shadow={"Amount": "10"}).link
    moved = store.links.update_shadow(link, {"Amount": "15"})
    other = store.links.create(LinkKind.OPPORTUNITY, opp_id(81), "7181", shadow={"Amount": "10"}).link
    pending = {"hubspot": {"Amount": "20"}}
    results = store.links.set_pending_many([(link, pending), (other, pending)])  # one refused: each on its own
    assert results[0] is None
    assert results[1] is not None and results[1].pending == pending
    stored = store.links.get_by_hubspot_id(LinkKind.OPPORTUNITY, "7180")
    assert stored is not None and stored.pending is None and stored.shadow_version == moved.shadow_version
    # Two syncs that read the same link: the first claim wins, the second is refused before it writes.
    read_once = store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opp_id(81))
    assert read_once is not None
    assert store.links.set_pending(read_once, {"salesforce": {"Name": "A"}}) is not None
    assert store.links.set_pending(read_once, {"hubspot": {"Name": "B"}}) is None


def test_a_claim_saved_over_by_another_sync_keeps_its_writes_under_the_links_own(store: SyncStore) -> None:
    link = store.links.create(LinkKind.OPPORTUNITY, opp_id(82), "7182", shadow={"Amount": "10"}).link
    mine = store.links.set_pending(link, {"hubspot": {"Amount": "20", "Name": "Mine"}, "salesforce": {"Type": "x"}})
    assert mine is not None
    # Another sync claims the pair after this one (it read the claimed link), writes and saves it first.
    other = store.links.set_pending(mine, {"hubspot": {"Amount": "30"}})
    assert other is not None
    saved = store.links.update_shadow(other, {"Amount": "30"})
    with pytest.raises(StaleShadowError):
        store.links.update_shadow(mine, {"Amount": "20"})
    kept = store.links.keep_pending(mine)
    assert kept is not None and kept.shadow_version == saved.shadow_version  # no version moved: no claim refused
    for side, record_id in ((Side.SALESFORCE, opp_id(82)), (Side.HUBSPOT, "7182")):
        stored = store.links.get(LinkKind.OPPORTUNITY, side, record_id)
        assert stored is not None and stored.shadow == {"Amount": "30"}
        assert stored.pending == {"hubspot": {"Amount": "20", "Name": "Mine"}, "salesforce": {"Type": "x"}}
    # A claim that stands keeps its own values where both name a field.
    claimed = store.links.set_pending(kept, {"hubspot": {"Amount": "40"}})
    assert claimed is not None
    store.links.keep_pending(mine)
    stored = store.links.get(LinkKind.OPPORTUNITY, Side.HUBSPOT, "7182")
    assert stored is not None and stored.pending == {"hubspot": {"Amount": "40", "Name": "Mine"},
                                                     "salesforce": {"Type": "x"}}
    assert stored.shadow_version == claimed.shadow_version
    # A side only the standing claim names stays too.
    only_hubspot = store.links.create(LinkKind.OPPORTUNITY, opp_id(83), "7183", shadow={"Amount": "10"}).link
    first = store.links.set_pending(only_hubspot, {"hubspot": {"Amount": "20"}})
    assert first is not None
    standing = store.links.set_pending(first, {"salesforce": {"Name": "Theirs"}})
    assert standing is not None
    store.links.keep_pending(first)
    stored = store.links.get(LinkKind.OPPORTUNITY, Side.SALESFORCE, opp_id(83))
    assert stored is not None and stored.pending == {"hubspot": {"Amount": "20"}, "salesforce": {"Name": "Theirs"}}
    # Nothing to keep, or the pair gone: nothing done.
    assert store.links.keep_pending(saved) is None
    assert store.links.keep_pending(mine.model_copy(update={"hubspot_id": "7199"})) is None


def test_a_sync_claims_the_pairs_it_read_and_the_moved_ones_go_back_to_be_read_again(store: SyncStore) -> None:
    read = [store.links.create(LinkKind.OPPORTUNITY, opp_id(90 + n), f"719{n}", shadow={"Amount": "10"}).link
            for n in range(3)]
    store.links.update_shadow(read[1], {"Amount": "15"})  # the other direction saved this pair after the read
    retry: dict[str, str] = {}
    context = cast(SyncContext, cast(Any, SimpleNamespace(store=store)))
    claims = [(link.salesforce_id, link, {"hubspot": {"Amount": "20"}}) for link in read]
    claimed, refused = claim_pairs(context, claims, retry)
    assert refused == {opp_id(91)} and list(retry) == [opp_id(91)]
    assert sorted(claimed) == [opp_id(90), opp_id(92)]
    assert all(link.pending == {"hubspot": {"Amount": "20"}} for link in claimed.values())
    # A claimed pair is this sync's until it saves: a sync that read it before the claim is refused.
    _, refused_again = claim_pairs(context, [claims[0]], {})
    assert refused_again == {opp_id(90)}


def test_batch_lookup_of_250_ids_takes_at_most_three_calls(store: SyncStore) -> None:
    ids = [opp_id(1000 + number) for number in range(250)]
    for number, salesforce_id in enumerate(ids[:200]):
        store.links.create(LinkKind.OPPORTUNITY, salesforce_id, str(90000 + number))
    before = store.table.calls
    found = store.links.get_many(LinkKind.OPPORTUNITY, Side.SALESFORCE, ids)
    assert store.table.calls - before <= 3
    assert len(found) == 200
    assert found[ids[10]].hubspot_id == "90010"

    before = store.table.calls
    by_hubspot = store.links.get_many(LinkKind.OPPORTUNITY, Side.HUBSPOT, [str(90000 + n) for n in range(250)])
    assert store.table.calls - before <= 3
    assert len(by_hubspot) == 200 and by_hubspot["90199"].salesforce_id == ids[199]


# --- toggles --------------------------------------------------------------------------------------

def test_deal_sync_refused_without_company_sync_and_account_import(store: SyncStore) -> None:
    with pytest.raises(ToggleRefusedError) as refused:
        store.settings.set_deal_sync(True)
    assert refused.value.missing_steps == [STEP_COMPANY_SYNC, STEP_ACCOUNT_IMPORT]
    assert "company sync" in str(refused.value) and "account import" in str(refused.value)
    assert not store.settings.toggles().deal_sync


def test_deal_sync_refused_without_account_import(store: SyncStore) -> None:
    store.settings.set_company_sync(True)
    with pytest.raises(ToggleRefusedError) as refused:
        store.settings.set_deal_sync(True)
    assert refused.value.missing_steps == [STEP_ACCOUNT_IMPORT]


def test_deal_sync_refused_without_company_sync(store: SyncStore) -> None:
    store.settings.mark_account_import_completed()
    with pytest.raises(ToggleRefusedError) as refused:
        store.settings.set_deal_sync(True)
    assert refused.value.missing_steps == [STEP_COMPANY_SYNC]


def test_deal_sync_on_after_prerequisites_then_company_sync_cannot_be_pulled(store: SyncStore) -> None:
    store.settings.set_company_sync(True)
    store.settings.mark_account_import_completed()
    toggles = store.settings.set_deal_sync(True)
    assert toggles.deal_sync and toggles.company_sync and toggles.account_import_completed
    with pytest.raises(ToggleRefusedError) as refused:
        store.settings.set_company_sync(False)
    assert "deal sync" in str(refused.value)
    assert store.settings.toggles().company_sync
    store.settings.set_deal_sync(False)
    assert not store.settings.set_company_sync(False).company_sync


def test_opportunity_import_refused_while_deal_sync_is_off(store: SyncStore) -> None:
    with pytest.raises(ToggleRefusedError) as refused:
        store.settings.require_deal_sync("import opportunities")
    assert refused.value.missing_steps == [STEP_DEAL_SYNC]
    assert str(refused.value).startswith("Cannot import opportunities: turn on deal sync first")


def test_options_have_design_defaults_and_validate(store: SyncStore) -> None:
    options = store.settings.options()
    assert options.resync_after_hubspot_delete and options.automatic_lifecycle_transitions
    assert not store.settings.set_options(automatic_lifecycle_transitions=False).automatic_lifecycle_transitions
    assert not store.settings.options().automatic_lifecycle_transitions
    with pytest.raises(ValueError, match="salesforce_api_share"):
        store.settings.set_options(salesforce_api_share=1.5)


# --- configuration, cursors -----------------------------------------------------------------------

def test_configuration_round_trip(store: SyncStore) -> None:
    store.config.put_mapping(FieldMapping(salesforce_field="NextStep", hubspot_property="next_step",
                                          rule=SyncRule.ALWAYS_SALESFORCE))
    store.config.put_value_map("Type", {"New Business": "newbusiness"})
    store.config.put_stage_map(StageMapping(record_type_id="012000000000001AAA", pipeline_id="p1",
                                            label="Salesforce - 012000000000001AAA", stages={"Prospecting": "s1"}))
    config = store.config.load()
    assert config.mappings["NextStep"].rule is SyncRule.ALWAYS_SALESFORCE
    assert config.value_maps["Type"] == {"New Business": "newbusiness"}
    stage_map = config.stage_map_for_pipeline("p1")
    assert stage_map is not None and stage_map.stages == {"Prospecting": "s1"}
    store.config.delete_mapping("NextStep")
    assert "NextStep" not in store.config.load().mappings


def test_cursor_never_moves_backwards(store: SyncStore) -> None:
    start = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert store.cursors.get("poll") is None
    assert store.cursors.advance("poll", start)
    assert not store.cursors.advance("poll", start - timedelta(minutes=1))
    assert not store.cursors.advance("poll", start)
    assert store.cursors.advance("poll", start + timedelta(seconds=1))
    assert store.cursors.get("poll") == start + timedelta(seconds=1)


# --- jobs -----------------------------------------------------------------------------------------

def test_job_counters_under_concurrent_increments(
    sync_table_name: str, moto_endpoint: str, store: SyncStore
) -> None:
    import boto3

    job = store.jobs.create("opportunities")

    def bump(_: int) -> None:
        client = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
        own = SyncStore(sync_table_name, client)
        for _ in range(10):
            own.jobs.add_counts(job.job_id, done=3, failed=1)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(bump, range(8)))
    stored = store.jobs.get(job.job_id)
    assert stored is not None
    assert (stored.done, stored.failed) == (8 * 10 * 3, 8 * 10)


def test_a_chunk_counts_once_and_pending_chunks_resume(store: SyncStore) -> None:
    job = store.jobs.create("accounts")
    store.jobs.add_chunks(job.job_id, [(0, ["a", "b"]), (1, ["c"]), (2, ["d", "e", "f"])])
    assert store.jobs.complete_chunk(job.job_id, 0, done=2, failed=0)
    assert not store.jobs.complete_chunk(job.job_id, 0, done=2, failed=0)  # redelivered
    assert store.jobs.pending_chunks(job.job_id) == [(1, ["c"]), (2, ["d", "e", "f"])]
    stored = store.jobs.get(job.job_id)
    assert stored is not None
    assert (stored.total, stored.done, stored.chunks_total, stored.chunks_done) == (6, 2, 3, 1)
    finished = store.jobs.set_status(job.job_id, JobStatus.COMPLETED)
    assert finished.status is JobStatus.COMPLETED and finished.finished_at is not None
    assert job.job_id in [listed.job_id for listed in store.jobs.recent()]


# --- sync errors ----------------------------------------------------------------------------------

def test_errors_by_category_with_attempts_and_resolution(store: SyncStore) -> None:
    first = store.errors.record(ErrorCategory.OWNER_NOT_FOUND, "Opportunity", opp_id(9), "no HubSpot owner for 005X")
    again = store.errors.record(ErrorCategory.OWNER_NOT_FOUND, "Opportunity", opp_id(9), "no HubSpot owner for 005X")
    assert again.attempts == 2 and again.first_seen == first.first_seen and again.last_seen >= first.last_seen
    store.errors.record(ErrorCategory.UNMAPPED_VALUE, "Opportunity", opp_id(9), "Type 'Partner' is not mapped")
    store.errors.record(ErrorCategory.UNMAPPED_VALUE, "Opportunity", opp_id(10), "Type 'Other' is not mapped")
    counts = store.errors.counts()
    assert counts[ErrorCategory.OWNER_NOT_FOUND] == 1 and counts[ErrorCategory.UNMAPPED_VALUE] == 2
    assert counts[ErrorCategory.PIPELINE_LIMIT] == 0
    listed = store.errors.list(ErrorCategory.UNMAPPED_VALUE)
    assert {error.record_id for error in listed} == {opp_id(9), opp_id(10)}
    cleared = store.errors.resolve(opp_id(9), [ErrorCategory.OWNER_NOT_FOUND])
    assert [error.category for error in cleared] == [ErrorCategory.OWNER_NOT_FOUND]
    assert [error.category for error in store.errors.for_record(opp_id(9))] == [ErrorCategory.UNMAPPED_VALUE]
    store.errors.resolve(opp_id(9))
    assert store.errors.for_record(opp_id(9)) == []


# --- rollup projection ----------------------------------------------------------------------------

def test_rollup_projection_follows_contact_roles(store: SyncStore) -> None:
    created = datetime(2026, 1, 2, tzinfo=UTC)
    row = RollupRow(contact_id="", opportunity_id=opp_id(11), amount="100.00", created=created,
                    close_date="2026-03-01", closed=True, won=True)
    assert store.rollups.replace_opportunity(row, ["003A", "003B"]) == {"003A", "003B"}
    assert [r.opportunity_id for r in store.rollups.rows_for_contact("003A")] == [opp_id(11)]
    # A role removed: both the removed and the remaining contact are affected.
    assert store.rollups.replace_opportunity(row, ["003B"]) == {"003A", "003B"}
    assert store.rollups.rows_for_contact("003A") == []
    rows = store.rollups.rows_for_contact("003B")
    assert len(rows) == 1 and rows[0].won and rows[0].amount == "100.00" and rows[0].created == created
    assert store.rollups.remove_opportunity(opp_id(11)) == {"003B"}
    assert store.rollups.rows_for_contact("003B") == []

    contacts: set[str] = set()
    for shard in range(16):
        after: str | None = None
        while True:
            page, after = store.rollups.contact_page(shard, limit=1, start_after=after)
            contacts.update(page)
            if after is None:
                break
    assert contacts == {"003A", "003B"}

    store.rollups.save_written_values({"003B": {"total_revenue": "0"}})
    assert store.rollups.written_values(["003B", "003A"]) == {"003B": {"total_revenue": "0"}}


def test_lifecycle_stages_are_noted_newest_first_without_touching_written_values(store: SyncStore) -> None:
    rollups = store.rollups
    assert rollups.note_lifecycle_stages({"003L": ("501", "lead", 100)}) == 1  # no state yet: one is started
    assert rollups.written_values(["003L"])["003L"]["lifecyclestage"] == "lead"
    # The recompute saves what it wrote; a later webhook notes only the stage.
    rollups.save_written_values({"003L": {"hubspot_id": "501", "properties": {"total_revenue": "10"},
                                          "lifecyclestage": "opportunity", STAGE_SEEN_AT: 200}})
    assert rollups.note_lifecycle_stages({"003L": ("501", "evangelist", 300)}) == 1
    state = rollups.written_values(["003L"])["003L"]
    assert state["properties"] == {"total_revenue": "10"}
    assert (state["lifecyclestage"], state[STAGE_SEEN_AT]) == ("evangelist", 300)
    # An older event arriving late changes nothing; "only if unknown" keeps a known stage.
    assert rollups.note_lifecycle_stages({"003L": ("501", "lead", 250)}) == 0
    assert rollups.note_lifecycle_stages({"003L": ("501", "lead", 900)}, only_if_unknown=True) == 0
    assert rollups.written_values(["003L"])["003L"]["lifecyclestage"] == "evangelist"
    # Re-linked to another HubSpot contact (a merge): the old state is replaced.
    assert rollups.note_lifecycle_stages({"003L": ("777", "customer", 50)}) == 1
    assert rollups.written_values(["003L"])["003L"] == {
        "hubspot_id": "777", "properties": {}, "lifecyclestage": "customer", STAGE_SEEN_AT: 50}


def test_association_times_keep_a_persons_latest_change_of_each_association(store: SyncStore) -> None:
    times = store.association_times
    times.note("9001", "company", 2_000)
    times.note("9001", "company", 1_000)  # an older webhook, late: not kept
    times.note("9001", "501", 3_000)
    times.note("9001", "501", 4_000)
    times.note("9002", "502", 5_000)
    found = times.for_deals(["9001", "9002", "9003"])
    moment = datetime(1970, 1, 1, tzinfo=UTC)
    assert set(found) == {"9001", "9002"}  # 9003 has none
    assert found["9001"].company == moment + timedelta(milliseconds=2_000)
    assert dict(found["9001"].contacts) == {"501": moment + timedelta(milliseconds=4_000)}
    assert found["9002"].company is None
    assert dict(found["9002"].contacts) == {"502": moment + timedelta(milliseconds=5_000)}
    # dealsync's own writes of associations are kept beside a person's, not mixed with them.
    times.note_own("9001", {"company": "2001", "501": "off"}, 6_000)
    times.note_own("9001", {}, 7_000)  # nothing written: nothing noted
    found = times.for_deals(["9001"])
    assert found["9001"].company == moment + timedelta(milliseconds=2_000)
    assert dict(found["9001"].contacts) == {"501": moment + timedelta(milliseconds=4_000)}
    assert found["9001"].own_company == moment + timedelta(milliseconds=6_000)
    assert dict(found["9001"].own_contacts) == {"501": moment + timedelta(milliseconds=6_000)}
    assert dict(found["9001"].own_states) == {"company": "2001", "501": "off"}  # what it wrote
    times.note_roles_deleted("9001", ["501"], 8_000)  # and the roles it deleted, apart again
    found = times.for_deals(["9001"])
    assert dict(found["9001"].roles_deleted) == {"501": moment + timedelta(milliseconds=8_000)}
    assert dict(found["9001"].own_contacts) == {"501": moment + timedelta(milliseconds=6_000)}
