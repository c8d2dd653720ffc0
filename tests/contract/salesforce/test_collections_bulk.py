"""sObject Collections (create, update, upsert, retrieve, delete; allOrNone), getUpdated/getDeleted
windows and Bulk API 2.0 query jobs."""


from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

VALID = {"StageName": "Prospecting", "CloseDate": "2026-12-31"}


def opp(name: str, **fields: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Opportunity"}, "Name": name, **VALID, **fields}


def count(sf: Any, where: str = "") -> int:
    return int(sf.query(f"SELECT COUNT() FROM Opportunity {where}")["totalSize"])


def test_collection_create_partial_success(sf: Any) -> None:
    results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": [
        opp("One"), {"attributes": {"type": "Opportunity"}, "Name": "No stage"}, opp("Three"),
    ]})
    assert [r["success"] for r in results] == [True, False, True]
    assert results[0]["id"].startswith("006") and results[0]["errors"] == []
    assert "id" not in results[1]
    assert results[1]["errors"] == [{"statusCode": "REQUIRED_FIELD_MISSING",
                                     "message": "Required fields are missing: [StageName, CloseDate]",
                                     "fields": ["StageName", "CloseDate"]}]
    assert count(sf) == 2


def test_collection_all_or_none_rolls_back(sf: Any) -> None:
    results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": [
        opp("One"), opp("Bad", StageName="Nope"), opp("Three"),
    ]})
    assert [r["success"] for r in results] == [False, False, False]
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert results[2]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert count(sf) == 0


def test_collection_limit_is_200_records(sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.restful("composite/sobjects", method="POST",
                   json={"records": [opp(f"n{i}") for i in range(201)]})
    assert content_of(exc)[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert "cannot submit more than 200 records" in content_of(exc)[0]["message"]
    assert count(sf) == 0
    results = sf.restful("composite/sobjects", method="POST", json={"records": [opp(f"n{i}") for i in range(200)]})
    assert len(results) == 200 and all(r["success"] for r in results)


def test_collection_update_retrieve_delete(sf: Any, new_opportunity: Callable[..., str]) -> None:
    first, second = new_opportunity(Name="First"), new_opportunity(Name="Second")
    results = sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": [
        {"attributes": {"type": "Opportunity"}, "id": first, "Amount": 10},
        {"attributes": {"type": "Opportunity"}, "id": second, "IsWon": True},
        {"attributes": {"type": "Opportunity"}, "id": "006bogus", "Amount": 1},
    ]})
    assert results[0] == {"id": first, "success": True, "errors": []}
    assert results[1]["errors"][0]["statusCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert results[2]["errors"][0]["statusCode"] == "MALFORMED_ID"
    missing = "0068d0000000999AAA"
    fetched = sf.restful("composite/sobjects/Opportunity", params={"ids": f"{first},{missing},{second}",
                                                                    "fields": "Name,Amount"})
    url = f"/services/data/v59.0/sobjects/Opportunity/{first}"
    assert fetched[0] == {"attributes": {"type": "Opportunity", "url": url},
                          "Name": "First", "Amount": 10.0}
    assert fetched[1] is None and fetched[2]["Amount"] is None
    deleted = sf.restful("composite/sobjects", method="DELETE",
                         params={"ids": f"{first},{missing}", "allOrNone": "false"})
    assert deleted[0] == {"id": first, "success": True, "errors": []}
    assert deleted[1]["success"] is False and deleted[1]["id"] == missing
    assert count(sf) == 1


def test_collection_upsert_on_external_id(sf: Any) -> None:
    path = "composite/sobjects/Opportunity/HubSpot_Deal_Id__c"
    first = sf.restful(path, method="PATCH", json={"allOrNone": False, "records": [
        opp("Deal 1", HubSpot_Deal_Id__c="1"), opp("Deal 2", HubSpot_Deal_Id__c="2"),
    ]})
    assert [(r["success"], r["created"]) for r in first] == [(True, True), (True, True)]
    second = sf.restful(path, method="PATCH", json={"allOrNone": False, "records": [
        {"attributes": {"type": "Opportunity"}, "HubSpot_Deal_Id__c": "1", "Amount": 5},
        opp("Deal 3", HubSpot_Deal_Id__c="3"),
        opp("Dup A", HubSpot_Deal_Id__c="9"), opp("Dup B", HubSpot_Deal_Id__c="9"),
        opp("No key"),
    ]})
    assert second[0] == {"id": first[0]["id"], "success": True, "errors": [], "created": False}
    assert second[1]["created"] is True
    assert [e["statusCode"] for r in second[2:4] for e in r["errors"]] == ["DUPLICATE_EXTERNAL_ID"] * 2
    assert second[4]["success"] is False
    assert count(sf) == 3
    assert sf.Opportunity.get(first[0]["id"])["Amount"] == 5.0
    with pytest.raises(SalesforceMalformedRequest):
        sf.restful("composite/sobjects/Opportunity/Name", method="PATCH", json={"records": []})


def test_get_updated_and_get_deleted_windows(org: Any, sf: Any, new_opportunity: Callable[..., str]) -> None:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    changed, removed = new_opportunity(), new_opportunity()
    sf.Opportunity.delete(removed)
    org.control("clock", {"advance_seconds": 120})  # getUpdated covers whole minutes only
    end = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)
    updated = sf.Opportunity.updated(start, end)
    assert updated["ids"] == [changed]
    assert updated["latestDateCovered"].endswith(":00.000+0000")
    deleted = sf.Opportunity.deleted(start, end)
    assert [d["id"] for d in deleted["deletedRecords"]] == [removed]
    assert set(deleted) == {"deletedRecords", "earliestDateAvailable", "latestDateCovered"}
    with pytest.raises(SalesforceMalformedRequest) as reversed_window:
        sf.Opportunity.updated(end, start)
    assert content_of(reversed_window)[0]["errorCode"] == "INVALID_REPLICATION_DATE"
    with pytest.raises(SalesforceMalformedRequest) as too_old:
        sf.Opportunity.updated(end - dt.timedelta(days=31), end)
    assert content_of(too_old)[0]["errorCode"] == "INVALID_REPLICATION_DATE"
    with pytest.raises(SalesforceMalformedRequest):
        sf.Opportunity.deleted(end - dt.timedelta(days=16), end)


def test_bulk2_query_pages_with_locators(org: Any, sf: Any) -> None:
    loaded = org.app.load({
        "Account": [{"Name": "Globex, Inc."}],
        "Opportunity": [{"Name": f"Bulk {i:04d}", "StageName": "Prospecting", "CloseDate": "2026-12-31",
                         "AccountId": "@Account:0", "Amount": i} for i in range(2500)],
    })
    sf.Opportunity.delete(loaded["Opportunity"][0])
    pages = list(sf.bulk2.Opportunity.query("SELECT Id, Name, Account.Name, Amount, IsDeleted FROM Opportunity",
                                            max_records=1000, wait=0.05))
    assert len(pages) == 3
    rows = [row for page in pages for row in csv.DictReader(io.StringIO(page))]
    assert len(rows) == 2499
    assert list(rows[0]) == ["Id", "Name", "Account.Name", "Amount", "IsDeleted"]
    assert rows[0]["Account.Name"] == "Globex, Inc." and rows[0]["IsDeleted"] == "false"
    everything = list(sf.bulk2.Opportunity.query_all("SELECT Id, IsDeleted FROM Opportunity", wait=0.05))
    deleted = [row for row in csv.DictReader(io.StringIO(everything[0])) if row["IsDeleted"] == "true"]
    assert [row["Id"] for row in deleted] == [loaded["Opportunity"][0]]

    # The raw protocol: job info, then pages whose Sforce-Locator is "null" on the last one.
    session = org.session()
    headers = {"Authorization": f"Bearer {org.app.integration_token}", "Content-Type": "application/json"}
    base = f"{org.url}/services/data/v59.0/jobs/query"
    job = session.post(base, json={"operation": "query", "query": "SELECT Id FROM Opportunity"},
                       headers=headers).json()
    assert job["id"].startswith("750") and job["state"] == "UploadComplete" and job["object"] == "Opportunity"
    assert session.get(f"{base}/{job['id']}", headers=headers).json()["state"] == "JobComplete"
    page = session.get(f"{base}/{job['id']}/results", params={"maxRecords": 2000}, headers=headers)
    assert page.headers["Sforce-NumberOfRecords"] == "2000" and page.headers["Sforce-Locator"] != "null"
    last = session.get(f"{base}/{job['id']}/results", headers=headers,
                       params={"maxRecords": 2000, "locator": page.headers["Sforce-Locator"]})
    assert last.headers["Sforce-NumberOfRecords"] == "499" and last.headers["Sforce-Locator"] == "null"
    assert "Sforce-Limit-Info" in last.headers
    refused = session.post(base, headers=headers, json={
        "operation": "query", "query": "SELECT Id, (SELECT Id FROM OpportunityContactRoles) FROM Opportunity"})
    assert refused.status_code == 400 and refused.json()[0]["errorCode"] == "INVALIDJOB"
    assert session.delete(f"{base}/{job['id']}", headers=headers).status_code == 204
    assert session.get(f"{base}/{job['id']}", headers=headers).status_code == 404


def test_bulk2_job_in_progress_and_abort(org: Any) -> None:
    org.configure(bulk_job_processing_seconds=30)
    session = org.session()
    headers = {"Authorization": f"Bearer {org.app.integration_token}"}
    base = f"{org.url}/services/data/v59.0/jobs/query"
    job = session.post(base, json={"operation": "query", "query": "SELECT Id FROM Account"}, headers=headers).json()
    assert session.get(f"{base}/{job['id']}", headers=headers).json()["state"] == "InProgress"
    early = session.get(f"{base}/{job['id']}/results", headers=headers)
    assert early.status_code == 412 and early.json()[0]["errorCode"] == "JOB_NOT_COMPLETE"
    aborted = session.patch(f"{base}/{job['id']}", json={"state": "Aborted"}, headers=headers).json()
    assert aborted["state"] == "Aborted"


def content_of(exc: pytest.ExceptionInfo[Any]) -> Any:
    """The parsed JSON error body simple-salesforce attaches to its exceptions."""
    body: Any = exc.value.content
    return body
