"""Sync health, the pure parts: how a resync routes records, the deal events it queues, which
categories a changed cause re-tries, the owner directory's fingerprint, and the CLI's renderings."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from dealsync.mapping.owners import HubSpotOwner, OwnerDirectory, SalesforceUser
from dealsync.models.domain import ErrorCategory, SyncError
from dealsync.models.events import parse_hubspot_queue_body
from dealsync.services.hs_change import DealWork, collect_events
from dealsync.services.resync import (
    RESYNC_CHANGE_SOURCE,
    categories_for,
    changed_causes,
    deal_resync_messages,
    digest,
    is_resync_event,
    parse_category,
    plan_resync,
)
from dealsync_cli.commands.errors import CSV_COLUMNS, csv_row, render_counts, render_page

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
OPPORTUNITY = "0065g00000AbCdEAAV"
OTHER_OPPORTUNITY = "0065g00000AbCdFAAV"
ACCOUNT = "0015g00000XyZaBAAV"
CONTACT = "0035g00000QwErTAAV"


def _error(category: ErrorCategory, record_type: str, record_id: str, **changes: object) -> SyncError:
    values: dict[str, object] = {"category": category, "record_type": record_type, "record_id": record_id,
                                 "message": f"{category} of {record_id}", "first_seen": NOW, "last_seen": NOW}
    values.update(changes)
    return SyncError.model_validate(values)


def test_a_resync_routes_each_record_by_the_direction_its_errors_came_from() -> None:
    plan = plan_resync([
        _error(ErrorCategory.OWNER_NOT_FOUND, "Opportunity", OPPORTUNITY),
        _error(ErrorCategory.UNMAPPED_VALUE, "Opportunity", OPPORTUNITY),  # same record, second category
        _error(ErrorCategory.CONTACT_NOT_IN_SALESFORCE, "Deal", "1234567"),
        _error(ErrorCategory.HUBSPOT_VALIDATION, "Account", ACCOUNT),
        _error(ErrorCategory.HUBSPOT_VALIDATION, "Contact", CONTACT),
        _error(ErrorCategory.PERMISSION, "Opportunity", OTHER_OPPORTUNITY),
        _error(ErrorCategory.PERMISSION, "Lead", "00Q5g00000AAAAAAAA"),
    ])
    assert plan.opportunities == (OPPORTUNITY, OTHER_OPPORTUNITY)
    assert plan.deals == ("1234567",)
    assert plan.accounts == (ACCOUNT,)
    assert plan.contacts == (CONTACT,)
    assert plan.unsupported == ("Lead#00Q5g00000AAAAAAAA",)
    assert plan.total == 5
    assert plan.record_ids == [OPPORTUNITY, OTHER_OPPORTUNITY, "1234567", ACCOUNT, CONTACT]


def test_nothing_to_route_is_an_empty_plan() -> None:
    plan = plan_resync([])
    assert plan.total == 0
    assert plan.record_ids == []


def test_deal_resync_messages_are_valid_queue_bodies_the_worker_reads_with_associations() -> None:
    deal_ids = [str(100 + index) for index in range(150)] + ["100"]  # one twice
    messages = deal_resync_messages(deal_ids, portal_id="62515", app_id="4242", now=NOW)
    assert [len(message.events) for message in messages] == [100, 50]
    work = DealWork()
    for number, message in enumerate(messages):
        parsed = parse_hubspot_queue_body(message.model_dump_json())  # what the worker will parse
        assert all(is_resync_event(event) for event in parsed.events)
        assert {event.subscription_type for event in parsed.events} == {"deal.creation"}
        assert {event.change_source for event in parsed.events} == {RESYNC_CHANGE_SOURCE}
        assert {(event.portal_id, event.app_id) for event in parsed.events} == {(62515, 4242)}
        collect_events(f"m{number}", parsed.events, "4242", work)
    assert work.echoes == 0  # not mistaken for the app's own writes
    assert sorted(work.deals, key=int) == [str(100 + index) for index in range(150)]
    assert work.associations == set(work.deals)
    event_ids = [event.event_id for message in messages for event in message.events]
    assert len(set(event_ids)) == len(event_ids)


def test_a_person_s_webhook_event_is_not_a_resync() -> None:
    message = deal_resync_messages(["7"], portal_id="1", app_id="2", now=NOW)[0]
    person = message.events[0].model_copy(update={"change_source": "CRM_UI"})
    assert not is_resync_event(person)


def test_only_causes_with_a_saved_fingerprint_that_moved_count_as_changed() -> None:
    saved = {"owners": "a", "mappings": "b"}
    current = {"owners": "a2", "mappings": "b", "pipelines": "c"}
    assert changed_causes(saved, current) == ["owners"]
    assert changed_causes({}, current) == []  # the first check only saves


def test_each_cause_retries_the_categories_waiting_for_it() -> None:
    assert categories_for(["owners"]) == [ErrorCategory.OWNER_NOT_FOUND]
    assert categories_for(["mappings"]) == [ErrorCategory.UNMAPPED_VALUE]
    assert categories_for(["pipelines", "owners"]) == [ErrorCategory.OWNER_NOT_FOUND, ErrorCategory.PIPELINE_LIMIT,
                                                       ErrorCategory.UNMAPPED_STAGE]
    assert categories_for([]) == []


def test_digest_ignores_key_order_and_sees_values() -> None:
    assert digest({"a": 1, "b": {"c": [1, 2]}}) == digest({"b": {"c": [1, 2]}, "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})


def test_categories_parse_in_any_case_and_an_unknown_one_names_them_all() -> None:
    assert parse_category(" owner_not_found ") is ErrorCategory.OWNER_NOT_FOUND
    with pytest.raises(ValueError, match="unknown category 'NOPE'") as caught:
        parse_category("NOPE")
    assert all(str(category) in str(caught.value) for category in ErrorCategory)


def test_the_owner_fingerprint_moves_when_a_match_can_change_and_only_then() -> None:
    users = [SalesforceUser("0055g00000AAAAAAAA", "Pat@Example.com"), SalesforceUser("0055g00000BBBBBBBB", None)]
    owners = [HubSpotOwner("11", "pat@example.com")]
    base = OwnerDirectory(users, owners).fingerprint()
    assert OwnerDirectory(list(reversed(users)), owners).fingerprint() == base
    assert OwnerDirectory(users, [*owners, HubSpotOwner("12", "nia@example.com")]).fingerprint() != base
    assert OwnerDirectory(users, [HubSpotOwner("11", "pat@elsewhere.example")]).fingerprint() != base
    deactivated = [SalesforceUser("0055g00000AAAAAAAA", "pat@example.com", active=False), users[1]]
    assert OwnerDirectory(deactivated, owners).fingerprint() != base
    assert "pat" not in base  # a digest, never the e-mails


def test_counts_render_every_category_with_the_total() -> None:
    counts = {str(category): 0 for category in ErrorCategory}
    counts["OWNER_NOT_FOUND"] = 3
    counts["PIPELINE_LIMIT"] = 2
    lines = render_counts("local world x", counts)
    assert lines[0] == "sync errors (local world x): 5 in 2 categories"
    assert len([line for line in lines if line.startswith("  ")]) == len(ErrorCategory)
    assert any(line.split() == ["OWNER_NOT_FOUND", "3"] for line in lines)
    assert render_counts("w", dict.fromkeys(counts, 0))[0] == "sync errors (w): 0 in 0 categories"


def test_a_page_renders_its_records_and_how_to_get_the_next() -> None:
    rows = [_error(ErrorCategory.OWNER_NOT_FOUND, "Opportunity", OPPORTUNITY, attempts=3).model_dump(mode="json")]
    lines = render_page("OWNER_NOT_FOUND", 7, rows, "Opportunity#" + OPPORTUNITY)
    assert lines[0] == "OWNER_NOT_FOUND: 7 records (1 shown, more follow)"
    assert OPPORTUNITY in lines[2]
    assert "2026-11-27 12:00:00Z" in lines[2]
    assert lines[2].split()[2] == "3"
    assert lines[-1] == f"next page: dealsync errors --category OWNER_NOT_FOUND --after 'Opportunity#{OPPORTUNITY}'"
    assert render_page("PIPELINE_LIMIT", 0, [], None) == ["PIPELINE_LIMIT: no records"]
    assert render_page("PIPELINE_LIMIT", 1, rows, None)[0] == "PIPELINE_LIMIT: 1 record (1 shown)"


def test_a_csv_row_keeps_every_field_and_quotes_what_needs_it() -> None:
    error = _error(ErrorCategory.UNMAPPED_VALUE, "Opportunity", OPPORTUNITY, message='Type: "A, B" has no value',
                   related_ids={"deal_id": "99"}, attempts=2)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerow(csv_row(error))
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows == [{"category": "UNMAPPED_VALUE", "record_type": "Opportunity", "record_id": OPPORTUNITY,
                     "message": 'Type: "A, B" has no value', "first_seen": NOW.isoformat(),
                     "last_seen": NOW.isoformat(), "attempts": "2", "related_ids": '{"deal_id": "99"}'}]
