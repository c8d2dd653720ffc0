"""Pure helpers of the imports (DESIGN 1.8) and of the CLI's progress line; no network."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from dealsync.models.events import ImportChunkMessage, ImportStartMessage, parse_import_queue_body
from dealsync.services.import_batch import process_import_queue
from dealsync.services.import_records import (
    EnumerationOrderError,
    chunk_records,
    compact_record,
    merge_contact_roles,
    record_json,
    typed_bulk_row,
)
from dealsync.services.imports import chunked, company_properties, domain_from_website, enumeration_soql
from dealsync_cli.progress import RateMeter, bar, format_duration, progress_line

OPPORTUNITY = "006000000000001AAA"


def test_chunks_are_numbered_from_the_cursor_and_hold_at_most_the_size() -> None:
    ids = [f"id{index}" for index in range(205)]
    chunks = chunked(ids, 100, first=7)
    assert [number for number, _ in chunks] == [7, 8, 9]
    assert [len(part) for _, part in chunks] == [100, 100, 5]
    assert [record for _, part in chunks for record in part] == ids
    assert chunked([], 100) == []
    with pytest.raises(ValueError, match="at least 1"):
        chunked(ids, 0)


@pytest.mark.parametrize(("website", "domain"), [
    ("https://www.acme.example/about", "acme.example"),
    ("http://Shop.Acme.Example:8080", "shop.acme.example"),
    ("acme.example", "acme.example"),
    ("www.acme.example/", "acme.example"),
    ("", None),
    (None, None),
])
def test_company_domain_comes_from_the_website(website: str | None, domain: str | None) -> None:
    assert domain_from_website(website) == domain


def test_company_properties_carry_the_unique_account_id() -> None:
    account = {"Id": "001000000000001AAA", "Name": "Acme", "Website": "https://acme.example"}
    assert company_properties(account) == {"salesforce_account_id": "001000000000001AAA", "name": "Acme",
                                           "domain": "acme.example"}
    assert company_properties({"Id": "001000000000001AAA", "Name": None}) == {
        "salesforce_account_id": "001000000000001AAA"}


def test_enumeration_reads_ids_in_id_order_of_importable_objects_only() -> None:
    assert enumeration_soql("Account") == "SELECT Id FROM Account ORDER BY Id"
    with pytest.raises(ValueError, match="not an importable object"):
        enumeration_soql("User WHERE Name != ''")


def test_the_import_queue_carries_starts_and_chunks() -> None:
    start = parse_import_queue_body('{"kind": "import_start", "job_id": "j1", "object": "Opportunity"}')
    assert start == ImportStartMessage(job_id="j1", object="Opportunity", chunk_size=100)
    chunk = parse_import_queue_body(ImportChunkMessage(job_id="j1", chunk=3, object="Opportunity",
                                                       ids=[OPPORTUNITY]).model_dump_json())
    assert isinstance(chunk, ImportChunkMessage) and chunk.chunk == 3
    with pytest.raises(ValidationError):
        parse_import_queue_body('{"kind": "import_start", "job_id": "j1", "object": "Opportunity", "chunk_size": 101}')
    with pytest.raises(ValidationError):
        parse_import_queue_body('{"kind": "rollup", "contact_ids": []}')


def test_a_malformed_message_alone_comes_back() -> None:
    records = [{"messageId": "m1", "body": "not json"}, {"messageId": "m2", "body": '{"kind": "nothing"}'}]
    # The context is never reached: neither body parses.
    response = process_import_queue(records, context=None)  # type: ignore[arg-type]
    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]}


def _opportunity(n: int) -> str:
    return f"006{n:012d}AAA"


def test_a_chunk_carries_its_records_in_the_order_of_its_ids() -> None:
    records = [{"Id": _opportunity(1), "Name": "A"}, {"Id": _opportunity(2), "Name": "B"}]
    chunk = ImportChunkMessage(job_id="j1", chunk=0, object="Opportunity", ids=[_opportunity(1), _opportunity(2)],
                               records=records)
    assert parse_import_queue_body(chunk.model_dump_json()) == chunk
    with pytest.raises(ValidationError, match="same order"):
        ImportChunkMessage(job_id="j1", chunk=0, object="Opportunity", ids=[_opportunity(2), _opportunity(1)],
                           records=records)


def test_bulk_csv_rows_become_the_records_the_rest_api_returns() -> None:
    types = {"Amount": "currency", "IsWon": "boolean", "IsClosed": "boolean", "CreatedDate": "datetime",
             "CloseDate": "date", "Name": "string", "TotalOpportunityQuantity": "double", "Seats__c": "int"}
    row = {"Id": _opportunity(1), "Amount": "1500.5", "IsWon": "true", "IsClosed": "", "Name": "",
           "CreatedDate": "2026-01-02T03:04:05.000Z", "CloseDate": "2026-06-30", "TotalOpportunityQuantity": "2.0",
           "Seats__c": "12"}
    assert typed_bulk_row(row, types) == {
        "Id": _opportunity(1), "Amount": 1500.5, "IsWon": True, "IsClosed": False, "Name": None,
        "CreatedDate": "2026-01-02T03:04:05.000+0000", "CloseDate": "2026-06-30", "TotalOpportunityQuantity": 2.0,
        "Seats__c": 12}


def test_a_rest_record_keeps_what_the_sync_reads_and_drops_paging() -> None:
    record = {"attributes": {"type": "Opportunity"}, "Id": _opportunity(1), "Amount": 5.0,
              "OpportunityContactRoles": {"totalSize": 1, "done": True, "records": [
                  {"attributes": {"type": "OpportunityContactRole"}, "Id": "00K000000000001AAA",
                   "ContactId": "003000000000001AAA", "IsPrimary": True, "IsDeleted": False}]}}
    assert compact_record(record) == {"Id": _opportunity(1), "Amount": 5.0, "OpportunityContactRoles": {"records": [
        {"Id": "00K000000000001AAA", "ContactId": "003000000000001AAA", "IsPrimary": True, "IsDeleted": False}]}}
    assert compact_record({"Id": _opportunity(2), "OpportunityContactRoles": None})["OpportunityContactRoles"] is None


def _role(n: int, opportunity: int) -> dict[str, object]:
    return {"Id": f"00K{n:012d}AAA", "ContactId": f"003{n:012d}AAA", "IsPrimary": n % 2 == 0, "IsDeleted": False,
            "OpportunityId": _opportunity(opportunity)}


def test_contact_roles_are_merged_into_their_opportunities_streaming() -> None:
    opportunities = [{"Id": _opportunity(n)} for n in (1, 2, 4)]
    # Opportunity 3 is not in the first stream (created after its snapshot): its role is passed over.
    roles = [_role(1, 1), _role(2, 1), _role(3, 3), _role(4, 4)]
    consumed: list[str] = []

    def role_stream() -> Iterator[dict[str, object]]:
        for role in roles:
            consumed.append(str(role["Id"]))
            yield role

    merged = merge_contact_roles(iter(opportunities), role_stream())
    first = next(merged)
    assert [role["ContactId"] for role in first["OpportunityContactRoles"]["records"]] == [
        "003000000000001AAA", "003000000000002AAA"]
    assert "OpportunityId" not in first["OpportunityContactRoles"]["records"][0]
    assert len(consumed) == 3  # no further than the next opportunity's first role: memory stays flat
    rest = list(merged)
    assert rest[0]["OpportunityContactRoles"] is None
    assert [role["Id"] for role in rest[1]["OpportunityContactRoles"]["records"]] == ["00K000000000004AAA"]


def test_ids_are_merged_in_soql_order_which_ignores_case() -> None:
    lower, upper = "0068d000000000aAAA", "0068d000000000AAAQ"  # SOQL: lower first; byte order: upper first
    roles = [{**_role(1, 0), "OpportunityId": lower}, {**_role(2, 0), "OpportunityId": upper}]
    merged = list(merge_contact_roles([{"Id": lower}, {"Id": upper}], roles))
    assert [record["OpportunityContactRoles"]["records"][0]["Id"] for record in merged] == [
        "00K000000000001AAA", "00K000000000002AAA"]


def test_streams_out_of_order_are_refused_rather_than_losing_roles() -> None:
    with pytest.raises(EnumerationOrderError, match="opportunities not in Id order"):
        list(merge_contact_roles([{"Id": _opportunity(2)}, {"Id": _opportunity(1)}], []))
    with pytest.raises(EnumerationOrderError, match="contact roles not in OpportunityId order"):
        list(merge_contact_roles([{"Id": _opportunity(1)}, {"Id": _opportunity(3)}],
                                 [_role(1, 2), _role(2, 1)]))


def test_chunks_hold_at_most_the_size_and_the_bytes_and_a_huge_record_travels_by_id() -> None:
    records = [{"Id": _opportunity(n), "Description": "x" * 300} for n in range(7)]
    weight = len(record_json(records[0]).encode()) + 1
    by_count = list(chunk_records(records, size=3))
    assert [chunk.ids for chunk in by_count] == [[r["Id"] for r in records[i:i + 3]] for i in (0, 3, 6)]
    assert all(chunk.records == records[i * 3:i * 3 + 3] for i, chunk in enumerate(by_count))
    by_bytes = list(chunk_records(records, size=100, max_bytes=2 * weight))
    assert [len(chunk.ids) for chunk in by_bytes] == [2, 2, 2, 1]
    huge = {"Id": _opportunity(99), "Description": "y" * 5000}
    mixed = list(chunk_records([records[0], huge, records[1]], size=100, max_bytes=4000))
    assert [(chunk.ids, len(chunk.records)) for chunk in mixed] == [
        ([records[0]["Id"]], 1), ([huge["Id"]], 0), ([records[1]["Id"]], 1)]
    with pytest.raises(ValueError, match="at least 1"):
        list(chunk_records(records, size=0))


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "--"), (-1, "--"), (0, "0s"), (42.4, "42s"), (59.6, "1m00s"), (185, "3m05s"), (3725, "1h02m"),
])
def test_durations_fit_a_progress_line(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_rate_and_eta_come_from_the_recent_samples() -> None:
    meter = RateMeter(window=10)
    assert meter.rate is None and meter.eta(100) is None
    meter.add(0.0, 0)
    meter.add(2.0, 50)
    assert meter.rate == 25.0
    assert meter.eta(100) == 4.0
    assert meter.eta(0) == 0.0
    for moment in range(3, 30):
        meter.add(float(moment), 50 + (moment - 2) * 10)
    assert meter.rate == pytest.approx(10.0)  # the early burst has left the window
    stalled = RateMeter()
    stalled.add(0.0, 10)
    stalled.add(5.0, 10)
    assert stalled.rate == 0.0 and stalled.eta(5) is None


def test_progress_line_shows_done_total_failed_rate_and_eta() -> None:
    line = progress_line("opportunities", "running", 400, 20, 1000, 12.5, 46.0)
    assert line.startswith("opportunities [##########--------------] 420/1000  42%")
    assert "failed 20" in line and "12.5/s" in line and "ETA 46s" in line and line.endswith("running")
    assert "0/0+" in progress_line("accounts", "pending", 0, 0, 0, None, None, enumerating=True)
    assert "100%" in progress_line("accounts", "completed", 0, 0, 0, None, 0.0)
    assert bar(2.0, 4) == "####" and bar(-1, 4) == "----"


def test_status_fits_a_terminal_and_names_what_is_unknown() -> None:
    from dealsync_cli.commands.status import render

    document = {
        "target": "local world /tmp/x",
        "toggles": {"company_sync": True, "account_import_completed": True, "deal_sync": False},
        "pipelines": {"limit": 15, "limit_source": "hubspot", "used": 1, "record_types": [
            {"record_type_id": "0128d0000000001AAA", "pipeline_id": "100000002",
             "label": "Salesforce - 0128d0000000001AAA", "stages": 10}]},
        "poll_watermark": None,
        "queues": {"Import": {"visible": 3, "in_flight": 1, "dlq": 2}, "Rollup": {"visible": 0, "in_flight": 0,
                                                                                "dlq": None}},
        "running_jobs": [{"job_id": "abc", "kind": "opportunities", "status": "running", "done": 40, "failed": 2,
                          "total": 100}],
        "errors": {"PIPELINE_LIMIT": 2, "OWNER_NOT_FOUND": 0},
        "api_usage": {"salesforce": None, "hubspot": None},
        "problems": ["Salesforce: unreachable"],
    }
    lines = render(document)
    assert all(len(line) <= 100 for line in lines)
    text = "\n".join(lines)
    assert "deal sync off" in text and "pipelines: 1 of 15 (hubspot)" in text
    assert "  Import                3          1    2" in text and "  Rollup                0          0    -" in text
    assert "abc  opportunities  running  42/100 (failed 2)" in text
    assert "sync errors: PIPELINE_LIMIT 2" in text and "OWNER_NOT_FOUND" not in text
    assert "poll watermark: never polled" in text and "Salesforce unknown" in text
    assert lines[-1] == "problem: Salesforce: unreachable"
