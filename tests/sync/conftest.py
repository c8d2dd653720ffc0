"""The sync session: one local world running the product's real handlers (template.yaml as it is),
with company sync on, an account "imported" and deal sync switched on as an operator would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from dealsync.clients.credentials import HubSpotCredentials
from dealsync.clients.hubspot import HubSpotClient
from dealsync.models.domain import LinkKind
from dealsync.services.context import SyncContext, build_context
from dealsync.services.toggles import set_company_sync, set_deal_sync
from dealsync_local.hubspot.store import Store as HubSpotStore
from dealsync_local.log_privacy import log_privacy  # noqa: F401 - the session's logs hold no personal data
from dealsync_local.pytest_fixtures import WorldView, local_world, local_world_options  # noqa: F401 - the session world
from dealsync_local.world import LocalWorld


@dataclass
class SyncWorld(WorldView):
    context: SyncContext
    person_hubspot: HubSpotClient  # reads HubSpot as the person looking at the CRM
    account_id: str
    company_id: str
    contact_ids: list[str]
    person_owner_id: str  # the HubSpot owner matching the Salesforce person's e-mail

    def deal_for(self, opportunity_id: str) -> dict[str, Any] | None:
        deals = self.person_hubspot.batch_read(
            "deals", [opportunity_id],
            ["dealname", "amount", "closedate", "dealstage", "pipeline", "dealtype", "description",
             "hubspot_owner_id", "salesforce_opportunity_id"],
            id_property="salesforce_opportunity_id")
        return deals[0] if deals else None

    @contextmanager
    def hubspot_unheard(self) -> Iterator[HubSpotStore]:
        """The HubSpot emulator's store, for a person's action that sends no webhook (held back: the test
        runs that sync by hand, or wants its deletion unprocessed). The store's lock is held throughout."""
        store = self.hubspot.store
        with store.lock:
            listener, store.listener = store.listener, None
            try:
                yield store
            finally:
                store.listener = listener

    @contextmanager
    def salesforce_unheard(self) -> Iterator[None]:
        """A person's Salesforce actions that notify no one (no Outbound Message, no change event): the test
        runs their syncs by hand."""
        settings = self.salesforce.notifier.settings
        enabled, settings.enabled = settings.enabled, False
        try:
            yield
        finally:
            settings.enabled = enabled

    def linked_company(self, name: str) -> tuple[str, str]:
        """Another account and its company, linked: (account id, company id)."""
        account = str(self.salesforce.create("Account", {"Name": name}))
        company = str(self.hubspot.load({"companies": [{"name": name, "salesforce_account_id": account}]})[
            "companies"][0])
        self.context.store.links.create(LinkKind.ACCOUNT, account, company)
        return account, company

    def associations(self, deal_id: str, to_type: str) -> set[str]:
        found = self.person_hubspot.associations_read("deals", to_type, [deal_id]).get(deal_id, [])
        return {str(item["to_object_id"]) for item in found}


@pytest.fixture(scope="session")
def sync_world(local_world: LocalWorld) -> SyncWorld:  # noqa: F811 - the imported fixture
    context = build_context()
    assert local_world.crms is not None
    assert local_world.endpoints is not None
    salesforce = local_world.crms.salesforce.app
    hubspot = local_world.crms.hubspot.app
    endpoints = local_world.endpoints
    owner_email = "pat.rivera@example.com"
    salesforce.load({"User": [{"FirstName": "Pat", "LastName": "Rivera", "Email": owner_email,
                               "Username": "pat@example.com.local", "IsActive": True, "Alias": "privera",
                               "TimeZoneSidKey": "America/New_York", "LocaleSidKey": "en_US",
                               "EmailEncodingKey": "UTF-8", "LanguageLocaleKey": "en_US"}]})
    hubspot.add_owner(owner_email, "Pat", "Rivera")
    # The person acting in Salesforce owns what they create; they are a HubSpot owner too.
    person = salesforce.get("User", salesforce.person_user_id)
    assert person is not None
    person_email = str(person["Email"])
    person_owner_id = str(hubspot.add_owner(person_email, "Sam", "Seller")["id"])
    set_company_sync(context, True)
    account_id = salesforce.create("Account", {"Name": "Acme Corp"})
    company = hubspot.load({"companies": [{"name": "Acme Corp", "salesforce_account_id": account_id}]})
    company_id = company["companies"][0]
    context.store.links.create(LinkKind.ACCOUNT, account_id, company_id)
    context.store.settings.mark_account_import_completed()
    set_deal_sync(context, True)
    contact_ids = [
        salesforce.create("Contact", {"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@acme.example",
                                      "AccountId": account_id}),
        salesforce.create("Contact", {"FirstName": "Alan", "LastName": "Turing", "Email": "alan@acme.example",
                                      "AccountId": account_id}),
    ]
    hs = endpoints.hubspot
    person_client = HubSpotClient(HubSpotCredentials(
        access_token=hs.user_access_token, base_url=hs.base_url, app_id=str(hs.app_id),
        client_secret=hs.client_secret, portal_id=str(hs.portal_id), ca_file=str(hs.ca_file)))
    world = SyncWorld(local_world, context, person_client, account_id, company_id, contact_ids, person_owner_id)
    world.settle()
    return world
