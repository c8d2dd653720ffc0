"""The Salesforce emulator: REST routes, OAuth, limits, and the emulator control plane.

Routes follow reference/salesforce.md: ``/services/data/vXX.X/...`` for query, sObject rows,
describe, collections, getUpdated/getDeleted, UI API picklist values and Bulk API 2.0 query jobs;
``/services/oauth2/token`` for the client-credentials and JWT-bearer grants. Every ``/services/data``
response carries ``Sforce-Limit-Info``; the integration's requests count against a rolling 24-hour
allocation and get ``403 REQUEST_LIMIT_EXCEEDED`` once it is spent.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from dealsync_local.emulator import EmulatorApp, Identity, json_response
from dealsync_local.salesforce.bulk import BulkJobs
from dealsync_local.salesforce.bulk_ingest import IngestJobs
from dealsync_local.salesforce.errors import NOT_FOUND_MESSAGE, ApiError, MultipleMatchesError, RecordError, SfError
from dealsync_local.salesforce.ids import (
    KEY_PREFIXES,
    MASTER_RECORD_TYPE_ID,
    OUTBOUND_ACTION_PREFIX,
    QUERY_LOCATOR_PREFIX,
    RELAY_CHANNEL_PREFIX,
    IdFactory,
    base62,
    normalize_id,
    to18,
)
from dealsync_local.salesforce.notifications import NotificationSettings, Notifier, settings_from
from dealsync_local.salesforce.schema import (
    DEFAULT_STAGES,
    FORECAST_CATEGORY_LABELS,
    FieldDef,
    ObjectDef,
    describe_field,
    describe_object,
    object_summary,
    picklist_entry,
)
from dealsync_local.salesforce.soql import CompiledQuery, SoqlError, compile_soql
from dealsync_local.salesforce.store import Change, Record, Store, WriteContext
from dealsync_local.salesforce.values import Clock, format_datetime, parse_datetime

MIN_API_VERSION = 20.0
DEFAULT_MAX_API_VERSION = "66.0"
COLLECTION_LIMIT = 200
RETRIEVE_LIMIT = 2000
MAX_URI_BYTES = 16_384
CUSTOM_FIELD_TYPES = frozenset({"string", "textarea", "email", "phone", "url", "picklist", "multipicklist", "boolean",
                                "double", "int", "currency", "percent", "date", "datetime"})
_VERSION_RE = re.compile(r"^\d{2}\.0$")
_JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_JWT_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
_ROLLED_BACK = SfError(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using AllOrNone header",
)


def release_label(version: float) -> str:
    offset = int(version) - 59
    season = ("Winter", "Spring", "Summer")[offset % 3]
    return f"{season} '{24 + offset // 3:02d}"


class ApiUsage:
    """Requests in a rolling 24-hour window, bucketed by minute."""

    def __init__(self) -> None:
        self._buckets: deque[list[int]] = deque()
        self._total = 0

    def _expire(self, minute: int) -> None:
        while self._buckets and self._buckets[0][0] <= minute - 1440:
            self._total -= self._buckets.popleft()[1]

    def used(self) -> int:
        self._expire(int(time.time() // 60))
        return self._total

    def record(self, count: int = 1) -> None:
        minute = int(time.time() // 60)
        self._expire(minute)
        if self._buckets and self._buckets[-1][0] == minute:
            self._buckets[-1][1] += count
        else:
            self._buckets.append([minute, count])
        self._total += count

    def set_used(self, count: int) -> None:
        self._buckets.clear()
        self._total = 0
        if count:
            self.record(count)


@dataclass
class Cursor:
    id: str
    user_id: str
    compiled: CompiledQuery
    record_ids: list[str]
    include_deleted: bool
    batch_size: int
    last_used: float


def _rule(path: str, endpoint: str, methods: Sequence[str]) -> Rule:
    return Rule(path, endpoint=endpoint, methods=list(methods), strict_slashes=False)


_P = "/services/data/v<version>"
URL_MAP = Map([
    _rule("/services/data/", "versions", ["GET"]),
    _rule(f"{_P}/", "resources", ["GET"]),
    _rule(f"{_P}/limits/", "limits", ["GET"]),
    _rule(f"{_P}/sobjects/", "global_describe", ["GET"]),
    _rule(f"{_P}/sobjects/<sobject>/", "sobject_root", ["GET", "POST"]),
    _rule(f"{_P}/sobjects/<sobject>/describe/", "describe", ["GET"]),
    _rule(f"{_P}/sobjects/<sobject>/updated/", "get_updated", ["GET"]),
    _rule(f"{_P}/sobjects/<sobject>/deleted/", "get_deleted", ["GET"]),
    _rule(f"{_P}/sobjects/<sobject>/<record_id>/", "sobject_row", ["GET", "PATCH", "DELETE", "POST"]),
    _rule(f"{_P}/sobjects/<sobject>/<ext_field>/<path:ext_value>", "sobject_external",
          ["GET", "PATCH", "DELETE", "POST"]),
    _rule(f"{_P}/query/", "query", ["GET"]),
    _rule(f"{_P}/queryAll/", "query_all", ["GET"]),
    _rule(f"{_P}/query/<locator>/", "query_more", ["GET"]),
    _rule(f"{_P}/queryAll/<locator>/", "query_more", ["GET"]),
    _rule(f"{_P}/composite/sobjects/", "collections", ["POST", "PATCH", "DELETE"]),
    _rule(f"{_P}/composite/sobjects/<sobject>/", "collections_retrieve", ["GET", "POST"]),
    _rule(f"{_P}/composite/sobjects/<sobject>/<ext_field>/", "collections_upsert", ["PATCH"]),
    _rule(f"{_P}/ui-api/object-info/<sobject>/picklist-values/<record_type_id>/", "ui_picklists", ["GET"]),
    _rule(f"{_P}/ui-api/object-info/<sobject>/picklist-values/<record_type_id>/<field_name>/",
          "ui_picklist_field", ["GET"]),
    _rule(f"{_P}/jobs/query/", "bulk_jobs", ["GET", "POST"]),
    _rule(f"{_P}/jobs/query/<job_id>/", "bulk_job", ["GET", "PATCH", "DELETE"]),
    _rule(f"{_P}/jobs/query/<job_id>/results/", "bulk_results", ["GET"]),
    _rule(f"{_P}/jobs/ingest/", "ingest_jobs", ["GET", "POST"]),
    _rule(f"{_P}/jobs/ingest/<job_id>/", "ingest_job", ["GET", "PATCH", "DELETE"]),
    _rule(f"{_P}/jobs/ingest/<job_id>/batches/", "ingest_upload", ["PUT"]),
    _rule(f"{_P}/jobs/ingest/<job_id>/<any(successfulResults, failedResults, unprocessedrecords):kind>/",
          "ingest_results", ["GET"]),
    _rule("/services/oauth2/token", "oauth_token", ["POST"]),
], merge_slashes=False)

# An update whose change lists only these fields changed no value.
_AUDIT_ONLY_CHANGE = frozenset({"LastModifiedDate", "LastModifiedById"})
_CONFIG_KEYS_READ_ONLY = frozenset({
    "org_id", "integration_user_id", "person_user_id", "integration_username", "person_username",
    "master_record_type_id",
})
_NOTIFICATION_KEYS = {
    "notifications_enabled": "enabled",
    "outbound_message_enabled": "outbound_message_enabled",
    "outbound_message_url": "outbound_message_url",
    "outbound_message_fields": "outbound_message_fields",
    "outbound_message_exclude_integration_user": "outbound_message_exclude_integration_user",
    "outbound_message_api_version": "outbound_message_api_version",
    "change_events_enabled": "change_events_enabled",
    "change_event_url": "change_event_url",
    "change_event_entities": "change_event_entities",
    "relay_id": "relay_id",
    "aws_account_id": "aws_account_id",
    "aws_region": "aws_region",
    "retry_base_seconds": "retry_base_seconds",
    "retry_max_seconds": "retry_max_seconds",
    "notification_max_age_seconds": "max_age_seconds",
    "delivery_timeout_seconds": "delivery_timeout_seconds",
    "callback_verify": "callback_verify",
    "notification_shuffle": "shuffle",
    "notification_duplicate_rate": "duplicate_rate",
    "notification_seed": "seed",
}


class SalesforceEmulator(EmulatorApp):
    """An in-memory Salesforce org speaking the REST API that simple-salesforce and dealsync use.

    Two identities: the integration (``integration_token``, user "dealsync integration") and a person
    using the org (``person_token``). Only the integration's requests count against the daily API
    allocation and are subject to injected faults.
    """

    name = "salesforce"
    url_map = URL_MAP

    def __init__(
        self,
        org_id: str | None = None,
        *,
        integration_token: str | None = None,
        person_token: str | None = None,
        multi_currency: bool = False,
        daily_request_limit: int = 100_000,
        org_name: str = "Acme Corp",
        integration_email: str = "dealsync-integration@acme.example",
        integration_username: str | None = None,
        person_first_name: str = "Riley",
        person_last_name: str = "Morgan",
        person_email: str = "riley.morgan@acme.example",
        client_id: str | None = None,
        client_secret: str | None = None,
        jwt_public_key: str | None = None,
        instance_url: str | None = None,
        outbound_message_url: str | None = None,
        outbound_message_fields: Sequence[str] | None = None,
        change_event_url: str | None = None,
        relay_id: str | None = None,
        retry_base_seconds: float = 1.0,
        callback_verify: bool | str = True,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        canonical_org = normalize_id(org_id) if org_id else None
        if org_id and (canonical_org is None or not canonical_org.startswith("00D")):
            raise ValueError(f"not an organization id: {org_id}")
        self.ids = IdFactory(pod=canonical_org[3:5] if canonical_org else "8d")
        self.org_id = canonical_org or to18("00D" + self.ids.pod + "0" + base62(1, 9))
        self.org_name = org_name
        token_prefix = self.org_id[:15] + "!"
        self.integration_token = integration_token or token_prefix + secrets.token_urlsafe(48)
        self.person_token = person_token or token_prefix + secrets.token_urlsafe(48)
        self.daily_request_limit = daily_request_limit
        self.integration_email = integration_email
        slug = re.sub(r"[^a-z0-9]+", "-", org_name.lower()).strip("-") or "org"
        self.integration_username = (integration_username or f"dealsync.integration@{slug}.example").lower()
        self.person_username = f"{person_first_name}.{person_last_name}@{slug}.example".lower()
        self.person_first_name = person_first_name
        self.person_last_name = person_last_name
        self.person_email = person_email
        self.client_id = client_id or "3MVG9" + secrets.token_urlsafe(60).replace("-", "A").replace("_", "B")[:80]
        self.client_secret = client_secret or secrets.token_hex(32).upper()
        self.jwt_public_key = jwt_public_key
        self.configured_instance_url = instance_url
        self.seen_instance_url: str | None = None
        self.max_api_version = DEFAULT_MAX_API_VERSION
        self.max_cursors_per_user = 10
        self.cursor_idle_seconds = 15 * 60.0
        self.clock = Clock()
        self.usage = ApiUsage()
        self.store = Store(clock=self.clock, ids=self.ids, lock=self.lock, multi_currency=multi_currency)
        self.bulk = BulkJobs(self.store, self.clock, self.ids)
        self.ingest = IngestJobs(self.store, self.clock, self.ids)
        self.cursors: dict[str, Cursor] = {}
        self.integration_user_id = ""
        self.person_user_id = ""
        self.created_at = ""
        settings = NotificationSettings(
            outbound_message_url=outbound_message_url,
            change_event_url=change_event_url,
            relay_id=relay_id or to18(RELAY_CHANNEL_PREFIX + self.ids.pod + "0" + base62(1, 9)),
            retry_base_seconds=retry_base_seconds,
            callback_verify=callback_verify,
        )
        if outbound_message_fields is not None:
            settings.outbound_message_fields = list(outbound_message_fields)
        self.field_writers: dict[tuple[str, str], str] = {}  # (record id, field) -> "integration" | "person"
        self.notifier = Notifier(
            settings=settings, ids=self.ids, snapshot=self._outbound_snapshot, org_id=lambda: self.org_id,
            instance_url=lambda: self.instance_url,
            action_id=to18(OUTBOUND_ACTION_PREFIX + self.ids.pod + "0" + base62(1, 9)),
            now=self.clock.now_precise,
        )
        with self.lock:
            self.reset_state()
            if config:
                self.apply_config(config)

    # --- identity and the org --------------------------------------------------------------------
    @property
    def instance_url(self) -> str:
        return self.configured_instance_url or self.seen_instance_url or "https://127.0.0.1"

    @property
    def master_record_type_id(self) -> str:
        return MASTER_RECORD_TYPE_ID

    def authenticate(self, request: Request, endpoint: str) -> Identity | None:
        if endpoint == "oauth_token":
            # Token requests come from the integration: injected faults apply to them too.
            return Identity("integration", self.integration_user_id, "")
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not token.strip():
            return None
        token = token.strip()
        if hmac.compare_digest(token, self.integration_token):
            return Identity("integration", self.integration_user_id, token)
        if hmac.compare_digest(token, self.person_token):
            return Identity("person", self.person_user_id, token)
        return None

    def reset_state(self) -> None:
        self.field_writers.clear()
        self.ids.reset()
        self.store.clear()
        self.bulk.clear()
        self.ingest.clear()
        self.cursors.clear()
        self.usage = ApiUsage()
        self.notifier.clear()
        self.created_at = format_datetime(self.clock.now())
        self.ids.next("00D")  # the org's own id is 00D...1
        stages = [
            {"MasterLabel": label, "DefaultProbability": probability, "IsClosed": closed, "IsWon": won,
             "ForecastCategory": category, "SortOrder": order, "IsActive": True}
            for order, (label, probability, closed, won, category) in enumerate(DEFAULT_STAGES, start=1)
        ]
        ids = self.store.load({
            "Organization": [{
                "Id": self.org_id, "Name": self.org_name, "OrganizationType": "Enterprise Edition",
                "InstanceName": "NA224", "IsSandbox": False, "DefaultLocaleSidKey": "en_US",
                "LanguageLocaleKey": "en_US", "TimeZoneSidKey": "America/Los_Angeles", "Country": "US",
            }],
            "User": [self._user_record("dealsync", "integration", self.integration_email,
                                       self.integration_username, "dsync"),
                     self._user_record(self.person_first_name, self.person_last_name, self.person_email,
                                       self.person_username, (self.person_first_name[:1]
                                                              + self.person_last_name[:4]).lower())],
            "OpportunityStage": stages,
        }, default_owner=None)
        self.integration_user_id, self.person_user_id = ids["User"]
        self._fix_system_users()

    def _user_record(self, first: str, last: str, email: str, username: str, alias: str) -> dict[str, Any]:
        return {
            "FirstName": first, "LastName": last, "Email": email, "Username": username, "Alias": alias[:8],
            "IsActive": True, "UserType": "Standard", "TimeZoneSidKey": "America/Los_Angeles",
            "LocaleSidKey": "en_US", "EmailEncodingKey": "UTF-8", "LanguageLocaleKey": "en_US",
        }

    def _fix_system_users(self) -> None:
        """The org's own rows (organization, users, stages) were set up by the person, the admin."""
        for table in self.store.tables.values():
            for rid, rec in list(table.rows.items()):
                table.rows[rid] = {**rec, "CreatedById": self.person_user_id,
                                   "LastModifiedById": self.person_user_id}

    # --- config ----------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        settings = self.notifier.settings
        config: dict[str, Any] = {
            "org_id": self.org_id,
            "instance_url": self.instance_url,
            "integration_user_id": self.integration_user_id,
            "integration_username": self.integration_username,
            "person_user_id": self.person_user_id,
            "person_username": self.person_username,
            "integration_token": self.integration_token,
            "person_token": self.person_token,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "jwt_public_key": self.jwt_public_key,
            "master_record_type_id": MASTER_RECORD_TYPE_ID,
            "daily_request_limit": self.daily_request_limit,
            "daily_requests_used": self.usage.used(),
            "multi_currency": self.store.multi_currency,
            "currencies": list(self.store.currencies),
            "corporate_currency": self.store.corporate_currency,
            "hubspot_deal_id_unique": self.store.external_id_unique,
            "default_record_type_id": self.store.default_record_type_id,
            "picklists": {k: list(v) for k, v in self.store.picklists.items()},
            "max_api_version": self.max_api_version,
            "max_query_cursors_per_user": self.max_cursors_per_user,
            "query_cursor_idle_seconds": self.cursor_idle_seconds,
            "bulk_job_processing_seconds": self.bulk.processing_seconds,
            "clock_offset_seconds": self.clock.offset_seconds,
        }
        for key, attr in _NOTIFICATION_KEYS.items():
            config[key] = getattr(settings, attr)
        return config

    def apply_config(self, changes: Mapping[str, Any]) -> None:
        current = self.get_config()
        unknown = set(changes) - set(current)
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        for key in _CONFIG_KEYS_READ_ONLY & set(changes):
            if changes[key] != current[key]:
                raise ValueError(f"{key} is read-only")
        notification_changes = {_NOTIFICATION_KEYS[k]: v for k, v in changes.items() if k in _NOTIFICATION_KEYS}
        if notification_changes:
            self.notifier.settings = settings_from(notification_changes, self.notifier.settings)
        for key, value in changes.items():
            if key in _NOTIFICATION_KEYS or key in _CONFIG_KEYS_READ_ONLY:
                continue
            self._apply_one(key, value)

    def _apply_one(self, key: str, value: Any) -> None:
        if key == "daily_request_limit":
            self.daily_request_limit = _positive_int(key, value)
        elif key == "daily_requests_used":
            self.usage.set_used(_positive_int(key, value, allow_zero=True))
        elif key == "multi_currency":
            self.store.set_multi_currency(bool(value))
        elif key == "currencies":
            if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
                raise ValueError("currencies must be a non-empty list of ISO codes")
            self.store.currencies = list(value)
        elif key == "corporate_currency":
            self.store.corporate_currency = str(value)
        elif key == "hubspot_deal_id_unique":
            self.store.external_id_unique = bool(value)
        elif key == "default_record_type_id":
            self.store.default_record_type_id = normalize_id(value) if value else None
        elif key == "picklists":
            if not isinstance(value, dict):
                raise ValueError("picklists must map 'Object.Field' to a list of values")
            for name, values in value.items():
                self.store.picklists[str(name)] = [str(v) for v in values]
        elif key == "max_api_version":
            if not _VERSION_RE.match(str(value)):
                raise ValueError("max_api_version must look like 62.0")
            self.max_api_version = str(value)
        elif key == "max_query_cursors_per_user":
            self.max_cursors_per_user = _positive_int(key, value)
        elif key == "query_cursor_idle_seconds":
            self.cursor_idle_seconds = float(value)
        elif key == "bulk_job_processing_seconds":
            self.bulk.processing_seconds = float(value)
            self.ingest.processing_seconds = float(value)
        elif key == "clock_offset_seconds":
            self.clock.offset_seconds = float(value)
        elif key == "instance_url":
            self.configured_instance_url = str(value) if value else None
        elif key in ("integration_token", "person_token", "client_id", "client_secret"):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{key} must be a non-empty string")
            setattr(self, key, value)
        elif key == "jwt_public_key":
            self.jwt_public_key = str(value) if value else None

    # --- control plane ---------------------------------------------------------------------------
    def _control(self, request: Request) -> Response:
        action = request.path.removeprefix("/__emulator/").strip("/")
        handlers: dict[str, Callable[[Request], Response]] = {
            "load": self._control_load,
            "undelete": self._control_undelete,
            "gap_event": self._control_gap_event,
            "notifications": self._control_notifications,
            "notifications/flush": self._control_flush,
            "rotate_token": self._control_rotate_token,
            "clock": self._control_clock,
            "custom_field": self._control_custom_field,
        }
        handler = handlers.get(action)
        if handler is None:
            return super()._control(request)
        try:
            return handler(request)
        except (ValueError, TypeError, KeyError) as exc:
            return json_response({"error": str(exc)}, status=400)

    def _control_body(self, request: Request) -> dict[str, Any]:
        if request.method != "POST":
            raise ValueError("use POST")
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    def _control_load(self, request: Request) -> Response:
        return json_response({"ids": self.load(self._control_body(request))})

    def _control_custom_field(self, request: Request) -> Response:
        """``{"sobject": "Opportunity", "name": "Region__c", "type": "string", ...}``: see add_custom_field."""
        body = dict(self._control_body(request))
        sobject, name, field_type = str(body.pop("sobject")), str(body.pop("name")), str(body.pop("type"))
        return json_response(self.add_custom_field(sobject, name, field_type, **body), status=201)

    def _control_undelete(self, request: Request) -> Response:
        body = self._control_body(request)
        ids = body.get("ids")
        if not isinstance(ids, list):
            raise ValueError("ids must be a list")
        return json_response(self.undelete(ids, client=body.get("client")))

    def _control_gap_event(self, request: Request) -> Response:
        body = self._control_body(request)
        events = self.emit_gap_event(body.get("entity", "Opportunity"), body.get("ids", []),
                                     body.get("change_type", "GAP_UPDATE"))
        return json_response({"events": events})

    def _control_notifications(self, request: Request) -> Response:
        return json_response({
            "pending": self.pending_notifications(),
            "deliveries": list(self.notifier.log),
            "recent_change_events": list(self.notifier.recent_events)[-50:],
        })

    def _control_flush(self, request: Request) -> Response:
        body = request.get_json(silent=True) or {}
        flushed = self.flush_notifications(float(body.get("timeout", 10.0)))
        return json_response({"flushed": flushed, "pending": self.pending_notifications()})

    def _control_rotate_token(self, request: Request) -> Response:
        self._control_body(request)
        return json_response({"integration_token": self.rotate_integration_token()})

    def _control_clock(self, request: Request) -> Response:
        if request.method == "POST":
            body = self._control_body(request)
            if "advance_seconds" in body:
                self.clock.advance(float(body["advance_seconds"]))
            if "offset_seconds" in body:
                self.clock.offset_seconds = float(body["offset_seconds"])
        return json_response({"now": format_datetime(self.clock.now()),
                              "offset_seconds": self.clock.offset_seconds})

    # --- Python API for tests and seeding ---------------------------------------------------------
    def load(self, records: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, list[str]]:
        """Insert records without notifications; ids are assigned unless given. ``"@Account:3"`` in a
        value refers to the fourth Account of the same load; a RecordType may carry ``"Stages"`` (its
        sales process's stage names)."""
        if not isinstance(records, Mapping):
            raise ValueError("records must map object names to lists of field dicts")
        with self.lock:
            return self.store.load(records, default_owner=self.person_user_id)

    def add_custom_field(self, sobject: str, name: str, field_type: str, *, label: str | None = None,
                         length: int = 255, precision: int = 18, scale: int = 0, updateable: bool = True,
                         required: bool = False, picklist_values: Sequence[str] = ()) -> dict[str, Any]:
        """Create a custom field as an admin does in Setup (describe, SOQL, writes and change events see it);
        returns its describe entry. ``picklist_values`` for picklist and multipicklist fields."""
        if not name.endswith("__c"):
            raise ValueError(f"custom field names end with __c: {name}")
        if field_type not in CUSTOM_FIELD_TYPES:
            raise ValueError(f"unsupported custom field type {field_type}; one of {sorted(CUSTOM_FIELD_TYPES)}")
        text = field_type in ("string", "textarea", "email", "phone", "url", "picklist", "multipicklist")
        fdef = FieldDef(
            name, field_type, label or name[:-3].replace("_", " "),
            length=(32768 if field_type == "textarea" and length == 255 else length) if text else 0,
            precision=precision if field_type in ("double", "currency", "percent", "int") else 0,
            scale=scale if field_type in ("double", "currency", "percent") else 0,
            digits=precision if field_type == "int" else 0,
            nillable=field_type != "boolean" and not required, createable=updateable, updateable=updateable,
            required=required, defaulted_on_create=field_type == "boolean",
            default_value=False if field_type == "boolean" else None,
            filterable=field_type not in ("textarea", "multipicklist"), custom=True,
        )
        with self.lock:
            obj = self._object(sobject)
            self.store.add_custom_field(obj.name, fdef, picklist_values)
            return describe_field(fdef, self._describe_picklist(obj, fdef))

    def undelete(self, ids: Sequence[str], *, as_person: bool = True,
                 client: str | None = None) -> list[dict[str, Any]]:
        """Restore records from the recycle bin (with their cascade-deleted children)."""
        user = self.person_user_id if as_person else self.integration_user_id
        origin = _change_origin("rest", "59.0", client)
        results: list[dict[str, Any]] = []
        for record_id in ids:
            try:
                with self.lock:
                    changes = self.store.undelete(str(record_id), WriteContext(user, origin))
                    self._publish(changes, origin)
                results.append({"id": normalize_id(record_id), "success": True, "errors": []})
            except RecordError as exc:
                results.append({"id": normalize_id(record_id), "success": False,
                                "errors": [e.item() for e in exc.errors]})
        return results

    def create(self, sobject: str, fields: Mapping[str, Any], *, as_person: bool = True,
               client: str | None = None) -> str:
        """Create a record as a REST write would (validation, change events, Outbound Messages)."""
        ctx = self._python_context(as_person, client)
        return str(self._write(ctx, lambda: self.store.create(self._object(sobject).name, fields, ctx)))

    def update(self, sobject: str, record_id: str, fields: Mapping[str, Any], *, as_person: bool = True,
               client: str | None = None) -> None:
        ctx = self._python_context(as_person, client)
        self._write(ctx, lambda: (None, self.store.update(self._object(sobject).name, record_id, fields, ctx)))

    def delete(self, sobject: str, record_id: str, *, as_person: bool = True, client: str | None = None) -> None:
        ctx = self._python_context(as_person, client)
        self._write(ctx, lambda: (None, self.store.delete(self._object(sobject).name, record_id, ctx)))

    def get(self, sobject: str, record_id: str, *, include_deleted: bool = False) -> dict[str, Any] | None:
        """A copy of a record's stored values, or None."""
        with self.lock:
            rec = self.store.row(normalize_id(record_id))
            if rec is None or rec["Id"][:3] != self._object(sobject).key_prefix:
                return None
            if rec.get("IsDeleted") and not include_deleted:
                return None
            return dict(rec)

    def soql(self, query: str, *, include_deleted: bool = False, version: str = "59.0") -> list[dict[str, Any]]:
        """Run SOQL in-process and return the records as the REST API renders them."""
        with self.lock:
            compiled = compile_soql(self.store, query, self.clock.now())
            rows = compiled.execute(include_deleted)
            if compiled.count_only:
                return [{"expr0": len(rows)}]
            return [compiled.render(r, version, include_deleted) for r in rows]

    def emit_gap_event(self, entity: str, ids: Sequence[str], change_type: str = "GAP_UPDATE") -> list[dict[str, Any]]:
        """Emit a gap event (header only) for records, as Salesforce does when it cannot send the change."""
        if entity not in KEY_PREFIXES:
            raise ValueError(f"unknown entity {entity}")
        canonical = [normalize_id(i) or str(i) for i in ids]
        events = self.notifier.gap_events(entity, canonical, change_type, self.person_user_id)
        if self.notifier.settings.enabled and self.notifier.settings.change_events_enabled:
            self.notifier.enqueue_events(events)
        return events

    def pending_notifications(self) -> dict[str, int]:
        return self.notifier.pending()

    def flush_notifications(self, timeout: float = 10.0) -> bool:
        """Wait until queued Outbound Messages and change events are delivered; False on timeout."""
        return self.notifier.flush(timeout)

    def recent_change_events(self) -> list[dict[str, Any]]:
        return list(self.notifier.recent_events)

    def notification_log(self) -> list[dict[str, Any]]:
        return list(self.notifier.log)

    def rotate_integration_token(self) -> str:
        """Expire the integration's session: the old token now gets 401 INVALID_SESSION_ID."""
        with self.lock:
            self.integration_token = self.org_id[:15] + "!" + secrets.token_urlsafe(48)
            return self.integration_token

    def api_usage(self) -> tuple[int, int]:
        with self.lock:
            return self.usage.used(), self.daily_request_limit

    def close(self) -> None:
        """Stop the notification threads."""
        self.notifier.close()

    def _python_context(self, as_person: bool, client: str | None) -> WriteContext:
        user = self.person_user_id if as_person else self.integration_user_id
        return WriteContext(user, _change_origin("rest", "59.0", client))

    def _object(self, name: str) -> ObjectDef:
        obj = self.store.object_named(name)
        if obj is None:
            raise ValueError(f"unknown sObject type {name}")
        return obj

    # --- plumbing --------------------------------------------------------------------------------
    def error_response(self, status: int, message: str) -> Response:
        codes = {400: "BAD_REQUEST", 401: "INVALID_SESSION_ID", 403: "REQUEST_LIMIT_EXCEEDED", 404: "NOT_FOUND",
                 405: "METHOD_NOT_ALLOWED", 409: "CONFLICT", 500: "UNKNOWN_EXCEPTION",
                 502: "UNKNOWN_EXCEPTION", 503: "SERVER_UNAVAILABLE"}
        if status == 404:
            message = NOT_FOUND_MESSAGE
        elif status == 405 and message.startswith("Method "):
            message = f"HTTP Method '{message.split()[1]}' not allowed."
        return self._errors(status, [SfError(codes.get(status, "UNKNOWN_EXCEPTION"), message)])

    def _errors(self, status: int, errors: Sequence[SfError]) -> Response:
        return json_response([e.rest() for e in errors], status=status)

    def _publish(self, changes: Sequence[Change], origin: str) -> None:
        for change in changes:
            self._note_writers(change)
        if changes:
            self.notifier.publish(changes, change_origin=origin, integration_user_id=self.integration_user_id)

    def _note_writers(self, change: Change) -> None:
        """Who last changed each field (under the lock), and updates that changed nothing, counted as the
        integration's echoes when they rewrite a value a person set (it came from this side: it bounced)."""
        writer = "integration" if change.user_id == self.integration_user_id else "person"
        if change.change_type == "UPDATE" and set(change.changed_fields) <= _AUDIT_ONLY_CHANGE:
            bounced = writer == "integration" and any(
                self.field_writers.get((change.record_id, name)) == "person" for name in change.written_fields)
            self.count_unchanged_write(writer, change.entity, change.record_id, echo=bounced)
            return
        names = change.changed_fields if change.change_type == "UPDATE" else list(change.payload)
        for name in names:
            self.field_writers[(change.record_id, name)] = writer

    def _outbound_snapshot(self, record_ids: Sequence[str],
                           fields: Sequence[str]) -> dict[str, list[tuple[FieldDef, Any]]]:
        with self.lock:
            obj = self.store.schema["Opportunity"]
            fdefs = [fdef for fdef in (obj.field(name) for name in fields) if fdef is not None]
            out = {}
            for record_id in record_ids:
                rec = self.store.row(record_id)
                if rec is not None:
                    out[record_id] = [(fdef, rec.get(fdef.name)) for fdef in fdefs]
            return out

    def _learn_instance_url(self, request: Request) -> None:
        if self.seen_instance_url is None:
            self.seen_instance_url = request.host_url.rstrip("/")

    def _version_ok(self, version: str) -> bool:
        return bool(_VERSION_RE.match(version)) and MIN_API_VERSION <= float(version) <= float(self.max_api_version)

    def _api(self, request: Request, identity: Identity | None, version: str,
             handler: Callable[[Identity], Response]) -> Response:
        """Authentication, the API allocation, error rendering and ``Sforce-Limit-Info``."""
        if not self._version_ok(version):
            return self._errors(404, [SfError("NOT_FOUND", NOT_FOUND_MESSAGE)])
        if identity is None:
            return self._errors(401, [SfError("INVALID_SESSION_ID", "Session expired or invalid")])
        if len(str(request.environ.get("RAW_URI") or request.full_path)) > MAX_URI_BYTES:
            return self._errors(414, [SfError("URI_TOO_LONG", f"The request URI is longer than {MAX_URI_BYTES} "
                                                              "bytes")])
        self._learn_instance_url(request)
        with self.lock:
            if identity.is_integration:
                if self.usage.used() >= self.daily_request_limit:
                    response = self._errors(403, [SfError("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")])
                    response.headers["Sforce-Limit-Info"] = self._limit_info()
                    return response
                self.usage.record()
        try:
            response = handler(identity)
        except ApiError as exc:
            response = self._errors(exc.status, exc.errors)
        except RecordError as exc:
            response = self._errors(exc.status, exc.errors)
        except SoqlError as exc:
            response = self._errors(400, [SfError(exc.code, exc.message)])
        except MultipleMatchesError as exc:
            response = json_response(
                [f"/services/data/v{version}/sobjects/{self._type_of(i)}/{i}" for i in exc.ids], status=300)
        with self.lock:
            response.headers["Sforce-Limit-Info"] = self._limit_info()
        return response

    def _limit_info(self) -> str:
        return f"api-usage={min(self.usage.used(), self.daily_request_limit)}/{self.daily_request_limit}"

    def _type_of(self, record_id: str) -> str:
        table = self.store.by_prefix.get(record_id[:3])
        return table.name if table else "sObject"

    def _context(self, request: Request, identity: Identity, version: str) -> WriteContext:
        client = _call_option(request.headers.get("Sforce-Call-Options", ""), "client")
        return WriteContext(identity.user_id, _change_origin("rest", version, client))

    def _resolve_type(self, sobject: str) -> ObjectDef:
        obj = self.store.object_named(sobject)
        if obj is None:
            raise ApiError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
        return obj

    def _json_body(self, request: Request) -> Any:
        raw = request.get_data(as_text=True)
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ApiError(400, "JSON_PARSER_ERROR",
                           f"Unexpected character ('{raw[exc.pos:exc.pos + 1]}'): was expecting a value at "
                           f"[line:{exc.lineno}, column:{exc.colno}]") from None

    def _write(self, ctx: WriteContext, action: Callable[[], tuple[Any, list[Change]]]) -> Any:
        """Run a write under the lock and queue its notifications before releasing it, so change
        events are queued in commit order."""
        with self.lock:
            result, changes = action()
            self._publish(changes, ctx.change_origin)
        return result

    # --- endpoints: discovery --------------------------------------------------------------------
    def versions(self, request: Request, identity: Identity | None) -> Response:
        top = int(float(self.max_api_version))
        return json_response([
            {"label": release_label(v), "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
            for v in range(31, top + 1)
        ])

    def resources(self, request: Request, identity: Identity | None, version: str) -> Response:
        def handler(who: Identity) -> Response:
            base = f"/services/data/v{version}"
            names = ["sobjects", "query", "queryAll", "limits", "composite", "jobs", "ui-api", "search",
                     "recent", "tooling", "metadata"]
            return json_response({name: f"{base}/{name}" for name in names})
        return self._api(request, identity, version, handler)

    def limits(self, request: Request, identity: Identity | None, version: str) -> Response:
        def handler(who: Identity) -> Response:
            with self.lock:
                used = min(self.usage.used(), self.daily_request_limit)
                jobs = len(self.bulk.jobs)
            return json_response({
                "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
                "DailyApiRequests": {"Max": self.daily_request_limit, "Remaining": self.daily_request_limit - used},
                "DailyAsyncApexExecutions": {"Max": 250000, "Remaining": 250000},
                "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
                "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
                "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": max(0, 10000 - jobs)},
                "DailyDeliveredPlatformEvents": {"Max": 50000, "Remaining": 50000},
                "DataStorageMB": {"Max": 5120, "Remaining": 5100},
                "FileStorageMB": {"Max": 20480, "Remaining": 20480},
                "HourlyPublishedPlatformEvents": {"Max": 250000, "Remaining": 250000},
                "SingleEmail": {"Max": 5000, "Remaining": 5000},
            })
        return self._api(request, identity, version, handler)

    def global_describe(self, request: Request, identity: Identity | None, version: str) -> Response:
        def handler(who: Identity) -> Response:
            with self.lock:
                sobjects = [object_summary(obj, version) for obj in self.store.schema.values()]
            return json_response({"encoding": "UTF-8", "maxBatchSize": COLLECTION_LIMIT, "sobjects": sobjects})
        return self._api(request, identity, version, handler)

    def describe(self, request: Request, identity: Identity | None, version: str, sobject: str) -> Response:
        def handler(who: Identity) -> Response:
            with self.lock:
                obj = self._resolve_type(sobject)
                fields = [describe_field(f, self._describe_picklist(obj, f)) for f in obj.fields.values()]
                return json_response(describe_object(obj, version, fields, self._record_type_infos(obj, version)))
        return self._api(request, identity, version, handler)

    def _describe_picklist(self, obj: ObjectDef, fdef: FieldDef) -> list[dict[str, Any]]:
        if fdef.type not in ("picklist", "multipicklist"):
            return []
        return [picklist_entry(value, label, default=(fdef.name == "CurrencyIsoCode"
                                                      and value == self.store.corporate_currency))
                for value, label in self.store.picklist_values(obj.name, fdef.name)]

    def _record_type_infos(self, obj: ObjectDef, version: str) -> list[dict[str, Any]]:
        rts = [rt for rt in self.store.tables["RecordType"].rows.values() if rt.get("SobjectType") == obj.name]
        default = self.store.default_opportunity_record_type() if obj.name == "Opportunity" else None
        infos = []
        for rt in rts:
            infos.append({
                "active": bool(rt.get("IsActive")), "available": bool(rt.get("IsActive")),
                "defaultRecordTypeMapping": rt["Id"] == default, "developerName": rt.get("DeveloperName"),
                "master": False, "name": rt.get("Name"), "recordTypeId": rt["Id"],
                "urls": {"layout": f"/services/data/v{version}/sobjects/{obj.name}/describe/layouts/{rt['Id']}"},
            })
        infos.append({
            "active": True, "available": not rts, "defaultRecordTypeMapping": default is None,
            "developerName": "Master", "master": True, "name": "Master", "recordTypeId": MASTER_RECORD_TYPE_ID,
            "urls": {"layout": f"/services/data/v{version}/sobjects/{obj.name}/describe/layouts/"
                               f"{MASTER_RECORD_TYPE_ID}"},
        })
        return infos

    # --- endpoints: records ----------------------------------------------------------------------
    def sobject_root(self, request: Request, identity: Identity | None, version: str, sobject: str) -> Response:
        def handler(who: Identity) -> Response:
            obj = self._resolve_type(sobject)
            if request.method == "GET":
                return json_response({"objectDescribe": object_summary(obj, version), "recentItems": []})
            body = self._json_body(request)
            if not isinstance(body, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
            ctx = self._context(request, who, version)
            record_id = self._write(ctx, lambda: self.store.create(obj.name, body, ctx))
            return json_response({"id": record_id, "success": True, "errors": []}, status=201)
        return self._api(request, identity, version, handler)

    def _render_record(self, obj: ObjectDef, rec: Record, version: str,
                       fields: Sequence[str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"attributes": {"type": obj.name,
                                              "url": f"/services/data/v{version}/sobjects/{obj.name}/{rec['Id']}"}}
        names = list(obj.fields) if fields is None else list(fields)
        for name in names:
            out[name] = rec.get(name)
        return out

    def _field_list(self, obj: ObjectDef, raw: str | None) -> list[str] | None:
        if raw is None:
            return None
        names = []
        for part in raw.split(","):
            part = part.strip()
            if not part:
                continue
            fdef = obj.field(part)
            if fdef is None:
                raise ApiError(400, "INVALID_FIELD",
                               f"No such column '{part}' on entity '{obj.name}'. If you are attempting to use a "
                               "custom field, be sure to append the '__c' after the custom field name. Please "
                               "reference your WSDL or the describe call for the appropriate names.")
            names.append(fdef.name)
        return names

    def sobject_row(self, request: Request, identity: Identity | None, version: str, sobject: str,
                    record_id: str) -> Response:
        def handler(who: Identity) -> Response:
            obj = self._resolve_type(sobject)
            method = request.method
            if method == "POST":
                override = request.args.get("_HttpMethod", "").upper()
                if override not in ("PATCH", "DELETE", "GET"):
                    raise ApiError(405, "METHOD_NOT_ALLOWED",
                                   "HTTP Method 'POST' not allowed. Allowed are GET,PATCH,DELETE")
                method = override
            if normalize_id(record_id) is None:
                raise ApiError(404, "NOT_FOUND",
                               f"Provided external ID field does not exist or is not accessible: {record_id}")
            ctx = self._context(request, who, version)
            if method == "GET":
                with self.lock:
                    rec = self.store.existing(obj.name, record_id)
                    return json_response(self._render_record(obj, rec, version,
                                                              self._field_list(obj, request.args.get("fields"))))
            if method == "DELETE":
                self._write(ctx, lambda: (None, self.store.delete(obj.name, record_id, ctx)))
                return Response(status=204)
            body = self._json_body(request)
            if not isinstance(body, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
            self._write(ctx, lambda: (None, self.store.update(obj.name, record_id, body, ctx)))
            return Response(status=204)
        return self._api(request, identity, version, handler)

    def sobject_external(self, request: Request, identity: Identity | None, version: str, sobject: str,
                         ext_field: str, ext_value: str) -> Response:
        def handler(who: Identity) -> Response:
            obj = self._resolve_type(sobject)
            fdef = obj.field(ext_field)
            if fdef is None or not (fdef.external_id or fdef.id_lookup):
                raise ApiError(404, "NOT_FOUND",
                               f"Provided external ID field does not exist or is not accessible: {ext_field}")
            ctx = self._context(request, who, version)
            if request.method == "GET":
                with self.lock:
                    matches = self._external_matches(obj, fdef, ext_value)
                    if len(matches) > 1:
                        raise MultipleMatchesError(matches)
                    if not matches:
                        raise ApiError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
                    rec = self.store.tables[obj.name].rows[matches[0]]
                    return json_response(self._render_record(obj, rec, version,
                                                              self._field_list(obj, request.args.get("fields"))))
            if request.method == "DELETE":
                def remove() -> tuple[None, list[Change]]:
                    matches = self._external_matches(obj, fdef, ext_value)
                    if len(matches) > 1:
                        raise MultipleMatchesError(matches)
                    if not matches:
                        raise ApiError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
                    return None, self.store.delete(obj.name, matches[0], ctx)
                self._write(ctx, remove)
                return Response(status=204)
            if not fdef.external_id:
                raise ApiError(404, "NOT_FOUND",
                               f"Provided external ID field does not exist or is not accessible: {ext_field}")
            body = self._json_body(request)
            if not isinstance(body, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
            updates_only = request.args.get("updateOnly", "").lower() == "true"

            def upsert() -> tuple[tuple[str, bool], list[Change]]:
                if updates_only and not self.store.find_external(obj.name, fdef.name, ext_value):
                    raise ApiError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
                record_id, created, changes = self.store.upsert(obj.name, fdef.name, ext_value, body, ctx)
                return (record_id, created), changes

            record_id, created = self._write(ctx, upsert)
            result = {"id": record_id, "success": True, "errors": [], "created": created}
            if created:
                return json_response(result, status=201)
            if float(version) < 46.0:
                return Response(status=204)
            return json_response(result, status=200)
        return self._api(request, identity, version, handler)

    def _external_matches(self, obj: ObjectDef, fdef: FieldDef, value: str) -> list[str]:
        if fdef.name == "Id":
            canonical = normalize_id(value)
            rec = self.store.live(canonical)
            return [canonical] if rec is not None and canonical is not None and canonical[:3] == obj.key_prefix else []
        return self.store.find_external(obj.name, fdef.name, value)

    # --- endpoints: replication ------------------------------------------------------------------
    def _replication_window(self, request: Request, days: int) -> tuple[str, str, dt.datetime]:
        raw_start, raw_end = request.args.get("start"), request.args.get("end")
        if not raw_start or not raw_end:
            raise ApiError(400, "MISSING_ARGUMENT", "Both start and end must be specified")
        try:
            start = parse_datetime(raw_start).replace(second=0, microsecond=0)
            end = parse_datetime(raw_end).replace(second=0, microsecond=0)
        except ValueError:
            raise ApiError(400, "INVALID_REPLICATION_DATE",
                           "The start and end parameters must be dateTime values such as "
                           "2026-11-27T13:54:00+00:00") from None
        now = self.clock.now()
        if start >= end:
            raise ApiError(400, "INVALID_REPLICATION_DATE", "startDate must chronologically precede endDate")
        if start < (now - dt.timedelta(days=days)).replace(hour=0, minute=0, second=0):
            raise ApiError(400, "INVALID_REPLICATION_DATE", f"startDate cannot be more than {days} days ago")
        latest = min(end, now.replace(second=0, microsecond=0))
        return format_datetime(start), format_datetime(latest), latest

    def get_updated(self, request: Request, identity: Identity | None, version: str, sobject: str) -> Response:
        def handler(who: Identity) -> Response:
            obj = self._resolve_type(sobject)
            if not obj.replicateable:
                raise ApiError(400, "INVALID_TYPE_FOR_OPERATION", "entity type is not replicateable")
            start, latest, _ = self._replication_window(request, 30)
            with self.lock:
                ids = self.store.updated_ids(obj.name, start, latest)
            if len(ids) > 600_000:
                raise ApiError(400, "EXCEEDED_ID_LIMIT", "too many ids; narrow the window")
            return json_response({"ids": ids, "latestDateCovered": latest})
        return self._api(request, identity, version, handler)

    def get_deleted(self, request: Request, identity: Identity | None, version: str, sobject: str) -> Response:
        def handler(who: Identity) -> Response:
            obj = self._resolve_type(sobject)
            if not obj.replicateable:
                raise ApiError(400, "INVALID_TYPE_FOR_OPERATION", "entity type is not replicateable")
            start, latest, _ = self._replication_window(request, 15)
            with self.lock:
                deleted = self.store.deleted_records(obj.name, start, latest)
            earliest = self.created_at[:17] + "00.000+0000"
            return json_response({
                "deletedRecords": [{"id": rid, "deletedDate": when} for rid, when in deleted],
                "earliestDateAvailable": earliest,
                "latestDateCovered": latest,
            })
        return self._api(request, identity, version, handler)

    # --- endpoints: query ------------------------------------------------------------------------
    def query(self, request: Request, identity: Identity | None, version: str) -> Response:
        return self._api(request, identity, version, lambda who: self._run_query(request, who, version, False))

    def query_all(self, request: Request, identity: Identity | None, version: str) -> Response:
        return self._api(request, identity, version, lambda who: self._run_query(request, who, version, True))

    def _batch_size(self, request: Request) -> int:
        options = request.headers.get("Sforce-Query-Options", "")
        value = _call_option(options, "batchSize")
        if value and value.isdigit():
            return max(200, min(2000, int(value)))
        return 2000

    def _run_query(self, request: Request, identity: Identity, version: str, include_deleted: bool) -> Response:
        text = request.args.get("q")
        if not text:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        with self.lock:
            compiled = compile_soql(self.store, text, self.clock.now())
            rows = compiled.execute(include_deleted)
            if compiled.count_only:
                return json_response({"totalSize": len(rows), "done": True, "records": []})
            if compiled.aggregates:
                return json_response({"totalSize": 1, "done": True, "records": [compiled.aggregate_row(rows)]})
            batch = self._batch_size(request)
            page = [compiled.render(r, version, include_deleted) for r in rows[:batch]]
            body: dict[str, Any] = {"totalSize": len(rows), "done": len(rows) <= batch}
            if len(rows) > batch:
                cursor = self._open_cursor(identity, compiled, [r["Id"] for r in rows], include_deleted, batch)
                body["nextRecordsUrl"] = f"/services/data/v{version}/query/{cursor.id}-{batch}"
            body["records"] = page
            return json_response(body)

    def _open_cursor(self, identity: Identity, compiled: CompiledQuery, record_ids: list[str],
                     include_deleted: bool, batch: int) -> Cursor:
        now = time.monotonic()
        for cursor_id in [c.id for c in self.cursors.values() if now - c.last_used > self.cursor_idle_seconds]:
            del self.cursors[cursor_id]
        mine = sorted((c for c in self.cursors.values() if c.user_id == identity.user_id), key=lambda c: c.last_used)
        while len(mine) >= self.max_cursors_per_user:
            del self.cursors[mine.pop(0).id]
        cursor = Cursor(self.ids.next(QUERY_LOCATOR_PREFIX), identity.user_id, compiled, record_ids,
                        include_deleted, batch, now)
        self.cursors[cursor.id] = cursor
        return cursor

    def query_more(self, request: Request, identity: Identity | None, version: str, locator: str) -> Response:
        def handler(who: Identity) -> Response:
            cursor_id, _, position = locator.partition("-")
            with self.lock:
                cursor = self.cursors.get(cursor_id)
                if cursor is None or cursor.user_id != who.user_id or not position.isdigit():
                    raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
                start = int(position)
                end = start + cursor.batch_size
                cursor.last_used = time.monotonic()
                rows = self.store.tables[cursor.compiled.obj.name].rows
                page = [cursor.compiled.render(rows[i], version, cursor.include_deleted)
                        for i in cursor.record_ids[start:end] if i in rows]
                done = end >= len(cursor.record_ids)
                body: dict[str, Any] = {"totalSize": len(cursor.record_ids), "done": done}
                if done:
                    self.cursors.pop(cursor_id, None)
                else:
                    body["nextRecordsUrl"] = f"/services/data/v{version}/query/{cursor_id}-{end}"
                body["records"] = page
            return json_response(body)
        return self._api(request, identity, version, handler)

    # --- endpoints: sObject Collections ----------------------------------------------------------
    def collections(self, request: Request, identity: Identity | None, version: str) -> Response:
        def handler(who: Identity) -> Response:
            ctx = self._context(request, who, version)
            if request.method == "DELETE":
                ids = [i for i in request.args.get("ids", "").split(",") if i]
                if not ids:
                    raise ApiError(400, "MISSING_ARGUMENT", "ids must be specified")
                _check_collection_size(len(ids))
                deletes = [self._delete_op(i, ctx) for i in ids]
                all_or_none = request.args.get("allOrNone", "false").lower() == "true"
                return json_response(self._run_collection(ctx, deletes, all_or_none, failed_id=ids))
            records, all_or_none = _collection_body(self._json_body(request))
            _check_collection_size(len(records))
            ops = [self._collection_op(request.method, record, ctx) for record in records]
            return json_response(self._run_collection(ctx, ops, all_or_none))
        return self._api(request, identity, version, handler)

    def _delete_op(self, record_id: str, ctx: WriteContext) -> Callable[[], tuple[str, list[Change]]]:
        def op() -> tuple[str, list[Change]]:
            if normalize_id(record_id) is None:
                raise RecordError.one("MALFORMED_ID", f"malformed id {record_id}")
            return normalize_id(record_id) or record_id, self.store.delete(None, record_id, ctx)
        return op

    def _collection_op(self, method: str, record: Any, ctx: WriteContext) -> Callable[[], tuple[str, list[Change]]]:
        def op() -> tuple[str, list[Change]]:
            if not isinstance(record, dict):
                raise RecordError.one("JSON_PARSER_ERROR", "Each record must be a JSON object")
            type_name = (record.get("attributes") or {}).get("type")
            if not type_name:
                raise RecordError.one("INVALID_TYPE", "When creating or updating records, each record must "
                                      "have a type specified.")
            obj = self.store.object_named(str(type_name))
            if obj is None:
                raise RecordError.one("INVALID_TYPE", f"sObject type '{type_name}' is not supported.")
            data = {k: v for k, v in record.items() if k != "attributes"}
            if method == "POST":
                if data.get("id") or data.get("Id"):
                    raise RecordError.one("INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call",
                                          ("Id",))
                return self.store.create(obj.name, data, ctx)
            record_id = data.pop("id", None) or data.pop("Id", None)
            if not record_id:
                raise RecordError.one("MISSING_ARGUMENT", "Id not specified in an update call")
            if normalize_id(record_id) is None:
                raise RecordError.one("MALFORMED_ID", f"malformed id {record_id}")
            return normalize_id(record_id) or record_id, self.store.update(obj.name, record_id, data, ctx)
        return op

    def _run_collection(self, ctx: WriteContext, ops: Sequence[Callable[[], tuple[Any, list[Change]]]],
                        all_or_none: bool, failed_id: Sequence[str] | None = None,
                        upsert: bool = False) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        published: list[Change] = []
        with self.lock, self.store.journal() as outer:
            for index, op in enumerate(ops):
                try:
                    with self.store.journal():
                        outcome, changes = op()
                except RecordError as exc:
                    result: dict[str, Any] = {"success": False, "errors": [e.item() for e in exc.errors]}
                    if failed_id is not None:
                        result = {"id": normalize_id(failed_id[index]) or failed_id[index], **result}
                    if upsert:
                        result["created"] = False
                    results.append(result)
                    continue
                except MultipleMatchesError as exc:
                    results.append({"success": False, "errors": [SfError(
                        "DUPLICATE_EXTERNAL_ID",
                        f"HubSpot_Deal_Id__c: more than one record found for external id field: {exc.ids}",
                    ).item()], **({"created": False} if upsert else {})})
                    continue
                if upsert:
                    record_id, created = outcome
                    results.append({"id": record_id, "success": True, "errors": [], "created": created})
                else:
                    results.append({"id": outcome, "success": True, "errors": []})
                published.extend(changes)
            if all_or_none and any(not r["success"] for r in results):
                outer.rollback()
                published = []
                for result in results:
                    if result["success"]:
                        result.pop("id", None)
                        result["success"] = False
                        result["errors"] = [_ROLLED_BACK.item()]
                        if upsert:
                            result["created"] = False
            self._publish(published, ctx.change_origin)
        return results

    def collections_upsert(self, request: Request, identity: Identity | None, version: str, sobject: str,
                           ext_field: str) -> Response:
        def handler(who: Identity) -> Response:
            obj = self._resolve_type(sobject)
            fdef = obj.field(ext_field)
            if fdef is None or not (fdef.external_id or fdef.name == "Id"):
                raise ApiError(400, "INVALID_FIELD",
                               f"Field name provided, {ext_field} is not an External ID or indexed field for "
                               f"{obj.name}")
            ctx = self._context(request, who, version)
            records, all_or_none = _collection_body(self._json_body(request))
            _check_collection_size(len(records))
            seen: Counter[str] = Counter(
                str(r.get(fdef.name)).lower() for r in records if isinstance(r, dict) and r.get(fdef.name) is not None
            )
            ops = [self._upsert_op(obj, fdef, record, ctx, seen) for record in records]
            return json_response(self._run_collection(ctx, ops, all_or_none, upsert=True))
        return self._api(request, identity, version, handler)

    def _upsert_op(self, obj: ObjectDef, fdef: FieldDef, record: Any, ctx: WriteContext,
                   seen: Counter[str]) -> Callable[[], tuple[tuple[str, bool], list[Change]]]:
        def op() -> tuple[tuple[str, bool], list[Change]]:
            if not isinstance(record, dict):
                raise RecordError.one("JSON_PARSER_ERROR", "Each record must be a JSON object")
            type_name = (record.get("attributes") or {}).get("type")
            if type_name is None or str(type_name).lower() != obj.name.lower():
                raise RecordError.one("INVALID_TYPE", f"This request only supports records of type {obj.name}")
            data = {k: v for k, v in record.items() if k != "attributes"}
            value = data.pop(fdef.name, None)
            if value is None or value == "":
                raise RecordError.one("MISSING_ARGUMENT", f"{fdef.name} not specified", (fdef.name,))
            if seen[str(value).lower()] > 1:
                raise RecordError.one("DUPLICATE_EXTERNAL_ID", f"Duplicate external id specified: {value}",
                                      (fdef.name,))
            record_id, created, changes = self.store.upsert(obj.name, fdef.name, str(value), data, ctx)
            return (record_id, created), changes
        return op

    def collections_retrieve(self, request: Request, identity: Identity | None, version: str,
                             sobject: str) -> Response:
        def handler(who: Identity) -> Response:
            obj = self._resolve_type(sobject)
            if request.method == "POST":
                body = self._json_body(request)
                if not isinstance(body, dict):
                    raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
                ids, fields = body.get("ids") or [], body.get("fields") or []
                if not isinstance(ids, list) or not isinstance(fields, list):
                    raise ApiError(400, "JSON_PARSER_ERROR", "ids and fields must be lists")
                raw_fields: str | None = ",".join(str(f) for f in fields) or None
            else:
                ids = [i for i in request.args.get("ids", "").split(",") if i]
                raw_fields = request.args.get("fields")
            if not ids:
                raise ApiError(400, "MISSING_ARGUMENT", "ids must be specified")
            if not raw_fields:
                raise ApiError(400, "MISSING_ARGUMENT", "fields must be specified")
            if len(ids) > RETRIEVE_LIMIT:
                raise ApiError(400, "EXCEEDED_ID_LIMIT",
                               f"record limit reached. cannot submit more than {RETRIEVE_LIMIT} records into this call")
            names = self._field_list(obj, raw_fields)
            out: list[dict[str, Any] | None] = []
            with self.lock:
                for raw_id in ids:
                    canonical = normalize_id(str(raw_id))
                    rec = self.store.live(canonical)
                    if rec is None or rec["Id"][:3] != obj.key_prefix:
                        out.append(None)
                    else:
                        out.append(self._render_record(obj, rec, version, names))
            return json_response(out)
        return self._api(request, identity, version, handler)

    # --- endpoints: UI API -----------------------------------------------------------------------
    def _ui_record_type(self, obj: ObjectDef, record_type_id: str) -> str:
        canonical = normalize_id(record_type_id)
        if canonical == MASTER_RECORD_TYPE_ID:
            return canonical
        rt = self.store.tables["RecordType"].rows.get(canonical or "")
        if rt is None or rt.get("SobjectType") != obj.name:
            raise ApiError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
        return str(rt["Id"])

    def _ui_field_values(self, obj: ObjectDef, fdef: FieldDef, record_type_id: str, version: str) -> dict[str, Any]:
        values: list[dict[str, Any]] = []
        for value, label in self.store.picklist_values(obj.name, fdef.name, record_type_id):
            attributes = None
            if obj.name == "Opportunity" and fdef.name == "StageName":
                stage = self.store.stages[value]
                attributes = {
                    "closed": bool(stage.get("IsClosed")),
                    "defaultProbability": stage.get("DefaultProbability"),
                    "forecastCategoryName": FORECAST_CATEGORY_LABELS.get(stage.get("ForecastCategory") or "",
                                                                         stage.get("ForecastCategoryName")),
                    "picklistAtrributesValueType": "OpportunityStage",
                    "won": bool(stage.get("IsWon")),
                }
            values.append({"attributes": attributes, "label": label, "validFor": [], "value": value})
        block: dict[str, Any] = {
            "controllerValues": {},
            "defaultValue": None,
            "url": f"/services/data/v{version}/ui-api/object-info/{obj.name}/picklist-values/{record_type_id}/"
                   f"{fdef.name}",
            "values": values,
        }
        block["eTag"] = hashlib.md5(json.dumps(block, sort_keys=True).encode(), usedforsecurity=False).hexdigest()
        return block

    def ui_picklists(self, request: Request, identity: Identity | None, version: str, sobject: str,
                     record_type_id: str) -> Response:
        def handler(who: Identity) -> Response:
            with self.lock:
                obj = self._resolve_type(sobject)
                rt = self._ui_record_type(obj, record_type_id)
                fields = {f.name: self._ui_field_values(obj, f, rt, version)
                          for f in obj.fields.values() if f.type == "picklist"}
            etag = hashlib.md5(json.dumps(fields, sort_keys=True).encode(), usedforsecurity=False).hexdigest()
            return json_response({"eTag": etag, "picklistFieldValues": fields})
        return self._api(request, identity, version, handler)

    def ui_picklist_field(self, request: Request, identity: Identity | None, version: str, sobject: str,
                          record_type_id: str, field_name: str) -> Response:
        def handler(who: Identity) -> Response:
            with self.lock:
                obj = self._resolve_type(sobject)
                rt = self._ui_record_type(obj, record_type_id)
                fdef = obj.field(field_name)
                if fdef is None or fdef.type != "picklist":
                    raise ApiError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
                return json_response(self._ui_field_values(obj, fdef, rt, version))
        return self._api(request, identity, version, handler)

    # --- endpoints: Bulk API 2.0 -----------------------------------------------------------------
    def bulk_jobs(self, request: Request, identity: Identity | None, version: str) -> Response:
        def handler(who: Identity) -> Response:
            with self.lock:
                if request.method == "GET":
                    return json_response(self.bulk.list())
                job = self.bulk.create(self._json_body(request), who.user_id, version)
                return json_response(job.info(full=False))
        return self._api(request, identity, version, handler)

    def bulk_job(self, request: Request, identity: Identity | None, version: str, job_id: str) -> Response:
        def handler(who: Identity) -> Response:
            with self.lock:
                if request.method == "GET":
                    return json_response(self.bulk.poll(job_id))
                if request.method == "PATCH":
                    return json_response(self.bulk.abort(job_id, self._json_body(request)))
                self.bulk.delete(job_id)
                return Response(status=204)
        return self._api(request, identity, version, handler)

    def bulk_results(self, request: Request, identity: Identity | None, version: str, job_id: str) -> Response:
        def handler(who: Identity) -> Response:
            with self.lock:
                text, locator, count = self.bulk.results(job_id, request.args.get("locator"),
                                                         request.args.get("maxRecords"), version)
            return Response(text, status=200, mimetype="text/csv", headers={
                "Sforce-Locator": locator, "Sforce-NumberOfRecords": str(count),
            })
        return self._api(request, identity, version, handler)

    def ingest_jobs(self, request: Request, identity: Identity | None, version: str) -> Response:
        def handler(who: Identity) -> Response:
            with self.lock:
                if request.method == "GET":
                    return json_response(self.ingest.list())
                job = self.ingest.create(self._json_body(request), who.user_id, version)
                return json_response(job.info(full=False))
        return self._api(request, identity, version, handler)

    def ingest_job(self, request: Request, identity: Identity | None, version: str, job_id: str) -> Response:
        def handler(who: Identity) -> Response:
            with self.lock:
                if request.method == "GET":
                    return json_response(self.ingest.poll(job_id))
                if request.method == "PATCH":
                    ctx = self._context(request, who, version)
                    job = self.ingest.set_state(job_id, self._json_body(request),
                                                lambda operation, obj, rows: self._ingest(ctx, operation, obj, rows))
                    return json_response(job.info(full=False))
                self.ingest.delete(job_id)
                return Response(status=204)
        return self._api(request, identity, version, handler)

    def ingest_upload(self, request: Request, identity: Identity | None, version: str, job_id: str) -> Response:
        def handler(who: Identity) -> Response:
            with self.lock:
                self.ingest.upload(job_id, request.get_data(), request.headers.get("Content-Type", ""))
            return Response(status=201)
        return self._api(request, identity, version, handler)

    def ingest_results(self, request: Request, identity: Identity | None, version: str, job_id: str,
                       kind: str) -> Response:
        def handler(who: Identity) -> Response:
            with self.lock:
                text = self.ingest.results(job_id, kind)
            return Response(text, status=200, mimetype="text/csv")
        return self._api(request, identity, version, handler)

    def _ingest(self, ctx: WriteContext, operation: str, obj: ObjectDef,
                rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """An ingest job's rows, each written as one record of a collection request (not all-or-none)."""
        if operation == "delete":
            ids = [str(row.get("Id", "")) for row in rows]
            return self._run_collection(ctx, [self._delete_op(record_id, ctx) for record_id in ids], False,
                                        failed_id=ids)
        method = "POST" if operation == "insert" else "PATCH"
        return self._run_collection(ctx, [self._collection_op(method, {"attributes": {"type": obj.name}, **row}, ctx)
                                          for row in rows], False, failed_id=[str(row.get("Id", "")) for row in rows])

    # --- endpoints: OAuth ------------------------------------------------------------------------
    def oauth_token(self, request: Request, identity: Identity | None) -> Response:
        self._learn_instance_url(request)
        form = request.form
        grant = form.get("grant_type", "")
        if grant == "client_credentials":
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
            auth = request.authorization
            if auth is not None and auth.type == "basic":
                client_id, client_secret = auth.username, auth.password
            if not (client_id and client_secret and hmac.compare_digest(client_id, self.client_id)
                    and hmac.compare_digest(client_secret, self.client_secret)):
                return _oauth_error("invalid_client", "invalid client credentials")
            return self._token_response()
        if grant == _JWT_GRANT:
            error = self._check_jwt(form.get("assertion", ""))
            if error is not None:
                return _oauth_error(*error)
            return self._token_response()
        return _oauth_error("unsupported_grant_type", "grant type not supported")

    def _check_jwt(self, assertion: str) -> tuple[str, str] | None:
        parts = assertion.split(".")
        if len(parts) != 3:
            return "invalid_grant", "invalid assertion"
        try:
            header = json.loads(_b64url(parts[0]))
            claims = json.loads(_b64url(parts[1]))
            signature = _b64url(parts[2])
        except (ValueError, binascii.Error):
            return "invalid_grant", "invalid assertion"
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return "invalid_grant", "invalid assertion"
        if claims.get("iss") != self.client_id:
            return "invalid_client_id", "client identifier invalid"
        if str(claims.get("sub", "")).lower() != self.integration_username:
            return "invalid_grant", "user hasn't approved this consumer"
        if claims.get("aud") not in (*_JWT_AUDIENCES, self.instance_url):
            return "invalid_grant", "audience is invalid"
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp < time.time():
            return "invalid_grant", "expired assertion"
        signed = f"{parts[0]}.{parts[1]}".encode()
        if self.jwt_public_key and (header.get("alg") != "RS256"
                                    or not _verify_rs256(self.jwt_public_key, signed, signature)):
            return "invalid_grant", "invalid assertion"
        return None

    def _token_response(self) -> Response:
        issued_at = str(int(time.time() * 1000))
        identity_url = f"https://login.salesforce.com/id/{self.org_id}/{self.integration_user_id}"
        signature = base64.b64encode(hmac.new(self.client_secret.encode(), (identity_url + issued_at).encode(),
                                              hashlib.sha256).digest()).decode()
        return json_response({
            "access_token": self.integration_token,
            "signature": signature,
            "scope": "api",
            "instance_url": self.instance_url,
            "id": identity_url,
            "token_type": "Bearer",
            "issued_at": issued_at,
        })


# --- helpers --------------------------------------------------------------------------------------
def _positive_int(key: str, value: Any, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise ValueError(f"{key} must be a {'non-negative' if allow_zero else 'positive'} integer")
    return value


def _call_option(header: str, name: str) -> str | None:
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == name.lower() and value:
            return value.strip()
    return None


def _change_origin(api: str, version: str, client: str | None) -> str:
    origin = f"com/salesforce/api/{api}/{version}"
    return f"{origin};client={client}" if client else origin


def _check_collection_size(count: int) -> None:
    if count > COLLECTION_LIMIT:
        raise ApiError(400, "EXCEEDED_ID_LIMIT",
                       f"record limit reached. cannot submit more than {COLLECTION_LIMIT} records into this call")


def _collection_body(body: Any) -> tuple[list[Any], bool]:
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be an object with a records list")
    all_or_none = body.get("allOrNone", False)
    if not isinstance(all_or_none, bool):
        raise ApiError(400, "JSON_PARSER_ERROR", "allOrNone must be a boolean")
    return body["records"], all_or_none


def _oauth_error(error: str, description: str) -> Response:
    return json_response({"error": error, "error_description": description}, status=400)


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _verify_rs256(pem: str, message: bytes, signature: bytes) -> bool:
    data = pem.encode()
    try:
        key: Any
        if b"CERTIFICATE" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError:
        return False
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


__all__ = ["SalesforceEmulator"]
