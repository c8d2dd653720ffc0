"""DESIGN 1.7, the cases of issue 7 as a table: projection rows (and what was written before) in,
the HubSpot patch and lifecycle stage out — through the pure ``mapping.rollups`` and the pure parts
of ``services.rollups`` (plan per contact, lifecycle decision, next written-values state)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError

from dealsync.clients.errors import PermanentCrmError
from dealsync.mapping.rollups import ROLLUP_PROPERTIES, property_names
from dealsync.models.domain import ErrorCategory, Link, LinkKind, RollupRow, SyncOptions
from dealsync.models.events import salesforce_id_18
from dealsync.services.context import SyncContext
from dealsync.services.rollup_recompute import collect_contacts
from dealsync.services.rollups import (
    CONTACT_PROPERTIES_FACT,
    LIFECYCLE,
    _warned,
    full_recompute_pages,
    lifecycle_update,
    next_state,
    plan_contact,
    previous_state,
    read_only_properties,
    recompute_contacts,
)
from dealsync.store.rollups import STAGE_SEEN_AT

CONTACT = salesforce_id_18("003000000000001")
HUBSPOT_ID = "5001"
NAMES = property_names(())
T0 = datetime(2026, 1, 10, 9, 30, tzinfo=UTC)


def row(opportunity: str, *, amount: str | None = "1000", days: int = 0, close: str | None = "2026-06-30",
        closed: bool = False, won: bool = False) -> RollupRow:
    return RollupRow(contact_id=CONTACT, opportunity_id=opportunity, amount=amount, created=T0 + timedelta(days=days),
                     close_date=close, closed=closed, won=won)


def won(opportunity: str, **kwargs: Any) -> RollupRow:
    return row(opportunity, closed=True, won=True, **kwargs)


def lost(opportunity: str, **kwargs: Any) -> RollupRow:
    return row(opportunity, closed=True, won=False, **kwargs)


def blank(**values: str) -> dict[str, str | None]:
    return {name: values.get(name) for name in ROLLUP_PROPERTIES}


FIVE_HUNDRED = [won(f"006W{index:03d}", amount=str(index), days=index) if index % 5 == 0 else
                row(f"006O{index:03d}", amount="99", days=index) for index in range(500)]


@dataclass
class Case:
    rows: list[RollupRow]
    expected: dict[str, str | None]  # the five rollup values
    patch: dict[str, str]  # what is written given `written` (rollup properties only)
    written: dict[str, str] = field(default_factory=dict)  # what was written before
    stage: str | None = "lead"  # the contact's current lifecycle stage in HubSpot
    stage_written: str | None = None  # what the recompute sets (None: left alone)


CASES: dict[str, Case] = {
    "no deals": Case([], blank(), {}, stage_written=None),
    "only open deals": Case(
        [row("006A", days=3, amount="500"), row("006B", days=1, amount="700")],
        blank(num_associated_deals="2", first_deal_created_date="2026-01-11T09:30:00.000Z"),
        {"num_associated_deals": "2", "first_deal_created_date": "2026-01-11T09:30:00.000Z"},
        stage_written="opportunity"),
    "won and lost mixed": Case(
        [won("006A", amount="1000", close="2026-03-01"), lost("006B", amount="9000", days=5, close="2026-05-01"),
         won("006C", amount="250.5", days=2, close="2026-02-01"), row("006D", days=9)],
        blank(num_associated_deals="4", first_deal_created_date="2026-01-10T09:30:00.000Z",
              recent_deal_close_date="2026-03-01T00:00:00Z", recent_deal_amount="250.5", total_revenue="1250.5"),
        {"num_associated_deals": "4", "first_deal_created_date": "2026-01-10T09:30:00.000Z",
         "recent_deal_close_date": "2026-03-01T00:00:00Z", "recent_deal_amount": "250.5",
         "total_revenue": "1250.5"},
        stage_written="customer"),
    "two won, the later-created closed earlier": Case(
        [won("006OLD", amount="100", days=0, close="2026-09-30"), won("006NEW", amount="300", days=20,
                                                                      close="2026-04-15")],
        blank(num_associated_deals="2", first_deal_created_date="2026-01-10T09:30:00.000Z",
              recent_deal_close_date="2026-09-30T00:00:00Z", recent_deal_amount="300", total_revenue="400"),
        {"num_associated_deals": "2", "first_deal_created_date": "2026-01-10T09:30:00.000Z",
         "recent_deal_close_date": "2026-09-30T00:00:00Z", "recent_deal_amount": "300", "total_revenue": "400"},
        stage_written="customer"),
    "amounts changed after closing": Case(
        [won("006A", amount="1200", close="2026-03-01")],
        blank(num_associated_deals="1", first_deal_created_date="2026-01-10T09:30:00.000Z",
              recent_deal_close_date="2026-03-01T00:00:00Z", recent_deal_amount="1200", total_revenue="1200"),
        {"recent_deal_amount": "1200", "total_revenue": "1200"},
        written={"num_associated_deals": "1", "first_deal_created_date": "2026-01-10T09:30:00.000Z",
                 "recent_deal_close_date": "2026-03-01T00:00:00Z", "recent_deal_amount": "1000",
                 "total_revenue": "1000"},
        stage="customer", stage_written=None),
    "a contact role removed": Case(
        [won("006A", amount="1000", close="2026-03-01")],
        blank(num_associated_deals="1", first_deal_created_date="2026-01-10T09:30:00.000Z",
              recent_deal_close_date="2026-03-01T00:00:00Z", recent_deal_amount="1000", total_revenue="1000"),
        {"num_associated_deals": "1"},
        written={"num_associated_deals": "2", "first_deal_created_date": "2026-01-10T09:30:00.000Z",
                 "recent_deal_close_date": "2026-03-01T00:00:00Z", "recent_deal_amount": "1000",
                 "total_revenue": "1000"},
        stage="customer", stage_written=None),
    "an opportunity deleted (the only won one)": Case(
        [row("006B", days=4)],
        blank(num_associated_deals="1", first_deal_created_date="2026-01-14T09:30:00.000Z"),
        {"num_associated_deals": "1", "first_deal_created_date": "2026-01-14T09:30:00.000Z",
         "recent_deal_close_date": "", "recent_deal_amount": "", "total_revenue": ""},
        written={"num_associated_deals": "2", "first_deal_created_date": "2026-01-10T09:30:00.000Z",
                 "recent_deal_close_date": "2026-03-01T00:00:00Z", "recent_deal_amount": "1000",
                 "total_revenue": "1000"},
        stage="customer", stage_written=None),  # never lowered back to opportunity
    "a contact on 500 opportunities": Case(
        FIVE_HUNDRED,
        blank(num_associated_deals="500", first_deal_created_date="2026-01-10T09:30:00.000Z",
              recent_deal_close_date="2026-06-30T00:00:00Z", recent_deal_amount="495", total_revenue="24750"),
        {"num_associated_deals": "500", "first_deal_created_date": "2026-01-10T09:30:00.000Z",
         "recent_deal_close_date": "2026-06-30T00:00:00Z", "recent_deal_amount": "495", "total_revenue": "24750"},
        stage_written="customer"),
    "lifecycle from lead (won)": Case(
        [won("006A", close="2026-03-01")],
        blank(num_associated_deals="1", first_deal_created_date="2026-01-10T09:30:00.000Z",
              recent_deal_close_date="2026-03-01T00:00:00Z", recent_deal_amount="1000", total_revenue="1000"),
        {"num_associated_deals": "1", "first_deal_created_date": "2026-01-10T09:30:00.000Z",
         "recent_deal_close_date": "2026-03-01T00:00:00Z", "recent_deal_amount": "1000", "total_revenue": "1000"},
        stage="lead", stage_written="customer"),
    "lifecycle from customer (only an open deal)": Case(
        [row("006A")], blank(num_associated_deals="1", first_deal_created_date="2026-01-10T09:30:00.000Z"),
        {"num_associated_deals": "1", "first_deal_created_date": "2026-01-10T09:30:00.000Z"},
        stage="customer", stage_written=None),
    "lifecycle from evangelist (won)": Case(
        [won("006A", close="2026-03-01")],
        blank(num_associated_deals="1", first_deal_created_date="2026-01-10T09:30:00.000Z",
              recent_deal_close_date="2026-03-01T00:00:00Z", recent_deal_amount="1000", total_revenue="1000"),
        {"num_associated_deals": "1", "first_deal_created_date": "2026-01-10T09:30:00.000Z",
         "recent_deal_close_date": "2026-03-01T00:00:00Z", "recent_deal_amount": "1000", "total_revenue": "1000"},
        stage="evangelist", stage_written=None),
    "lifecycle from other (open)": Case(
        [row("006A")], blank(num_associated_deals="1", first_deal_created_date="2026-01-10T09:30:00.000Z"),
        {"num_associated_deals": "1", "first_deal_created_date": "2026-01-10T09:30:00.000Z"},
        stage="other", stage_written=None),
}


def _state(written: dict[str, str]) -> dict[str, Any] | None:
    return {"hubspot_id": HUBSPOT_ID, "properties": written} if written else None


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_rollup_case(case: Case) -> None:
    plan = plan_contact(CONTACT, HUBSPOT_ID, case.rows, _state(case.written), NAMES, automatic_transitions=True)
    assert plan.values == case.expected
    assert plan.patch == case.patch
    # The stage is unknown (no state): read it only where the rows call for a stage at all.
    assert plan.needs_stage_read == (plan.lifecycle_target is not None)
    to_set, known = lifecycle_update(case.rows, case.stage, automatic_transitions=True)
    assert to_set == case.stage_written
    assert known == (case.stage_written or case.stage or "")


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_second_recompute_with_nothing_changed_writes_and_reads_nothing(case: Case) -> None:
    first = plan_contact(CONTACT, HUBSPOT_ID, case.rows, _state(case.written), NAMES, automatic_transitions=True)
    _, known = lifecycle_update(case.rows, case.stage, automatic_transitions=True)
    state = next_state(first, known if first.needs_stage_read else first.known_stage, seen_ms=1_000)
    json.dumps(state)  # storable as is
    again = plan_contact(CONTACT, HUBSPOT_ID, case.rows, state, NAMES, automatic_transitions=True)
    assert again.patch == {}
    assert not again.needs_stage_read


def test_a_known_stage_is_moved_forward_without_a_read() -> None:
    # The known stage is kept current by the lifecyclestage webhook, so no read is needed before moving it.
    state = {"hubspot_id": HUBSPOT_ID, "properties": {}, LIFECYCLE: "opportunity", STAGE_SEEN_AT: 5}
    open_only = plan_contact(CONTACT, HUBSPOT_ID, [row("006A")], state, NAMES, automatic_transitions=True)
    assert not open_only.needs_stage_read
    now_won = plan_contact(CONTACT, HUBSPOT_ID, [won("006A")], state, NAMES, automatic_transitions=True)
    assert not now_won.needs_stage_read
    assert lifecycle_update([won("006A")], now_won.known_stage, automatic_transitions=True) == ("customer", "customer")
    assert next_state(now_won, "customer", seen_ms=9)[STAGE_SEEN_AT] == 9  # moved now
    assert next_state(open_only, "opportunity", seen_ms=9)[STAGE_SEEN_AT] == 5  # unchanged: seen back then


def test_a_stage_a_person_raised_is_known_and_not_lowered() -> None:
    state = {"hubspot_id": HUBSPOT_ID, "properties": {}, LIFECYCLE: "evangelist", STAGE_SEEN_AT: 5}
    plan = plan_contact(CONTACT, HUBSPOT_ID, [won("006A")], state, NAMES, automatic_transitions=True)
    assert not plan.needs_stage_read
    assert lifecycle_update([won("006A")], plan.known_stage, automatic_transitions=True) == (None, "evangelist")


def test_transitions_off_never_read_or_set_the_stage() -> None:
    plan = plan_contact(CONTACT, HUBSPOT_ID, [won("006A")], None, NAMES, automatic_transitions=False)
    assert not plan.needs_stage_read
    assert lifecycle_update([won("006A")], "lead", automatic_transitions=False) == (None, "lead")


def test_state_of_another_hubspot_contact_is_ignored() -> None:
    state = {"hubspot_id": "9999", "properties": {"num_associated_deals": "1"}, LIFECYCLE: "customer"}
    assert previous_state(state, HUBSPOT_ID) == {}
    plan = plan_contact(CONTACT, HUBSPOT_ID, [won("006A")], state, NAMES, automatic_transitions=True)
    assert plan.patch["num_associated_deals"] == "1"
    assert plan.needs_stage_read


def test_read_only_rollups_go_to_the_salesforce_properties_and_are_written_there_once() -> None:
    definitions = [
        {"name": "num_associated_deals", "modification_metadata": {"read_only_value": True}},
        {"name": "total_revenue", "modificationMetadata": {"readOnlyValue": True}},
        {"name": "recent_deal_amount", "modification_metadata": {"read_only_value": False}},
        {"name": "lifecyclestage", "modification_metadata": {"read_only_value": True}},
    ]
    blocked = read_only_properties(definitions)
    assert blocked == {"num_associated_deals", "total_revenue"}
    names = property_names(blocked)
    written = {"num_associated_deals": "1", "recent_deal_amount": "1000", "total_revenue": "1000",
               "first_deal_created_date": "2026-01-10T09:30:00.000Z",
               "recent_deal_close_date": "2026-03-01T00:00:00Z"}
    plan = plan_contact(CONTACT, HUBSPOT_ID, [won("006A", close="2026-03-01")], _state(written), names,
                        automatic_transitions=True)
    assert plan.patch == {"salesforce_num_associated_deals": "1", "salesforce_total_revenue": "1000"}


def test_contact_ids_are_deduplicated_across_the_messages_of_a_batch() -> None:
    a, b, c = (salesforce_id_18(f"00300000000000{n}") for n in (1, 2, 3))
    records = [
        {"messageId": "m1", "body": json.dumps({"kind": "rollup", "contact_ids": [a, b]})},
        {"messageId": "m2", "body": json.dumps({"kind": "rollup", "contact_ids": [b, c]})},
        {"messageId": "m3", "body": json.dumps({"kind": "scheduled", "task": "rollup_full_recompute",
                                                "time": "2026-01-01T03:17:00Z", "event_id": "e1"})},
        {"messageId": "m4", "body": json.dumps({"kind": "scheduled", "task": "salesforce_poll",
                                                "time": "2026-01-01T03:17:00Z", "event_id": "e2"})},
        {"messageId": "m5", "body": "not json"},
    ]
    contacts, full, malformed = collect_contacts(records)
    assert contacts == {a: {"m1"}, b: {"m1", "m2"}, c: {"m2"}}
    assert full == ["m3"]
    assert malformed == {"m4", "m5"}


# --- the recompute with fake clients and store (no network): batching, reads, skips, fallback --------

class FakeHubSpot:
    """Contacts by id; counts calls the way the real client does (one per batch of ≤100)."""

    def __init__(self, contacts: dict[str, dict[str, str]], read_only: set[str] | None = None) -> None:
        self.contacts = contacts
        self.read_only = read_only or set()
        self.calls = 0
        self.by_call: Counter[str] = Counter()
        self.created: list[str] = []

    def properties(self, object_type: str) -> list[dict[str, Any]]:
        self.calls += 1
        self.by_call["properties"] += 1
        names = [*ROLLUP_PROPERTIES, *self.created, LIFECYCLE]
        return [{"name": name, "type": "string", "field_type": "text",
                 "modification_metadata": {"read_only_value": name in self.read_only}} for name in names]

    def batch_read(self, object_type: str, ids: list[str], properties: list[str]) -> list[dict[str, Any]]:
        assert object_type == "contacts"
        calls = -(-len(ids) // 100)
        self.calls += calls
        self.by_call["batch_read"] += calls
        return [{"id": i, "properties": {p: self.contacts[i].get(p) for p in properties}}
                for i in ids if i in self.contacts]

    def batch_update(self, object_type: str, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        assert object_type == "contacts"
        assert len(inputs) <= 100
        self.calls += 1
        self.by_call["batch_update"] += 1
        if any(item["id"] not in self.contacts for item in inputs):
            raise PermanentCrmError("hubspot", "404 OBJECT_NOT_FOUND: Object not found",
                                    ErrorCategory.HUBSPOT_VALIDATION, status=404)
        if any(set(item["properties"]) & self.read_only for item in inputs):
            raise PermanentCrmError("hubspot", "400 VALIDATION_ERROR: READ_ONLY_VALUE",
                                    ErrorCategory.HUBSPOT_VALIDATION, status=400)
        for item in inputs:
            self.contacts[item["id"]].update(item["properties"])
        return [{"id": item["id"], "properties": item["properties"]} for item in inputs]

    def create_property_group(self, object_type: str, name: str, label: str) -> dict[str, Any]:
        self.calls += 1
        return {"name": name}

    def create_property(self, object_type: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        assert body["groupName"] == "salesforce_sync"
        self.created.append(body["name"])
        return body


class FakeTable:
    name = "SyncTable"

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.puts = 0

    def put(self, item: dict[str, Any], **kwargs: Any) -> None:
        key = (item["pk"], item["sk"])
        if key in self.items and self.items[key].get("listed") == item.get("listed"):
            raise ClientError({"Error": {"Code": "ConditionalCheckFailedException"}}, "PutItem")
        self.puts += 1
        self.items[key] = item

    def delete(self, key: dict[str, str], condition: str | None = None) -> None:
        if (key["pk"], key["sk"]) not in self.items:
            raise ClientError({"Error": {"Code": "ConditionalCheckFailedException"}}, "DeleteItem")
        del self.items[(key["pk"], key["sk"])]


class FakeStore:
    def __init__(self, links: dict[str, str], rows: dict[str, list[RollupRow]]) -> None:
        moment = datetime.now(UTC)
        self.table = FakeTable()
        self.rows = rows
        self.states: dict[str, dict[str, Any]] = {}
        self.saves = 0
        link_objects = {sf: Link(kind=LinkKind.CONTACT, salesforce_id=sf, hubspot_id=hs, created_at=moment,
                                 updated_at=moment) for sf, hs in links.items()}
        self.links = SimpleNamespace(get_many=lambda kind, side, ids: {i: link_objects[i] for i in ids
                                                                       if i in link_objects})
        self.settings = SimpleNamespace(options=lambda: SyncOptions())
        self.rollups = SimpleNamespace(
            rows_for_contact=lambda contact: list(self.rows.get(contact, [])),
            rows_for_contacts=lambda ids: {i: list(self.rows.get(i, [])) for i in ids},
            written_values=lambda ids: {i: self.states[i] for i in ids if i in self.states},
            save_written_values=self._save)

    def _save(self, values: dict[str, dict[str, Any]]) -> None:
        self.saves += 1
        self.states.update(json.loads(json.dumps(values)))


def _world(n: int, read_only: set[str] | None = None) -> tuple[SyncContext, FakeStore, FakeHubSpot]:
    _warned.clear()  # a fresh container
    contacts = [salesforce_id_18(f"003{index:012d}") for index in range(n)]
    stages = ["lead", "evangelist", "customer", ""]
    hubspot = FakeHubSpot({str(7000 + i): {LIFECYCLE: stages[i % 4]} for i in range(n)}, read_only)
    rows = {c: [row(f"006{i:012d}", amount=str(100 + i)) if i % 2 else won(f"006{i:012d}", amount=str(100 + i))]
            for i, c in enumerate(contacts)}
    store = FakeStore({c: str(7000 + i) for i, c in enumerate(contacts)}, rows)
    context = SyncContext(store=cast(Any, store), salesforce=cast(Any, None), hubspot=cast(Any, hubspot),
                          credentials=cast(Any, None), queues={})
    return context, store, hubspot


def test_recompute_batches_reads_only_what_it_must_and_skips_unchanged_contacts() -> None:
    context, store, hubspot = _world(250)
    ids = list(store.rows)
    report = recompute_contacts(context, [*ids, *ids[:10]])  # duplicates count once
    assert report.contacts == 250
    assert report.written == 250
    assert hubspot.by_call == {"properties": 1, "batch_read": 3, "batch_update": 3}
    # Won → customer from lead and blank; open → opportunity from lead and blank; customer and
    # evangelist are never lowered.
    for index in range(250):
        contact = hubspot.contacts[str(7000 + index)]
        before = ["lead", "evangelist", "customer", ""][index % 4]
        expected = before if before in ("evangelist", "customer") else ("opportunity" if index % 2 else "customer")
        assert contact[LIFECYCLE] == expected, index
        assert contact["num_associated_deals"] == "1"
        assert contact.get("total_revenue", "") == ("" if index % 2 else str(100 + index))
    calls = hubspot.calls
    again = recompute_contacts(context, ids)
    assert (again.written, again.stage_reads, hubspot.calls - calls) == (0, 0, 0)


def test_a_contact_gone_from_hubspot_does_not_fail_the_others() -> None:
    context, store, hubspot = _world(5)
    del hubspot.contacts["7001"], hubspot.contacts["7002"]
    report = recompute_contacts(context, list(store.rows))
    assert report.written == 3
    assert report.missing_in_hubspot == 2
    assert len(store.states) == 3


def test_read_only_rollups_fall_back_and_warn_once() -> None:
    context, store, hubspot = _world(3, read_only={"total_revenue", "num_associated_deals"})
    recompute_contacts(context, list(store.rows))
    assert sorted(hubspot.created) == ["salesforce_num_associated_deals", "salesforce_total_revenue"]
    assert hubspot.contacts["7000"]["salesforce_total_revenue"] == "100"
    assert "total_revenue" not in hubspot.contacts["7000"]
    assert hubspot.contacts["7000"]["recent_deal_amount"] == "100"
    warning = store.table.items[("CONFIG", "WARNING#rollup_read_only")]
    assert warning["properties"] == ["num_associated_deals", "total_revenue"]
    context.forget(CONTACT_PROPERTIES_FACT)
    _warned.clear()
    recompute_contacts(context, list(store.rows))
    assert store.table.puts == 1  # recorded once
    # Writable again: the warning goes, the values are written to HubSpot's own properties once.
    hubspot.read_only = set()
    context.forget(CONTACT_PROPERTIES_FACT)
    recompute_contacts(context, list(store.rows))
    assert ("CONFIG", "WARNING#rollup_read_only") not in store.table.items
    assert hubspot.contacts["7000"]["total_revenue"] == "100"


def test_cli_bodies_are_what_the_worker_accepts() -> None:
    from dealsync.models.events import RollupMessage, ScheduledTask, parse_rollup_queue_body
    from dealsync_cli.commands.rollups import bodies_for
    from dealsync_cli.errors import CommandError

    ids = [salesforce_id_18(f"003{index:012d}") for index in range(150)]
    bodies = [parse_rollup_queue_body(body) for body in bodies_for([*ids, ids[0][:15]], everything=False)]
    assert all(isinstance(body, RollupMessage) for body in bodies)
    assert [len(cast(RollupMessage, body).contact_ids) for body in bodies] == [100, 50]
    (task,) = (parse_rollup_queue_body(body) for body in bodies_for(None, everything=True))
    assert isinstance(task, ScheduledTask)
    assert task.task == "rollup_full_recompute"
    with pytest.raises(CommandError):
        bodies_for(["001000000000001"], everything=False)


def test_full_recompute_pages_cover_every_shard_in_full_pages() -> None:
    shards = {shard: [f"c{shard:02d}-{index:04d}" for index in range(shard * 37)] for shard in range(16)}
    reads: list[int] = []

    def contact_page(shard: int, limit: int = 100, start_after: str | None = None) -> tuple[list[str], str | None]:
        reads.append(shard)
        ids = shards[shard]
        start = ids.index(start_after) + 1 if start_after else 0
        page = ids[start:start + limit]
        return page, (page[-1] if start + limit < len(ids) else None)

    store = SimpleNamespace(rollups=SimpleNamespace(contact_page=contact_page))
    context = SyncContext(store=cast(Any, store), salesforce=cast(Any, None), hubspot=cast(Any, None),
                          credentials=cast(Any, None), queues={})
    pages = list(full_recompute_pages(context, read_limit=200))
    everyone = [contact for ids in shards.values() for contact in ids]
    assert [contact for page in pages for contact in page] == everyone
    assert all(len(page) == 100 for page in pages[:-1])
    assert len(pages) == -(-len(everyone) // 100)
    assert len(reads) < len(pages)


def test_a_batch_short_of_time_recomputes_what_it_read_and_returns_the_other_messages() -> None:
    from dealsync.models.events import RollupMessage
    from dealsync.services.rollup_recompute import process_rollup_messages
    from dealsync.services.rollups import ROW_CHUNK, WRITE_RESERVE_MS

    context, store, hubspot = _world(500)
    ids = sorted(store.rows)
    records = [{"messageId": f"m{index}", "body": RollupMessage(contact_ids=ids[start:start + 100]).model_dump_json()}
               for index, start in enumerate(range(0, 500, 100))]
    clock = iter([WRITE_RESERVE_MS + 5_000, WRITE_RESERVE_MS - 1])  # time for one chunk of reads, not two
    response = process_rollup_messages(records, context, lambda: next(clock))
    # The first ROW_CHUNK contacts (messages m0 and m1) are written; m2..m4 come back, none lost.
    assert ROW_CHUNK == 200
    assert [failure["itemIdentifier"] for failure in response["batchItemFailures"]] == ["m2", "m3", "m4"]
    assert sorted(store.states) == ids[:200]
    assert hubspot.by_call["batch_update"] == 2
    # Redelivered with time to spare, the rest is written and the first 200 cost nothing again.
    response = process_rollup_messages(records, context, lambda: 300_000)
    assert response["batchItemFailures"] == []
    assert sorted(store.states) == ids
    assert hubspot.by_call["batch_update"] == 5
