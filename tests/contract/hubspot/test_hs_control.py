"""Control endpoints: load (seeding without webhooks), person actions (restore, merge), config, stats."""

from __future__ import annotations

from typing import Any

from dealsync_local.hubspot import HubSpotEmulator
from dealsync_local.hubspot.testing import HubSpotHttp

PRIMARY_COMPANY = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 5}]
CONTACT = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}]


def test_load_over_http_returns_ids_and_links(http: HubSpotHttp, client: Any) -> None:
    response = http.control("load", {
        "owners": [{"email": "owner@example.com", "firstName": "Olga", "lastName": "Owner"}],
        "companies": [{"name": "Acme", "domain": "acme.example"}],
        "contacts": [{"email": "a@acme.example"}, {"email": "b@acme.example"}],
        "deals": [{"properties": {"dealname": "Big", "dealstage": "contractsent", "amount": "1000",
                                  "hubspot_owner_id": "#0"},
                   "associations": [{"to": {"id": "#0"}, "types": PRIMARY_COMPANY},
                                    {"to": {"id": "#1"}, "types": CONTACT}]}],
    })
    assert response.status_code == 200
    ids = response.json()
    assert [len(ids[k]) for k in ("owners", "companies", "contacts", "deals")] == [1, 1, 2, 1]
    deal = client.crm.deals.basic_api.get_by_id(ids["deals"][0], associations=["companies", "contacts"],
                                                properties_with_history=["dealname"])
    assert [a.id for a in deal.associations["contacts"].results] == [ids["contacts"][1]]
    assert (deal.associations["companies"].results[0].id, deal.associations["companies"].results[0].type) == (
        ids["companies"][0], "deal_to_company")
    assert deal.properties_with_history["dealname"][0].source_type == "IMPORT"
    assert client.crm.owners.owners_api.get_page(email="owner@example.com").results[0].id == ids["owners"][0]
    owned = client.crm.deals.basic_api.get_by_id(ids["deals"][0], properties=["hubspot_owner_id"])
    assert owned.properties["hubspot_owner_id"] == ids["owners"][0]
    bad = http.control("load", {"deals": [{"dealname": "No stage"}]})
    assert bad.status_code == 400
    assert "deals[0]" in bad.json()["error"]
    assert http.control("load", {"tickets": []}).status_code == 400


def test_merge_moves_associations_and_aliases_the_id(hs: HubSpotEmulator, client: Any) -> None:
    world = hs.load(
        contacts=[{"email": "x@example.com"}, {"email": "y@example.com"}],
        deals=[{"properties": {"dealname": "Keep", "dealstage": "qualifiedtobuy"},
                "associations": [{"to": {"id": "#0"}, "types": CONTACT}]},
               {"properties": {"dealname": "Gone", "dealstage": "qualifiedtobuy", "description": "notes"},
                "associations": [{"to": {"id": "#1"}, "types": CONTACT}]}])
    keep, gone = world["deals"]
    merged = hs.merge(keep, gone)
    assert merged["properties"]["hs_merged_object_ids"] == gone
    got = client.crm.deals.basic_api.get_by_id(gone, associations=["contacts"], properties=["description"])
    assert got.id == keep
    assert got.properties["description"] == "notes"
    assert sorted(a.id for a in got.associations["contacts"].results) == sorted(world["contacts"])
    assert [d.id for d in client.crm.deals.get_all()] == [keep]


def test_merge_keeps_the_primary_records_primary_company(hs: HubSpotEmulator, client: Any) -> None:
    world = hs.load(
        companies=[{"name": "Kept Co"}, {"name": "Merged Co"}],
        deals=[{"properties": {"dealname": "Keep", "dealstage": "qualifiedtobuy"},
                "associations": [{"to": {"id": "#0"}, "types": PRIMARY_COMPANY}]},
               {"properties": {"dealname": "Gone", "dealstage": "qualifiedtobuy"},
                "associations": [{"to": {"id": "#1"}, "types": PRIMARY_COMPANY}]},
               {"properties": {"dealname": "No company", "dealstage": "qualifiedtobuy"}}])
    kept_company, merged_company = world["companies"]
    keep, gone, bare = world["deals"]
    hs.merge(keep, gone)
    got = client.crm.deals.basic_api.get_by_id(keep, associations=["companies"])
    # One primary company still: the primary deal's; the merged deal's company joins unlabeled.
    assert sorted((a.id, a.type) for a in got.associations["companies"].results) == sorted([
        (kept_company, "deal_to_company"), (kept_company, "deal_to_company_unlabeled"),
        (merged_company, "deal_to_company_unlabeled")])
    hs.merge(bare, keep)  # a primary without a company takes the merged deal's primary one
    got = client.crm.deals.basic_api.get_by_id(bare, associations=["companies"])
    assert [a.id for a in got.associations["companies"].results if a.type == "deal_to_company"] == [kept_company]


def test_config_and_stats(http: HubSpotHttp, hs: HubSpotEmulator) -> None:
    config = http.control("config").json()
    assert config["tier"] == "professional"
    assert config["effective_pipeline_limit"] == 15
    assert config["app_id"] == hs.app_id and config["integration_token"] == hs.integration_token
    changed = http.control("config", {"tier": "free", "signature_version": 2}).json()
    assert (changed["tier"], changed["effective_pipeline_limit"], changed["effective_burst_limit"]) == ("free", 1, 100)
    assert http.control("config", {"no_such_key": 1}).status_code == 400
    assert http.control("config", {"tier": "platinum"}).status_code == 400
    assert http.control("config", {"tier": "starter", "burst_limit": "lots"}).status_code == 400
    assert http.control("config").json()["tier"] == "free"  # a refused change changes nothing
    http.get("/crm/v3/objects/contacts")
    http.get("/crm/v3/objects/contacts", who="person")
    stats = http.control("stats").json()
    assert stats["by_route"]["GET /crm/v3/objects/<objtype>"] == 2
    assert http.control("webhooks").json()["signature_version"] == 2
    assert http.control("ratelimits").json()["tier"] == "free"
    assert http.control("reset", {}).json() == {"reset": True}
    assert http.control("stats").json()["total"] == 0
