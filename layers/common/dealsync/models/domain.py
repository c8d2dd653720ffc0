"""The vocabulary of the sync: what is linked to what, the sync rules and the error categories."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LinkKind(StrEnum):
    """A pair of linked record types, Salesforce object first."""

    OPPORTUNITY = "opportunity"  # Opportunity ⇄ deal
    ACCOUNT = "account"  # Account ⇄ company
    CONTACT = "contact"  # Contact ⇄ contact
    OWNER = "owner"  # User ⇄ owner

    @property
    def salesforce_object(self) -> str:
        return {"opportunity": "Opportunity", "account": "Account", "contact": "Contact", "owner": "User"}[self]

    @property
    def hubspot_object(self) -> str:
        return {"opportunity": "deals", "account": "companies", "contact": "contacts", "owner": "owners"}[self]


class LinkStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"  # e.g. a deal moved into a pipeline that does not sync
    TOMBSTONED = "tombstoned"  # one side was deleted; kept so the history stays readable


class Side(StrEnum):
    SALESFORCE = "salesforce"
    HUBSPOT = "hubspot"


# A field value as the sync compares it: canonical text (see dealsync.mapping) or None for blank.
ShadowValue = str | None


class Link(BaseModel):
    """The crosswalk entry for one linked pair, with the field shadows of DESIGN 1.2."""

    model_config = ConfigDict(frozen=True)

    kind: LinkKind
    salesforce_id: str
    hubspot_id: str
    status: LinkStatus = LinkStatus.ACTIVE
    status_reason: str | None = None
    created_at: datetime
    updated_at: datetime
    last_synced_at: datetime | None = None
    shadow: dict[str, ShadowValue] = Field(default_factory=dict)
    shadow_version: int = 0
    # Write-ahead: the values a sync was about to write, by the side it writes them to ("hubspot",
    # "salesforce"), saved before its CRM writes and removed with its shadow. Still there means that sync
    # stopped in between: a side holding a pending value got it from that sync (the value is agreed).
    pending: dict[str, dict[str, ShadowValue]] | None = None

    @property
    def is_active(self) -> bool:
        return self.status is LinkStatus.ACTIVE


class LinkResult(BaseModel):
    """What creating a link gave: the link that now stands, and whether this call created it."""

    model_config = ConfigDict(frozen=True)

    link: Link
    created: bool


class SyncRule(StrEnum):
    """HubSpot's four sync rules, with their exact semantics (DESIGN 1.2)."""

    PREFER_SALESFORCE_UNLESS_BLANK = "prefer_salesforce_unless_blank"
    ALWAYS_SALESFORCE = "always_salesforce"
    TWO_WAY = "two_way"
    DONT_SYNC = "dont_sync"


class ErrorCategory(StrEnum):
    OWNER_NOT_FOUND = "OWNER_NOT_FOUND"
    PIPELINE_LIMIT = "PIPELINE_LIMIT"
    WAITING_FOR_ACCOUNT = "WAITING_FOR_ACCOUNT"
    CONTACT_NOT_IN_SALESFORCE = "CONTACT_NOT_IN_SALESFORCE"
    UNMAPPED_STAGE = "UNMAPPED_STAGE"
    UNMAPPED_VALUE = "UNMAPPED_VALUE"
    SALESFORCE_VALIDATION = "SALESFORCE_VALIDATION"
    HUBSPOT_VALIDATION = "HUBSPOT_VALIDATION"
    PERMISSION = "PERMISSION"
    API_BUDGET = "API_BUDGET"
    MERGED_IN_HUBSPOT = "MERGED_IN_HUBSPOT"


class FieldMapping(BaseModel):
    model_config = ConfigDict(frozen=True)

    salesforce_field: str
    hubspot_property: str
    rule: SyncRule = SyncRule.TWO_WAY
    builtin: bool = False  # one of DESIGN 1.2's default mappings


class StageMapping(BaseModel):
    """One Salesforce record type's sales process as a HubSpot pipeline (DESIGN 1.3)."""

    model_config = ConfigDict(frozen=True)

    record_type_id: str  # 18-char id, or "default" for an org with a single pipeline
    pipeline_id: str
    label: str
    stages: dict[str, str]  # Salesforce StageName -> HubSpot stage id


class SyncToggles(BaseModel):
    model_config = ConfigDict(frozen=True)

    company_sync: bool = False
    account_import_completed: bool = False
    deal_sync: bool = False
    updated_at: datetime | None = None


class SyncOptions(BaseModel):
    """Operator settings with the defaults DESIGN names."""

    model_config = ConfigDict(frozen=True)

    resync_after_hubspot_delete: bool = True
    automatic_lifecycle_transitions: bool = True
    salesforce_api_share: float = Field(default=0.25, gt=0, le=1)
    hubspot_tier: Literal["free", "starter", "professional", "enterprise"] = "professional"
    pipeline_limit: int | None = None  # overrides the tier's limit when HubSpot does not report one


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class Job(BaseModel):
    model_config = ConfigDict(frozen=True)

    job_id: str
    kind: str  # accounts | contacts | opportunities | rollups | reconcile
    status: JobStatus
    total: int = 0
    done: int = 0
    failed: int = 0
    chunks_total: int = 0
    chunks_done: int = 0
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    message: str | None = None
    paused: str | None = None  # why an unfinished job waits (API_BUDGET), until the budget allows again


class SyncError(BaseModel):
    model_config = ConfigDict(frozen=True)

    category: ErrorCategory
    record_type: str  # Opportunity, deal, Contact, ...
    record_id: str
    message: str
    related_ids: dict[str, str] = Field(default_factory=dict)
    first_seen: datetime
    last_seen: datetime
    attempts: int = 1


class RollupRow(BaseModel):
    """One opportunity as a contact's rollup sees it (DESIGN 1.7 projection)."""

    model_config = ConfigDict(frozen=True)

    contact_id: str  # Salesforce contact id
    opportunity_id: str
    amount: str | None = None  # decimal text
    created: datetime
    close_date: str | None = None  # YYYY-MM-DD
    closed: bool = False
    won: bool = False
