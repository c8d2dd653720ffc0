"""Fixtures: one HubSpot emulator over HTTPS for the session (reset around each test), the real
``hubspot-api-client`` for both identities, raw HTTPS access and a webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from hubspot import HubSpot

from dealsync_local.emulator import EmulatorServer
from dealsync_local.hubspot import HubSpotEmulator
from dealsync_local.hubspot.testing import HubSpotHttp, WebhookReceiver
from dealsync_local.tls import TlsMaterial, ensure_local_tls


@pytest.fixture(scope="session")
def hs_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return ensure_local_tls(Path(tmp_path_factory.mktemp("hubspot-tls")))


@pytest.fixture(scope="session")
def hs_server(hs_tls: TlsMaterial) -> Iterator[EmulatorServer]:
    app = HubSpotEmulator()
    server = EmulatorServer(app, tls=hs_tls).start()
    yield server
    server.stop()
    app.close()


@pytest.fixture
def hs(hs_server: EmulatorServer) -> Iterator[HubSpotEmulator]:
    app = cast(HubSpotEmulator, hs_server.app)
    app.reset()
    yield app
    app.reset()


@pytest.fixture
def client(hs: HubSpotEmulator, hs_server: EmulatorServer, hs_tls: TlsMaterial) -> Any:
    """The integration (dealsync's private app)."""
    return HubSpot(access_token=hs.integration_token, host=hs_server.base_url, ssl_ca_cert=str(hs_tls.ca_file))


@pytest.fixture
def person(hs: HubSpotEmulator, hs_server: EmulatorServer, hs_tls: TlsMaterial) -> Any:
    """A person using the CRM (their writes are CRM_UI)."""
    return HubSpot(access_token=hs.person_token, host=hs_server.base_url, ssl_ca_cert=str(hs_tls.ca_file))


@pytest.fixture
def http(hs: HubSpotEmulator, hs_server: EmulatorServer, hs_tls: TlsMaterial) -> HubSpotHttp:
    return HubSpotHttp(hs_server.base_url, str(hs_tls.ca_file), hs.integration_token, hs.person_token)


@pytest.fixture
def receiver(hs_tls: TlsMaterial) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(tls=hs_tls).start()
    yield receiver
    receiver.stop()


@pytest.fixture
def webhooks(hs: HubSpotEmulator, receiver: WebhookReceiver, hs_tls: TlsMaterial) -> WebhookReceiver:
    """The emulator delivering to ``receiver`` over verified HTTPS, with quick batching and retries."""
    hs.apply_config({"webhook_target_url": receiver.url, "webhook_ca_file": str(hs_tls.ca_file),
                     "webhook_flush_ms": 20, "webhook_backoff_seconds": 0.02, "webhook_backoff_max_seconds": 0.1})
    return receiver
