"""HubSpot set-up that deal sync needs, safe to repeat: the `salesforce_sync` property group and the
unique properties dealsync upserts on."""

from __future__ import annotations

from dataclasses import dataclass

from dealsync.clients.errors import PermanentCrmError
from dealsync.clients.hubspot import HubSpotClient
from dealsync.models.domain import ErrorCategory
from dealsync.observability import logger

GROUP = "salesforce_sync"
GROUP_LABEL = "Salesforce sync"
UNIQUE_PROPERTIES = {
    "deals": ("salesforce_opportunity_id", "Salesforce opportunity ID"),
    "companies": ("salesforce_account_id", "Salesforce account ID"),
}


@dataclass(frozen=True)
class SetupReport:
    created: tuple[str, ...]


def ensure_hubspot_setup(hubspot: HubSpotClient) -> SetupReport:
    created: list[str] = []
    for object_type, (name, label) in UNIQUE_PROPERTIES.items():
        existing = {prop["name"]: prop for prop in hubspot.properties(object_type)}
        if name in existing:
            if not existing[name].get("has_unique_value", existing[name].get("hasUniqueValue")):
                raise PermanentCrmError("hubspot", f"{object_type} property {name} exists but is not unique: "
                                        "delete it or make it unique, then retry", ErrorCategory.HUBSPOT_VALIDATION)
            continue
        try:
            hubspot.create_property_group(object_type, GROUP, GROUP_LABEL)
            created.append(f"{object_type} group {GROUP}")
        except PermanentCrmError as error:
            if error.status != 409:
                raise
        hubspot.create_property(object_type, {
            "name": name, "label": label, "type": "string", "fieldType": "text", "groupName": GROUP,
            "hasUniqueValue": True, "description": "Set by dealsync: the linked Salesforce record's id.",
        })
        created.append(f"{object_type} property {name}")
    if created:
        logger.info("HubSpot set-up created", extra={"created_items": created})
    return SetupReport(tuple(created))
