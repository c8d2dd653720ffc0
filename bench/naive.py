"""The naive way (issue 9): the same work as dealsync's, done as an iPaaS recipe does it, one API call per
record and operation, through the same SDK-backed clients (``dealsync.clients``: the same TLS sessions,
the same HubSpot rate limiters, 190 requests per 10 s and 5 searches per second at the Professional tier)
against the same emulators, in the same world, on data of the same shape.

The recipes (each call counted; a 429 retried and counted):

* opportunity changed (SF → HS): GET the opportunity; query its contact roles; GET each role's contact
  (for its e-mail); search the deal by ``salesforce_opportunity_id``; PATCH it (or create it); per contact:
  search the HubSpot contact by e-mail and PUT the association; search the company by
  ``salesforce_account_id`` and PUT the association; PATCH the deal id back when the opportunity lacks it.
* opportunity import: the opportunities listed by a query (one per 200 ids), then the same per-record steps
  as a change, without the GET.
* deal changed (HS → SF): GET the deal; GET its contact and company associations; PATCH the opportunity.
* contact rollup: GET the contact's deal associations; GET each deal; PATCH the contact (all five rollups,
  computed by the same pure ``compute_rollups``).

The recipes do less than dealsync does (no owner mapping, no field mappings or value maps from the
configuration, no loop prevention, no error records): the comparison flatters the naive way.

The naive runs make their writes with the world's notifications off (Salesforce change events and
Outbound Messages, HubSpot webhooks), so dealsync does not react to them and the call counts are the
recipe's alone; they are switched back on afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal
from functools import partial
from typing import Any

from bench import latency
from bench.memory import PhasePeak
from dealsync.clients.credentials import load_credentials
from dealsync.clients.hubspot import HubSpotClient
from dealsync.clients.ratelimit import BURST_INTERVAL_SECONDS, BURST_PER_TEN_SECONDS, SEARCH_PER_SECOND
from dealsync.clients.salesforce import SalesforceClient
from dealsync.mapping.rollups import compute_rollups
from dealsync.mapping.values import date_to_hubspot, format_decimal, parse_datetime, parse_decimal
from dealsync.models.domain import RollupRow
from dealsync_local.world import LocalWorld

# The emulator's default deal pipeline; a recipe's stage step is a fixed table like this one.
STAGE_TO_HUBSPOT = {"Prospecting": "appointmentscheduled", "Qualification": "qualifiedtobuy",
                    "Closed Won": "closedwon", "Closed Lost": "closedlost"}
STAGE_TO_SALESFORCE = {stage: name for name, stage in STAGE_TO_HUBSPOT.items()}
OPPORTUNITY_FIELDS = "Id, Name, Amount, CloseDate, StageName, AccountId, HubSpot_Deal_Id__c"
DEAL_PROPERTIES = ("dealname", "amount", "closedate", "dealstage", "salesforce_opportunity_id")
ROLLUP_DEAL_PROPERTIES = ("amount", "closedate", "createdate", "dealstage")
QUERY_IDS = 200  # ids per SOQL IN list, as dealsync's queries


@dataclass
class Calls:
    salesforce: int = 0
    hubspot: int = 0

    def __sub__(self, other: Calls) -> Calls:
        return Calls(self.salesforce - other.salesforce, self.hubspot - other.hubspot)


@dataclass
class NaiveRecipe:
    """A recipe's connections: its own clients (own call counters), made from the same secret as dealsync's."""

    salesforce: SalesforceClient
    hubspot: HubSpotClient
    searches: int = 0
    created_deals: list[str] = field(default_factory=list)

    @classmethod
    def connect(cls) -> NaiveRecipe:
        credentials = load_credentials()
        recipe = cls(SalesforceClient(credentials.salesforce), HubSpotClient(credentials.hubspot))
        recipe.salesforce.connect()  # the recipe's connection, made once before its runs
        return recipe

    def calls(self) -> Calls:
        return Calls(self.salesforce.calls, self.hubspot.calls)

    # --- one call each -----------------------------------------------------------------------------
    def _sf_get(self, sobject: str, record_id: str) -> dict[str, Any]:
        record: dict[str, Any] = self.salesforce._rest(f"sobjects/{sobject}/{record_id}")
        return record

    def _sf_patch(self, sobject: str, record_id: str, fields: dict[str, Any]) -> None:
        self.salesforce._rest(f"sobjects/{sobject}/{record_id}", method="PATCH", json=fields)

    def _hs_get(self, object_type: str, record_id: str, properties: Sequence[str]) -> dict[str, Any]:
        api = self.hubspot.api.crm.objects.basic_api
        response = self.hubspot._call(partial(api.get_by_id, object_type, record_id, properties=list(properties)))
        return dict(response.properties or {})

    def _hs_find(self, object_type: str, property_name: str, value: str) -> str | None:
        """Search one record by a property's value: its id, or None."""
        self.searches += 1
        body = {"filterGroups": [{"filters": [{"propertyName": property_name, "operator": "EQ", "value": value}]}],
                "properties": [property_name], "limit": 1}
        response = self.hubspot._call(partial(self.hubspot.api.crm.objects.search_api.do_search, object_type,
                                              public_object_search_request=body), search=True)
        return str(response.results[0].id) if response.results else None

    def _hs_write(self, object_type: str, record_id: str | None, properties: dict[str, str]) -> str:
        """PATCH the record, or create it without an id; returns its id."""
        api = self.hubspot.api.crm.objects.basic_api
        if record_id is None:
            created = self.hubspot._call(partial(api.create, object_type, simple_public_object_input_for_create={
                "properties": properties, "associations": []}), retry=False)
            self.created_deals.append(str(created.id))
            return str(created.id)
        self.hubspot._call(partial(api.update, object_type, record_id,
                                   simple_public_object_input={"properties": properties}))
        return record_id

    def _hs_associate(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        api = self.hubspot.api.crm.associations.v4.basic_api
        self.hubspot._call(partial(api.create_default, from_type, from_id, to_type, to_id))

    def _hs_associated(self, object_type: str, record_id: str, to_type: str) -> list[str]:
        api = self.hubspot.api.crm.associations.v4.basic_api
        response = self.hubspot._call(partial(api.get_page, object_type, record_id, to_type, limit=500))
        return [str(result.to_object_id) for result in response.results]

    # --- the recipes -----------------------------------------------------------------------------------
    def opportunity_to_deal(self, opportunity: dict[str, Any]) -> str:
        """Sync one listed opportunity (with OPPORTUNITY_FIELDS) to its deal; returns the deal id."""
        opportunity_id = str(opportunity["Id"])
        roles = self.salesforce.query(
            f"SELECT ContactId FROM OpportunityContactRole WHERE OpportunityId = '{opportunity_id}'")  # noqa: S608
        emails = [self._sf_get("Contact", str(role["ContactId"])).get("Email") for role in roles]
        properties = {"dealname": str(opportunity.get("Name") or ""), "pipeline": "default",
                      "dealstage": STAGE_TO_HUBSPOT.get(str(opportunity.get("StageName")), "appointmentscheduled"),
                      "salesforce_opportunity_id": opportunity_id}
        if opportunity.get("Amount") is not None:
            properties["amount"] = format_decimal(parse_decimal(opportunity["Amount"]))
        if opportunity.get("CloseDate"):
            properties["closedate"] = date_to_hubspot(str(opportunity["CloseDate"]))
        deal_id = self._hs_write("deals", self._hs_find("deals", "salesforce_opportunity_id", opportunity_id),
                                 properties)
        for email in emails:
            contact_id = self._hs_find("contacts", "email", str(email)) if email else None
            if contact_id is not None:
                self._hs_associate("deals", deal_id, "contacts", contact_id)
        if opportunity.get("AccountId"):
            company_id = self._hs_find("companies", "salesforce_account_id", str(opportunity["AccountId"]))
            if company_id is not None:
                self._hs_associate("deals", deal_id, "companies", company_id)
        if opportunity.get("HubSpot_Deal_Id__c") != deal_id:
            self._sf_patch("Opportunity", opportunity_id, {"HubSpot_Deal_Id__c": deal_id})
        return deal_id

    def opportunity_changed(self, opportunity_id: str) -> str:
        return self.opportunity_to_deal(self._sf_get("Opportunity", opportunity_id))

    def import_opportunities(self, opportunity_ids: Sequence[str]) -> dict[str, str]:
        """The import recipe: list the opportunities, then one record at a time. Returns deal id by opportunity."""
        deals: dict[str, str] = {}
        for start in range(0, len(opportunity_ids), QUERY_IDS):
            quoted = ", ".join(f"'{oid}'" for oid in opportunity_ids[start:start + QUERY_IDS])
            for record in self.salesforce.query(f"SELECT {OPPORTUNITY_FIELDS} FROM Opportunity WHERE Id IN ({quoted})"):  # noqa: S608
                deals[str(record["Id"])] = self.opportunity_to_deal(record)
        return deals

    def deal_changed(self, deal_id: str) -> None:
        deal = self._hs_get("deals", deal_id, DEAL_PROPERTIES)
        for to_type in ("contacts", "companies"):  # a recipe reads them to map the contact roles and account
            self._hs_associated("deals", deal_id, to_type)
        fields: dict[str, Any] = {"Name": deal.get("dealname")}
        if deal.get("amount"):
            fields["Amount"] = float(parse_decimal(deal["amount"]))
        if deal.get("closedate"):
            fields["CloseDate"] = str(deal["closedate"])[:10]
        if deal.get("dealstage") in STAGE_TO_SALESFORCE:
            fields["StageName"] = STAGE_TO_SALESFORCE[str(deal["dealstage"])]
        self._sf_patch("Opportunity", str(deal["salesforce_opportunity_id"]), fields)

    def contact_rollup(self, contact_id: str) -> dict[str, str]:
        """Recompute one contact's rollups from its deals and write all five; returns what was written."""
        rows = []
        for deal_id in self._hs_associated("contacts", contact_id, "deals"):
            deal = self._hs_get("deals", deal_id, ROLLUP_DEAL_PROPERTIES)
            stage = str(deal.get("dealstage") or "")
            created = parse_datetime(deal.get("createdate")).astimezone(UTC)
            rows.append(RollupRow(contact_id=contact_id, opportunity_id=deal_id, amount=deal.get("amount"),
                                  created=created, close_date=str(deal.get("closedate") or "")[:10] or None,
                                  closed=stage in ("closedwon", "closedlost"), won=stage == "closedwon"))
        values = {name: value or "" for name, value in compute_rollups(rows).items()}
        self._hs_write("contacts", contact_id, values)
        return values


# --- measuring a recipe run ------------------------------------------------------------------------------


@contextmanager
def notifications_off(world: LocalWorld) -> Iterator[None]:
    """Neither CRM tells dealsync of the recipe's writes (or of the person's changes made for it)."""
    assert world.crms is not None
    salesforce, hubspot = world.crms.salesforce.app, world.crms.hubspot.app
    salesforce.flush_notifications(60)
    hubspot.flush_webhooks(60)
    world.drain(300)
    target = hubspot.config["webhook_target_url"]
    enabled = salesforce.get_config()["notifications_enabled"]
    salesforce.apply_config({"notifications_enabled": False})
    hubspot.apply_config({"webhook_target_url": None})
    try:
        yield
    finally:
        salesforce.apply_config({"notifications_enabled": enabled})
        hubspot.apply_config({"webhook_target_url": target})


def rate_limit_floor(hubspot_calls: int, searches: int, tier: str = "professional") -> float:
    """The fewest seconds HubSpot's limits allow for these calls: the burst window for every call but the
    searches, which have their own per-second limit. A small sample fits in one window and would miss it."""
    burst = BURST_PER_TEN_SECONDS.get(tier, min(BURST_PER_TEN_SECONDS.values()))
    return max((hubspot_calls - searches) * BURST_INTERVAL_SECONDS / burst, searches / SEARCH_PER_SECOND)


def measure(recipe: NaiveRecipe, sample: int, work: Callable[[], object], *, total_records: int) -> dict[str, Any]:
    """Run ``work`` (the recipe over ``sample`` records, a sample of ``total_records`` or all of them): wall
    time, calls, memory. For a sample, calls scale per record, and the wall time too, but never below what
    HubSpot's rate limits allow for the extrapolated calls."""
    before = recipe.calls()
    searches_before = recipe.searches
    memory = PhasePeak.start()
    started = time.perf_counter()
    work()
    wall = time.perf_counter() - started
    calls = recipe.calls() - before
    scale = Decimal(total_records) / Decimal(sample)
    hubspot_calls, searches = round(calls.hubspot * scale), round((recipe.searches - searches_before) * scale)
    linear = wall * float(scale)
    floor = rate_limit_floor(hubspot_calls, searches)
    total_wall = max(linear, floor)
    figures: dict[str, Any] = {
        "records": total_records, "sample": sample, "extrapolated": sample != total_records,
        "sample_wall_seconds": round(wall, 2), "linear_wall_seconds": round(linear, 2),
        "rate_limit_floor_seconds": round(floor, 2), "wall_seconds": round(total_wall, 2),
        "records_per_second": round(total_records / total_wall, 2),
        "salesforce_calls": round(calls.salesforce * scale), "hubspot_calls": hubspot_calls,
        "hubspot_searches": searches, "sample_salesforce_calls": calls.salesforce,
        "sample_hubspot_calls": calls.hubspot, "hubspot_rate_limited": recipe.hubspot.rate_limited,
        **memory.figures(),
    }
    label = f"sample of {sample:,}, extrapolated to {total_records:,}" if sample != total_records else "every record"
    print(f"naive way ({label}): {wall:.2f} s for {sample:,} records ({sample / wall:,.2f} records/s), "
          f"{total_wall:,.1f} s for {total_records:,} (HubSpot's rate limits allow no less than {floor:,.1f} s); "
          f"{calls.salesforce} Salesforce calls, {calls.hubspot} HubSpot calls "
          f"({recipe.searches - searches_before} of them searches)", flush=True)
    return figures


def measure_latency(samples: int, change: Callable[[int], object], work: Callable[[int], object],
                    applied: Callable[[int], bool], what: str) -> dict[str, float | int]:
    """The recipe's own processing time for one change (its trigger's delay left out: an iPaaS polls
    every 1 to 15 minutes or waits for a webhook of its own)."""
    def change_and_sync(n: int) -> None:
        change(n)
        work(n)

    latencies = latency.measure(samples, change=change_and_sync, applied=applied, what=what)
    return latency.report(f"naive way, single change ({what}; trigger delay not counted)", latencies)
