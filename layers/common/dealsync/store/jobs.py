"""Import and recompute jobs: status, atomic counters and the chunks that make them resumable.

A chunk is counted exactly once: completing it flips its status and adds to the job's counters in
one transaction, so a redelivered or resumed chunk cannot count twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from dealsync.models.domain import Job, JobStatus
from dealsync.store.dynamo import DynamoTable, Item, iso, now_utc, parse_iso, serialize


def _job_key(job_id: str) -> dict[str, str]:
    return {"pk": f"JOB#{job_id}", "sk": "JOB"}


def _chunk_key(job_id: str, chunk: int) -> dict[str, str]:
    return {"pk": f"JOB#{job_id}", "sk": f"CHUNK#{chunk:07d}"}


def _to_job(item: Item) -> Job:
    return Job(
        job_id=item["job_id"], kind=item["kind"], status=JobStatus(item["status"]),
        total=int(item.get("total", 0)), done=int(item.get("done", 0)), failed=int(item.get("failed", 0)),
        chunks_total=int(item.get("chunks_total", 0)), chunks_done=int(item.get("chunks_done", 0)),
        created_at=parse_iso(item["created_at"]) or now_utc(),
        updated_at=parse_iso(item["updated_at"]) or now_utc(),
        finished_at=parse_iso(item.get("finished_at")), message=item.get("message"), paused=item.get("paused"),
    )


class JobStore:
    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    def create(self, kind: str, job_id: str | None = None) -> Job:
        moment = iso(now_utc())
        job_id = job_id or uuid.uuid4().hex[:12]
        item = {
            **_job_key(job_id), "job_id": job_id, "kind": kind, "status": str(JobStatus.PENDING),
            "total": 0, "done": 0, "failed": 0, "chunks_total": 0, "chunks_done": 0,
            "created_at": moment, "updated_at": moment,
            "gsi1pk": "JOBS", "gsi1sk": f"{moment}#{job_id}",
        }
        self.table.put(item, ConditionExpression="attribute_not_exists(pk)")
        return _to_job(item)

    def get(self, job_id: str) -> Job | None:
        item = self.table.get(_job_key(job_id))
        return _to_job(item) if item else None

    def recent(self, limit: int = 20) -> list[Job]:
        items = self.table.query("gsi1pk = :pk", {":pk": "JOBS"}, index="gsi1", forward=False, limit=limit)
        return [_to_job(item) for item in items]

    def add_chunks(self, job_id: str, chunks: Sequence[tuple[int, Sequence[str]]]) -> None:
        """Record chunks (number, record ids) before they are queued, and grow the job's totals."""
        if not chunks:
            return
        self.table.batch_write(
            puts=[{**_chunk_key(job_id, number), "ids": list(ids), "status": "pending"} for number, ids in chunks]
        )
        self.table.update(
            _job_key(job_id), "ADD chunks_total :chunks, #total :records SET updated_at = :now",
            names={"#total": "total"},
            values={":chunks": len(chunks), ":records": sum(len(ids) for _, ids in chunks), ":now": iso(now_utc())},
        )

    def set_status(self, job_id: str, status: JobStatus, message: str | None = None) -> Job:
        moment = iso(now_utc())
        expression = "SET #status = :status, updated_at = :now, message = :message"
        values: dict[str, Any] = {":status": str(status), ":now": moment, ":message": message}
        if status in (JobStatus.COMPLETED, JobStatus.FAILED):
            expression += ", finished_at = :now"
        return _to_job(self.table.update(_job_key(job_id), expression, names={"#status": "status"}, values=values))

    def complete_chunk(self, job_id: str, chunk: int, done: int, failed: int) -> bool:
        """Count a chunk's results once. False when it was already counted (a redelivery)."""
        moment = iso(now_utc())
        try:
            self.table.transact([
                {
                    "Update": {
                        "Key": serialize(_chunk_key(job_id, chunk)),
                        "UpdateExpression": "SET #status = :done_status, finished_at = :now",
                        "ConditionExpression": "#status = :pending",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": serialize(
                            {":done_status": "done", ":pending": "pending", ":now": moment}
                        ),
                    }
                },
                {
                    "Update": {
                        "Key": serialize(_job_key(job_id)),
                        "UpdateExpression": "ADD done :done, failed :failed, chunks_done :one SET updated_at = :now",
                        "ExpressionAttributeValues": serialize(
                            {":done": done, ":failed": failed, ":one": 1, ":now": moment}
                        ),
                    }
                },
            ])
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                return False
            raise
        return True

    def add_counts(self, job_id: str, done: int = 0, failed: int = 0) -> Job:
        """Atomic increments (concurrent workers never lose an update)."""
        item = self.table.update(
            _job_key(job_id), "ADD done :done, failed :failed SET updated_at = :now",
            values={":done": done, ":failed": failed, ":now": iso(now_utc())},
        )
        return _to_job(item)

    def pending_chunks(self, job_id: str) -> list[tuple[int, list[str]]]:
        items = self.table.query(
            "pk = :pk AND begins_with(sk, :chunk)", {":pk": f"JOB#{job_id}", ":chunk": "CHUNK#"}, consistent=True
        )
        return [
            (int(item["sk"].removeprefix("CHUNK#")), list(item["ids"]))
            for item in items if item.get("status") == "pending"
        ]

    # --- pauses (API_BUDGET): the job keeps its status and pending chunks, and says why it waits ---------
    def pause(self, job_id: str, reason: str) -> bool:
        """Mark an unfinished job paused; False when it was already paused (or is finished, or unknown)."""
        return self.table.update_if(
            _job_key(job_id), "SET paused = :reason, paused_at = :now, updated_at = :now, message = :reason",
            "attribute_exists(pk) AND attribute_not_exists(paused) AND #status IN (:pending, :running)",
            names={"#status": "status"},
            values={":reason": reason, ":now": iso(now_utc()), ":pending": "pending", ":running": "running"},
        ) is not None

    def clear_pause(self, job_id: str, message: str) -> bool:
        """Lift a pause; False when another worker lifted it first (so only one resumes the job)."""
        return self.table.update_if(
            _job_key(job_id), "REMOVE paused, paused_at SET updated_at = :now, message = :message",
            "attribute_exists(paused)", values={":now": iso(now_utc()), ":message": message},
        ) is not None

    def paused(self, limit: int = 50) -> list[Job]:
        """Recent jobs that wait for their pause to be lifted."""
        unfinished = (JobStatus.PENDING, JobStatus.RUNNING)
        return [job for job in self.recent(limit) if job.paused and job.status in unfinished]
