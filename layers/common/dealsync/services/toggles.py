"""Switching the sync on and off (DESIGN 1.1), with what switching deal sync on provisions."""

from __future__ import annotations

from dataclasses import dataclass

from dealsync.models.domain import SyncToggles
from dealsync.services.context import SyncContext
from dealsync.services.pipelines import PipelineReport, provision_pipelines
from dealsync.services.setup import SetupReport, ensure_hubspot_setup


@dataclass(frozen=True)
class DealSyncReport:
    toggles: SyncToggles
    setup: SetupReport | None = None
    pipelines: PipelineReport | None = None


def set_deal_sync(context: SyncContext, on: bool) -> DealSyncReport:
    """On: refused (ToggleRefusedError naming the missing steps) unless company sync is on and an
    account import completed; then the HubSpot set-up and the pipelines are provisioned."""
    if not on:
        return DealSyncReport(context.store.settings.set_deal_sync(False))
    current = context.store.settings.toggles()
    if not (current.company_sync and current.account_import_completed):
        context.store.settings.set_deal_sync(True)  # raises with the missing steps
    setup = ensure_hubspot_setup(context.hubspot)
    pipelines = provision_pipelines(context)
    toggles = context.store.settings.set_deal_sync(True)
    return DealSyncReport(toggles, setup, pipelines)


def set_company_sync(context: SyncContext, on: bool) -> SyncToggles:
    if on:
        ensure_hubspot_setup(context.hubspot)
    return context.store.settings.set_company_sync(on)
