"""What every sync benchmark does before it measures: the Salesforce person is a HubSpot owner too, and
dealsync is switched on the way an operator does it (company sync, the account import done, deal sync)."""

from __future__ import annotations

from dealsync.services.context import SyncContext
from dealsync.services.toggles import set_company_sync, set_deal_sync
from dealsync_local.world import LocalWorld


def person_is_a_hubspot_owner(world: LocalWorld) -> None:
    assert world.crms is not None
    salesforce = world.crms.salesforce.app
    person = salesforce.get("User", salesforce.person_user_id)
    assert person is not None
    world.crms.hubspot.app.add_owner(str(person["Email"]), "Sam", "Seller")


def company_sync_on(context: SyncContext) -> None:
    """First: it creates HubSpot's unique salesforce_account_id property the seeded companies carry."""
    set_company_sync(context, True)


def deal_sync_on(context: SyncContext) -> None:
    """Once the accounts are linked (as an account import leaves them): the import marked done, deal sync on."""
    context.store.settings.mark_account_import_completed()
    set_deal_sync(context, True)
