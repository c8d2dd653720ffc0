"""Custom fields created as an admin does in Setup (``POST /__emulator/custom_field`` or
``SalesforceEmulator.add_custom_field``): seen by describe, SOQL and writes, kept when the org's shape
changes (record types), gone after a reset."""

from __future__ import annotations

from typing import Any

from tests.contract.salesforce.conftest import Org


def _create(org: Org, **body: Any) -> Any:
    return org.session().post(f"{org.url}/__emulator/custom_field", json=body, timeout=30)


def _described(sf: Any, name: str) -> dict[str, Any] | None:
    return next((item for item in sf.Opportunity.describe()["fields"] if item["name"] == name), None)


def test_a_custom_field_is_described_queried_and_written(org: Org, sf: Any) -> None:
    before = sf.Opportunity.create({"Name": "Older", "StageName": "Prospecting", "CloseDate": "2026-12-31"})["id"]
    response = _create(org, sobject="opportunity", name="Competitors__c", type="multipicklist",
                       picklist_values=["Acme", "Globex"])
    assert response.status_code == 201, response.text
    described = _described(sf, "Competitors__c")
    assert described is not None
    assert (described["type"], described["custom"], described["updateable"]) == ("multipicklist", True, True)
    assert [entry["value"] for entry in described["picklistValues"]] == ["Acme", "Globex"]
    assert response.json()["name"] == "Competitors__c"

    org.app.add_custom_field("Opportunity", "Seats__c", "double", precision=18, scale=2)
    org.app.add_custom_field("Opportunity", "Signed__c", "boolean")
    created = sf.Opportunity.create({"Name": "Newer", "StageName": "Prospecting", "CloseDate": "2026-12-31",
                                     "Competitors__c": "Acme;Globex", "Seats__c": 12.5})["id"]
    rows = {row["Id"]: row for row in sf.query(
        "SELECT Id, Competitors__c, Seats__c, Signed__c FROM Opportunity")["records"]}
    assert (rows[created]["Competitors__c"], rows[created]["Seats__c"], rows[created]["Signed__c"]) == (
        "Acme;Globex", 12.5, False)
    # Records that existed before hold the new fields blank (a checkbox unchecked).
    assert (rows[before]["Competitors__c"], rows[before]["Seats__c"], rows[before]["Signed__c"]) == (
        None, None, False)
    sf.Opportunity.update(before, {"Seats__c": 3, "Signed__c": True})
    assert sf.Opportunity.get(before)["Seats__c"] == 3


def test_custom_fields_outlive_a_schema_rebuild_and_not_a_reset(org: Org, sf: Any) -> None:
    org.app.add_custom_field("Opportunity", "Region__c", "string", length=40)
    org.app.load({"RecordType": [{"Name": "Sales", "DeveloperName": "Sales", "SobjectType": "Opportunity",
                                  "IsActive": True}]})
    assert _described(sf, "RecordTypeId") is not None  # the schema was rebuilt with record types
    described = _described(sf, "Region__c")
    assert described is not None and described["length"] == 40
    org.control("reset")
    assert _described(sf, "Region__c") is None


def test_bad_custom_fields_are_refused(org: Org) -> None:
    org.app.add_custom_field("Opportunity", "Region__c", "string")
    for body, message in [
        ({"sobject": "Opportunity", "name": "Region", "type": "string"}, "custom field names end with __c"),
        ({"sobject": "Opportunity", "name": "Region__c", "type": "string"}, "already has a field named Region__c"),
        ({"sobject": "Opportunity", "name": "Geo__c", "type": "location"}, "unsupported custom field type"),
        ({"sobject": "Nothing", "name": "Geo__c", "type": "string"}, "unknown sObject type Nothing"),
    ]:
        response = _create(org, **body)
        assert response.status_code == 400
        assert message in response.json()["error"]
