"""The webhook subscriptions dealsync's HubSpot app needs (set in the app's settings by whoever installs
it; HubSpot has no app-token API for them). The local world configures its emulator from this list.

- every deal event: the HubSpot → Salesforce direction;
- contacts' ``lifecyclestage`` changes: the rollup worker keeps each linked contact's current stage, so
  it can raise stages without reading contacts first and never lowers one a person has set.
"""

from __future__ import annotations

from typing import Final

APP_WEBHOOK_SUBSCRIPTIONS: Final = (
    "deal.creation",
    "deal.propertyChange",
    "deal.deletion",
    "deal.associationChange",
    "deal.merge",
    "deal.restore",
    "contact.propertyChange:lifecyclestage",
)
