"""Bulk API 2.0 ingest jobs (reference §3): simple-salesforce's ``bulk2`` insert / update / delete against the
emulator, and the raw protocol (job states, one upload per job, results CSVs, abort)."""

from __future__ import annotations

import csv
import io
from typing import Any

VALID = {"StageName": "Prospecting", "CloseDate": "2026-12-31"}


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_bulk2_update_applies_the_rows_and_reports_each_failure(org: Any, sf: Any) -> None:
    loaded = org.app.load({"Opportunity": [{"Name": f"Ingest {i}", **VALID, "Amount": i} for i in range(3)]})
    ids = loaded["Opportunity"]
    missing = "006" + "9" * 12  # a well-formed id of no record
    [result] = sf.bulk2.Opportunity.update(records=[
        {"Id": ids[0], "HubSpot_Deal_Id__c": "9001", "Amount": "10.5"},
        {"Id": ids[1], "HubSpot_Deal_Id__c": "9002", "Amount": ""},  # empty: left as it is
        {"Id": missing, "HubSpot_Deal_Id__c": "9003", "Amount": "1"},
    ], wait=0.05)
    assert (result["numberRecordsProcessed"], result["numberRecordsFailed"], result["numberRecordsTotal"]) == (3, 1, 3)
    written = {row["Id"]: row for row in sf.query(
        "SELECT Id, HubSpot_Deal_Id__c, Amount FROM Opportunity ORDER BY Id")["records"]}
    assert (written[ids[0]]["HubSpot_Deal_Id__c"], written[ids[0]]["Amount"]) == ("9001", 10.5)
    assert (written[ids[1]]["HubSpot_Deal_Id__c"], written[ids[1]]["Amount"]) == ("9002", 1.0)
    assert written[ids[2]]["HubSpot_Deal_Id__c"] is None

    successful = rows(sf.bulk2.Opportunity.get_successful_records(result["job_id"]))
    assert [(row["sf__Id"], row["sf__Created"], row["HubSpot_Deal_Id__c"]) for row in successful] == [
        (ids[0], "false", "9001"), (ids[1], "false", "9002")]
    [failed] = rows(sf.bulk2.Opportunity.get_failed_records(result["job_id"]))
    assert failed["Id"] == missing and failed["HubSpot_Deal_Id__c"] == "9003"
    assert failed["sf__Error"].split(":")[0] in {"INVALID_CROSS_REFERENCE_KEY", "ENTITY_IS_DELETED", "NOT_FOUND"}
    assert failed["sf__Error"].endswith(":--")


def test_bulk2_insert_and_delete(org: Any, sf: Any) -> None:
    [created] = sf.bulk2.Opportunity.insert(records=[
        {"Name": "Bulk new 1", **VALID}, {"Name": "Bulk new 2", **VALID}, {"Name": "No stage"}], wait=0.05)
    assert (created["numberRecordsProcessed"], created["numberRecordsFailed"]) == (3, 1)
    new = rows(sf.bulk2.Opportunity.get_successful_records(created["job_id"]))
    assert [(row["Name"], row["sf__Created"]) for row in new] == [("Bulk new 1", "true"), ("Bulk new 2", "true")]
    [refused] = rows(sf.bulk2.Opportunity.get_failed_records(created["job_id"]))
    assert refused["sf__Error"].startswith("REQUIRED_FIELD_MISSING:")
    [deleted] = sf.bulk2.Opportunity.delete(records=[{"Id": row["sf__Id"]} for row in new], wait=0.05)
    assert (deleted["numberRecordsProcessed"], deleted["numberRecordsFailed"]) == (2, 0)
    assert sf.query("SELECT COUNT() FROM Opportunity WHERE Name LIKE 'Bulk new%'")["totalSize"] == 0


def test_ingest_protocol_states_one_upload_and_abort(org: Any) -> None:
    org.configure(bulk_job_processing_seconds=30)
    session = org.session()
    auth = {"Authorization": f"Bearer {org.app.integration_token}"}
    base = f"{org.url}/services/data/v59.0/jobs/ingest"
    job = session.post(base, json={"object": "Opportunity", "operation": "insert", "contentType": "CSV",
                                   "lineEnding": "LF"}, headers=auth).json()
    assert job["id"].startswith("750") and job["state"] == "Open"
    assert job["contentUrl"] == f"services/data/v59.0/jobs/ingest/{job['id']}/batches"
    csv_headers = {**auth, "Content-Type": "text/csv"}
    body = "Name,StageName,CloseDate\nLater,Prospecting,2026-12-31\n"
    assert session.put(f"{base}/{job['id']}/batches", data=body, headers=csv_headers).status_code == 201
    again = session.put(f"{base}/{job['id']}/batches", data=body, headers=csv_headers)
    assert again.status_code == 400 and again.json()[0]["errorCode"] == "INVALIDJOBSTATE"
    assert session.delete(f"{base}/{job['id']}", headers=auth).status_code == 400  # open: abort first
    closed = session.patch(f"{base}/{job['id']}", json={"state": "UploadComplete"}, headers=auth).json()
    assert closed["state"] == "UploadComplete"
    assert session.get(f"{base}/{job['id']}", headers=auth).json()["state"] == "InProgress"
    early = session.get(f"{base}/{job['id']}/successfulResults", headers=auth)
    assert early.status_code == 400 and early.json()[0]["errorCode"] == "INVALIDJOBSTATE"

    unknown = session.post(base, json={"object": "Opportunity", "operation": "merge"}, headers=auth)
    assert unknown.status_code == 400 and unknown.json()[0]["errorCode"] == "INVALIDJOB"
    other = session.post(base, json={"object": "Opportunity", "operation": "update"}, headers=auth).json()
    bad_column = session.put(f"{base}/{other['id']}/batches", data="Id,NoSuchField__c\n006,1\n", headers=csv_headers)
    assert bad_column.status_code == 400 and bad_column.json()[0]["errorCode"] == "INVALIDBATCH"
    session.put(f"{base}/{other['id']}/batches", data=f"Id,Amount\n{'006' + '1' * 15},5\n", headers=csv_headers)
    aborted = session.patch(f"{base}/{other['id']}", json={"state": "Aborted"}, headers=auth).json()
    assert aborted["state"] == "Aborted"
    unprocessed = rows(session.get(f"{base}/{other['id']}/unprocessedrecords", headers=auth).text)
    assert unprocessed == [{"Id": "006" + "1" * 15, "Amount": "5"}]
    assert session.delete(f"{base}/{other['id']}", headers=auth).status_code == 204
    assert session.get(f"{base}/{other['id']}", headers=auth).status_code == 404

    empty = session.post(base, json={"object": "Opportunity", "operation": "update"}, headers=auth).json()
    failed = session.patch(f"{base}/{empty['id']}", json={"state": "UploadComplete"}, headers=auth).json()
    assert failed["state"] == "Failed"
    listed = {item["id"] for item in session.get(base, headers=auth).json()["records"]}
    assert {job["id"], empty["id"]} <= listed
