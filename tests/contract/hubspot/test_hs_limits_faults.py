"""Rate limits per tier (headers, TEN_SECONDLY_ROLLING, DAILY) and injected faults, which touch the
integration only."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hubspot.crm.deals import ApiException

from dealsync_local.hubspot import HubSpotEmulator
from dealsync_local.hubspot.testing import HubSpotHttp

HEADERS = ("X-HubSpot-RateLimit-Daily", "X-HubSpot-RateLimit-Daily-Remaining",
           "X-HubSpot-RateLimit-Interval-Milliseconds", "X-HubSpot-RateLimit-Max", "X-HubSpot-RateLimit-Remaining")


def test_every_integration_response_carries_the_tier_headers(http: HubSpotHttp, hs: HubSpotEmulator) -> None:
    first = http.get("/crm/v3/objects/deals")
    assert first.status_code == 200
    assert {h: first.headers[h] for h in HEADERS} == {
        "X-HubSpot-RateLimit-Daily": "625000", "X-HubSpot-RateLimit-Daily-Remaining": "624999",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000", "X-HubSpot-RateLimit-Max": "190",
        "X-HubSpot-RateLimit-Remaining": "189"}
    second = http.get("/crm/v3/objects/deals/123")  # errors count too
    assert second.status_code == 404
    assert second.headers["X-HubSpot-RateLimit-Remaining"] == "188"
    hs.apply_config({"tier": "enterprise"})
    third = http.get("/crm/v3/owners")
    assert (third.headers["X-HubSpot-RateLimit-Daily"], third.headers["X-HubSpot-RateLimit-Max"]) == ("1000000", "190")
    hs.apply_config({"tier": "starter"})
    assert http.get("/crm/v3/owners").headers["X-HubSpot-RateLimit-Max"] == "100"
    assert "X-HubSpot-RateLimit-Max" not in http.get("/crm/v3/owners", who="person").headers


def test_burst_limit_is_ten_secondly_rolling(http: HubSpotHttp, hs: HubSpotEmulator, client: Any) -> None:
    hs.apply_config({"burst_limit": 3})
    for remaining in ("2", "1", "0"):
        assert http.get("/crm/v3/objects/deals").headers["X-HubSpot-RateLimit-Remaining"] == remaining
    limited = http.get("/crm/v3/objects/deals")
    assert limited.status_code == 429
    body = limited.json()
    assert body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert body["errorType"] == "RATE_LIMIT" and body["status"] == "error"
    assert body["correlationId"] and body["requestId"]
    assert limited.headers["X-HubSpot-RateLimit-Max"] == "3"
    assert limited.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert limited.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    with pytest.raises(ApiException) as caught:
        client.crm.deals.basic_api.get_page()
    assert caught.value.status == 429
    assert json.loads(caught.value.body)["policyName"] == "TEN_SECONDLY_ROLLING"
    # The person's UI is unaffected.
    assert http.get("/crm/v3/objects/deals", who="person").status_code == 200


def test_daily_limit(http: HubSpotHttp, hs: HubSpotEmulator) -> None:
    hs.apply_config({"daily_limit": 2})
    assert http.get("/crm/v3/owners").headers["X-HubSpot-RateLimit-Daily-Remaining"] == "1"
    assert http.get("/crm/v3/owners").headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    limited = http.get("/crm/v3/owners")
    assert limited.status_code == 429
    assert limited.json()["policyName"] == "DAILY"
    assert limited.json()["message"] == "You have reached your daily limit."
    assert limited.headers["X-HubSpot-RateLimit-Daily"] == "2"
    assert limited.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    assert http.post("/crm/v3/objects/deals/search", {}).json()["policyName"] == "DAILY"
    hs.apply_config({"rate_limits": False})
    assert http.get("/crm/v3/owners").status_code == 200


def test_faults_hit_the_integration_never_the_person(http: HubSpotHttp, client: Any) -> None:
    assert http.control("faults", {"error_rate": 1, "error_status": 503}).status_code == 200
    failed = http.get("/crm/v3/objects/deals")
    assert failed.status_code == 503
    assert failed.json()["status"] == "error" and failed.json()["correlationId"]
    with pytest.raises(ApiException) as caught:
        client.crm.deals.basic_api.get_page()
    assert caught.value.status == 503
    assert http.get("/crm/v3/objects/deals", who="person").status_code == 200
    http.control("faults", {})
    assert http.get("/crm/v3/objects/deals").status_code == 200
    http.control("faults", {"error_rate": 1, "error_status": 429})
    assert http.get("/crm/v3/objects/deals").status_code == 429
    stats = http.control("stats").json()
    assert stats["by_route"]["GET /crm/v3/objects/<objtype>"] >= 4
