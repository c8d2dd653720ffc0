"""Search: operators, groups, sorts, paging, the 10,000-result cap and the 5 requests/second limit."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hubspot.crm.deals import ApiException, PublicObjectSearchRequest

from dealsync_local.hubspot import HubSpotEmulator
from dealsync_local.hubspot.testing import HubSpotHttp

DEALS = [
    {"dealname": "Acme renewal 2024", "amount": "100", "dealstage": "closedwon", "dealtype": "existingbusiness",
     "closedate": "2024-01-15T00:00:00.000Z"},
    {"dealname": "Globex expansion", "amount": "250.5", "dealstage": "qualifiedtobuy", "dealtype": "newbusiness",
     "closedate": "2024-03-01T00:00:00.000Z"},
    {"dealname": "Initech pilot", "amount": "75", "dealstage": "closedlost", "closedate": "2024-02-10T00:00:00.000Z"},
    {"dealname": "Acme upsell", "dealstage": "contractsent"},
]


@pytest.fixture
def seeded(hs: HubSpotEmulator) -> list[str]:
    return hs.load(deals=DEALS)["deals"]


def names(result: Any) -> list[str]:
    return [r.properties["dealname"] for r in result.results]


def run(client: Any, *groups: list[dict[str, Any]], **kwargs: Any) -> Any:
    request = PublicObjectSearchRequest(filter_groups=[{"filters": g} for g in groups],
                                        properties=kwargs.pop("properties", ["dealname", "amount"]), **kwargs)
    return client.crm.deals.search_api.do_search(request)


def test_operators(person: Any, seeded: list[str]) -> None:
    def match(*filters: dict[str, Any]) -> set[str]:
        return set(names(run(person, list(filters), limit=100)))

    assert match({"propertyName": "amount", "operator": "GT", "value": "99"}) == {
        "Acme renewal 2024", "Globex expansion"}
    assert match({"propertyName": "amount", "operator": "LTE", "value": "100"}) == {
        "Acme renewal 2024", "Initech pilot"}
    assert match({"propertyName": "amount", "operator": "BETWEEN", "value": "80", "highValue": "300"}) == {
        "Acme renewal 2024", "Globex expansion"}
    assert match({"propertyName": "dealstage", "operator": "EQ", "value": "closedwon"}) == {"Acme renewal 2024"}
    assert match({"propertyName": "dealstage", "operator": "IN", "values": ["closedwon", "closedlost"]}) == {
        "Acme renewal 2024", "Initech pilot"}
    assert match({"propertyName": "dealstage", "operator": "NOT_IN", "values": ["closedwon", "closedlost"]}) == {
        "Globex expansion", "Acme upsell"}
    assert match({"propertyName": "dealtype", "operator": "NEQ", "value": "newbusiness"}) == {
        "Acme renewal 2024", "Initech pilot", "Acme upsell"}
    assert match({"propertyName": "amount", "operator": "NOT_HAS_PROPERTY"}) == {"Acme upsell"}
    assert match({"propertyName": "dealtype", "operator": "HAS_PROPERTY"}) == {"Acme renewal 2024", "Globex expansion"}
    assert match({"propertyName": "dealname", "operator": "CONTAINS_TOKEN", "value": "acme"}) == {
        "Acme renewal 2024", "Acme upsell"}
    assert match({"propertyName": "dealname", "operator": "CONTAINS_TOKEN", "value": "glob*"}) == {"Globex expansion"}
    # Dates compare as instants; filters give epoch milliseconds.
    assert match({"propertyName": "closedate", "operator": "GTE", "value": "1706745600000"}) == {
        "Globex expansion", "Initech pilot"}
    assert match({"propertyName": "hs_is_closed_won", "operator": "EQ", "value": "true"}) == {"Acme renewal 2024"}
    # Filters in a group are ANDed, groups are ORed.
    assert match({"propertyName": "dealname", "operator": "CONTAINS_TOKEN", "value": "acme"},
                 {"propertyName": "amount", "operator": "HAS_PROPERTY"}) == {"Acme renewal 2024"}
    either = run(person, [{"propertyName": "dealstage", "operator": "EQ", "value": "closedlost"}],
                 [{"propertyName": "dealstage", "operator": "EQ", "value": "contractsent"}], limit=10)
    assert set(names(either)) == {"Initech pilot", "Acme upsell"} and either.total == 2


def test_sorts_query_properties_and_shape(person: Any, http: HubSpotHttp, seeded: list[str]) -> None:
    ascending = run(person, sorts=[{"propertyName": "amount", "direction": "ASCENDING"}], limit=10)
    assert names(ascending) == ["Initech pilot", "Acme renewal 2024", "Globex expansion", "Acme upsell"]
    descending = run(person, sorts=["-amount"], limit=10)
    assert names(descending)[:3] == ["Globex expansion", "Acme renewal 2024", "Initech pilot"]
    assert set(names(run(person, query="acme", limit=10))) == {"Acme renewal 2024", "Acme upsell"}
    raw = http.post("/crm/v3/objects/deals/search", {"filterGroups": [], "properties": ["dealname"], "limit": 1},
                    who="person").json()
    assert raw["total"] == 4
    assert set(raw["results"][0]["properties"]) == {"dealname", "hs_object_id", "createdate", "hs_lastmodifieddate"}
    assert raw["paging"]["next"]["after"] == "1"


def test_paging_and_the_10000_cap(person: Any, hs: HubSpotEmulator, http: HubSpotHttp) -> None:
    hs.load(deals=[{"dealname": f"Bulk {i}", "dealstage": "qualifiedtobuy", "amount": str(i)} for i in range(10_050)])
    first = run(person, limit=200)
    assert first.total == 10_050 and len(first.results) == 200
    assert first.paging.next.after == "200"
    second = run(person, limit=200, after=first.paging.next.after)
    assert not {r.id for r in first.results} & {r.id for r in second.results}
    near_end = run(person, limit=200, after="9900")
    assert len(near_end.results) == 100 and near_end.paging is None  # the 10,000th result is the last one
    with pytest.raises(ApiException) as caught:
        run(person, limit=10, after="10000")
    assert caught.value.status == 400
    assert json.loads(caught.value.body)["category"] == "VALIDATION_ERROR"
    with pytest.raises(ApiException) as caught:
        run(person, limit=201)
    assert caught.value.status == 400
    too_many = http.post("/crm/v3/objects/deals/search", {"filterGroups": [
        {"filters": [{"propertyName": "amount", "operator": "HAS_PROPERTY"}]}] * 6}, who="person")
    assert too_many.status_code == 400
    wide = http.post("/crm/v3/objects/deals/search", {"filterGroups": [
        {"filters": [{"propertyName": "amount", "operator": "HAS_PROPERTY"}] * 6}] * 4}, who="person")
    assert wide.status_code == 400  # 24 filters > 18
    unknown = http.post("/crm/v3/objects/deals/search", {"filterGroups": [
        {"filters": [{"propertyName": "nope", "operator": "EQ", "value": "1"}]}]}, who="person")
    assert unknown.status_code == 400


def test_search_allows_five_requests_per_second(client: Any, http: HubSpotHttp, hs: HubSpotEmulator,
                                                seeded: list[str]) -> None:
    for _ in range(5):  # one keep-alive connection: well within a second
        assert http.post("/crm/v3/objects/deals/search", {"limit": 1}).json()["total"] == 4
    response = http.post("/crm/v3/objects/deals/search", {"limit": 1})
    assert response.status_code == 429
    body = response.json()
    assert body["policyName"] == "SECONDLY"
    assert body["errorType"] == "RATE_LIMIT"
    assert body["status"] == "error" and body["correlationId"]
    # Search responses carry no X-HubSpot-RateLimit-* headers (reference §3.3).
    assert not [h for h in response.headers if h.lower().startswith("x-hubspot-ratelimit")]
    hs.apply_config({"search_per_second": 0})  # keeps the SDK check below independent of timing
    with pytest.raises(ApiException) as caught:
        run(client, limit=1)
    assert caught.value.status == 429
    assert json.loads(caught.value.body)["policyName"] == "SECONDLY"
    # The person's UI is not an API client and is never limited.
    assert http.post("/crm/v3/objects/deals/search", {"limit": 1}, who="person").status_code == 200
