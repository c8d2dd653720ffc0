"""Typed settings, read once from the function's environment (set by template.yaml Globals)."""

from __future__ import annotations

from functools import cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    sync_table_name: str = Field(validation_alias="SYNC_TABLE_NAME")
    idempotency_table_name: str = Field(default="", validation_alias="IDEMPOTENCY_TABLE_NAME")
    salesforce_changes_queue_url: str = Field(default="", validation_alias="SALESFORCE_CHANGES_QUEUE_URL")
    hubspot_changes_queue_url: str = Field(default="", validation_alias="HUBSPOT_CHANGES_QUEUE_URL")
    import_queue_url: str = Field(default="", validation_alias="IMPORT_QUEUE_URL")
    rollup_queue_url: str = Field(default="", validation_alias="ROLLUP_QUEUE_URL")
    crm_secret_id: str = Field(default="", validation_alias="CRM_SECRET_ID")
    service_name: str = Field(default="dealsync", validation_alias="POWERTOOLS_SERVICE_NAME")
    # Secrets are cached by Powertools Parameters for this long before being read again.
    secret_max_age_seconds: int = Field(default=300, validation_alias="CRM_SECRET_MAX_AGE_SECONDS")


@cache
def get_settings() -> Settings:
    return Settings()  # values come from the environment
