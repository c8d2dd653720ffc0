"""Bulk API 2.0 ingest jobs: create (``Open``), upload one CSV, close (``UploadComplete``), poll until
``JobComplete``, then read ``successfulResults`` / ``failedResults`` / ``unprocessedrecords``; abort and
delete. Operations ``insert``, ``update`` and ``delete``.

The rows are applied when the job is closed, each as one record of an sObject Collections request by
the job's creator (so change events and validation behave as for any API write), and the job reports
``InProgress`` until its (configurable) processing time has passed. Values are CSV text: an empty
field leaves the value as it is, ``#N/A`` sets it to null.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dealsync_local.salesforce.bulk import DELIMITERS, LINE_ENDINGS, JobBook, csv_format
from dealsync_local.salesforce.errors import ApiError
from dealsync_local.salesforce.ids import BULK_JOB_PREFIX
from dealsync_local.salesforce.schema import FieldDef, ObjectDef
from dealsync_local.salesforce.values import format_datetime

OPERATIONS = ("insert", "update", "delete")
NULL_VALUE = "#N/A"
MAX_UPLOAD_BYTES = 100 * 1024 * 1024  # reference: 100 MB of CSV per job (after base64, 150 MB)

# (operation, object, the rows as typed field dicts) -> one collection-style result per row.
Apply = Callable[[str, ObjectDef, Sequence[dict[str, Any]]], list[dict[str, Any]]]


@dataclass
class IngestJob:
    id: str
    operation: str
    object: str
    created_by: str
    created_date: str
    api_version: str
    column_delimiter: str
    line_ending: str
    state: str = "Open"
    modstamp: str = ""
    ready_at: float = 0.0
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    uploaded: bool = False
    polled: bool = False  # the closing response says UploadComplete; polls then see it progress
    error_message: str | None = None

    def current_state(self) -> str:
        if self.state == "UploadComplete" and self.polled:
            self.state = "InProgress"
        if self.state == "InProgress" and time.monotonic() >= self.ready_at:
            self.state = "JobComplete"
        return self.state

    @property
    def failed(self) -> int:
        return sum(1 for result in self.results if not result.get("success"))

    def info(self, *, full: bool = True) -> dict[str, Any]:
        state = self.current_state()
        data: dict[str, Any] = {
            "id": self.id, "operation": self.operation, "object": self.object, "createdById": self.created_by,
            "createdDate": self.created_date, "systemModstamp": self.modstamp or self.created_date,
            "state": state, "concurrencyMode": "Parallel", "contentType": "CSV",
            "apiVersion": float(self.api_version), "jobType": "V2Ingest",
            "contentUrl": f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches",
            "lineEnding": self.line_ending, "columnDelimiter": self.column_delimiter,
        }
        if full:
            done = state == "JobComplete"
            data.update({
                "numberRecordsProcessed": len(self.results) if done else 0,
                "numberRecordsFailed": self.failed if done else 0,
                "retries": 0, "totalProcessingTime": max(1, len(self.results) // 100) if done else 0,
                "apiActiveProcessingTime": 0, "apexProcessingTime": 0,
            })
            if self.error_message:
                data["errorMessage"] = self.error_message
        return data


def typed_value(fdef: FieldDef, text: str) -> Any:
    """A CSV cell as the field's value (``#N/A`` is null)."""
    if text == NULL_VALUE:
        return None
    if fdef.type == "boolean":
        return text.strip().lower() in ("true", "1", "yes")
    if fdef.type == "int":
        return int(float(text))
    if fdef.type in ("double", "currency", "percent"):
        return float(text)
    return text


class IngestJobs(JobBook[IngestJob]):
    def create(self, body: Any, user_id: str, version: str) -> IngestJob:
        if not isinstance(body, dict):
            raise ApiError(400, "INVALIDJOB", "The request body must be a JSON object")
        operation = body.get("operation")
        if operation not in OPERATIONS:
            raise ApiError(400, "INVALIDJOB", f"Invalid operation: {operation}")
        obj = self.store.object_named(str(body.get("object") or ""))
        if obj is None:
            raise ApiError(400, "INVALIDJOB", f"Invalid object: {body.get('object')}")
        delimiter, line_ending = csv_format(body)
        job = IngestJob(id=self.ids.next(BULK_JOB_PREFIX), operation=operation, object=obj.name, created_by=user_id,
                        created_date=format_datetime(self.clock.now()), api_version=version,
                        column_delimiter=delimiter, line_ending=line_ending)
        self.jobs[job.id] = job
        return job

    def poll(self, job_id: str) -> dict[str, Any]:
        job = self.get(job_id)
        job.polled = True
        return job.info()

    def upload(self, job_id: str, data: bytes, content_type: str) -> None:
        job = self.get(job_id)
        if job.current_state() != "Open":
            raise ApiError(409, "INVALIDJOBSTATE", f"Job {job_id} is not open for data upload")
        if job.uploaded:
            raise ApiError(400, "INVALIDJOBSTATE", "Only one upload of data is allowed per job")
        if not content_type.lower().startswith("text/csv"):
            raise ApiError(400, "INVALIDCONTENTTYPE", f"Content type {content_type} is not supported: text/csv")
        if len(data) > MAX_UPLOAD_BYTES:
            raise ApiError(400, "INVALIDBATCH", "The data exceeds the 100 MB limit of one upload")
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=DELIMITERS[job.column_delimiter])
        lines = [row for row in reader if row]
        if not lines:
            raise ApiError(400, "INVALIDBATCH", "The CSV data has no header row")
        header, rows = lines[0], lines[1:]
        obj = self.store.schema[job.object]
        unknown = [name for name in header if obj.field(name) is None]
        if unknown:
            raise ApiError(400, "INVALIDBATCH", f"Field name not found : {unknown[0]}")
        if job.operation in ("update", "delete") and "Id" not in header:
            raise ApiError(400, "INVALIDBATCH", f"The {job.operation} operation needs an Id column")
        if any(len(row) != len(header) for row in rows):
            raise ApiError(400, "INVALIDBATCH", "A row has a different number of columns than the header")
        job.header, job.rows, job.uploaded = header, rows, True

    def set_state(self, job_id: str, body: Any, apply: Apply) -> IngestJob:
        job = self.get(job_id)
        target = body.get("state") if isinstance(body, dict) else None
        state = job.current_state()
        if target == "Aborted":
            if state in ("JobComplete", "Failed", "Aborted"):
                raise ApiError(400, "INVALIDJOBSTATE", f"Job is already in state {state}")
            job.state = "Aborted"
        elif target == "UploadComplete":
            if state != "Open":
                raise ApiError(400, "INVALIDJOBSTATE", f"Job is in state {state}, not Open")
            if not job.uploaded:
                job.state, job.error_message = "Failed", "No data was uploaded to the job"
            else:
                job.state, job.ready_at = "UploadComplete", time.monotonic() + self.processing_seconds
                job.results = self._process(job, apply)
        else:
            raise ApiError(400, "INVALIDJOBSTATE", "The state must be UploadComplete or Aborted")
        job.modstamp = format_datetime(self.clock.now())
        return job

    def _process(self, job: IngestJob, apply: Apply) -> list[dict[str, Any]]:
        obj = self.store.schema[job.object]
        records = []
        for row in job.rows:
            record: dict[str, Any] = {}
            for name, text in zip(job.header, row, strict=True):
                fdef = obj.field(name)
                if fdef is not None and text != "":  # an empty cell leaves the value as it is
                    record[fdef.name] = text if fdef.name == "Id" else typed_value(fdef, text)
            records.append(record)
        return apply(job.operation, obj, records)

    def delete(self, job_id: str) -> None:
        job = self.get(job_id)
        if job.current_state() in ("Open", "UploadComplete", "InProgress"):
            raise ApiError(400, "INVALIDJOBSTATE", "Abort or complete the job before deleting it")
        del self.jobs[job_id]

    def results(self, job_id: str, kind: str) -> str:
        """``successfulResults``, ``failedResults`` or ``unprocessedrecords`` as CSV."""
        job = self.get(job_id)
        state = job.current_state()
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=DELIMITERS[job.column_delimiter],
                            lineterminator=LINE_ENDINGS[job.line_ending], quoting=csv.QUOTE_MINIMAL)
        if kind == "unprocessedrecords":
            writer.writerow(job.header)
            if state in ("Aborted", "Failed") or not job.results:
                writer.writerows(job.rows)
            return buffer.getvalue()
        if state != "JobComplete":
            raise ApiError(400, "INVALIDJOBSTATE", f"Job {job_id} is not complete")
        success = kind == "successfulResults"
        writer.writerow(["sf__Id", "sf__Created" if success else "sf__Error", *job.header])
        for row, result in zip(job.rows, job.results, strict=True):
            if bool(result.get("success")) != success:
                continue
            if success:
                writer.writerow([result.get("id", ""), "true" if job.operation == "insert" else "false", *row])
            else:
                errors = result.get("errors") or [{}]
                cause = ":".join([str(errors[0].get("statusCode", "UNKNOWN_EXCEPTION")),
                                  str(errors[0].get("message", "")), "--"])
                writer.writerow([result.get("id", ""), cause, *row])
        return buffer.getvalue()
