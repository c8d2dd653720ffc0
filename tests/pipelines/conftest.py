"""A world whose Salesforce org has three opportunity record types while HubSpot allows only two
Salesforce pipelines (its own default pipeline takes the third slot of a limit of 3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from dealsync.models.domain import LinkKind
from dealsync.services.context import SyncContext, build_context
from dealsync.services.toggles import set_company_sync, set_deal_sync
from dealsync_local.log_privacy import log_privacy  # noqa: F401 - the session's logs hold no personal data
from dealsync_local.pytest_fixtures import WorldView, local_world, local_world_options  # noqa: F401 - the session world
from dealsync_local.world import LocalWorld

RECORD_TYPES = {
    "Enterprise": ["Prospecting", "Qualification", "Proposal/Price Quote", "Negotiation/Review",
                   "Closed Won", "Closed Lost"],
    "Renewal": ["Qualification", "Negotiation/Review", "Closed Won", "Closed Lost"],
    "Partner": ["Prospecting", "Perception Analysis", "Closed Won", "Closed Lost"],
}


@dataclass
class PipelineWorld(WorldView):
    context: SyncContext
    record_types: dict[str, str]  # name -> id
    account_id: str

    def deal_for(self, opportunity_id: str) -> dict[str, Any] | None:
        deals = self.context.hubspot.batch_read("deals", [opportunity_id], ["pipeline", "dealstage", "dealname"],
                                                id_property="salesforce_opportunity_id")
        return deals[0] if deals else None


@pytest.fixture(scope="session")
def pipeline_world(local_world: LocalWorld) -> PipelineWorld:  # noqa: F811 - the imported fixture
    assert local_world.crms is not None
    salesforce = local_world.crms.salesforce.app
    hubspot = local_world.crms.hubspot.app
    hubspot.apply_config({"pipeline_limit": 3})
    loaded = salesforce.load({"RecordType": [
        {"Name": name, "DeveloperName": name, "SobjectType": "Opportunity", "IsActive": True, "Stages": stages}
        for name, stages in RECORD_TYPES.items()]})
    record_types = dict(zip(RECORD_TYPES, loaded["RecordType"], strict=True))
    context = build_context()
    person = salesforce.get("User", salesforce.person_user_id)
    assert person is not None
    hubspot.add_owner(str(person["Email"]), "Sam", "Seller")
    set_company_sync(context, True)
    account_id = salesforce.create("Account", {"Name": "Initech"})
    company_id = hubspot.load({"companies": [{"name": "Initech", "salesforce_account_id": account_id}]})["companies"][0]
    context.store.links.create(LinkKind.ACCOUNT, account_id, company_id)
    context.store.settings.mark_account_import_completed()
    set_deal_sync(context, True)
    world = PipelineWorld(local_world, context, record_types, account_id)
    world.settle()
    return world
