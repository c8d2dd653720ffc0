"""The HubSpot emulator of the local world (DESIGN §4): deals, contacts, companies, associations v4,
pipelines, owners, properties, search, limits and signed app webhooks, over HTTPS for the real
``hubspot-api-client``.

    from dealsync_local.emulator import EmulatorServer
    from dealsync_local.hubspot import HubSpotEmulator

    app = HubSpotEmulator(webhook_target_url="https://127.0.0.1:9000/hubspot/webhooks")
    server = EmulatorServer(app, tls=ensure_local_tls(state_dir / "tls")).start()
"""

from dealsync_local.hubspot.app import DEFAULT_CONFIG, HubSpotEmulator
from dealsync_local.hubspot.common import HubSpotError, Source
from dealsync_local.hubspot.webhooks import (
    WebhookDispatcher,
    normalize_v3_uri,
    sign_v1,
    sign_v2,
    sign_v3,
    signature_headers,
)

__all__ = [
    "DEFAULT_CONFIG",
    "HubSpotEmulator",
    "HubSpotError",
    "Source",
    "WebhookDispatcher",
    "normalize_v3_uri",
    "sign_v1",
    "sign_v2",
    "sign_v3",
    "signature_headers",
]
