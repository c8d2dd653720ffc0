"""Fixtures for the Salesforce emulator contract tests: a fresh emulator per test over HTTPS with the
local CA, real simple-salesforce clients for the integration and the person, and small HTTP(S)
receivers standing in for the Outbound Message listener and the Event Relay sink."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from simple_salesforce.api import Salesforce

from dealsync_local.emulator import EmulatorServer
from dealsync_local.salesforce.app import SalesforceEmulator
from dealsync_local.tls import TlsMaterial, ensure_local_tls

API_VERSION = "59.0"


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return ensure_local_tls(tmp_path_factory.mktemp("salesforce-tls"))


@dataclass
class Org:
    """A running emulator and what a client needs to reach it."""

    app: SalesforceEmulator
    server: EmulatorServer
    tls: TlsMaterial

    @property
    def url(self) -> str:
        return self.server.base_url

    def session(self) -> requests.Session:
        session = requests.Session()
        session.verify = str(self.tls.ca_file)
        session.trust_env = False
        return session

    def client(self, token: str | None = None) -> Any:
        return Salesforce(instance_url=self.url, session_id=token or self.app.integration_token,
                          session=self.session(), version=API_VERSION)

    def control(self, action: str, body: dict[str, Any] | None = None) -> Any:
        response = self.session().post(f"{self.url}/__emulator/{action}", json=body or {}, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def configure(self, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.control("config", changes)
        return result


_VOLATILE = {"daily_requests_used", "org_id", "integration_user_id", "person_user_id", "integration_username",
             "person_username", "master_record_type_id"}


@pytest.fixture(scope="session")
def running_org(tls: TlsMaterial) -> Iterator[Org]:
    app = SalesforceEmulator(retry_base_seconds=0.05)
    server = EmulatorServer(app, tls=tls).start()
    app.apply_config({"instance_url": server.base_url})
    try:
        yield Org(app, server, tls)
    finally:
        app.close()
        server.stop()


@pytest.fixture
def org(running_org: Org) -> Iterator[Org]:
    """The org, emptied through ``/__emulator/reset`` before each test and its settings restored after."""
    settings = {k: v for k, v in running_org.app.get_config().items() if k not in _VOLATILE}
    running_org.control("reset")
    yield running_org
    running_org.app.flush_notifications(timeout=0.5)
    running_org.control("config", settings)


@pytest.fixture
def sf(org: Org) -> Any:
    """simple-salesforce as dealsync builds it: the integration's token."""
    return org.client()


@pytest.fixture
def person(org: Org) -> Any:
    """simple-salesforce with the person's token (never faulted, never counted)."""
    return org.client(org.app.person_token)


@pytest.fixture
def new_opportunity(sf: Any) -> Callable[..., str]:
    def create(**fields: Any) -> str:
        body = {"Name": "Acme renewal", "StageName": "Prospecting", "CloseDate": "2026-12-31", **fields}
        result = sf.Opportunity.create(body)
        assert result["success"] is True
        return str(result["id"])
    return create


@dataclass
class Receiver:
    """A listener that answers each POST with the next scripted response and records what it got."""

    url: str
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    script: list[tuple[int, str]] = field(default_factory=list)
    default: tuple[int, str] = (200, "")
    lock: threading.Lock = field(default_factory=threading.Lock)

    def json_bodies(self) -> list[Any]:
        with self.lock:
            return [json.loads(body) for body in self.bodies]

    def relayed_events(self) -> list[dict[str, Any]]:
        """Every change event received, in order: a relay request is a JSON array of up to 20 events."""
        requests = self.json_bodies()
        assert all(isinstance(body, list) and 1 <= len(body) <= 20 for body in requests), requests
        return [event for body in requests for event in body]

    def texts(self) -> list[str]:
        with self.lock:
            return [body.decode() for body in self.bodies]


@pytest.fixture
def receiver_factory(tls: TlsMaterial) -> Iterator[Callable[..., Receiver]]:
    servers: list[ThreadingHTTPServer] = []

    def start(*, https: bool = False, default: tuple[int, str] = (200, "")) -> Receiver:
        holder: dict[str, Receiver] = {}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver = holder["receiver"]
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.bodies.append(body)
                    receiver.headers.append(dict(self.headers.items()))
                    status, text = receiver.script.pop(0) if receiver.script else receiver.default
                payload = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if https:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
            server.socket = context.wrap_socket(server.socket, server_side=True)
            scheme = "https"
        servers.append(server)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        receiver = Receiver(f"{scheme}://127.0.0.1:{server.server_port}/listener", default=default)
        holder["receiver"] = receiver
        return receiver

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()

