"""The CRM secret (one JSON document in Secrets Manager), read through Powertools Parameters with caching."""

from __future__ import annotations

from typing import Literal

from aws_lambda_powertools.utilities import parameters
from pydantic import BaseModel, ConfigDict, SecretStr

from dealsync.settings import get_settings


class SalesforceCredentials(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    auth: Literal["client_credentials", "jwt"]
    login_url: str
    instance_url: str | None = None
    client_id: str
    client_secret: SecretStr | None = None
    username: str | None = None
    private_key: SecretStr | None = None
    api_version: str = "59.0"
    org_id: str
    ca_file: str | None = None  # only for the local world's self-signed CA


class HubSpotCredentials(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    access_token: SecretStr
    base_url: str = "https://api.hubapi.com"
    app_id: str
    client_secret: SecretStr
    portal_id: str
    ca_file: str | None = None


class WebhookSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    public_base_url: str | None = None


class CrmCredentials(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    salesforce: SalesforceCredentials
    hubspot: HubSpotCredentials
    webhook: WebhookSettings = WebhookSettings()


def load_credentials(secret_id: str | None = None) -> CrmCredentials:
    """The CRM credentials, cached for ``CRM_SECRET_MAX_AGE_SECONDS`` (rotation is picked up after that)."""
    settings = get_settings()
    raw = parameters.get_secret(secret_id or settings.crm_secret_id, transform="json",
                                max_age=settings.secret_max_age_seconds)
    return CrmCredentials.model_validate(raw)
