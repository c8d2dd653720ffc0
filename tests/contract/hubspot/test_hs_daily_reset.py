"""The control that starts HubSpot's day again (``POST /__emulator/ratelimits/daily``), as midnight does:
the API-budget tests reset the daily limit with it instead of waiting for midnight."""

from __future__ import annotations

from dealsync_local.hubspot import HubSpotEmulator
from dealsync_local.hubspot.testing import HubSpotHttp


def test_the_daily_count_restarts_on_demand(http: HubSpotHttp, hs: HubSpotEmulator) -> None:
    hs.apply_config({"daily_limit": 2})
    assert http.get("/crm/v3/owners").status_code == 200
    assert http.get("/crm/v3/owners").status_code == 200
    assert http.get("/crm/v3/owners").json()["policyName"] == "DAILY"
    restarted = http.control("ratelimits/daily", {})
    assert restarted.status_code == 200 and restarted.json()["daily_used"] == 0
    assert http.get("/crm/v3/owners").headers["X-HubSpot-RateLimit-Daily-Remaining"] == "1"
    assert http.control("ratelimits/daily", {"daily_used": 2}).json()["daily_used"] == 2
    assert http.get("/crm/v3/owners").status_code == 429
    refused = http.control("ratelimits/daily", {"daily_used": -1})
    assert refused.status_code == 400 and "daily_used" in refused.json()["error"]
