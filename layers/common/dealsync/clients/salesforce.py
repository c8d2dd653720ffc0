"""Salesforce through simple-salesforce: OAuth from the secret, writes tagged ``client=dealsync``,
queries paged, sObject Collections in chunks of 200, every failure classified."""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from dealsync.clients.credentials import SalesforceCredentials
from dealsync.clients.errors import (
    ApiBudgetExceededError,
    CrmError,
    PermanentCrmError,
    RecordError,
    TransientCrmError,
)
from dealsync.clients.ratelimit import SalesforceUsageListener, parse_salesforce_limit_info
from dealsync.models.domain import ErrorCategory

CRM = "salesforce"
CALL_OPTIONS = "client=dealsync"  # marks our writes: change events carry it in changeOrigin
COLLECTION_LIMIT = 200
IDS_PER_QUERY = 200  # keeps a SOQL `Id IN (...)` well under the URL length limit
REQUEST_TIMEOUT = (5, 60)

_PERMISSION_CODES = {
    "INSUFFICIENT_ACCESS", "INSUFFICIENT_ACCESS_OR_READONLY", "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY",
    "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", "NOT_API_ENABLED", "API_DISABLED_FOR_ORG", "FIELD_INTEGRITY_EXCEPTION",
}
WRITE_ATTEMPTS = 2  # a write of values: sent again once, at once, after a transient failure
# A record written while it sits in the recycle bin (deleted since it was read).
ENTITY_IS_DELETED = "ENTITY_IS_DELETED"
_TRANSIENT_CODES = {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "QUERY_TIMEOUT", "REQUEST_RUNNING_TOO_LONG"}


def classify_error_code(code: str) -> type[CrmError] | ErrorCategory:
    """Map a Salesforce errorCode to a retryable error type or a sync-error category."""
    if code == "REQUEST_LIMIT_EXCEEDED":
        return ApiBudgetExceededError
    if code in _TRANSIENT_CODES:
        return TransientCrmError
    if code in _PERMISSION_CODES:
        return ErrorCategory.PERMISSION
    return ErrorCategory.SALESFORCE_VALIDATION


def _first_error(content: Any) -> tuple[str, str]:
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("errorCode", "UNKNOWN")), str(content[0].get("message", ""))
    if isinstance(content, dict):
        return str(content.get("error", "UNKNOWN")), str(content.get("error_description", content))
    return "UNKNOWN", str(content)


def classify(error: Exception) -> CrmError:
    """One classifier for every Salesforce failure."""
    if isinstance(error, CrmError):
        return error
    if isinstance(error, requests.Timeout | requests.ConnectionError):
        return TransientCrmError(CRM, f"network: {type(error).__name__}")
    if isinstance(error, SalesforceError):
        code, message = _first_error(error.content)
        status = error.status
        if status >= 500 or status == 429:
            return TransientCrmError(CRM, f"{status} {code}: {message}", status=status)
        kind = classify_error_code(code)
        if isinstance(kind, ErrorCategory):
            if isinstance(error, SalesforceExpiredSession):
                return TransientCrmError(CRM, f"session: {message}", status=status)
            return PermanentCrmError(CRM, f"{code}: {message}", kind, status=status, code=code)
        return kind(CRM, f"{code}: {message}", status=status)
    return TransientCrmError(CRM, f"unexpected {type(error).__name__}: {error}")


class SalesforceClient:
    """A connection to one org as the integration user."""

    def __init__(self, credentials: SalesforceCredentials, max_attempts: int = 4,
                 backoff_seconds: float = 0.5, usage_listener: SalesforceUsageListener | None = None) -> None:
        self.credentials = credentials
        # Told of every answered /services/data request (counting dealsync's calls, the org's usage).
        self.usage_listener = usage_listener
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.calls = 0
        self.session = requests.Session()
        # The environment's CA bundle variables would override `verify`; the secret decides instead.
        self.session.trust_env = False
        self.session.verify = credentials.ca_file or True
        self.session.headers["Sforce-Call-Options"] = CALL_OPTIONS
        # Every request, whichever SDK path sent it (REST, SFType, Bulk 2.0), and refused ones too.
        self.session.hooks["response"].append(self._observe_usage)
        self._sf: Salesforce | None = None
        self._last_usage: tuple[int, int] | None = None
        self.identity_url: str | None = None

    # --- connection ---------------------------------------------------------------------------
    def _token_request(self) -> dict[str, Any]:
        creds = self.credentials
        if creds.auth == "client_credentials":
            if creds.client_secret is None:
                raise PermanentCrmError(CRM, "client_credentials needs client_secret in the secret",
                                        ErrorCategory.PERMISSION)
            return {"grant_type": "client_credentials", "client_id": creds.client_id,
                    "client_secret": creds.client_secret.get_secret_value()}
        if creds.private_key is None or creds.username is None:
            raise PermanentCrmError(CRM, "jwt needs username and private_key in the secret", ErrorCategory.PERMISSION)
        now = datetime.now(UTC)
        assertion = jwt.encode(
            {"iss": creds.client_id, "sub": creds.username, "aud": creds.login_url.rstrip("/"),
             "exp": int((now + timedelta(minutes=3)).timestamp())},
            creds.private_key.get_secret_value(), algorithm="RS256",
        )
        return {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}

    def connect(self) -> Salesforce:
        self.calls += 1
        url = f"{self.credentials.login_url.rstrip('/')}/services/oauth2/token"
        try:
            response = self.session.post(url, data=self._token_request(), timeout=REQUEST_TIMEOUT)
        except requests.RequestException as error:
            raise classify(error) from error
        if response.status_code >= 500:
            raise TransientCrmError(CRM, f"token endpoint answered {response.status_code}", status=response.status_code)
        if response.status_code != 200:
            body = response.json() if response.content else {}
            reason = f"{body.get('error')}: {body.get('error_description')}"
            raise PermanentCrmError(CRM, f"authentication refused: {reason}", ErrorCategory.PERMISSION,
                                    status=response.status_code)
        token = response.json()
        self.identity_url = token.get("id")
        self._sf = Salesforce(instance_url=token.get("instance_url") or self.credentials.instance_url,
                              session_id=token["access_token"], session=self.session,
                              version=self.credentials.api_version)
        return self._sf

    def integration_user_id(self) -> str | None:
        """The user dealsync authenticates as: the last segment of the token's identity URL."""
        if self.identity_url is None:
            self.connect()
        return self.identity_url.rstrip("/").rsplit("/", 1)[-1] if self.identity_url else None

    @property
    def sf(self) -> Salesforce:
        return self._sf or self.connect()

    def _call(self, operation: Callable[[Salesforce], Any], retry: bool = True, write: bool = False) -> Any:
        """Run one API call with re-authentication on an expired session and backoff on transient errors.
        A ``write`` of values is sent again once, at once (a backoff of seconds would send values older
        than what a person may have written meanwhile; the caller then syncs the records again)."""
        attempt = 0
        while True:
            attempt += 1
            self.calls += 1
            try:
                return operation(self.sf)
            except SalesforceExpiredSession:
                if attempt >= self.max_attempts:
                    raise
                self.connect()
                continue
            except Exception as error:  # classified below; anything unknown is treated as transient
                classified = classify(error)
                if isinstance(classified, TransientCrmError) and write and retry and attempt < WRITE_ATTEMPTS:
                    continue
                if isinstance(classified, TransientCrmError) and retry and not write and attempt < self.max_attempts:
                    time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
                    continue
                raise classified from error

    def _rest(self, path: str, method: str = "GET", retry: bool = True, write: bool = False, **kwargs: Any) -> Any:
        return self._call(lambda sf: sf.restful(path, method=method, **kwargs), retry=retry, write=write)

    def _query_more(self, next_url: str, include_deleted: bool) -> Any:
        return self._call(lambda sf: sf.query_more(next_url, identifier_is_url=True, include_deleted=include_deleted))

    @property
    def api_usage(self) -> tuple[int, int] | None:
        """(used, limit) of the org's daily API requests, from the last Sforce-Limit-Info header."""
        return self._last_usage

    def _observe_usage(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        header = response.headers.get("Sforce-Limit-Info")
        if header is None and "/services/data/" not in response.url:
            return  # the token endpoint: not an API request
        usage = parse_salesforce_limit_info(header)
        if usage is not None:
            self._last_usage = usage
        if self.usage_listener is not None:
            self.usage_listener(*(usage or (None, None)))

    # --- reads --------------------------------------------------------------------------------
    def query(self, soql: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        return list(self.iter_query(soql, include_deleted))

    def iter_query(self, soql: str, include_deleted: bool = False) -> Iterator[dict[str, Any]]:
        page = self._call(lambda sf: sf.query(soql, include_deleted=include_deleted))
        while True:
            yield from page["records"]
            if page.get("done", True) or not page.get("nextRecordsUrl"):
                return
            page = self._query_more(page["nextRecordsUrl"], include_deleted)

    def query_by_ids(self, select: str, sobject: str, ids: Sequence[str], extra_where: str = "",
                     include_deleted: bool = False) -> list[dict[str, Any]]:
        """``SELECT <select> FROM <sobject> WHERE Id IN (...)`` for any number of ids, 200 per query."""
        records: list[dict[str, Any]] = []
        for chunk in _chunks(list(dict.fromkeys(ids)), IDS_PER_QUERY):
            id_list = ",".join(f"'{_soql_id(record_id)}'" for record_id in chunk)
            where = f"Id IN ({id_list})" + (f" AND ({extra_where})" if extra_where else "")
            # Ids are validated as Salesforce ids above; select/sobject/extra_where come from our own code.
            records += self.query(f"SELECT {select} FROM {sobject} WHERE {where}", include_deleted)  # noqa: S608
        return records

    def field_history(self, opportunity_ids: Sequence[str]) -> dict[str, dict[str, tuple[str, str]]]:
        """The latest OpportunityFieldHistory row of each tracked field, by opportunity and history field name
        (``Owner`` for OwnerId ...): (CreatedDate, CreatedById). Empty when the org tracks nothing or the
        object is not readable: callers fall back to the record's stamp.
        CreatedDate is kept to the second, and rows of one second come in no promised order: a person's row in
        the second of dealsync's own is taken as the latest (the person may have written right after dealsync;
        taken the other way, the person's value would pass for dealsync's copy and be overwritten)."""
        own_user = (self.integration_user_id() or "")[:15]
        latest: dict[str, dict[str, tuple[str, str]]] = {}
        for chunk in _chunks(list(dict.fromkeys(opportunity_ids)), IDS_PER_QUERY):
            id_list = ",".join(f"'{_soql_id(record_id)}'" for record_id in chunk)
            soql = ("SELECT OpportunityId, Field, CreatedDate, CreatedById FROM OpportunityFieldHistory "  # noqa: S608
                    f"WHERE OpportunityId IN ({id_list}) ORDER BY CreatedDate DESC")
            try:
                rows = self.query(soql)
            except PermanentCrmError:
                return {}
            for row in rows:
                fields = latest.setdefault(str(row["OpportunityId"]), {})
                name, found = str(row["Field"]), (str(row["CreatedDate"]), str(row.get("CreatedById") or ""))
                taken = fields.setdefault(name, found)
                if found[0] == taken[0] and taken[1][:15] == own_user and found[1][:15] != own_user:
                    fields[name] = found
        return latest

    def describe(self, sobject: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(lambda sf: getattr(sf, sobject).describe())
        return result

    def picklist_values(self, sobject: str, record_type_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._rest(f"ui-api/object-info/{sobject}/picklist-values/{record_type_id}")
        return result

    def updated_ids(self, sobject: str, start: datetime, end: datetime) -> list[str]:
        result = self._call(lambda sf: getattr(sf, sobject).updated(start, end))
        return list(result.get("ids", []))

    def deleted_ids(self, sobject: str, start: datetime, end: datetime) -> list[str]:
        result = self._call(lambda sf: getattr(sf, sobject).deleted(start, end))
        return [record["id"] for record in result.get("deletedRecords", [])]

    # --- writes (sObject Collections; one result per input, in order) --------------------------
    def upsert(self, sobject: str, external_id_field: str, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Upsert on an external id (idempotent, so retried on transient errors)."""
        results: list[dict[str, Any]] = []
        for chunk in _chunks(list(records), COLLECTION_LIMIT):
            body = {"allOrNone": False,
                    "records": [{"attributes": {"type": sobject}, **record} for record in chunk]}
            results += self._rest(f"composite/sobjects/{sobject}/{external_id_field}", "PATCH", json=body)
        return results

    def create(self, sobject: str, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create records. Not retried: a create that timed out may have happened."""
        results: list[dict[str, Any]] = []
        for chunk in _chunks(list(records), COLLECTION_LIMIT):
            body = {"allOrNone": False,
                    "records": [{"attributes": {"type": sobject}, **record} for record in chunk]}
            results += self._rest("composite/sobjects", "POST", retry=False, json=body)
        return results

    def update(self, sobject: str, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Update records. The collection update has no condition: after a transient failure it is sent again
        once, at once, not after a backoff (see ``_call``)."""
        results: list[dict[str, Any]] = []
        for chunk in _chunks(list(records), COLLECTION_LIMIT):
            body = {"allOrNone": False,
                    "records": [{"attributes": {"type": sobject}, **record} for record in chunk]}
            results += self._rest("composite/sobjects", "PATCH", write=True, json=body)
        return results

    def delete(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for chunk in _chunks(list(ids), COLLECTION_LIMIT):
            params = {"ids": ",".join(chunk), "allOrNone": "false"}
            results += self._rest("composite/sobjects", "DELETE", params=params)
        return results

    # --- added for imports and the operator's status ----------------------------------------------
    def count(self, sobject: str, where: str = "") -> int:
        """``SELECT COUNT() FROM <sobject> [WHERE ...]``: one call, the number of matching rows."""
        soql = f"SELECT COUNT() FROM {sobject}" + (f" WHERE {where}" if where else "")  # noqa: S608 - our own text
        result = self._call(lambda sf: sf.query(soql))
        return int(result.get("totalSize", 0))

    def bulk_query(self, soql: str, include_deleted: bool = False, max_records: int = 50_000,
                   wait: float = 1.0) -> Iterator[dict[str, str]]:
        """Rows of a Bulk API 2.0 query job (CSV pages followed by ``Sforce-Locator``), as text dicts.

        For enumerations above ~10,000 rows: one job, then one call per page of ``max_records``.
        Values are CSV text (empty string for null). Not retried mid-stream: a failure is raised
        classified, and the caller starts again from its own cursor."""
        match = re.search(r"\bFROM\s+(\w+)", soql, re.IGNORECASE)
        if match is None:
            raise PermanentCrmError(CRM, f"not a SOQL query: {soql[:80]!r}", ErrorCategory.SALESFORCE_VALIDATION)
        sobject = match.group(1)
        try:
            handler = getattr(self.sf.bulk2, sobject)
            query = handler.query_all if include_deleted else handler.query
            self.calls += 2  # create the job, poll it
            for page in query(soql, max_records=max_records, wait=wait):
                self.calls += 1
                yield from csv.DictReader(io.StringIO(str(page)))
        except CrmError:
            raise
        except Exception as error:  # classified: the SDK raises its own and requests' exceptions
            raise classify(error) from error

    # --- Bulk API 2.0 ingest (reference §3; one job per write of thousands of rows) ------------------
    def bulk_ingest_start(self, sobject: str, operation: str, rows: Sequence[dict[str, str]]) -> str:
        """Create an ingest job, upload ``rows`` as one CSV and close it (three calls); returns the job id.
        The job then runs in Salesforce: follow it with :meth:`bulk_ingest_job`. Not retried as a whole: a
        job created twice would write the rows twice."""
        if not rows:
            raise ValueError("an ingest job needs at least one row")
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        bulk = getattr(self.sf.bulk2, sobject)._client  # the SDK's job-level calls (create, upload, close)
        job = self._call(lambda _sf: bulk.create_job(operation), retry=False)
        job_id = str(job["id"])
        self._call(lambda _sf: bulk.upload_job_data(job_id, buffer.getvalue()), retry=False)
        self._call(lambda _sf: bulk.close_job(job_id))
        return job_id

    def bulk_ingest_job(self, sobject: str, job_id: str) -> dict[str, Any]:
        """An ingest job's state (``state``, ``numberRecordsProcessed``, ``numberRecordsFailed``...)."""
        bulk = getattr(self.sf.bulk2, sobject)._client
        result: dict[str, Any] = dict(self._call(lambda _sf: bulk.get_job(job_id, False)))
        return result

    def bulk_ingest_failures(self, sobject: str, job_id: str) -> list[dict[str, str]]:
        """The failed rows of a completed ingest job: the uploaded columns plus ``sf__Id`` and ``sf__Error``."""
        handler = getattr(self.sf.bulk2, sobject)
        text = str(self._call(lambda _sf: handler.get_failed_records(job_id)))
        return list(csv.DictReader(io.StringIO(text)))

    def limits(self) -> dict[str, Any]:
        """``GET /limits``: the org's limits (``DailyApiRequests`` {Max, Remaining}, ...)."""
        result: dict[str, Any] = self._rest("limits")
        return result


def record_errors(results: Iterable[dict[str, Any]], record_ids: Sequence[str]) -> dict[str, CrmError]:
    """The failed items of a collection response, classified and keyed by the caller's record id."""
    failures: dict[str, CrmError] = {}
    for record_id, result in zip(record_ids, results, strict=True):
        if result.get("success"):
            continue
        errors = result.get("errors") or [{"statusCode": "UNKNOWN", "message": "no error detail"}]
        code = str(errors[0].get("statusCode", "UNKNOWN"))
        message = "; ".join(str(error.get("message", "")) for error in errors)
        kind = classify_error_code(code)
        if isinstance(kind, ErrorCategory):
            failures[record_id] = RecordError(CRM, record_id, f"{code}: {message}", kind, code=code)
        else:
            failures[record_id] = kind(CRM, f"{record_id}: {code}: {message}")
    return failures


def _soql_id(record_id: str) -> str:
    if not record_id.isalnum() or len(record_id) not in (15, 18):
        raise PermanentCrmError(CRM, f"not a Salesforce id: {record_id!r}", ErrorCategory.SALESFORCE_VALIDATION)
    return record_id


def _chunks[T](items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


__all__ = [
    "ENTITY_IS_DELETED",
    "SalesforceClient",
    "SalesforceMalformedRequest",
    "SalesforceRefusedRequest",
    "SalesforceResourceNotFound",
    "classify",
    "record_errors",
]
