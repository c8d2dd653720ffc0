"""dealsync's HubSpot client against the emulator's limits: a burst 429 (TEN_SECONDLY_ROLLING) is waited
out and retried apart from the failure budget, a DAILY 429 stops at once as API_BUDGET, and every answered
request is reported with the account's daily allowance."""

from __future__ import annotations

import pytest

from dealsync.clients.credentials import HubSpotCredentials
from dealsync.clients.errors import ApiBudgetExceededError, TransientCrmError
from dealsync.clients.hubspot import WRITE_ATTEMPTS, HubSpotClient
from dealsync_local.emulator import EmulatorServer, Faults
from dealsync_local.hubspot import HubSpotEmulator
from dealsync_local.tls import TlsMaterial


class Listener:
    def __init__(self) -> None:
        self.answered_calls: list[tuple[int | None, int | None]] = []
        self.daily_reached = 0

    def answered(self, daily_limit: int | None, daily_remaining: int | None) -> None:
        self.answered_calls.append((daily_limit, daily_remaining))

    def daily_limit_reached(self) -> None:
        self.daily_reached += 1


def dealsync_client(hs: HubSpotEmulator, server: EmulatorServer, tls: TlsMaterial, listener: Listener,
                    **options: float) -> HubSpotClient:
    credentials = HubSpotCredentials(access_token=hs.integration_token, base_url=server.base_url,
                                     app_id=str(hs.app_id), client_secret=hs.client_secret,
                                     portal_id=str(hs.portal_id), ca_file=str(tls.ca_file))
    return HubSpotClient(credentials, usage_listener=listener, **options)  # type: ignore[arg-type]


def test_burst_429s_are_waited_out_without_failing(hs: HubSpotEmulator, hs_server: EmulatorServer,
                                                   hs_tls: TlsMaterial) -> None:
    hs.apply_config({"burst_limit": 2})  # far below what the client's own limiter allows
    listener = Listener()
    client = dealsync_client(hs, hs_server, hs_tls, listener, max_rate_limit_wait=0.5,
                             max_rate_limited_attempts=40)
    for _ in range(4):
        assert client.batch_read("deals", ["1"], ["dealname"]) == []
    assert client.rate_limited >= 1  # 429s met, each waited for, none raised
    assert client.calls == 4 + client.rate_limited
    assert len(listener.answered_calls) == client.calls  # refused requests are reported too
    assert listener.answered_calls[0] == (625_000, 624_999) and listener.daily_reached == 0


def test_a_daily_429_stops_at_once_as_api_budget(hs: HubSpotEmulator, hs_server: EmulatorServer,
                                                 hs_tls: TlsMaterial) -> None:
    hs.apply_config({"daily_limit": 1})
    listener = Listener()
    client = dealsync_client(hs, hs_server, hs_tls, listener)
    client.owners()
    with pytest.raises(ApiBudgetExceededError, match="daily limit"):
        client.owners()
    assert client.calls == 2  # not retried: nothing is left until the reset
    assert listener.answered_calls == [(1, 0), (1, 0)] and listener.daily_reached == 1


def test_a_failed_write_of_values_is_sent_again_once_at_once(hs: HubSpotEmulator, hs_server: EmulatorServer,
                                                             hs_tls: TlsMaterial) -> None:
    # A write sent again after a backoff would carry values older than a person's edit made meanwhile:
    # after a 5xx it is sent again once, at once (a 429, refused unapplied, is waited out as for any call);
    # then the caller syncs again from a fresh read. Reads are retried with backoff.
    listener = Listener()
    client = dealsync_client(hs, hs_server, hs_tls, listener, backoff_seconds=0.01)
    deal = {"id": "9000000001"}  # the injected fault answers before any lookup
    hs.faults = Faults.from_json({"error_rate": 1, "error_status": 503})
    try:
        before = client.calls
        with pytest.raises(TransientCrmError):
            client.batch_update("deals", [{"id": str(deal["id"]), "properties": {"dealname": "Later"}}])
        with pytest.raises(TransientCrmError):
            client.batch_upsert("deals", "hs_object_id", [{"id": str(deal["id"]), "properties": {"amount": "1"}}])
        assert client.calls - before == 2 * WRITE_ATTEMPTS
        before = client.calls
        with pytest.raises(TransientCrmError):
            client.batch_read("deals", [str(deal["id"])], ["dealname"])
        assert client.calls - before == client.max_attempts  # reads are retried
    finally:
        hs.faults = Faults()
