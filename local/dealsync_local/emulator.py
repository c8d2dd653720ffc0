"""What both CRM emulators share: a threaded HTTPS server, request statistics, injected faults and
the control endpoints under ``/__emulator/`` (``stats``, ``reset``, ``faults``, ``config``).

An emulator subclasses :class:`EmulatorApp`, declares its routes in a werkzeug ``Map`` whose endpoints
are method names, authenticates each request into an :class:`Identity`, and renders errors in its
CRM's own shape. Faults apply only to the integration's requests: the person using the CRM (tests,
demos) is never faulted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from dealsync_local.tls import TlsMaterial

logging.getLogger("werkzeug").setLevel(logging.ERROR)


class DropConnection(Exception):  # noqa: N818 - it is an instruction, not an error
    """Raised to close the connection without answering (an injected timeout)."""


@dataclass
class Identity:
    """Who is calling: the integration (dealsync's token) or a person using the CRM."""

    kind: str  # "integration" | "person"
    user_id: str
    token: str

    @property
    def is_integration(self) -> bool:
        return self.kind == "integration"


@dataclass
class Faults:
    error_rate: float = 0.0
    error_status: int = 503
    timeout_rate: float = 0.0
    timeout_hold_seconds: float = 2.0
    latency_ms: float = 0.0
    seed: int | None = None
    _rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Faults:
        known = {"error_rate", "error_status", "timeout_rate", "timeout_hold_seconds", "latency_ms", "seed"}
        unknown = set(body) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        faults = cls(**{key: body[key] for key in known if key in body})
        for name in ("error_rate", "timeout_rate"):
            value = getattr(faults, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        faults._rng = random.Random(faults.seed)
        return faults

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_rng")
        return data

    @property
    def active(self) -> bool:
        return self.error_rate > 0 or self.timeout_rate > 0 or self.latency_ms > 0


class EmulatorApp:
    """A WSGI application with the emulator control plane built in."""

    name = "emulator"
    url_map: Map

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.faults = Faults()
        self.stats: Counter[str] = Counter()
        # Record writes that changed no value, by who made them ("integration" | "person"): a sync that
        # writes back what a record already holds is an echo (reliability soak, bench).
        self.unchanged_writes: Counter[str] = Counter()
        self.unchanged_recent: deque[tuple[str, str, str]] = deque(maxlen=200)  # (kind, object, record id)
        # Of those, the integration's that rewrote a value a person set on this side: echoes (it bounced back).
        self.echo_writes: deque[tuple[str, str]] = deque(maxlen=200)  # (object, record id)
        self.echo_count = 0
        self._counters_lock = threading.Lock()  # its own: counted while a store's lock is held
        self.faults_injected: Counter[str] = Counter()  # "timeout", "status 503", "rate limit 429"...
        self.started_at = time.time()

    # --- to implement in each emulator -------------------------------------------------------
    def authenticate(self, request: Request, endpoint: str) -> Identity | None:
        """Return who is calling, or None for an unauthenticated request the endpoint allows."""
        raise NotImplementedError

    def error_response(self, status: int, message: str) -> Response:
        """An error in the CRM's own body shape (used for injected faults and unknown routes)."""
        raise NotImplementedError

    def reset_state(self) -> None:
        """Forget every record (control endpoint ``reset``)."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def apply_config(self, changes: Mapping[str, Any]) -> None:
        raise NotImplementedError

    # --- shared machinery --------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._handle(request)
        except DropConnection:
            # Close the socket without answering, as a hung upstream would; werkzeug treats the
            # failed write that follows as a dropped connection.
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            response = Response(status=504)
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        if request.path.startswith("/__emulator/"):
            return self._control(request)
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except NotFound:
            self._count(request.method, "unmatched")
            return self.error_response(404, f"No route for {request.method} {request.path}")
        except MethodNotAllowed:
            self._count(request.method, "unmatched")
            return self.error_response(405, f"Method {request.method} not allowed for {request.path}")
        except HTTPException as exc:  # redirects for trailing slashes and the like
            return exc.get_response(request.environ)
        rule = adapter.match(return_rule=True)[0].rule
        self._count(request.method, rule)
        identity = self.authenticate(request, str(endpoint))
        if identity is not None and identity.is_integration and self.faults.active:
            injected = self._inject_fault()
            if injected is not None:
                return injected
        handler = getattr(self, str(endpoint))
        result: Response = handler(request, identity, **args)
        return result

    def _count(self, method: str, rule: str) -> None:
        with self.lock:
            self.stats[f"{method} {rule}"] += 1

    def _inject_fault(self) -> Response | None:
        with self.lock:
            faults = self.faults
            roll_timeout = faults._rng.random()
            roll_error = faults._rng.random()
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000.0)
        if roll_timeout < faults.timeout_rate:
            self.count_fault("timeout")
            time.sleep(faults.timeout_hold_seconds)
            raise DropConnection
        if roll_error < faults.error_rate:
            self.count_fault(f"status {faults.error_status}")
            return self.error_response(faults.error_status, "Injected fault")
        return None

    def count_fault(self, kind: str) -> None:
        with self._counters_lock:
            self.faults_injected[kind] += 1

    def count_unchanged_write(self, kind: str, object_name: str, record_id: str, *, echo: bool = False) -> None:
        with self._counters_lock:
            self.unchanged_writes[kind] += 1
            self.unchanged_recent.append((kind, object_name, record_id))
            if echo:
                self.echo_count += 1
                self.echo_writes.append((object_name, record_id))

    def clear_counters(self) -> None:
        """Forget the request statistics, unchanged writes and injected-fault counts."""
        with self.lock:
            self.stats.clear()
        with self._counters_lock:
            self.unchanged_writes.clear()
            self.unchanged_recent.clear()
            self.echo_writes.clear()
            self.echo_count = 0
            self.faults_injected.clear()

    def stats_snapshot(self) -> dict[str, Any]:
        with self.lock:
            by_route = dict(self.stats)
        with self._counters_lock:
            unchanged = dict(self.unchanged_writes)
            echoes = self.echo_count
            faults = dict(self.faults_injected)
        return {
            "total": sum(by_route.values()),
            "by_route": by_route,
            "unchanged_writes": unchanged,
            "echo_writes": echoes,
            "faults_injected": faults,
            "uptime_seconds": round(time.time() - self.started_at, 3),
        }

    def _control(self, request: Request) -> Response:
        action = request.path.removeprefix("/__emulator/").strip("/")
        try:
            body = request.get_json(silent=True) if request.method == "POST" else None
            if action == "stats":
                if request.method == "DELETE" or request.args.get("reset") == "true":
                    self.clear_counters()
                return json_response(self.stats_snapshot())
            if action == "reset" and request.method == "POST":
                with self.lock:
                    self.reset_state()
                    self.clear_counters()
                    self.faults = Faults()
                return json_response({"reset": True})
            if action == "faults":
                if request.method == "POST":
                    with self.lock:
                        self.faults = Faults.from_json(body or {})
                return json_response(self.faults.to_json())
            if action == "config":
                if request.method == "POST":
                    with self.lock:
                        self.apply_config(body or {})
                return json_response(self.get_config())
        except (ValueError, TypeError, KeyError) as exc:
            return json_response({"error": str(exc)}, status=400)
        return json_response({"error": f"unknown control endpoint {action!r}"}, status=404)


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=dict(headers or {}), mimetype="application/json")


class EmulatorServer:
    """Runs an :class:`EmulatorApp` on a background thread over HTTPS (or HTTP when no TLS is given)."""

    def __init__(self, app: EmulatorApp, host: str = "127.0.0.1", port: int = 0,
                 tls: TlsMaterial | None = None) -> None:
        ssl_context: ssl.SSLContext | None = None
        if tls is not None:
            ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ssl_context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        self.app = app
        self.server: BaseWSGIServer = make_server(host, port, app, threaded=True, ssl_context=ssl_context)
        self.server.daemon_threads = True  # type: ignore[attr-defined]
        self.scheme = "https" if tls else "http"
        self._thread = threading.Thread(target=self.server.serve_forever, name=f"{app.name}-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> EmulatorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
