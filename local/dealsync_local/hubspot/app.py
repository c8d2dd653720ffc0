"""The HubSpot emulator: the CRM API subset dealsync uses, over real HTTPS, with HubSpot's status
codes, error bodies, limits and headers, plus control endpoints under ``/__emulator/``."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from dealsync_local.emulator import EmulatorApp, Identity, json_response
from dealsync_local.hubspot import search
from dealsync_local.hubspot.associations import ASSOCIATION_TYPES, DEFAULT_TYPE, types_between
from dealsync_local.hubspot.common import (
    DEALS,
    HubSpotError,
    ObjectType,
    Source,
    iso,
    now_ms,
    object_type,
)
from dealsync_local.hubspot.pipelines import PIPELINE_LIMITS
from dealsync_local.hubspot.ratelimit import TIER_LIMITS, RateLimiter
from dealsync_local.hubspot.store import BatchResult, Record, Store
from dealsync_local.hubspot.webhooks import (
    DEFAULT_SUBSCRIPTIONS,
    WebhookDispatcher,
    WebhookSettings,
    parse_subscriptions,
)

log = logging.getLogger(__name__)

BATCH_LIMIT = 100
HISTORY_BATCH_LIMIT = 50
ASSOCIATION_READ_LIMIT = 1_000
ASSOCIATION_WRITE_LIMIT = 2_000
AUTH_MESSAGE = ("Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find "
                "more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview")

DEFAULT_INTEGRATION_TOKEN = "pat-na1-dealsync-integration"
DEFAULT_PERSON_TOKEN = "pat-na1-crm-user"
DEFAULT_CLIENT_SECRET = "local-hubspot-client-secret"

Handler = Callable[..., Any]
Reply = tuple[int, Any] | Response

DEFAULT_CONFIG: dict[str, Any] = {
    "tier": "professional",
    "pipeline_limit": None,
    "rate_limits": True,
    "burst_limit": None,
    "daily_limit": None,
    "search_per_second": 5,
    "readonly_rollup_properties": False,
    "closedate_type": "datetime",
    "webhook_target_url": None,
    "webhook_ca_file": None,
    "signature_version": 3,
    "webhook_subscriptions": list(DEFAULT_SUBSCRIPTIONS),
    "webhook_batch_size": 100,
    "webhook_flush_ms": 100,
    "webhook_max_retries": 10,
    "webhook_backoff_seconds": 1.0,
    "webhook_backoff_max_seconds": 600.0,
    "webhook_timeout_seconds": 5.0,
    "webhook_shuffle": False,
    "webhook_duplicate_rate": 0.0,
    "webhook_seed": None,
    "webhook_property_change_on_create": True,
}
CONFIG_ALIASES = {"subscriptions": "webhook_subscriptions", "shuffle": "webhook_shuffle",
                  "duplicate_rate": "webhook_duplicate_rate", "target_url": "webhook_target_url"}
IDENTITY_KEYS = ("integration_token", "person_token", "person_user_id", "app_id", "portal_id", "client_secret")


def api(*, search_limit: bool = False) -> Callable[[Handler], Handler]:
    """Mark a route handler: authentication, rate limits and HubSpot's error bodies around it."""

    def decorate(fn: Handler) -> Handler:
        @functools.wraps(fn)
        def wrapper(self: HubSpotEmulator, request: Request, identity: Identity | None, **kwargs: Any) -> Response:
            return self._dispatch(fn, request, identity, kwargs, search_limit)

        return wrapper

    return decorate


def _rules() -> Map:
    r = Rule
    obj = "/crm/v3/objects/<objtype>"
    v4 = "/crm/v4/objects/<objtype>/<oid>/associations"
    assoc = "/crm/v4/associations/<objtype>/<totype>"
    pipes = "/crm/v3/pipelines/<objtype>"
    props = "/crm/v3/properties/<objtype>"
    return Map([
        r(obj, endpoint="objects_list", methods=["GET"]),
        r(obj, endpoint="objects_create", methods=["POST"]),
        r(f"{obj}/batch/<any(read, create, update, upsert, archive):op>", endpoint="objects_batch", methods=["POST"]),
        r(f"{obj}/search", endpoint="objects_search", methods=["POST"]),
        r(f"{obj}/merge", endpoint="objects_merge", methods=["POST"]),
        r(f"{obj}/<oid>", endpoint="objects_get", methods=["GET"]),
        r(f"{obj}/<oid>", endpoint="objects_update", methods=["PATCH"]),
        r(f"{obj}/<oid>", endpoint="objects_archive", methods=["DELETE"]),
        r(f"{v4}/default/<totype>/<toid>", endpoint="assoc_create_default", methods=["PUT"]),
        r(f"{v4}/<totype>/<toid>", endpoint="assoc_create", methods=["PUT"]),
        r(f"{v4}/<totype>/<toid>", endpoint="assoc_delete", methods=["DELETE"]),
        r(f"{v4}/<totype>", endpoint="assoc_list", methods=["GET"]),
        r(f"{assoc}/batch/<any(create, read, archive):op>", endpoint="assoc_batch", methods=["POST"]),
        r(f"{assoc}/batch/associate/default", endpoint="assoc_batch_default", methods=["POST"]),
        r(f"{assoc}/batch/labels/archive", endpoint="assoc_batch_labels_archive", methods=["POST"]),
        r(f"{assoc}/labels", endpoint="assoc_labels", methods=["GET"]),
        r("/crm/associations/v4/<objtype>/<totype>/labels", endpoint="assoc_labels", methods=["GET"]),
        r(pipes, endpoint="pipelines_list", methods=["GET"]),
        r(pipes, endpoint="pipelines_create", methods=["POST"]),
        r(f"{pipes}/<pid>", endpoint="pipeline_get", methods=["GET"]),
        r(f"{pipes}/<pid>", endpoint="pipeline_replace", methods=["PUT"]),
        r(f"{pipes}/<pid>", endpoint="pipeline_patch", methods=["PATCH"]),
        r(f"{pipes}/<pid>", endpoint="pipeline_delete", methods=["DELETE"]),
        r(f"{pipes}/<pid>/stages", endpoint="stages_list", methods=["GET"]),
        r(f"{pipes}/<pid>/stages", endpoint="stage_create", methods=["POST"]),
        r(f"{pipes}/<pid>/stages/<sid>", endpoint="stage_get", methods=["GET"]),
        r(f"{pipes}/<pid>/stages/<sid>", endpoint="stage_replace", methods=["PUT"]),
        r(f"{pipes}/<pid>/stages/<sid>", endpoint="stage_patch", methods=["PATCH"]),
        r(f"{pipes}/<pid>/stages/<sid>", endpoint="stage_delete", methods=["DELETE"]),
        r("/crm/v3/limits/pipelines", endpoint="limits_pipelines", methods=["GET"]),
        r("/crm/v3/owners", endpoint="owners_list", methods=["GET"]),
        r("/crm/v3/owners/<owner_id>", endpoint="owner_get", methods=["GET"]),
        r(props, endpoint="props_list", methods=["GET"]),
        r(props, endpoint="prop_create", methods=["POST"]),
        r(f"{props}/batch/<any(read, create, archive):op>", endpoint="props_batch", methods=["POST"]),
        r(f"{props}/groups", endpoint="groups_list", methods=["GET"]),
        r(f"{props}/groups", endpoint="group_create", methods=["POST"]),
        r(f"{props}/groups/<name>", endpoint="group_get", methods=["GET"]),
        r(f"{props}/groups/<name>", endpoint="group_update", methods=["PATCH"]),
        r(f"{props}/groups/<name>", endpoint="group_archive", methods=["DELETE"]),
        r(f"{props}/<name>", endpoint="prop_get", methods=["GET"]),
        r(f"{props}/<name>", endpoint="prop_update", methods=["PATCH"]),
        r(f"{props}/<name>", endpoint="prop_archive", methods=["DELETE"]),
    ], strict_slashes=False)


# --- request helpers -----------------------------------------------------------------------------


def _names(request: Request, key: str) -> list[str] | None:
    """A multi-valued query parameter (repeated, as the SDK sends, or comma separated)."""
    values = [part.strip() for raw in request.args.getlist(key) for part in raw.split(",") if part.strip()]
    return values or None


def _flag(request: Request, key: str, default: bool = False) -> bool:
    value = request.args.get(key)
    return default if value is None else value.strip().lower() == "true"


def _integer(request: Request, key: str, default: int) -> int:
    value = request.args.get(key)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise HubSpotError(400, f"Invalid value for {key}: {value!r}", "VALIDATION_ERROR") from None


def _body(request: Request) -> Any:
    if not request.get_data():
        return None
    try:
        return request.get_json(force=True)
    except Exception as exc:  # werkzeug raises BadRequest with the decoder's message
        raise HubSpotError(400, f"Invalid input JSON: {getattr(exc, 'description', exc)}", "VALIDATION_ERROR") from None


def _inputs(body: Any, limit: int = BATCH_LIMIT) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise HubSpotError(400, "Invalid input JSON: the request needs an 'inputs' list", "VALIDATION_ERROR")
    inputs: list[Any] = body["inputs"]
    if len(inputs) > limit:
        raise HubSpotError(400, f"The maximum number of inputs supported in a batch is {limit}. Please reduce the "
                                "number of items and try again", "VALIDATION_ERROR",
                           context={"maxInputs": [str(limit)], "inputs": [str(len(inputs))]})
    return inputs


def _batch_body(results: list[Any], errors: list[dict[str, Any]], started: int) -> dict[str, Any]:
    body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": iso(started),
                            "completedAt": iso(now_ms())}
    if errors:
        body["numErrors"] = len(errors)
        body["errors"] = errors
    return body


def _deals_only(objtype: str) -> ObjectType:
    kind = object_type(objtype)
    if kind is not DEALS:
        raise HubSpotError(400, f"Pipelines of {kind.name} are not emulated; only deal pipelines are",
                           "VALIDATION_ERROR")
    return kind


class HubSpotEmulator(EmulatorApp):
    """A HubSpot portal in memory.

    Two identities: the integration (dealsync's private app, ``integration_token``; its writes are
    ``INTEGRATION`` with the app id as source id) and a person using the CRM (``person_token``;
    ``CRM_UI``, ``userId:N``). Faults and rate limits apply to the integration only.
    """

    name = "hubspot"

    def __init__(self, *, integration_token: str = DEFAULT_INTEGRATION_TOKEN,
                 person_token: str = DEFAULT_PERSON_TOKEN, person_user_id: int = 4_242_424,
                 app_id: int = 3_141_592, portal_id: int = 62_515_001,
                 client_secret: str = DEFAULT_CLIENT_SECRET, **config: Any) -> None:
        super().__init__()
        self.url_map = _rules()
        self.integration_token = integration_token
        self.person_token = person_token
        self.person_user_id = int(person_user_id)
        self.app_id = int(app_id)
        self.portal_id = int(portal_id)
        self.client_secret = client_secret
        self.store = Store(portal_id=self.portal_id, app_id=self.app_id)
        self.limiter = RateLimiter()
        self.webhooks = WebhookDispatcher(
            WebhookSettings(app_id=self.app_id, portal_id=self.portal_id, client_secret=client_secret),
            property_type=self._property_type)
        self.store.listener = self.webhooks.publish
        self.store.unchanged_listener = self._unchanged_write
        self.config: dict[str, Any] = dict(DEFAULT_CONFIG)
        self._initial_config = {**DEFAULT_CONFIG, **{CONFIG_ALIASES.get(k, k): v for k, v in config.items()},
                                **{k: getattr(self, k) for k in IDENTITY_KEYS}}
        self.apply_config(self._initial_config)

    # --- EmulatorApp -------------------------------------------------------------------------------
    def authenticate(self, request: Request, endpoint: str) -> Identity | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        if token == self.integration_token:
            return Identity("integration", str(self.app_id), token)
        if token == self.person_token:
            return Identity("person", str(self.person_user_id), token)
        return None

    def error_response(self, status: int, message: str) -> Response:
        return json_response(HubSpotError(status, message).body(), status=status)

    def reset_state(self) -> None:
        with self.store.lock:
            self.store.reset()
            self.store.set_readonly_rollups(bool(self.config["readonly_rollup_properties"]))
            self.store.set_closedate_type(str(self.config["closedate_type"]))
        self.limiter.reset()
        self.webhooks.reset()

    def reset(self, *, config: bool = True) -> None:
        """Forget all records, counters, faults and pending webhooks; with ``config``, also restore
        the configuration the emulator was constructed with."""
        with self.lock:
            self.clear_counters()
            self.faults = type(self.faults)()
            if config:
                self.config = dict(DEFAULT_CONFIG)
                self.apply_config(self._initial_config)
            self.reset_state()

    def get_config(self) -> dict[str, Any]:
        limits = self.limiter.snapshot()
        return {**self.config, **{k: getattr(self, k) for k in IDENTITY_KEYS},
                "effective_pipeline_limit": self.store.pipeline_limit,
                "effective_burst_limit": limits["burst_max"], "effective_daily_limit": limits["daily_max"]}

    def apply_config(self, changes: Mapping[str, Any]) -> None:
        """Apply config keys (see ``DEFAULT_CONFIG`` and the identity keys); all or nothing."""
        changes = {CONFIG_ALIASES.get(k, k): v for k, v in changes.items()}
        unknown = set(changes) - set(DEFAULT_CONFIG) - set(IDENTITY_KEYS)
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        identity = {k: getattr(self, k) for k in IDENTITY_KEYS}
        for key in IDENTITY_KEYS:
            if key in changes:
                value = changes.pop(key)
                identity[key] = int(value) if key in ("person_user_id", "app_id", "portal_id") else str(value)
        cfg = {**self.config, **changes}
        if cfg["tier"] not in TIER_LIMITS:
            raise ValueError(f"tier must be one of {sorted(TIER_LIMITS)}")
        if int(cfg["signature_version"]) not in (1, 2, 3):
            raise ValueError("signature_version must be 1, 2 or 3")
        if cfg["closedate_type"] not in ("date", "datetime"):
            raise ValueError("closedate_type must be 'date' or 'datetime'")
        if not 0.0 <= float(cfg["webhook_duplicate_rate"]) <= 1.0:
            raise ValueError("webhook_duplicate_rate must be between 0 and 1")
        # Everything derived before anything changes, so a bad value leaves the emulator as it was.
        optional_int = {k: None if cfg[k] is None else int(cfg[k])
                        for k in ("burst_limit", "daily_limit", "pipeline_limit")}
        search_per_second = int(cfg["search_per_second"])
        webhook: dict[str, Any] = {
            "app_id": identity["app_id"], "portal_id": identity["portal_id"],
            "client_secret": identity["client_secret"], "target_url": cfg["webhook_target_url"] or None,
            "ca_file": cfg["webhook_ca_file"] or None, "signature_version": int(cfg["signature_version"]),
            "batch_size": int(cfg["webhook_batch_size"]), "flush_ms": float(cfg["webhook_flush_ms"]),
            "max_retries": int(cfg["webhook_max_retries"]), "backoff_seconds": float(cfg["webhook_backoff_seconds"]),
            "backoff_max_seconds": float(cfg["webhook_backoff_max_seconds"]),
            "timeout_seconds": float(cfg["webhook_timeout_seconds"]), "shuffle": bool(cfg["webhook_shuffle"]),
            "duplicate_rate": float(cfg["webhook_duplicate_rate"]), "seed": cfg["webhook_seed"],
            "property_change_on_create": bool(cfg["webhook_property_change_on_create"]),
        }
        if "webhook_subscriptions" in changes:
            webhook["subscriptions"] = parse_subscriptions(changes["webhook_subscriptions"] or [])
        for key, value in identity.items():
            setattr(self, key, value)
        self.config = cfg
        self.limiter.tier = cfg["tier"]
        self.limiter.enabled = bool(cfg["rate_limits"])
        self.limiter.burst_override = optional_int["burst_limit"]
        self.limiter.daily_override = optional_int["daily_limit"]
        self.limiter.search_per_second = search_per_second
        with self.store.lock:
            self.store.portal_id = self.portal_id
            self.store.app_id = self.app_id
            pipeline_limit = optional_int["pipeline_limit"]
            self.store.pipeline_limit = pipeline_limit if pipeline_limit is not None else PIPELINE_LIMITS[cfg["tier"]]
            self.store.set_readonly_rollups(bool(cfg["readonly_rollup_properties"]))
            self.store.set_closedate_type(str(cfg["closedate_type"]))
        self.webhooks.configure(**webhook)

    # --- Python API for tests and seeding -------------------------------------------------------------
    @property
    def person_source(self) -> Source:
        return Source.person(self.person_user_id)

    @property
    def integration_source(self) -> Source:
        return Source.integration(self.app_id)

    def load(self, data: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, list[str]]:
        """Seed owners, pipelines, companies, contacts and deals without webhooks; returns their ids."""
        with self.store.lock:
            return self.store.load({**(data or {}), **kwargs})

    def restore(self, record_id: str | int, object_type_name: str = "deals") -> dict[str, Any]:
        """Restore an archived record, as a person does from the recycling bin (not possible via the API)."""
        kind = object_type(object_type_name)
        with self.store.lock:
            record = self.store.restore(kind, str(record_id), self.person_source)
            return self.store.render(kind, record)

    def merge(self, primary_id: str | int, merged_id: str | int, object_type_name: str = "deals") -> dict[str, Any]:
        """Merge two records as a person does in the UI; the primary survives with its id."""
        kind = object_type(object_type_name)
        with self.store.lock:
            record = self.store.merge(kind, str(primary_id), str(merged_id), self.person_source)
            return self.store.render(kind, record, [*kind.default_properties, "hs_merged_object_ids"])

    def add_owner(self, email: str, first_name: str = "", last_name: str = "", **extra: Any) -> dict[str, Any]:
        with self.store.lock:
            return self.store.add_owner({"email": email, "firstName": first_name, "lastName": last_name,
                                         **extra}).to_json()

    def flush_webhooks(self, timeout: float = 10.0) -> bool:
        return self.webhooks.flush(timeout)

    def close(self) -> None:
        self.webhooks.close()

    def _unchanged_write(self, kind: ObjectType, record_id: int, source: Source, bounced: bool) -> None:
        integration = source.change_source == "INTEGRATION"
        self.count_unchanged_write("integration" if integration else "person", kind.name, str(record_id),
                                   echo=integration and bounced)

    def _property_type(self, kind: ObjectType, name: str) -> str | None:
        prop = self.store.schema(kind).get(name)
        return prop.type if prop else None

    # --- control endpoints ------------------------------------------------------------------------------
    def _control(self, request: Request) -> Response:
        action = request.path.removeprefix("/__emulator/").strip("/")
        try:
            body = request.get_json(silent=True) if request.method == "POST" else None
            body = body if isinstance(body, dict) else {}
            if action == "load" and request.method == "POST":
                return json_response(self.load(body))
            if action == "restore" and request.method == "POST":
                return json_response(self.restore(body["id"], body.get("objectType", "deals")))
            if action == "merge" and request.method == "POST":
                return json_response(self.merge(body["primary"], body["merged"], body.get("objectType", "deals")))
            if action == "owners" and request.method == "POST":
                owners = body.get("owners") or [body]
                return json_response({"results": [self.add_owner(**o) for o in owners]})
            if action == "webhooks":
                return json_response(self.webhooks.stats())
            if action == "webhooks/events":
                return json_response({"results": list(self.webhooks.published)})
            if action == "webhooks/flush" and request.method == "POST":
                return json_response({"idle": self.webhooks.flush(float(body.get("timeout", 10)))})
            if action == "ratelimits":
                return json_response(self.limiter.snapshot())
            if action == "ratelimits/daily" and request.method == "POST":
                self.limiter.reset_daily(int(body.get("daily_used", 0)))
                return json_response(self.limiter.snapshot())
        except HubSpotError as exc:
            return json_response(exc.body(), status=exc.status)
        except (ValueError, TypeError, KeyError) as exc:
            return json_response({"error": f"{type(exc).__name__}: {exc}"}, status=400)
        return super()._control(request)

    # --- dispatch ----------------------------------------------------------------------------------------
    def _dispatch(self, fn: Handler, request: Request, identity: Identity | None, kwargs: dict[str, Any],
                  search_limit: bool) -> Response:
        if identity is None:
            return json_response(HubSpotError(401, AUTH_MESSAGE, "INVALID_AUTHENTICATION").body(), status=401)
        headers: dict[str, str] = {}
        if identity.is_integration:
            decision = self.limiter.check(identity.token, search=search_limit)
            if not decision.allowed:
                self.count_fault("rate limit 429")
                return json_response(decision.body, status=429, headers=decision.headers)
            headers = decision.headers
        try:
            with self.store.lock:
                reply: Reply = fn(self, request, identity, **kwargs)
        except HubSpotError as exc:
            return json_response(exc.body(), status=exc.status, headers=headers)
        except Exception:
            log.exception("hubspot emulator failed on %s %s", request.method, request.path)
            error = HubSpotError(500, "internal error", "INTERNAL_ERROR")
            return json_response(error.body(), status=500, headers=headers)
        if isinstance(reply, Response):
            response = reply
            response.headers.update(headers)
            return response
        status, body = reply
        if status == 204:
            return Response(status=204, headers=headers)
        return json_response(body, status=status, headers=headers)

    def _source(self, identity: Identity) -> Source:
        return self.integration_source if identity.is_integration else self.person_source

    def _render_many(self, kind: ObjectType, records: list[Record], request: Request | None = None,
                     properties: list[str] | None = None, history: list[str] | None = None) -> list[dict[str, Any]]:
        associations = None
        if request is not None:
            names = _names(request, "associations")
            associations = [object_type(n) for n in names] if names else None
        return [self.store.render(kind, r, properties, history, associations) for r in records]

    def _written(self, kind: ObjectType, outcome: BatchResult, inputs: list[Any],
                 with_new: bool) -> list[dict[str, Any]]:
        written: set[str] = set()
        for item in inputs:
            if isinstance(item, dict) and isinstance(item.get("properties"), dict):
                written.update(item["properties"])
            if isinstance(item, dict) and item.get("idProperty"):
                written.add(str(item["idProperty"]))
        names = sorted(set(kind.default_properties) | written)
        return [self.store.render(kind, record, names, new=new if with_new else None, trace_id=trace)
                for record, trace, new in outcome.results]

    # --- objects -------------------------------------------------------------------------------------------
    @api()
    def objects_list(self, request: Request, identity: Identity, objtype: str) -> Reply:
        kind = object_type(objtype)
        history = _names(request, "propertiesWithHistory")
        limit = max(1, min(_integer(request, "limit", 10), HISTORY_BATCH_LIMIT if history else BATCH_LIMIT))
        records, next_after = self.store.page(kind, request.args.get("after"), limit, _flag(request, "archived"))
        body: dict[str, Any] = {"results": self._render_many(kind, records, request, _names(request, "properties"),
                                                             history)}
        if next_after:
            body["paging"] = {"next": {"after": next_after,
                                       "link": f"{request.host_url.rstrip('/')}{request.path}?after={next_after}"}}
        return 200, body

    @api()
    def objects_get(self, request: Request, identity: Identity, objtype: str, oid: str) -> Reply:
        kind = object_type(objtype)
        record = self.store.get(kind, oid, request.args.get("idProperty"), archived=_flag(request, "archived"))
        return 200, self._render_many(kind, [record], request, _names(request, "properties"),
                                      _names(request, "propertiesWithHistory"))[0]

    @api()
    def objects_create(self, request: Request, identity: Identity, objtype: str) -> Reply:
        kind = object_type(objtype)
        body = _body(request)
        if not isinstance(body, dict):
            raise HubSpotError(400, "Invalid input JSON: expected {\"properties\": {...}}", "VALIDATION_ERROR")
        record = self.store.create(kind, body.get("properties"), body.get("associations"), self._source(identity))
        names = sorted(set(kind.default_properties) | set(body.get("properties") or {}))
        return 201, self.store.render(kind, record, names)

    @api()
    def objects_update(self, request: Request, identity: Identity, objtype: str, oid: str) -> Reply:
        kind = object_type(objtype)
        body = _body(request)
        if not isinstance(body, dict):
            raise HubSpotError(400, "Invalid input JSON: expected {\"properties\": {...}}", "VALIDATION_ERROR")
        record = self.store.get(kind, oid, request.args.get("idProperty"))
        self.store.update(kind, record, body.get("properties"), self._source(identity))
        names = sorted(set(kind.default_properties) | set(body.get("properties") or {}))
        return 200, self.store.render(kind, record, names)

    @api()
    def objects_archive(self, request: Request, identity: Identity, objtype: str, oid: str) -> Reply:
        kind = object_type(objtype)
        record = self.store.find(kind, oid)
        if record is not None:  # HubSpot answers 204 for an id that is already gone
            self.store.archive(kind, record, self._source(identity))
        return 204, None

    @api()
    def objects_batch(self, request: Request, identity: Identity, objtype: str, op: str) -> Reply:
        kind = object_type(objtype)
        body = _body(request)
        started = now_ms()
        source = self._source(identity)
        if op == "read":
            inputs = _inputs(body)
            history = body.get("propertiesWithHistory") or None
            if history and len(inputs) > HISTORY_BATCH_LIMIT:
                raise HubSpotError(400, "The maximum number of inputs supported in a batch request for property "
                                        f"histories is {HISTORY_BATCH_LIMIT}. Please reduce the number of items and "
                                        "try again", "VALIDATION_ERROR")
            records, errors = self.store.batch_read(kind, inputs, body.get("idProperty") or None,
                                                    _flag(request, "archived"))
            results = self._render_many(kind, records, None, body.get("properties") or None, history)
            return (207 if errors else 200), _batch_body(results, errors, started)
        inputs = _inputs(body)
        if op == "archive":
            self.store.batch_archive(kind, inputs, source)
            return 204, None
        if op == "create":
            outcome = self.store.batch_create(kind, inputs, source)
            ok = 201
        elif op == "update":
            outcome = self.store.batch_update(kind, inputs, source)
            ok = 200
        else:
            outcome = self.store.batch_upsert(kind, inputs, source, request.args.get("idProperty"))
            ok = 200
        results = self._written(kind, outcome, inputs, with_new=op == "upsert")
        return (207 if outcome.errors else ok), _batch_body(results, outcome.errors, started)

    @api(search_limit=True)
    def objects_search(self, request: Request, identity: Identity, objtype: str) -> Reply:
        kind = object_type(objtype)
        query = search.parse(self.store, kind, _body(request))
        total, page, next_after = search.execute(self.store, kind, query)
        body: dict[str, Any] = {"total": total,
                                "results": [self.store.render(kind, r, query.properties) for r in page]}
        if next_after is not None:
            body["paging"] = {"next": {"after": str(next_after)}}
        return 200, body

    @api()
    def objects_merge(self, request: Request, identity: Identity, objtype: str) -> Reply:
        kind = object_type(objtype)
        body = _body(request)
        if not isinstance(body, dict) or not body.get("primaryObjectId") or not body.get("objectIdToMerge"):
            raise HubSpotError(400, "primaryObjectId and objectIdToMerge are required", "VALIDATION_ERROR")
        record = self.store.merge(kind, str(body["primaryObjectId"]), str(body["objectIdToMerge"]),
                                  self._source(identity))
        return 200, self.store.render(kind, record)

    # --- associations v4 -----------------------------------------------------------------------------------
    def _pair(self, objtype: str, oid: str, totype: str, toid: str) -> tuple[ObjectType, Record, ObjectType, Record]:
        kind, to_kind = object_type(objtype), object_type(totype)
        if (kind.name, to_kind.name) not in DEFAULT_TYPE:
            raise HubSpotError(400, f"Associations from {kind.name} to {to_kind.name} are not emulated",
                               "VALIDATION_ERROR")
        return kind, self.store.get(kind, oid), to_kind, self.store.get(to_kind, toid)

    @api()
    def assoc_create(self, request: Request, identity: Identity, objtype: str, oid: str, totype: str,
                     toid: str) -> Reply:
        kind, record, to_kind, target = self._pair(objtype, oid, totype, toid)
        specs = _body(request)
        if not isinstance(specs, list):
            raise HubSpotError(400, "The body must be a list of association types", "VALIDATION_ERROR")
        labels = self.store.associate(kind, record.id, to_kind, target.id, specs, self._source(identity))
        return 201, {"fromObjectTypeId": kind.type_id, "fromObjectId": record.id,
                     "toObjectTypeId": to_kind.type_id, "toObjectId": target.id, "labels": labels}

    @api()
    def assoc_create_default(self, request: Request, identity: Identity, objtype: str, oid: str, totype: str,
                             toid: str) -> Reply:
        started = now_ms()
        kind, record, to_kind, target = self._pair(objtype, oid, totype, toid)
        self.store.associate(kind, record.id, to_kind, target.id, None, self._source(identity))
        return 200, _batch_body(self._default_results(kind, record.id, to_kind, target.id), [], started)

    @staticmethod
    def _default_results(kind: ObjectType, from_id: int, to_kind: ObjectType, to_id: int) -> list[dict[str, Any]]:
        forward = DEFAULT_TYPE[(kind.name, to_kind.name)]
        inverse = ASSOCIATION_TYPES[forward].inverse_id
        return [
            {"from": {"id": str(from_id)}, "to": {"id": str(to_id)},
             "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": forward}},
            {"from": {"id": str(to_id)}, "to": {"id": str(from_id)},
             "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": inverse}},
        ]

    @api()
    def assoc_delete(self, request: Request, identity: Identity, objtype: str, oid: str, totype: str,
                     toid: str) -> Reply:
        kind, record, to_kind, target = self._pair(objtype, oid, totype, toid)
        self.store.dissociate(kind, record.id, to_kind, target.id, None, self._source(identity))
        return 204, None

    @api()
    def assoc_list(self, request: Request, identity: Identity, objtype: str, oid: str, totype: str) -> Reply:
        kind, to_kind = object_type(objtype), object_type(totype)
        record = self.store.get(kind, oid)
        rows = self.store.association_rows(kind, record.id, to_kind)
        limit = max(1, min(_integer(request, "limit", 500), 500))
        start = _integer(request, "after", 0)
        page = rows[start:start + limit]
        body: dict[str, Any] = {"results": page}
        if start + limit < len(rows):
            body["paging"] = {"next": {"after": str(start + limit)}}
        return 200, body

    @api()
    def assoc_batch(self, request: Request, identity: Identity, objtype: str, totype: str, op: str) -> Reply:
        kind, to_kind = object_type(objtype), object_type(totype)
        body = _body(request)
        started = now_ms()
        source = self._source(identity)
        if op == "read":
            inputs = _inputs(body, ASSOCIATION_READ_LIMIT)
            found: list[dict[str, Any]] = []
            missing: list[dict[str, Any]] = []
            for item in inputs:
                from_id = str(item.get("id") if isinstance(item, dict) else "")
                record = self.store.find(kind, from_id)
                rows = self.store.association_rows(kind, record.id, to_kind) if record else []
                if not rows:
                    missing.append(HubSpotError(
                        404, f"No {to_kind.singular} is associated with {kind.singular} {from_id}.", "OBJECT_NOT_FOUND",
                        sub_category="crm.associations.NO_ASSOCIATIONS_FOUND",
                        context={"fromObjectId": [from_id]}).standard_error())
                    continue
                found.append({"from": {"id": str(record.id) if record else from_id}, "to": rows})
            return (207 if missing else 200), _batch_body(found, missing, started)
        inputs = _inputs(body, ASSOCIATION_WRITE_LIMIT)
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        if op == "archive":
            for item in inputs:
                record = self.store.find(kind, str((item.get("from") or {}).get("id", "")))
                if record is None:
                    continue
                for target_ref in item.get("to") or []:
                    target = self.store.find(to_kind, str(target_ref.get("id", "")))
                    if target is not None:
                        self.store.dissociate(kind, record.id, to_kind, target.id, None, source)
            return 204, None
        for item in inputs:
            try:
                record = self.store.get(kind, str((item.get("from") or {}).get("id", "")))
                target = self.store.get(to_kind, str((item.get("to") or {}).get("id", "")))
                labels = self.store.associate(kind, record.id, to_kind, target.id, item.get("types") or [], source)
                results.append({"fromObjectTypeId": kind.type_id, "fromObjectId": record.id,
                                "toObjectTypeId": to_kind.type_id, "toObjectId": target.id, "labels": labels})
            except HubSpotError as exc:
                errors.append(exc.standard_error())
        return (207 if errors else 201), _batch_body(results, errors, started)

    @api()
    def assoc_batch_default(self, request: Request, identity: Identity, objtype: str, totype: str) -> Reply:
        kind, to_kind = object_type(objtype), object_type(totype)
        inputs = _inputs(_body(request), ASSOCIATION_WRITE_LIMIT)
        started = now_ms()
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for item in inputs:
            try:
                record = self.store.get(kind, str((item.get("from") or {}).get("id", "")))
                target = self.store.get(to_kind, str((item.get("to") or {}).get("id", "")))
                self.store.associate(kind, record.id, to_kind, target.id, None, self._source(identity))
                results.extend(self._default_results(kind, record.id, to_kind, target.id))
            except HubSpotError as exc:
                errors.append(exc.standard_error())
        body = _batch_body(results, errors, started)
        body.setdefault("errors", [])
        body.setdefault("numErrors", 0)
        return 200, body

    @api()
    def assoc_batch_labels_archive(self, request: Request, identity: Identity, objtype: str, totype: str) -> Reply:
        kind, to_kind = object_type(objtype), object_type(totype)
        for item in _inputs(_body(request), ASSOCIATION_WRITE_LIMIT):
            record = self.store.find(kind, str((item.get("from") or {}).get("id", "")))
            target = self.store.find(to_kind, str((item.get("to") or {}).get("id", "")))
            if record is not None and target is not None:
                self.store.dissociate(kind, record.id, to_kind, target.id, item.get("types") or [],
                                      self._source(identity))
        return 204, None

    @api()
    def assoc_labels(self, request: Request, identity: Identity, objtype: str, totype: str) -> Reply:
        kind, to_kind = object_type(objtype), object_type(totype)
        return 200, {"results": [{"category": "HUBSPOT_DEFINED", "typeId": t.type_id, "label": t.label}
                                 for t in types_between(kind, to_kind)]}

    # --- pipelines -------------------------------------------------------------------------------------
    @api()
    def pipelines_list(self, request: Request, identity: Identity, objtype: str) -> Reply:
        _deals_only(objtype)
        return 200, {"results": [p.to_json() for p in self.store.active_pipelines()]}

    @api()
    def pipelines_create(self, request: Request, identity: Identity, objtype: str) -> Reply:
        _deals_only(objtype)
        return 201, self.store.create_pipeline(_body(request)).to_json()

    @api()
    def pipeline_get(self, request: Request, identity: Identity, objtype: str, pid: str) -> Reply:
        _deals_only(objtype)
        return 200, self.store.pipeline(pid).to_json()

    @api()
    def pipeline_replace(self, request: Request, identity: Identity, objtype: str, pid: str) -> Reply:
        _deals_only(objtype)
        validate = _flag(request, "validateDealStageUsagesBeforeDelete") or _flag(
            request, "validateReferencesBeforeDelete")
        return 200, self.store.replace_pipeline(pid, _body(request), validate).to_json()

    @api()
    def pipeline_patch(self, request: Request, identity: Identity, objtype: str, pid: str) -> Reply:
        _deals_only(objtype)
        return 200, self.store.patch_pipeline(pid, _body(request)).to_json()

    @api()
    def pipeline_delete(self, request: Request, identity: Identity, objtype: str, pid: str) -> Reply:
        _deals_only(objtype)
        validate = _flag(request, "validateDealStageUsagesBeforeDelete") or _flag(
            request, "validateReferencesBeforeDelete")
        self.store.delete_pipeline(pid, validate)
        return 204, None

    @api()
    def stages_list(self, request: Request, identity: Identity, objtype: str, pid: str) -> Reply:
        _deals_only(objtype)
        return 200, {"results": [s.to_json() for s in self.store.pipeline(pid).active_stages()]}

    @api()
    def stage_create(self, request: Request, identity: Identity, objtype: str, pid: str) -> Reply:
        _deals_only(objtype)
        return 201, self.store.create_stage(pid, _body(request)).to_json()

    @api()
    def stage_get(self, request: Request, identity: Identity, objtype: str, pid: str, sid: str) -> Reply:
        _deals_only(objtype)
        return 200, self.store.stage(pid, sid).to_json()

    @api()
    def stage_replace(self, request: Request, identity: Identity, objtype: str, pid: str, sid: str) -> Reply:
        _deals_only(objtype)
        return 200, self.store.update_stage(pid, sid, _body(request), replace=True).to_json()

    @api()
    def stage_patch(self, request: Request, identity: Identity, objtype: str, pid: str, sid: str) -> Reply:
        _deals_only(objtype)
        return 200, self.store.update_stage(pid, sid, _body(request), replace=False).to_json()

    @api()
    def stage_delete(self, request: Request, identity: Identity, objtype: str, pid: str, sid: str) -> Reply:
        _deals_only(objtype)
        self.store.delete_stage(pid, sid, _flag(request, "validateDealStageUsagesBeforeDelete")
                                or _flag(request, "validateReferencesBeforeDelete"))
        return 204, None

    @api()
    def limits_pipelines(self, request: Request, identity: Identity) -> Reply:
        usage = len(self.store.active_pipelines())
        limit = self.store.pipeline_limit
        return 200, {
            "hubspotDefinedObjectTypes": [{
                "objectTypeId": DEALS.type_id, "singularLabel": "Deal", "pluralLabel": DEALS.plural_label,
                "limit": limit, "usage": usage, "percentage": round(100.0 * usage / limit, 2) if limit else 100.0,
            }],
            "customObjectTypes": {"byObjectType": [], "overallLimit": 0, "overallPercentage": 0.0,
                                  "overallUsage": 0},
        }

    # --- owners --------------------------------------------------------------------------------------------
    @api()
    def owners_list(self, request: Request, identity: Identity) -> Reply:
        archived = _flag(request, "archived")
        email = (request.args.get("email") or "").strip().lower()
        owners = [o for o in self.store.owners.values()
                  if o.archived == archived and (not email or o.email == email)]
        owners.sort(key=lambda o: int(o.id) if o.id.isdigit() else 0)
        limit = max(1, min(_integer(request, "limit", 100), 500))
        start = 0
        after = request.args.get("after")
        if after:
            start = next((i + 1 for i, o in enumerate(owners) if o.id == after), len(owners))
        page = owners[start:start + limit]
        body: dict[str, Any] = {"results": [o.to_json() for o in page]}
        if start + limit < len(owners):
            body["paging"] = {"next": {"after": page[-1].id}}
        return 200, body

    @api()
    def owner_get(self, request: Request, identity: Identity, owner_id: str) -> Reply:
        by = request.args.get("idProperty", "id")
        archived = _flag(request, "archived")
        for owner in self.store.owners.values():
            key = str(owner.user_id) if by == "userId" else owner.id
            if key == owner_id and owner.archived == archived:
                return 200, owner.to_json()
        raise HubSpotError(404, f"Owner {owner_id} not found", "OBJECT_NOT_FOUND", context={"ownerId": [owner_id]})

    # --- properties -------------------------------------------------------------------------------------
    @api()
    def props_list(self, request: Request, identity: Identity, objtype: str) -> Reply:
        kind = object_type(objtype)
        archived = _flag(request, "archived")
        return 200, {"results": [self.store.property_json(kind, p) for p in self.store.schema(kind).values()
                                 if p.archived == archived]}

    @api()
    def prop_get(self, request: Request, identity: Identity, objtype: str, name: str) -> Reply:
        kind = object_type(objtype)
        return 200, self.store.property_json(kind, self.store.get_property(kind, name, _flag(request, "archived")))

    @api()
    def prop_create(self, request: Request, identity: Identity, objtype: str) -> Reply:
        kind = object_type(objtype)
        return 201, self.store.property_json(kind, self.store.create_property(kind, _body(request)))

    @api()
    def prop_update(self, request: Request, identity: Identity, objtype: str, name: str) -> Reply:
        kind = object_type(objtype)
        return 200, self.store.property_json(kind, self.store.update_property(kind, name, _body(request)))

    @api()
    def prop_archive(self, request: Request, identity: Identity, objtype: str, name: str) -> Reply:
        self.store.archive_property(object_type(objtype), name)
        return 204, None

    @api()
    def props_batch(self, request: Request, identity: Identity, objtype: str, op: str) -> Reply:
        kind = object_type(objtype)
        body = _body(request)
        inputs = _inputs(body)
        started = now_ms()
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for item in inputs:
            try:
                if op == "create":
                    results.append(self.store.property_json(kind, self.store.create_property(kind, item)))
                    continue
                name = str(item.get("name", "")) if isinstance(item, dict) else ""
                if op == "archive":
                    self.store.archive_property(kind, name)
                else:
                    prop = self.store.get_property(kind, name, bool(body.get("archived", False)))
                    results.append(self.store.property_json(kind, prop))
            except HubSpotError as exc:
                errors.append(exc.standard_error())
        if op == "archive":
            return 204, None
        return (207 if errors else (201 if op == "create" else 200)), _batch_body(results, errors, started)

    @api()
    def groups_list(self, request: Request, identity: Identity, objtype: str) -> Reply:
        kind = object_type(objtype)
        return 200, {"results": [g.to_json() for g in self.store.groups[kind.name].values() if not g.archived]}

    @api()
    def group_create(self, request: Request, identity: Identity, objtype: str) -> Reply:
        return 201, self.store.create_group(object_type(objtype), _body(request)).to_json()

    @api()
    def group_get(self, request: Request, identity: Identity, objtype: str, name: str) -> Reply:
        return 200, self.store.group(object_type(objtype), name).to_json()

    @api()
    def group_update(self, request: Request, identity: Identity, objtype: str, name: str) -> Reply:
        group = self.store.group(object_type(objtype), name)
        body = _body(request) or {}
        if "label" in body:
            group.label = str(body["label"])
        if "displayOrder" in body:
            group.display_order = int(body["displayOrder"])
        return 200, group.to_json()

    @api()
    def group_archive(self, request: Request, identity: Identity, objtype: str, name: str) -> Reply:
        kind = object_type(objtype)
        group = self.store.group(kind, name)
        if any(p.group_name == name and not p.archived for p in self.store.schema(kind).values()):
            raise HubSpotError(400, f"Property group {name} still has properties", "VALIDATION_ERROR")
        group.archived = True
        return 204, None

