"""``DIR/endpoints.json``: where a running local world (``dealsync local up --state-dir DIR``) can be
reached, as typed objects. The local world writes it with :meth:`Endpoints.write`; commands and tests
read it with :func:`load_endpoints`.

Keys (stable; more may be added)::

    salesforce {instance_url, access_token, user_access_token, ca_file, org_id, login_url, client_id,
                client_secret, api_version, integration_user_id}
    hubspot    {base_url, access_token, user_access_token, ca_file, app_id, client_secret, portal_id}
    aws        {endpoint_url, region, access_key_id, secret_access_key}
    api        {base_url, webhooks {hubspot, salesforce_outbound_message}, control_url, event_relay_url}
    resources  {stack_name, tables, queues, dead_letter_queues, secret_id, functions, schedules}
    environment {NAME: value}   the handlers' environment (Globals of template.yaml, resolved locally)
    state_dir, template, pid, started_at
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

ENDPOINTS_FILE = "endpoints.json"


class WorldNotRunningError(RuntimeError):
    """No local world answers for that state directory."""


@dataclass(frozen=True)
class SalesforceEndpoint:
    instance_url: str
    access_token: str  # the integration user's (what dealsync uses)
    user_access_token: str  # a person using the CRM (what tests and demos act as)
    ca_file: str
    org_id: str
    login_url: str = ""
    client_id: str = ""
    client_secret: str = ""
    api_version: str = "59.0"
    integration_user_id: str = ""


@dataclass(frozen=True)
class HubSpotEndpoint:
    base_url: str
    access_token: str  # the app's private token (what dealsync uses)
    user_access_token: str  # a person using HubSpot
    ca_file: str
    app_id: int
    client_secret: str
    portal_id: int


@dataclass(frozen=True)
class AwsEndpoint:
    endpoint_url: str
    region: str
    access_key_id: str = "testing"
    secret_access_key: str = "testing"  # noqa: S105 - moto takes any credentials


@dataclass(frozen=True)
class ApiEndpoint:
    base_url: str
    webhooks: dict[str, str] = field(default_factory=dict)
    control_url: str = ""
    event_relay_url: str = ""


@dataclass(frozen=True)
class LocalResources:
    stack_name: str = ""
    tables: dict[str, str] = field(default_factory=dict)  # logical id → table name
    queues: dict[str, str] = field(default_factory=dict)  # logical id → queue URL
    dead_letter_queues: dict[str, str] = field(default_factory=dict)  # queue logical id → DLQ logical id
    secret_id: str = ""
    functions: dict[str, str] = field(default_factory=dict)  # logical id → handler module:function
    schedules: list[str] = field(default_factory=list)


def _build[T](cls: type[T], data: Mapping[str, Any] | None) -> T:
    known = {item.name for item in fields(cls)}  # type: ignore[arg-type]
    return cls(**{key: value for key, value in (data or {}).items() if key in known})


@dataclass(frozen=True)
class Endpoints:
    salesforce: SalesforceEndpoint
    hubspot: HubSpotEndpoint
    aws: AwsEndpoint
    api: ApiEndpoint
    resources: LocalResources = field(default_factory=LocalResources)
    environment: dict[str, str] = field(default_factory=dict)
    state_dir: str = ""
    template: str = ""
    pid: int = 0
    started_at: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Endpoints:
        try:
            return cls(
                salesforce=_build(SalesforceEndpoint, data["salesforce"]),
                hubspot=_build(HubSpotEndpoint, data["hubspot"]),
                aws=_build(AwsEndpoint, data["aws"]),
                api=_build(ApiEndpoint, data["api"]),
                resources=_build(LocalResources, data.get("resources")),
                environment={str(key): str(value) for key, value in (data.get("environment") or {}).items()},
                state_dir=str(data.get("state_dir", "")),
                template=str(data.get("template", "")),
                pid=int(data.get("pid", 0)),
                started_at=str(data.get("started_at", "")),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a local-world endpoints file: {exc}") from exc

    def write(self, state_dir: Path) -> Path:
        path = Path(state_dir) / ENDPOINTS_FILE
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        temporary.replace(path)
        return path

    def queue_url(self, logical_id: str) -> str:
        return self.resources.queues[logical_id]

    def table_name(self, logical_id: str) -> str:
        return self.resources.tables[logical_id]

    def apply_environment(self, environ: dict[str, str] | None = None) -> None:
        """Put the handlers' environment into ``environ`` (``os.environ`` by default)."""
        target = os.environ if environ is None else environ
        target.update(self.environment)

    def is_running(self, timeout: float = 2.0) -> bool:
        """Whether the world's control endpoint answers."""
        url = self.api.control_url.rstrip("/") + "/health" if self.api.control_url else ""
        if not url.startswith("http://"):
            return False
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback http only
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False


def endpoints_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / ENDPOINTS_FILE


def load_endpoints(state_dir: str | Path, *, check_running: bool = True) -> Endpoints:
    """The endpoints of the world started with ``--state-dir state_dir``.

    Raises :class:`WorldNotRunningError` with a message saying what to run when there is no
    endpoints file, or (with ``check_running``) when the world it names does not answer."""
    path = endpoints_path(state_dir)
    if not path.exists():
        raise WorldNotRunningError(
            f"no local world in {state_dir}: {path} does not exist. Start one with "
            f"`dealsync local up --state-dir {state_dir}` (or `make run`)."
        )
    try:
        endpoints = Endpoints.from_json(json.loads(path.read_text(encoding="utf-8")))
    except ValueError as exc:
        raise WorldNotRunningError(f"{path} is not readable: {exc}") from exc
    if check_running and not endpoints.is_running():
        raise WorldNotRunningError(
            f"the local world of {state_dir} (pid {endpoints.pid}) does not answer at {endpoints.api.base_url}; "
            f"start it with `dealsync local up --state-dir {state_dir}`."
        )
    return endpoints
