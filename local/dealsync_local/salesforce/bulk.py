"""Bulk API 2.0 query jobs (reference §3): create, poll, read CSV results page by page, abort, delete.

A job takes its snapshot of matching record ids when it is created and reports ``InProgress`` until
its (configurable) processing time has passed, then ``JobComplete``. Results are CSV pages whose
``Sforce-Locator`` header names the next page (``null`` on the last one).
"""

from __future__ import annotations

import base64
import csv
import io
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from dealsync_local.salesforce.errors import ApiError
from dealsync_local.salesforce.ids import BULK_JOB_PREFIX, IdFactory
from dealsync_local.salesforce.soql import CompiledQuery, Compiler, SoqlError, parse
from dealsync_local.salesforce.store import Store
from dealsync_local.salesforce.values import Clock, csv_value, format_datetime

DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}


@dataclass
class QueryJob:
    id: str
    operation: str
    object: str
    query: str
    created_by: str
    created_date: str
    api_version: str
    column_delimiter: str
    line_ending: str
    compiled: CompiledQuery
    record_ids: list[str]
    ready_at: float
    state: str = "UploadComplete"
    modstamp: str = ""
    polled: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def current_state(self) -> str:
        if self.state in ("Aborted", "Failed", "JobComplete"):
            return self.state
        if not self.polled:
            return self.state
        if time.monotonic() >= self.ready_at:
            self.state = "JobComplete"
            return self.state
        return "InProgress"

    def info(self, *, full: bool = True) -> dict[str, Any]:
        state = self.current_state()
        data: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": self.created_by,
            "createdDate": self.created_date,
            "systemModstamp": self.modstamp or self.created_date,
            "state": state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version),
            "lineEnding": self.line_ending,
            "columnDelimiter": self.column_delimiter,
        }
        if full:
            data.update({
                "jobType": "V2Query",
                "numberRecordsProcessed": len(self.record_ids) if state == "JobComplete" else 0,
                "retries": 0,
                "totalProcessingTime": 0 if state != "JobComplete" else max(1, len(self.record_ids) // 100),
                "isPkChunkingSupported": True,
            })
        return data


def csv_format(body: dict[str, Any]) -> tuple[str, str]:
    """A job's CSV column delimiter and line ending, as its creation request names them (query and ingest)."""
    delimiter, line_ending = body.get("columnDelimiter", "COMMA"), body.get("lineEnding", "LF")
    if delimiter not in DELIMITERS:
        raise ApiError(400, "INVALIDJOB", f"Invalid columnDelimiter: {delimiter}")
    if line_ending not in LINE_ENDINGS:
        raise ApiError(400, "INVALIDJOB", f"Invalid lineEnding: {line_ending}")
    if body.get("contentType", "CSV") != "CSV":
        raise ApiError(400, "INVALIDJOB", "Only CSV content is supported")
    return delimiter, line_ending


class _Job(Protocol):
    def info(self, *, full: bool = True) -> dict[str, Any]: ...


class JobBook[J: _Job]:
    """The jobs of one kind (query or ingest): kept by id, listed, forgotten on reset."""

    def __init__(self, store: Store, clock: Clock, ids: IdFactory) -> None:
        self.store = store
        self.clock = clock
        self.ids = ids
        self.jobs: dict[str, J] = {}
        self.processing_seconds = 0.0

    def clear(self) -> None:
        self.jobs.clear()

    def get(self, job_id: str) -> J:
        job = self.jobs.get(job_id)
        if job is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    def list(self) -> dict[str, Any]:
        return {"done": True, "records": [job.info(full=False) for job in self.jobs.values()], "nextRecordsUrl": None}


class BulkJobs(JobBook[QueryJob]):
    def create(self, body: Any, user_id: str, version: str) -> QueryJob:
        if not isinstance(body, dict):
            raise ApiError(400, "INVALIDJOB", "The request body must be a JSON object")
        operation = body.get("operation")
        if operation not in ("query", "queryAll"):
            raise ApiError(400, "INVALIDJOB", f"Invalid operation: {operation}")
        text = body.get("query")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "INVALIDJOB", "A query must be specified")
        delimiter, line_ending = csv_format(body)
        try:
            query = parse(text)
            compiled = Compiler(self.store, text, self.clock.now()).compile(query)
        except SoqlError as exc:
            raise ApiError(400, exc.code, exc.message) from None
        if compiled.has_subqueries:
            raise ApiError(400, "INVALIDJOB", "Aggregate Relationships not supported in Bulk Query")
        if compiled.count_only or compiled.aggregates:
            raise ApiError(400, "INVALIDJOB", "Aggregate queries are not supported in Bulk Query")
        if query.offset is not None:
            raise ApiError(400, "INVALIDJOB", "OFFSET is not supported in Bulk Query")
        rows = compiled.execute(include_deleted=operation == "queryAll")
        now = format_datetime(self.clock.now())
        job = QueryJob(
            id=self.ids.next(BULK_JOB_PREFIX), operation=operation, object=compiled.obj.name, query=text,
            created_by=user_id, created_date=now, api_version=version, column_delimiter=delimiter,
            line_ending=line_ending, compiled=compiled, record_ids=[r["Id"] for r in rows],
            ready_at=time.monotonic() + self.processing_seconds,
        )
        self.jobs[job.id] = job
        return job

    def poll(self, job_id: str) -> dict[str, Any]:
        job = self.get(job_id)
        job.polled = True
        return job.info()

    def abort(self, job_id: str, body: Any) -> dict[str, Any]:
        job = self.get(job_id)
        if not isinstance(body, dict) or body.get("state") != "Aborted":
            raise ApiError(400, "INVALIDJOBSTATE", "Only the Aborted state can be set on a query job")
        if job.current_state() in ("JobComplete", "Failed", "Aborted"):
            raise ApiError(400, "INVALIDJOBSTATE", f"Job is already in state {job.current_state()}")
        job.state = "Aborted"
        job.modstamp = format_datetime(self.clock.now())
        return job.info(full=False)

    def delete(self, job_id: str) -> None:
        job = self.get(job_id)
        if job.current_state() in ("UploadComplete", "InProgress"):
            raise ApiError(400, "INVALIDJOBSTATE", "Abort the job before deleting it")
        del self.jobs[job_id]

    def results(self, job_id: str, locator: str | None, max_records: str | None,
                version: str) -> tuple[str, str, int]:
        job = self.get(job_id)
        if job.api_version != version:
            raise ApiError(409, "INVALIDJOBSTATE", "The API version of the request does not match the job's")
        if job.current_state() != "JobComplete":
            raise ApiError(412, "JOB_NOT_COMPLETE", f"Job {job_id} is not complete")
        start = 0
        if locator:
            try:
                start = int(base64.b64decode(locator + "=" * (-len(locator) % 4)).decode())
            except ValueError:
                raise ApiError(400, "INVALID_LOCATOR", f"Invalid locator: {locator}") from None
            if not 0 <= start <= len(job.record_ids):
                raise ApiError(400, "INVALID_LOCATOR", f"Invalid locator: {locator}")
        size = len(job.record_ids) - start
        if max_records:
            if not max_records.isdigit() or int(max_records) < 1:
                raise ApiError(400, "INVALIDPARAM", "maxRecords must be a positive integer")
            size = min(size, int(max_records))
        end = start + size
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=DELIMITERS[job.column_delimiter],
                            lineterminator=LINE_ENDINGS[job.line_ending], quoting=csv.QUOTE_ALL)
        columns = job.compiled.columns
        writer.writerow([c.header for c in columns])
        rows = self.store.tables[job.object].rows
        for record_id in job.record_ids[start:end]:
            rec = rows.get(record_id)
            if rec is not None:
                writer.writerow([csv_value(c.fdef, c.getter(rec)) for c in columns])
        next_locator = "null"
        if end < len(job.record_ids):
            next_locator = base64.b64encode(str(end).encode()).decode().rstrip("=")
        return buffer.getvalue(), next_locator, size
