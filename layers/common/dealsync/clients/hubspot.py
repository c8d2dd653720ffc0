"""HubSpot through hubspot-api-client: one cached ApiClient per API, batches of 100, the tier's burst
and search limits respected, 429s handled by policy, every failure classified."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from importlib import metadata
from typing import Any

import requests
import urllib3
from hubspot import HubSpot

from dealsync.clients.credentials import HubSpotCredentials
from dealsync.clients.errors import ApiBudgetExceededError, CrmError, PermanentCrmError, TransientCrmError
from dealsync.clients.ratelimit import (
    BURST_INTERVAL_SECONDS,
    BURST_PER_TEN_SECONDS,
    SEARCH_PER_SECOND,
    HubSpotUsageListener,
    RequestLimiter,
    SlidingWindowLimiter,
    parse_hubspot_daily,
)
from dealsync.models.domain import ErrorCategory

CRM = "hubspot"
BATCH_LIMIT = 100
WRITE_ATTEMPTS = 2  # a write of values: sent again once, at once, after a 5xx or a timeout
HISTORY_BATCH_LIMIT = 50  # batch reads with propertiesWithHistory take at most 50 inputs
ASSOCIATION_CREATE_LIMIT = 2_000  # v4 batch create takes up to 2,000 inputs (reference §3.4)
SEARCH_PAGE = 200


def classify_response(status: int, body: Any, headers: dict[str, str] | None = None) -> CrmError:
    """One classifier for every HubSpot error response."""
    payload: dict[str, Any] = {}
    if isinstance(body, bytes | str):
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {"message": str(body)[:300]}
    elif isinstance(body, dict):
        payload = body
    message = str(payload.get("message", "")) or f"HTTP {status}"
    category = str(payload.get("category", ""))
    if status == 429:
        if payload.get("policyName") == "DAILY":
            return ApiBudgetExceededError(CRM, message, status=status)
        error = TransientCrmError(CRM, f"rate limited ({payload.get('policyName', 'unknown policy')}): {message}",
                                  status=status)
        interval = (headers or {}).get("X-HubSpot-RateLimit-Interval-Milliseconds") or (headers or {}).get(
            "x-hubspot-ratelimit-interval-milliseconds")
        error.retry_after = float(interval) / 1000 if interval else 1.0  # type: ignore[attr-defined]
        return error
    if status >= 500 or status in (408, 423):
        return TransientCrmError(CRM, f"{status}: {message}", status=status)
    if status in (401, 403) or category in ("INVALID_AUTHENTICATION", "MISSING_SCOPES"):
        return PermanentCrmError(CRM, f"{status} {category}: {message}", ErrorCategory.PERMISSION, status=status,
                                 code=category or None)
    return PermanentCrmError(CRM, f"{status} {category}: {message}", ErrorCategory.HUBSPOT_VALIDATION, status=status,
                             code=category or None)


def classify(error: Exception) -> CrmError:
    if isinstance(error, CrmError):
        return error
    status = getattr(error, "status", None)
    if isinstance(status, int) and status > 0 and hasattr(error, "body"):
        headers = getattr(error, "headers", None)
        return classify_response(status, getattr(error, "body", None), dict(headers) if headers else None)
    if isinstance(error, urllib3.exceptions.HTTPError | OSError | TimeoutError):
        return TransientCrmError(CRM, f"network: {type(error).__name__}")
    return TransientCrmError(CRM, f"unexpected {type(error).__name__}: {error}")


class _CachedApiFactory:
    """The SDK builds a new ApiClient (and TLS pool) on every attribute access; keep one per API.
    Each ApiClient's requests are reported to ``observe`` with their response headers (errors too)."""

    def __init__(self, observe: Callable[[Any], None]) -> None:
        self._apis: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self._observe = observe

    def __call__(self, package: Any, api_name: str, config: dict[str, Any]) -> Any:
        key = (package.__name__, api_name)
        with self._lock:
            if key not in self._apis:
                configuration = package.Configuration()
                for name, value in config.items():
                    if name == "retry":
                        configuration.retries = value
                    else:
                        setattr(configuration, name, value)
                api_client = package.ApiClient(configuration=configuration)
                api_client.user_agent = f"dealsync; hubspot-api-client-python {metadata.version('hubspot-api-client')}"
                api_client.request = self._observed(api_client.request)
                self._apis[key] = getattr(package, api_name)(api_client=api_client)
            return self._apis[key]

    def _observed(self, request: Callable[..., Any]) -> Callable[..., Any]:
        def observed(*args: Any, **kwargs: Any) -> Any:
            try:
                response = request(*args, **kwargs)
            except Exception as error:  # the SDK's ApiException carries the response headers
                self._observe(getattr(error, "headers", None))
                raise
            self._observe(response.getheaders())
            return response

        return observed


class HubSpotClient:
    def __init__(self, credentials: HubSpotCredentials, tier: str = "professional", max_attempts: int = 4,
                 backoff_seconds: float = 0.5, max_rate_limit_wait: float = 10.0,
                 max_rate_limited_attempts: int = 12, burst_limiter: RequestLimiter | None = None,
                 search_limiter: RequestLimiter | None = None,
                 usage_listener: HubSpotUsageListener | None = None) -> None:
        self.credentials = credentials
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.max_rate_limit_wait = max_rate_limit_wait
        # A 429 of the burst or search policy is a wait, not a failure: retried apart from max_attempts.
        self.max_rate_limited_attempts = max_rate_limited_attempts
        self.calls = 0
        self.rate_limited = 0  # 429s met (burst or search policy)
        self.burst: RequestLimiter = burst_limiter or SlidingWindowLimiter(
            BURST_PER_TEN_SECONDS.get(tier, 100), BURST_INTERVAL_SECONDS)
        self.search_limit: RequestLimiter = search_limiter or SlidingWindowLimiter(SEARCH_PER_SECOND, 1.0)
        # Told of every answered request with the account's daily allowance (counting, pausing on DAILY).
        self.usage_listener = usage_listener
        options: dict[str, Any] = {"access_token": credentials.access_token.get_secret_value(),
                                   "host": credentials.base_url.rstrip("/"),
                                   "api_factory": _CachedApiFactory(self._observe_headers)}
        if credentials.ca_file:
            options["ssl_ca_cert"] = credentials.ca_file
        self.api = HubSpot(**options)
        # For the few endpoints the SDK does not cover; the secret's CA decides, not the environment.
        self._http = requests.Session()
        self._http.trust_env = False
        self._http.verify = credentials.ca_file or True
        self._http.headers["Authorization"] = f"Bearer {credentials.access_token.get_secret_value()}"
        self._http.hooks["response"].append(lambda response, *args, **kwargs: self._observe_headers(response.headers))

    def _observe_headers(self, headers: Any) -> None:
        if self.usage_listener is not None:
            self.usage_listener.answered(*parse_hubspot_daily(dict(headers) if headers else None))

    def _call(self, operation: Callable[[], Any], search: bool = False, retry: bool = True,
              write: bool = False) -> Any:
        """One API call; transient failures are retried (``retry``). A ``write`` of values is sent again
        once, at once, after a 5xx or a timeout (a backoff of seconds would send values older than what a
        person may have written meanwhile; the caller then syncs the records again from a fresh read);
        a 429, refused without applying anything, is waited out as for any call."""
        failures = 0  # failures other than rate limits
        rate_limited = 0
        while True:
            if search:
                self.search_limit.acquire()  # search has its own limit and does not count in the burst
            else:
                self.burst.acquire()
            self.calls += 1
            try:
                return operation()
            except Exception as error:  # classified below; anything unknown is treated as transient
                classified = classify(error)
                if isinstance(classified, ApiBudgetExceededError) and self.usage_listener is not None:
                    self.usage_listener.daily_limit_reached()  # search's DAILY 429s carry no headers
                if not isinstance(classified, TransientCrmError) or not retry:
                    raise classified from error
                if write and classified.status != 429:
                    failures += 1
                    if failures >= WRITE_ATTEMPTS:
                        raise classified from error
                    continue
                if classified.status == 429:
                    # The burst (or search) window is full, e.g. shared with another app's traffic: wait it out.
                    rate_limited += 1
                    self.rate_limited += 1
                    if rate_limited >= self.max_rate_limited_attempts:
                        raise classified from error
                    wait = float(getattr(classified, "retry_after", 1.0))
                else:
                    failures += 1
                    if failures >= self.max_attempts:
                        raise classified from error
                    wait = self.backoff_seconds * 2 ** (failures - 1)
                time.sleep(min(wait, self.max_rate_limit_wait))

    # --- objects --------------------------------------------------------------------------------
    def batch_read(self, object_type: str, ids: Sequence[str], properties: Sequence[str],
                   id_property: str | None = None, with_history: Sequence[str] = (),
                   archived: bool = False) -> list[dict[str, Any]]:
        """Records by id (or by a unique property), 100 per call; missing ids are simply absent."""
        found: list[dict[str, Any]] = []
        size = HISTORY_BATCH_LIMIT if with_history else BATCH_LIMIT
        for chunk in _chunks(list(dict.fromkeys(ids)), size):
            body: dict[str, Any] = {"inputs": [{"id": record_id} for record_id in chunk],
                                    "properties": list(properties),
                                    "propertiesWithHistory": list(with_history)}
            if id_property:
                body["idProperty"] = id_property
            response = self._call(partial(self.api.crm.objects.batch_api.read,
                object_type, batch_read_input_simple_public_object_id=body, archived=archived))
            found += [_plain(result.to_dict()) for result in response.results]
        return found

    def list_page(self, object_type: str, properties: Sequence[str], after: str | None = None,
                  limit: int = BATCH_LIMIT) -> tuple[list[dict[str, Any]], str | None]:
        """One page of every (unarchived) record, and the cursor of the next page (None at the end)."""
        response = self._call(partial(self.api.crm.objects.basic_api.get_page, object_type, limit=limit,
                                      after=after, properties=list(properties)))
        paging = response.paging
        next_after = paging.next.after if paging and paging.next else None
        return [_plain(result.to_dict()) for result in response.results], next_after

    def batch_upsert(self, object_type: str, id_property: str,
                     inputs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create-or-update on a unique property; each input is ``{"id": <value>, "properties": {...}}``.
        Like every write of values, sent again at most once, at once (see ``_call``)."""
        results: list[dict[str, Any]] = []
        for chunk in _chunks(list(inputs), BATCH_LIMIT):
            body = {"inputs": [{**item, "idProperty": id_property} for item in chunk]}
            response = self._call(partial(self.api.crm.objects.batch_api.upsert,
                object_type, batch_input_simple_public_object_batch_input_upsert=body), write=True)
            results += _results_or_errors(response)
        return results

    def batch_update(self, object_type: str, inputs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Update records. HubSpot has no conditional update: after a 5xx or a timeout the values are sent
        again once, at once, not after a backoff (see ``_call``)."""
        results: list[dict[str, Any]] = []
        for chunk in _chunks(list(inputs), BATCH_LIMIT):
            body = {"inputs": list(chunk)}
            response = self._call(partial(self.api.crm.objects.batch_api.update,
                object_type, batch_input_simple_public_object_batch_input=body), write=True)
            results += _results_or_errors(response)
        return results

    def batch_create(self, object_type: str, inputs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for chunk in _chunks(list(inputs), BATCH_LIMIT):
            body = {"inputs": list(chunk)}
            response = self._call(partial(self.api.crm.objects.batch_api.create,
                object_type, batch_input_simple_public_object_batch_input_for_create=body), retry=False)
            results += _results_or_errors(response)
        return results

    def merge(self, object_type: str, primary_id: str, merged_id: str) -> dict[str, Any]:
        """Merge ``merged_id`` into ``primary_id`` (the primary keeps its id; the other becomes its alias)."""
        api = getattr(self.api.crm, object_type).basic_api
        response = self._call(partial(api.merge, public_merge_input={
            "primaryObjectId": primary_id, "objectIdToMerge": merged_id}))
        return _plain(response.to_dict())

    def batch_archive(self, object_type: str, ids: Sequence[str]) -> None:
        for chunk in _chunks(list(ids), BATCH_LIMIT):
            body = {"inputs": [{"id": record_id} for record_id in chunk]}
            self._call(partial(self.api.crm.objects.batch_api.archive,
                object_type, batch_input_simple_public_object_id=body))

    def search(self, object_type: str, filter_groups: list[dict[str, Any]], properties: Sequence[str],
               limit: int = SEARCH_PAGE) -> Iterator[dict[str, Any]]:
        after: str | None = None
        while True:
            body: dict[str, Any] = {"filterGroups": filter_groups, "properties": list(properties), "limit": limit}
            if after:
                body["after"] = after
            response = self._call(partial(self.api.crm.objects.search_api.do_search,
                object_type, public_object_search_request=body), search=True)
            for result in response.results:
                yield result.to_dict()
            paging = response.paging
            after = paging.next.after if paging and paging.next else None
            if not after:
                return

    # --- associations v4 --------------------------------------------------------------------------
    def associations_read(self, from_type: str, to_type: str, ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for chunk in _chunks(list(dict.fromkeys(ids)), BATCH_LIMIT):
            body = {"inputs": [{"id": record_id} for record_id in chunk]}
            response = self._call(partial(self.api.crm.associations.v4.batch_api.get_page,
                from_type, to_type, batch_input_public_fetch_associations_batch_request=body))
            for result in response.results:
                data = result.to_dict()
                found[str(data["_from"]["id"])] = data.get("to") or []
        return found

    def associations_create(self, from_type: str, to_type: str,
                            pairs: Sequence[tuple[str, str, int]]) -> None:
        """Create labelled associations (from id, to id, HubSpot-defined type id), 2,000 per call."""
        for chunk in _chunks(list(pairs), ASSOCIATION_CREATE_LIMIT):
            body = {"inputs": [
                {"from": {"id": from_id}, "to": {"id": to_id},
                 "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}
                for from_id, to_id, type_id in chunk
            ]}
            self._call(partial(self.api.crm.associations.v4.batch_api.create,
                from_type, to_type, batch_input_public_association_multi_post=body))

    def associations_archive(self, from_type: str, to_type: str, pairs: Sequence[tuple[str, str]]) -> None:
        for chunk in _chunks(list(pairs), BATCH_LIMIT):
            body = {"inputs": [{"from": {"id": from_id}, "to": [{"id": to_id}]} for from_id, to_id in chunk]}
            self._call(partial(self.api.crm.associations.v4.batch_api.archive,
                from_type, to_type, batch_input_public_association_multi_archive=body))

    # --- pipelines, owners, properties, limits ------------------------------------------------------
    def pipelines(self, object_type: str = "deals") -> list[dict[str, Any]]:
        response = self._call(lambda: self.api.crm.pipelines.pipelines_api.get_all(object_type))
        return [pipeline.to_dict() for pipeline in response.results]

    def create_pipeline(self, body: dict[str, Any], object_type: str = "deals") -> dict[str, Any]:
        response = self._call(lambda: self.api.crm.pipelines.pipelines_api.create(
            object_type, pipeline_input=body), retry=False)
        result: dict[str, Any] = response.to_dict()
        return result

    def owners(self) -> list[dict[str, Any]]:
        owners: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            response = self._call(partial(self.api.crm.owners.owners_api.get_page, limit=100, after=after))
            owners += [owner.to_dict() for owner in response.results]
            paging = response.paging
            after = paging.next.after if paging and paging.next else None
            if not after:
                return owners

    def properties(self, object_type: str) -> list[dict[str, Any]]:
        response = self._call(lambda: self.api.crm.properties.core_api.get_all(object_type))
        return [prop.to_dict() for prop in response.results]

    def create_property(self, object_type: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self._call(lambda: self.api.crm.properties.core_api.create(
            object_type, property_create=body), retry=False)
        result: dict[str, Any] = response.to_dict()
        return result

    def create_property_group(self, object_type: str, name: str, label: str) -> dict[str, Any]:
        response = self._call(lambda: self.api.crm.properties.groups_api.create(
            object_type, property_group_create={"name": name, "label": label, "displayOrder": -1}), retry=False)
        result: dict[str, Any] = response.to_dict()
        return result

    def pipeline_limit(self) -> int | None:
        """The deal-pipeline limit from ``GET /crm/v3/limits/pipelines`` (the SDK has no limits API);
        None where the account does not report one."""

        def fetch() -> Any:
            response = self._http.get(f"{self.credentials.base_url.rstrip('/')}/crm/v3/limits/pipelines",
                                      timeout=(5, 30))
            if response.status_code != 200:
                raise classify_response(response.status_code, response.content, dict(response.headers))
            return response.json()

        try:
            body = self._call(fetch)
        except PermanentCrmError:
            return None
        for item in body.get("hubspotDefinedObjectTypes", []):
            if item.get("objectTypeId") == "0-3" and item.get("limit") is not None:
                return int(item["limit"])
        return None


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    """``to_dict()`` leaves the property history's ValueWithTimestamp objects as they are: make them dicts."""
    history = record.get("properties_with_history")
    if history:
        record["properties_with_history"] = {
            name: [version.to_dict() if hasattr(version, "to_dict") else dict(version) for version in versions or []]
            for name, versions in history.items()
        }
    return record


def _results_or_errors(response: Any) -> list[dict[str, Any]]:
    data = response.to_dict()
    results: list[dict[str, Any]] = list(data.get("results") or [])
    for error in data.get("errors") or []:
        results.append({"error": error})
    return results


def _chunks[T](items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
