"""Everything a sync service needs, built once per Lambda container and refreshed per batch.

Slow-changing CRM facts (the Opportunity describe, users, owners) are cached for a few minutes so a
burst of changes costs the CRMs almost nothing beyond the records themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from dealsync.clients.credentials import CrmCredentials, load_credentials
from dealsync.clients.hubspot import HubSpotClient
from dealsync.clients.salesforce import SalesforceClient
from dealsync.mapping.fields import FieldSpec, build_field_specs
from dealsync.mapping.owners import HubSpotOwner, OwnerDirectory, SalesforceUser
from dealsync.mapping.stages import StageMap
from dealsync.models.domain import SyncOptions, SyncToggles
from dealsync.services.budget import UsageMeter, install
from dealsync.settings import get_settings
from dealsync.store import StoredConfig, SyncStore

FACTS_MAX_AGE_SECONDS = 300.0


@dataclass
class _Cached:
    value: Any = None
    loaded_at: float = 0.0
    loaded_wall: datetime | None = None  # to compare with operator writes (another process's clock)


@dataclass
class SyncContext:
    store: SyncStore
    salesforce: SalesforceClient
    hubspot: HubSpotClient
    credentials: CrmCredentials
    queues: dict[str, str]
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    _facts: dict[str, _Cached] = field(default_factory=dict)
    usage_meter: UsageMeter | None = None  # counts CRM calls into DynamoDB (services.budget)

    # --- per batch (cheap: DynamoDB) -------------------------------------------------------------
    def toggles(self) -> SyncToggles:
        return self.store.settings.toggles()

    def options(self) -> SyncOptions:
        return self.store.settings.options()

    def config(self) -> StoredConfig:
        return self.store.config.load()

    # --- cached CRM facts ---------------------------------------------------------------------------
    def _fact(self, name: str, load: Callable[[], Any], max_age: float = FACTS_MAX_AGE_SECONDS) -> Any:
        cached = self._facts.setdefault(name, _Cached())
        if cached.value is None or time.monotonic() - cached.loaded_at > max_age:
            cached.value = load()
            cached.loaded_at = time.monotonic()
            cached.loaded_wall = datetime.now(UTC)
        return cached.value

    def forget(self, name: str) -> None:
        self._facts.pop(name, None)

    def forget_if_older(self, name: str, moment: datetime | None) -> None:
        """Forget a fact loaded before `moment` (e.g. a mapping added since may name a new field)."""
        cached = self._facts.get(name)
        if moment is not None and cached is not None and cached.loaded_wall is not None and cached.loaded_wall < moment:
            self.forget(name)

    def opportunity_fields(self) -> dict[str, dict[str, Any]]:
        """The Opportunity describe's fields by name (which fields exist: RecordTypeId, CurrencyIsoCode...)."""
        result: dict[str, dict[str, Any]] = self._fact(
            "opportunity_fields",
            lambda: {field["name"]: field for field in self.salesforce.describe("Opportunity")["fields"]},
        )
        return result

    def deal_properties(self) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = self._fact(
            "deal_properties", lambda: {prop["name"]: prop for prop in self.hubspot.properties("deals")})
        return result

    @property
    def multi_currency(self) -> bool:
        return "CurrencyIsoCode" in self.opportunity_fields()

    @property
    def has_record_types(self) -> bool:
        return "RecordTypeId" in self.opportunity_fields()

    def field_specs(self, config: StoredConfig) -> tuple[FieldSpec, ...]:
        custom = any(not mapping.builtin for mapping in config.mappings.values())
        for fact in ("opportunity_fields", "deal_properties"):
            self.forget_if_older(fact, config.mappings_changed_at)
        specs = build_field_specs(
            config.mappings, config.value_maps, multi_currency=self.multi_currency,
            salesforce_fields=self.opportunity_fields(),
            hubspot_properties=self.deal_properties() if custom else None,
        )
        return specs.specs

    def stage_map(self, config: StoredConfig) -> StageMap:
        return StageMap(config.stage_maps.values())

    def owners(self) -> OwnerDirectory:
        def load() -> OwnerDirectory:
            users = [SalesforceUser(record["Id"], record.get("Email"), bool(record.get("IsActive")))
                     for record in self.salesforce.query("SELECT Id, Email, IsActive FROM User")]
            owners = [HubSpotOwner(str(owner["id"]), owner.get("email")) for owner in self.hubspot.owners()
                      if not owner.get("archived")]
            return OwnerDirectory(users, owners, integration_user_id=self.integration_user_id())

        directory: OwnerDirectory = self._fact("owners", load)
        return directory

    def integration_user_id(self) -> str | None:
        """The Salesforce user dealsync writes as (from the token's identity URL)."""
        value: str | None = self._fact("integration_user_id", self.salesforce.integration_user_id)
        return value


def build_context() -> SyncContext:
    settings = get_settings()
    credentials = load_credentials()
    store = SyncStore.from_settings()
    tier = store.settings.options().hubspot_tier
    context = SyncContext(
        store=store,
        salesforce=SalesforceClient(credentials.salesforce),
        hubspot=HubSpotClient(credentials.hubspot, tier=tier),
        credentials=credentials,
        queues={
            "salesforce": settings.salesforce_changes_queue_url,
            "hubspot": settings.hubspot_changes_queue_url,
            "import": settings.import_queue_url,
            "rollup": settings.rollup_queue_url,
        },
    )
    install(context, tier)  # API budgets: calls counted in DynamoDB, HubSpot limiters shared by every worker
    return context


@cache
def cached_context() -> SyncContext:
    """One context per Lambda container (clients keep their connections between invocations)."""
    return build_context()
