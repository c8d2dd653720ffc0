"""DESIGN 1.7 end to end in the local world: a Salesforce user moves an opportunity to Closed Won; the
real sf_change worker refreshes the projection and enqueues the contacts; the real rollup_recompute
worker writes the contacts' rollups and lifecycle stage, read back in HubSpot as the person sees them.

Each test uses its own contacts, so the other tests' opportunities (on the shared contacts of the
session world) do not change the figures."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from dealsync.mapping.rollups import ROLLUP_PROPERTIES
from dealsync.models.domain import LinkKind
from dealsync.services.context import cached_context
from dealsync.services.rollups import CONTACT_PROPERTIES_FACT, WARNING_KEY
from tests.sync.conftest import SyncWorld

pytestmark = pytest.mark.e2e

FALLBACKS = [f"salesforce_{name}" for name in ROLLUP_PROPERTIES]


def _contact(world: SyncWorld, first: str) -> tuple[str, str]:
    email = f"{first.lower()}.{uuid.uuid4().hex[:8]}@rollups.example"
    return world.salesforce.create("Contact", {"FirstName": first, "LastName": "Rollup", "Email": email,
                                               "AccountId": world.account_id}), email


def _opportunity(world: SyncWorld, contact_ids: list[str], **fields: object) -> str:
    values = {"Name": f"Rollups {uuid.uuid4().hex[:6]}", "StageName": "Prospecting", "CloseDate": "2027-03-31",
              "Amount": 1000, "AccountId": world.account_id, **fields}
    opportunity_id: str = world.salesforce.create("Opportunity", values)
    for index, contact_id in enumerate(contact_ids):
        world.salesforce.create("OpportunityContactRole", {"OpportunityId": opportunity_id, "ContactId": contact_id,
                                                           "IsPrimary": index == 0})
    return opportunity_id


def _hubspot_contact(world: SyncWorld, salesforce_id: str, extra: list[str] | None = None) -> dict[str, Any]:
    link = world.context.store.links.get_by_salesforce_id(LinkKind.CONTACT, salesforce_id)
    assert link is not None, "the contact was not linked"
    found = world.person_hubspot.batch_read("contacts", [link.hubspot_id],
                                            [*ROLLUP_PROPERTIES, "lifecyclestage", *(extra or [])])
    assert found, "the HubSpot contact is missing"
    properties: dict[str, Any] = found[0]["properties"]
    return properties


def _number(value: Any) -> Decimal | None:
    return Decimal(str(value)) if value not in (None, "") else None


def test_closed_won_updates_rollups_and_lifecycle_stage(sync_world: SyncWorld) -> None:
    buyer, _ = _contact(sync_world, "Buyer")
    fan, fan_email = _contact(sync_world, "Fan")
    # The second contact is already an evangelist in HubSpot (matched by e-mail when linked).
    sync_world.hubspot.load({"contacts": [{"email": fan_email, "lifecyclestage": "evangelist"}]})
    earlier = _opportunity(sync_world, [buyer], Amount=250, CloseDate="2027-01-15")
    sync_world.settle()
    opportunity_id = _opportunity(sync_world, [buyer, fan], Amount=1000, CloseDate="2027-03-31")
    sync_world.settle()

    before = _hubspot_contact(sync_world, buyer)
    assert _number(before["num_associated_deals"]) == 2
    assert before["first_deal_created_date"]
    assert not before.get("total_revenue")
    assert not before.get("recent_deal_amount")
    assert before["lifecyclestage"] == "opportunity"
    assert _hubspot_contact(sync_world, fan)["lifecyclestage"] == "evangelist"

    sync_world.salesforce.update("Opportunity", opportunity_id, {"StageName": "Closed Won"})
    sync_world.settle()

    after = _hubspot_contact(sync_world, buyer)
    assert _number(after["num_associated_deals"]) == 2
    assert _number(after["total_revenue"]) == 1000
    assert _number(after["recent_deal_amount"]) == 1000
    assert str(after["recent_deal_close_date"]).startswith("2027-03-31")
    assert after["first_deal_created_date"] == before["first_deal_created_date"]
    assert after["lifecyclestage"] == "customer"
    fan_after = _hubspot_contact(sync_world, fan)
    assert _number(fan_after["total_revenue"]) == 1000
    assert _number(fan_after["num_associated_deals"]) == 1
    assert fan_after["lifecyclestage"] == "evangelist"  # never lowered

    # The earlier-created deal closing later: the close date moves, the amount stays the later-created one's.
    sync_world.salesforce.update("Opportunity", earlier, {"StageName": "Closed Won", "CloseDate": "2027-05-01"})
    sync_world.settle()
    last = _hubspot_contact(sync_world, buyer)
    assert _number(last["total_revenue"]) == 1250
    assert _number(last["recent_deal_amount"]) == 1000
    assert str(last["recent_deal_close_date"]).startswith("2027-05-01")
    assert last["lifecyclestage"] == "customer"


def test_a_stage_a_person_raises_later_is_seen_by_webhook_and_never_lowered(
        sync_world: SyncWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    buyer, _ = _contact(sync_world, "Raised")
    opportunity_id = _opportunity(sync_world, [buyer])
    sync_world.settle()
    assert _hubspot_contact(sync_world, buyer)["lifecyclestage"] == "opportunity"
    link = sync_world.context.store.links.get_by_salesforce_id(LinkKind.CONTACT, buyer)
    assert link is not None

    # The person moves the contact on in HubSpot; the lifecyclestage webhook tells dealsync.
    sync_world.person_hubspot.batch_update("contacts", [{"id": link.hubspot_id,
                                                         "properties": {"lifecyclestage": "other"}}])
    sync_world.settle()
    state = sync_world.context.store.rollups.written_values([buyer])[buyer]
    assert state["lifecyclestage"] == "other"

    # The handlers run in this process: watch what the workers' HubSpot client reads.
    workers_hubspot = cached_context().hubspot
    read_types: list[str] = []
    original_read = workers_hubspot.batch_read

    def spy(object_type: str, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        read_types.append(object_type)
        return original_read(object_type, *args, **kwargs)

    monkeypatch.setattr(workers_hubspot, "batch_read", spy)
    sync_world.salesforce.update("Opportunity", opportunity_id, {"StageName": "Closed Won"})
    sync_world.settle()
    after = _hubspot_contact(sync_world, buyer)
    assert _number(after["total_revenue"]) == 1000
    assert after["lifecyclestage"] == "other"  # not lowered to customer
    assert "deals" in read_types  # the spy saw the sync's reads
    assert "contacts" not in read_types  # the stage was known: no contact read before writing


@pytest.fixture
def read_only_rollups(sync_world: SyncWorld) -> Iterator[None]:
    sync_world.hubspot.apply_config({"readonly_rollup_properties": list(ROLLUP_PROPERTIES)})
    try:
        yield
    finally:
        sync_world.hubspot.apply_config({"readonly_rollup_properties": False})
        # The worker caches the property definitions for minutes (as a Lambda container does); the
        # handlers run in this process, so let it see the restored definitions now.
        cached_context().forget(CONTACT_PROPERTIES_FACT)


@pytest.mark.usefixtures("read_only_rollups")
def test_read_only_rollups_go_to_salesforce_properties_with_a_configuration_warning(sync_world: SyncWorld) -> None:
    buyer, _ = _contact(sync_world, "Locked")
    opportunity_id = _opportunity(sync_world, [buyer], Amount=700, CloseDate="2027-02-28")
    sync_world.settle()
    sync_world.salesforce.update("Opportunity", opportunity_id, {"StageName": "Closed Won"})
    sync_world.settle()

    found = _hubspot_contact(sync_world, buyer, extra=FALLBACKS)
    assert _number(found["salesforce_num_associated_deals"]) == 1
    assert _number(found["salesforce_total_revenue"]) == 700
    assert _number(found["salesforce_recent_deal_amount"]) == 700
    assert str(found["salesforce_recent_deal_close_date"]).startswith("2027-02-28")
    assert found["salesforce_first_deal_created_date"]
    assert found["lifecyclestage"] == "customer"
    definitions = {prop["name"]: prop for prop in sync_world.person_hubspot.properties("contacts")}
    assert all(definitions[name]["group_name"] == "salesforce_sync" for name in FALLBACKS)
    warning = sync_world.context.store.table.get(dict(WARNING_KEY))
    assert warning is not None
    assert sorted(warning["properties"]) == sorted(ROLLUP_PROPERTIES)


def test_cli_recompute_repairs_a_missed_update_for_one_contact_and_for_all(sync_world: SyncWorld,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from dealsync_cli.main import main

    buyer, _ = _contact(sync_world, "Drift")
    _opportunity(sync_world, [buyer], Amount=500, StageName="Closed Won", CloseDate="2027-01-31")
    sync_world.settle()
    assert _number(_hubspot_contact(sync_world, buyer)["total_revenue"]) == 500
    rollups = sync_world.context.store.rollups

    def drift(amount: str) -> None:  # the projection changes but nothing is enqueued (a lost message)
        (row,) = rollups.rows_for_contact(buyer)
        rollups.replace_opportunity(row.model_copy(update={"amount": amount}), [buyer])

    state_dir = str(sync_world.world.state_dir)
    drift("800")
    assert main(["rollups", "recompute", "--contact", buyer, "--wait", "--state-dir", state_dir]) == 0
    assert '"drained": true' in capsys.readouterr().out
    assert _number(_hubspot_contact(sync_world, buyer)["total_revenue"]) == 800

    drift("900")
    assert main(["rollups", "recompute", "--all", "--wait", "--state-dir", state_dir]) == 0
    assert _number(_hubspot_contact(sync_world, buyer)["total_revenue"]) == 900
