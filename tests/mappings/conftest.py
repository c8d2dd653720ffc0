"""The mappings session: a world of its own (custom fields change the org's shape, which no other session
should see), set up as the sync session is (company sync on, an account linked, deal sync on), with the
custom Salesforce fields and HubSpot deal properties an admin would create before mapping them. The
``dealsync mappings`` commands run in-process against it (``--state-dir``), as an operator runs them."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from typing import Any

import pytest

from dealsync_cli.main import main
from dealsync_local.pytest_fixtures import local_world, local_world_options  # noqa: F401 - the session world
from tests.sync.conftest import SyncWorld, sync_world  # noqa: F401 - the sync session's set-up, reused

# Custom Opportunity fields: name -> (type, options)
SALESFORCE_FIELDS: dict[str, tuple[str, dict[str, Any]]] = {
    "Region__c": ("string", {"length": 80}),
    "Seats__c": ("double", {"precision": 18, "scale": 2}),
    "Signed__c": ("boolean", {}),
    "Go_Live__c": ("date", {}),
    "Priority__c": ("picklist", {"picklist_values": ["High", "Medium", "Low", "Urgent"]}),
    "Competitors__c": ("multipicklist", {"picklist_values": ["Acme", "Globex", "Initech"]}),
    "Win_Chance__c": ("double", {"precision": 3, "scale": 0}),
    "Rule_Prefer__c": ("string", {"length": 80}),
    "Rule_Always__c": ("string", {"length": 80}),
    "Rule_Two_Way__c": ("string", {"length": 80}),
    "Rule_Dont__c": ("string", {"length": 80}),
}
# Custom deal properties: name -> (type, fieldType, options as (value, label))
HUBSPOT_PROPERTIES: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    "region": ("string", "text", []),
    "notes_long": ("string", "textarea", []),
    "seats": ("number", "number", []),
    "signed": ("bool", "booleancheckbox", [("true", "Yes"), ("false", "No")]),
    "go_live": ("date", "date", []),
    "competitors": ("enumeration", "checkbox", [("acme", "Acme"), ("globex", "Globex"), ("initech", "Initech")]),
    "expected_revenue": ("number", "number", []),
    "rule_prefer": ("string", "text", []),
    "rule_always": ("string", "text", []),
    "rule_two_way": ("string", "text", []),
    "rule_dont": ("string", "text", []),
}


@dataclass
class Result:
    status: int
    out: str
    err: str

    def json(self) -> Any:
        """The command's JSON document; the world's handlers share this process and print their metrics
        (EMF lines) on the same stdout."""
        documents = [line for line in self.out.splitlines() if line.startswith("{") and '"_aws"' not in line]
        assert len(documents) == 1, f"expected one JSON document, got {self.out!r}"
        return json.loads(documents[0])


@dataclass
class MappingsWorld:
    sync: SyncWorld

    def cli(self, *args: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["mappings", *args, "--state-dir", str(self.sync.world.state_dir)])
        return Result(status, out.getvalue(), err.getvalue())

    def deal(self, opportunity_id: str, *properties: str) -> dict[str, Any]:
        """The deal's properties as the HubSpot user reads them (blank as None)."""
        deals = self.sync.person_hubspot.batch_read("deals", [opportunity_id], [*properties, "dealname"],
                                                    id_property="salesforce_opportunity_id")
        assert deals, f"no deal for opportunity {opportunity_id}"
        return {name: deals[0]["properties"].get(name) or None for name in properties} | {"id": str(deals[0]["id"])}

    def update_deal(self, deal_id: str, **properties: str) -> None:
        updated = self.sync.person_hubspot.batch_update("deals", [{"id": deal_id, "properties": properties}])
        assert updated and "error" not in updated[0], updated

    def opportunity(self, opportunity_id: str) -> dict[str, Any]:
        record = self.sync.salesforce.get("Opportunity", opportunity_id)
        assert record is not None
        return record

    def new_opportunity(self, name: str, **fields: object) -> str:
        values = {"Name": name, "StageName": "Prospecting", "CloseDate": "2027-03-31", "Amount": 1000,
                  "AccountId": self.sync.account_id, **fields}
        opportunity_id: str = self.sync.salesforce.create("Opportunity", values)
        return opportunity_id

    def synced_pair(self, name: str, fields: dict[str, str], **values: object) -> Pair:
        """A new opportunity with these values, once it has its deal."""
        opportunity_id = self.new_opportunity(name, **values)
        self.sync.settle()
        return Pair(self, opportunity_id, fields)


class Pair:
    """One opportunity and its deal, changed and read as the people using the two CRMs do."""

    def __init__(self, world: MappingsWorld, opportunity_id: str, fields: dict[str, str]) -> None:
        self.world = world
        self.opportunity_id = opportunity_id
        self.fields = fields  # Salesforce field -> HubSpot property
        self.deal_id = world.deal(opportunity_id, *fields.values())["id"]

    def in_salesforce(self, **values: object) -> None:
        self.world.sync.salesforce.update("Opportunity", self.opportunity_id, values)
        self.world.sync.settle()

    def in_hubspot(self, **values: str) -> None:
        self.world.update_deal(self.deal_id, **values)
        self.world.sync.settle()

    def state(self) -> dict[str, tuple[object, object]]:
        """Salesforce field -> (Salesforce value, HubSpot value)."""
        opportunity = self.world.opportunity(self.opportunity_id)
        deal = self.world.deal(self.opportunity_id, *self.fields.values())
        return {field: (opportunity.get(field), deal[prop]) for field, prop in self.fields.items()}


@pytest.fixture(scope="session")
def mappings_world(sync_world: SyncWorld) -> MappingsWorld:  # noqa: F811 - the imported fixture
    for name, (field_type, options) in SALESFORCE_FIELDS.items():
        sync_world.salesforce.add_custom_field("Opportunity", name, field_type, **options)
    for name, (hs_type, field_type, choices) in HUBSPOT_PROPERTIES.items():
        sync_world.person_hubspot.create_property("deals", {
            "name": name, "label": name.replace("_", " ").title(), "type": hs_type, "fieldType": field_type,
            "groupName": "dealinformation",
            "options": [{"value": value, "label": label, "displayOrder": position}
                        for position, (value, label) in enumerate(choices)],
        })
    return MappingsWorld(sync_world)
