"""Helpers for tests that drive the HubSpot emulator: a small webhook receiver (HTTP or HTTPS) that
records what HubSpot would deliver and can answer with failures to exercise retries."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dealsync_local.tls import TlsMaterial


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: str
    status: int
    received_at: float

    @property
    def events(self) -> list[dict[str, Any]]:
        parsed = json.loads(self.body)
        return parsed if isinstance(parsed, list) else []


class WebhookReceiver:
    """Records webhook requests. ``fail_next(n, status)`` answers the next n requests with an error
    status; ``status`` answers every later one (default 200)."""

    def __init__(self, tls: TlsMaterial | None = None, path: str = "/hubspot/webhooks") -> None:
        self.path = path
        self.status = 200
        self.delay_seconds = 0.0
        self._failures: deque[int] = deque()
        self._lock = threading.Condition()
        self.requests: list[ReceivedRequest] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8")
                with receiver._lock:
                    status = receiver._failures.popleft() if receiver._failures else receiver.status
                if receiver.delay_seconds:
                    time.sleep(receiver.delay_seconds)
                # Recorded before answering, so a sender that saw the answer finds the record.
                record = ReceivedRequest(self.command, self.path, dict(self.headers.items()), body, status,
                                         time.time())
                with receiver._lock:
                    receiver.requests.append(record)
                    receiver._lock.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_port}{self.path}"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, count: int, status: int = 500) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self._failures.clear()
            self.status = 200
            self.delay_seconds = 0.0

    def delivered(self) -> list[ReceivedRequest]:
        """Requests answered with a 2xx."""
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def events(self) -> list[dict[str, Any]]:
        return [event for request in self.delivered() for event in request.events]

    def wait_for_events(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                events = [e for r in self.requests if 200 <= r.status < 300 for e in r.events]
                remaining = deadline - time.monotonic()
                if len(events) >= count or remaining <= 0:
                    return events
                self._lock.wait(remaining)


class HubSpotHttp:
    """Raw HTTPS calls to the emulator (for headers and bodies the SDK hides). ``who`` may be a token
    string, ``"integration"``, ``"person"`` or None (no Authorization header)."""

    def __init__(self, base_url: str, ca_file: str, integration_token: str, person_token: str) -> None:
        import requests

        self.base_url = base_url.rstrip("/")
        self.tokens = {"integration": integration_token, "person": person_token}
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        self.session.verify = ca_file

    def request(self, method: str, path: str, *, who: str | None = "integration", json_body: Any = None,
                params: dict[str, Any] | None = None) -> Any:
        headers = {}
        if who is not None:
            headers["Authorization"] = f"Bearer {self.tokens.get(who, who)}"
        return self.session.request(method, f"{self.base_url}{path}", headers=headers, json=json_body,
                                    params=params, timeout=30)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json_body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json_body=json_body, **kwargs)

    def control(self, action: str, body: Any = None) -> Any:
        method = "POST" if body is not None else "GET"
        response = self.session.request(method, f"{self.base_url}/__emulator/{action}", json=body, timeout=60)
        return response
