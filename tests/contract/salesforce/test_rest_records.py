"""sObject rows, describe, validation errors, upsert by external id, record types and the recycle bin,
driven with simple-salesforce over HTTPS."""


from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from simple_salesforce.exceptions import (
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceResourceNotFound,
)

from dealsync_local.salesforce.ids import MASTER_RECORD_TYPE_ID, normalize_id, to18

DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")


def error_of(exc: pytest.ExceptionInfo[Any]) -> dict[str, Any]:
    content = content_of(exc)
    assert isinstance(content, list) and len(content) == 1, content
    error: dict[str, Any] = content[0]
    return error


def test_create_read_update_delete(org: Any, sf: Any, new_opportunity: Callable[..., str]) -> None:
    opp_id = new_opportunity(Amount=1500, StageName="Prospecting")
    assert len(opp_id) == 18 and opp_id.startswith("006")
    assert to18(opp_id[:15]) == opp_id
    record = sf.Opportunity.get(opp_id)
    assert record["attributes"] == {"type": "Opportunity",
                                    "url": f"/services/data/v59.0/sobjects/Opportunity/{opp_id}"}
    assert record["Amount"] == 1500.0
    assert (record["IsClosed"], record["IsWon"], record["Probability"]) == (False, False, 10.0)
    assert record["ForecastCategoryName"] == "Pipeline"
    assert record["OwnerId"] == org.app.integration_user_id
    assert record["LastModifiedById"] == org.app.integration_user_id
    assert DATETIME.match(record["CreatedDate"]) and DATETIME.match(record["SystemModstamp"])
    assert record["IsDeleted"] is False

    assert sf.Opportunity.update(opp_id, {"StageName": "Closed Won", "Description": "signed"}) == 204
    won = sf.Opportunity.get(opp_id, params={"fields": "StageName,IsClosed,IsWon,Probability,ForecastCategory"})
    assert {k: v for k, v in won.items() if k != "attributes"} == {
        "StageName": "Closed Won", "IsClosed": True, "IsWon": True, "Probability": 100.0, "ForecastCategory": "Closed",
    }
    # A 15-character id works too, and an 18-character one in any case.
    assert sf.Opportunity.get(opp_id[:15])["Id"] == opp_id
    assert normalize_id(opp_id.lower()) == opp_id

    assert sf.Opportunity.delete(opp_id) == 204
    with pytest.raises(SalesforceResourceNotFound) as missing:
        sf.Opportunity.get(opp_id)
    assert error_of(missing)["errorCode"] == "NOT_FOUND"
    with pytest.raises(SalesforceResourceNotFound) as gone:
        sf.Opportunity.update(opp_id, {"Name": "again"})
    assert error_of(gone)["errorCode"] == "ENTITY_IS_DELETED"


def test_person_writes_are_attributed_to_the_person(org: Any, person: Any) -> None:
    result = person.Opportunity.create({"Name": "Walk-in", "StageName": "Qualification", "CloseDate": "2027-01-15"})
    record = person.Opportunity.get(result["id"])
    assert record["OwnerId"] == record["LastModifiedById"] == org.app.person_user_id


@pytest.mark.parametrize(
    ("body", "code", "fields", "message"),
    [
        ({"Name": "x"}, "REQUIRED_FIELD_MISSING", ["StageName", "CloseDate"],
         "Required fields are missing: [StageName, CloseDate]"),
        ({"IsClosed": True}, "INVALID_FIELD_FOR_INSERT_UPDATE", ["IsClosed"],
         "Unable to create/update fields: IsClosed"),
        ({"Bogus__c": 1}, "INVALID_FIELD", [], "No such column 'Bogus__c' on sobject of type Opportunity"),
        ({"Name": "n" * 121}, "STRING_TOO_LONG", ["Name"], "(max length=120)"),
        ({"StageName": "Dreaming"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ["StageName"],
         "Stage: bad value for restricted picklist field: Dreaming"),
        ({"CloseDate": "31/12/2026"}, "JSON_PARSER_ERROR", [], "Cannot deserialize instance of date"),
        ({"AccountId": "not-an-id"}, "MALFORMED_ID", ["AccountId"], "Account ID: id value of incorrect type"),
        ({"AccountId": "0038d0000000001AAA"}, "FIELD_INTEGRITY_EXCEPTION", ["AccountId"], "id value of incorrect type"),
        ({"AccountId": "0018d0000000999AAA"}, "INVALID_CROSS_REFERENCE_KEY", [], "invalid cross reference id"),
        ({"Probability": 150}, "NUMBER_OUTSIDE_VALID_RANGE", ["Probability"], "value outside of valid range"),
    ],
)
def test_create_validation_errors(sf: Any, body: dict[str, Any], code: str, fields: list[str], message: str) -> None:
    complete = {"Name": "Valid", "StageName": "Prospecting", "CloseDate": "2026-12-31"}
    if code != "REQUIRED_FIELD_MISSING":
        body = {**complete, **body}
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Opportunity.create(body)
    assert exc.value.status == 400
    error = error_of(exc)
    assert error["errorCode"] == code
    assert error["fields"] == fields
    assert message in error["message"]


def test_update_validation(sf: Any, new_opportunity: Callable[..., str]) -> None:
    opp_id = new_opportunity()
    with pytest.raises(SalesforceMalformedRequest) as nulled:
        sf.Opportunity.update(opp_id, {"StageName": None})
    assert error_of(nulled)["errorCode"] == "REQUIRED_FIELD_MISSING"
    with pytest.raises(SalesforceMalformedRequest) as read_only:
        sf.Opportunity.update(opp_id, {"IsWon": True})
    assert error_of(read_only)["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    with pytest.raises(SalesforceMalformedRequest) as wrong_type:
        sf.Opportunity.get("0018d0000000001AAA")
    assert error_of(wrong_type)["errorCode"] == "MALFORMED_ID"
    with pytest.raises(SalesforceResourceNotFound) as not_an_id:
        sf.Opportunity.get("not-an-id")
    assert error_of(not_an_id)["message"] == "Provided external ID field does not exist or is not accessible: not-an-id"


def test_amount_is_ignored_on_opportunities_with_products(org: Any, sf: Any) -> None:
    ids = org.app.load({"Opportunity": [{"Name": "With products", "StageName": "Prospecting",
                                         "CloseDate": "2026-12-31", "Amount": 500, "HasOpportunityLineItem": True}]})
    opp_id = ids["Opportunity"][0]
    assert sf.Opportunity.update(opp_id, {"Amount": 9999, "Name": "Renamed"}) == 204
    record = sf.Opportunity.get(opp_id)
    assert (record["Amount"], record["Name"]) == (500.0, "Renamed")


def test_upsert_by_external_id(sf: Any, org: Any) -> None:
    assert sf.Opportunity.upsert("HubSpot_Deal_Id__c/9001", {
        "Name": "From HubSpot", "StageName": "Prospecting", "CloseDate": "2026-12-31"}) == 201
    created = sf.Opportunity.get_by_custom_id("HubSpot_Deal_Id__c", "9001")
    assert created["HubSpot_Deal_Id__c"] == "9001"
    response = sf.Opportunity.upsert("HubSpot_Deal_Id__c/9001", {"Amount": 42}, raw_response=True)
    assert response.status_code == 200
    assert response.json() == {"id": created["Id"], "success": True, "errors": [], "created": False}
    assert sf.Opportunity.get(created["Id"])["Amount"] == 42.0

    with pytest.raises(SalesforceMalformedRequest) as duplicate:
        sf.Opportunity.create({"Name": "Dup", "StageName": "Prospecting", "CloseDate": "2026-12-31",
                               "HubSpot_Deal_Id__c": "9001"})
    error = error_of(duplicate)
    assert error["errorCode"] == "DUPLICATE_VALUE"
    assert created["Id"] in error["message"]

    with pytest.raises(SalesforceResourceNotFound) as bad_field:
        sf.Opportunity.upsert("Name/whatever", {"Amount": 1})
    assert error_of(bad_field)["errorCode"] == "NOT_FOUND"

    # Without the unique attribute, two records can share a value; upsert then answers 300.
    org.configure(hubspot_deal_id_unique=False)
    org.app.load({"Opportunity": [{"Name": "Twin", "StageName": "Prospecting", "CloseDate": "2026-12-31",
                                   "HubSpot_Deal_Id__c": "9001"}]})
    with pytest.raises(SalesforceMoreThanOneRecord) as many:
        sf.Opportunity.upsert("HubSpot_Deal_Id__c/9001", {"Amount": 7})
    assert many.value.status == 300
    assert len(content_of(many)) == 2 and all("/sobjects/Opportunity/006" in url for url in content_of(many))


def test_describe_and_global_describe(sf: Any) -> None:
    described = sf.Opportunity.describe()
    assert (described["name"], described["keyPrefix"], described["label"]) == ("Opportunity", "006", "Opportunity")
    fields = {f["name"]: f for f in described["fields"]}
    external = fields["HubSpot_Deal_Id__c"]
    assert (external["externalId"], external["unique"], external["length"]) == (True, True, 100)
    assert external["custom"] is True
    assert fields["IsClosed"]["createable"] is False and fields["IsClosed"]["updateable"] is False
    assert fields["Name"]["length"] == 120 and fields["Name"]["nillable"] is False
    assert fields["AccountId"]["referenceTo"] == ["Account"] and fields["AccountId"]["relationshipName"] == "Account"
    assert [v["value"] for v in fields["StageName"]["picklistValues"]][:2] == ["Prospecting", "Qualification"]
    assert len(fields["StageName"]["picklistValues"]) == 10
    assert "CurrencyIsoCode" not in fields and "RecordTypeId" not in fields
    assert described["recordTypeInfos"][-1]["recordTypeId"] == MASTER_RECORD_TYPE_ID
    assert {"OpportunityContactRoles"} <= {r["relationshipName"] for r in described["childRelationships"]}
    everything = sf.describe()
    names = {o["name"] for o in everything["sobjects"]}
    assert {"Opportunity", "OpportunityContactRole", "Account", "Contact", "User", "RecordType",
            "OpportunityStage", "BusinessProcess", "Organization"} <= names
    stages = sf.query("SELECT MasterLabel, DefaultProbability, IsClosed, IsWon FROM OpportunityStage "
                      "ORDER BY SortOrder")
    assert stages["totalSize"] == 10
    assert stages["records"][-2]["MasterLabel"] == "Closed Won" and stages["records"][-2]["IsWon"] is True
    assert all(r["attributes"]["url"].split("/")[-1].startswith("01J") for r in stages["records"])
    org_row = sf.query("SELECT Id, IsSandbox FROM Organization")["records"][0]
    assert org_row["Id"].startswith("00D") and org_row["IsSandbox"] is False


def test_record_types_and_sales_processes(org: Any, sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as before:
        sf.query("SELECT RecordTypeId FROM Opportunity")
    assert error_of(before)["errorCode"] == "INVALID_FIELD"
    ids = org.control("load", {"RecordType": [
        {"Name": "Enterprise", "DeveloperName": "Enterprise", "SobjectType": "Opportunity", "IsActive": True,
         "Stages": ["Prospecting", "Negotiation/Review", "Closed Won", "Closed Lost"]},
        {"Name": "SMB", "DeveloperName": "SMB", "SobjectType": "Opportunity", "IsActive": True,
         "Stages": ["Qualification", "Closed Won", "Closed Lost"]},
    ]})["ids"]
    enterprise, smb = ids["RecordType"]
    assert enterprise.startswith("012")
    rts = sf.query("SELECT Id, DeveloperName, BusinessProcessId, BusinessProcess.Name FROM RecordType "
                   "WHERE SobjectType = 'Opportunity' AND IsActive = true ORDER BY DeveloperName")
    assert [r["DeveloperName"] for r in rts["records"]] == ["Enterprise", "SMB"]
    assert rts["records"][0]["BusinessProcessId"].startswith("019")
    assert rts["records"][0]["BusinessProcess"]["Name"] == "Enterprise Process"

    with pytest.raises(SalesforceMalformedRequest) as bad_stage:
        sf.Opportunity.create({"Name": "x", "StageName": "Prospecting", "CloseDate": "2026-12-31", "RecordTypeId": smb})
    assert error_of(bad_stage) == {"message": "Stage: bad value for restricted picklist field: Prospecting",
                                   "errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "fields": ["StageName"]}
    opp = sf.Opportunity.create({"Name": "x", "StageName": "Qualification", "CloseDate": "2026-12-31",
                                 "RecordTypeId": smb})
    row = sf.query(f"SELECT RecordType.DeveloperName FROM Opportunity WHERE Id = '{opp['id']}'")["records"][0]
    assert row["RecordType"]["DeveloperName"] == "SMB"
    with pytest.raises(SalesforceMalformedRequest):
        sf.Opportunity.update(opp["id"], {"RecordTypeId": enterprise})  # Qualification is not in Enterprise

    picklists = sf.restful(f"ui-api/object-info/Opportunity/picklist-values/{enterprise}")
    stage_values = picklists["picklistFieldValues"]["StageName"]
    assert [v["value"] for v in stage_values["values"]] == [
        "Prospecting", "Negotiation/Review", "Closed Won", "Closed Lost"]
    assert stage_values["values"][2]["attributes"]["won"] is True
    assert stage_values["url"].endswith(f"/picklist-values/{enterprise}/StageName")
    assert set(stage_values) >= {"controllerValues", "defaultValue", "eTag", "url", "values"}
    master = sf.restful(f"ui-api/object-info/Opportunity/picklist-values/{MASTER_RECORD_TYPE_ID}/StageName")
    assert len(master["values"]) == 10
    infos = sf.Opportunity.describe()["recordTypeInfos"]
    assert [i["developerName"] for i in infos] == ["Enterprise", "SMB", "Master"]
    assert infos[0]["defaultRecordTypeMapping"] is True


def test_contact_roles_primary_and_read_only_opportunity(sf: Any, new_opportunity: Callable[..., str]) -> None:
    opp_id = new_opportunity()
    account = sf.Account.create({"Name": "Globex"})["id"]
    first = sf.Contact.create({"LastName": "Ng", "FirstName": "Ada", "Email": "ada@globex.example",
                               "AccountId": account})["id"]
    second = sf.Contact.create({"LastName": "Ito", "Email": "ito@globex.example"})["id"]
    role_a = sf.OpportunityContactRole.create({"OpportunityId": opp_id, "ContactId": first, "IsPrimary": True,
                                               "Role": "Decision Maker"})["id"]
    role_b = sf.OpportunityContactRole.create({"OpportunityId": opp_id, "ContactId": second, "IsPrimary": True})["id"]
    assert role_a.startswith("00K")
    rows = sf.query(f"SELECT Id, ContactId, (SELECT ContactId, Role, IsPrimary FROM OpportunityContactRoles "
                    f"ORDER BY CreatedDate, Id) FROM Opportunity WHERE Id = '{opp_id}'")["records"]
    roles = rows[0]["OpportunityContactRoles"]
    assert roles["totalSize"] == 2 and roles["done"] is True
    assert [(r["ContactId"], r["IsPrimary"]) for r in roles["records"]] == [(first, False), (second, True)]
    assert rows[0]["ContactId"] == second
    assert sf.Contact.get(first)["Name"] == "Ada Ng"
    with pytest.raises(SalesforceMalformedRequest) as locked:
        sf.OpportunityContactRole.update(role_b, {"OpportunityId": new_opportunity()})
    assert error_of(locked)["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"


def test_delete_goes_to_the_recycle_bin_and_undelete_restores(org: Any, sf: Any,
                                                              new_opportunity: Callable[..., str]) -> None:
    opp_id = new_opportunity(HubSpot_Deal_Id__c="77")
    contact = sf.Contact.create({"LastName": "Roe"})["id"]
    role = sf.OpportunityContactRole.create({"OpportunityId": opp_id, "ContactId": contact})["id"]
    sf.Opportunity.delete(opp_id)
    assert sf.query(f"SELECT Id FROM Opportunity WHERE Id = '{opp_id}'")["totalSize"] == 0
    deleted = sf.query_all(f"SELECT Id, IsDeleted FROM Opportunity WHERE Id = '{opp_id}'", include_deleted=True)
    assert deleted["records"][0]["IsDeleted"] is True
    ocr = sf.query_all(f"SELECT Id, IsDeleted FROM OpportunityContactRole WHERE Id = '{role}'", include_deleted=True)
    assert ocr["records"][0]["IsDeleted"] is True
    # The external id is free while the record is in the recycle bin.
    with pytest.raises(SalesforceResourceNotFound):
        sf.Opportunity.get_by_custom_id("HubSpot_Deal_Id__c", "77")

    result = org.control("undelete", {"ids": [opp_id, "0068d00000009zzAAA"]})
    assert result[0] == {"id": opp_id, "success": True, "errors": []}
    assert result[1]["success"] is False
    assert sf.Opportunity.get(opp_id)["IsDeleted"] is False
    assert sf.OpportunityContactRole.get(role)["IsDeleted"] is False
    assert sf.Opportunity.get_by_custom_id("HubSpot_Deal_Id__c", "77")["Id"] == opp_id


def test_multi_currency_org(org: Any, sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as single:
        sf.Opportunity.create({"Name": "x", "StageName": "Prospecting", "CloseDate": "2026-12-31",
                               "CurrencyIsoCode": "EUR"})
    assert error_of(single)["errorCode"] == "INVALID_FIELD"
    earlier = sf.Opportunity.create({"Name": "Before", "StageName": "Prospecting", "CloseDate": "2026-12-31"})["id"]
    org.configure(multi_currency=True)
    assert sf.Opportunity.get(earlier)["CurrencyIsoCode"] == "USD"  # existing records take the corporate currency
    opp = sf.Opportunity.create({"Name": "EUR deal", "StageName": "Prospecting", "CloseDate": "2026-12-31",
                                 "CurrencyIsoCode": "EUR"})
    assert sf.Opportunity.get(opp["id"])["CurrencyIsoCode"] == "EUR"
    default = sf.Opportunity.create({"Name": "USD deal", "StageName": "Prospecting", "CloseDate": "2026-12-31"})
    assert sf.Opportunity.get(default["id"])["CurrencyIsoCode"] == "USD"
    with pytest.raises(SalesforceMalformedRequest) as bad:
        sf.Opportunity.update(opp["id"], {"CurrencyIsoCode": "XYZ"})
    assert error_of(bad)["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    fields = {f["name"]: f for f in sf.Opportunity.describe()["fields"]}
    assert [v["value"] for v in fields["CurrencyIsoCode"]["picklistValues"]] == ["USD", "EUR", "GBP"]


def content_of(exc: pytest.ExceptionInfo[Any]) -> Any:
    """The parsed JSON error body simple-salesforce attaches to its exceptions."""
    body: Any = exc.value.content
    return body
