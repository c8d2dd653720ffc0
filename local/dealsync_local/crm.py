"""Both CRM emulators as the local world runs them: over HTTPS with the local CA, the Salesforce org's
Outbound Messages and change events pointed at the HTTP API and the Event Relay sink, the HubSpot
app's webhooks (signed v3 with the app's client secret) pointed at the HTTP API."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dealsync.webhooks.subscriptions import APP_WEBHOOK_SUBSCRIPTIONS
from dealsync_local.emulator import EmulatorServer
from dealsync_local.hubspot import HubSpotEmulator
from dealsync_local.salesforce.app import SalesforceEmulator
from dealsync_local.tls import TlsMaterial

SALESFORCE_API_VERSION = "59.0"


@dataclass
class SalesforceHandle:
    """The Salesforce emulator and what dealsync needs to reach it."""

    app: SalesforceEmulator
    server: EmulatorServer

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def org_id(self) -> str:
        return self.app.org_id

    @property
    def client_id(self) -> str:
        return self.app.client_id

    @property
    def client_secret(self) -> str:
        return self.app.client_secret

    @property
    def access_token(self) -> str:
        return self.app.integration_token

    @property
    def user_access_token(self) -> str:
        return self.app.person_token

    @property
    def integration_user_id(self) -> str:
        return self.app.integration_user_id

    @property
    def api_version(self) -> str:
        return SALESFORCE_API_VERSION

    def load(self, records: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, list[str]]:
        return self.app.load(records)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.app.close()
        self.server.stop()


@dataclass
class HubSpotHandle:
    """The HubSpot emulator and what dealsync needs to reach it."""

    app: HubSpotEmulator
    server: EmulatorServer

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def access_token(self) -> str:
        return self.app.integration_token

    @property
    def user_access_token(self) -> str:
        return self.app.person_token

    @property
    def app_id(self) -> int:
        return self.app.app_id

    @property
    def portal_id(self) -> int:
        return self.app.portal_id

    @property
    def client_secret(self) -> str:
        return self.app.client_secret

    def load(self, data: Mapping[str, Any]) -> dict[str, list[str]]:
        return self.app.load(data)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.app.webhooks.close()
        self.server.stop()


@dataclass
class CrmEmulators:
    salesforce: SalesforceHandle
    hubspot: HubSpotHandle

    def stop(self) -> None:
        for handle in (self.hubspot, self.salesforce):
            with contextlib.suppress(Exception):
                handle.stop()


def start_emulators(*, tls: TlsMaterial, salesforce_port: int = 0, hubspot_port: int = 0,
                    outbound_message_url: str, event_relay_url: str, hubspot_webhook_url: str,
                    host: str = "127.0.0.1") -> CrmEmulators:
    """Start both emulators on ``host`` over HTTPS, their notifications pointed at the given URLs."""
    salesforce_app = SalesforceEmulator(outbound_message_url=outbound_message_url, change_event_url=event_relay_url)
    salesforce_server = EmulatorServer(salesforce_app, host, salesforce_port, tls=tls)
    try:
        hubspot_app = HubSpotEmulator(webhook_target_url=hubspot_webhook_url, signature_version=3,
                                      webhook_subscriptions=list(APP_WEBHOOK_SUBSCRIPTIONS))
        hubspot_server = EmulatorServer(hubspot_app, host, hubspot_port, tls=tls)
    except BaseException:
        salesforce_server.server.server_close()
        salesforce_app.close()
        raise
    salesforce_server.start()
    hubspot_server.start()
    # simple-salesforce keeps the port of instance_url; records' URLs and Outbound Messages carry it.
    salesforce_app.apply_config({"instance_url": salesforce_server.base_url})
    return CrmEmulators(SalesforceHandle(salesforce_app, salesforce_server), HubSpotHandle(hubspot_app, hubspot_server))
