"""Reconcile runs: each run's progress (so a scheduled run continues where its last step stopped) and
the last finished run, which ``dealsync reconcile --last`` shows.

The run is stored as one JSON document: it is read and written whole, and a step's write is
conditional on the step it continued from, so two workers holding the same run never both advance it.
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from dealsync.store.dynamo import DynamoTable, serialize

RUN_RETENTION_SECONDS = 35 * 24 * 3600  # a run's progress is kept five weeks (TTL); the last run forever
_LAST_KEY = {"pk": "RECONCILE", "sk": "LAST"}


class StaleRunError(Exception):
    """Another worker advanced (or created) this run first."""


def _run_key(run_id: str) -> dict[str, str]:
    return {"pk": f"RECONCILE#{run_id}", "sk": "RUN"}


def _is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code", "") == "ConditionalCheckFailedException"


class ReconcileStore:
    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    def get(self, run_id: str) -> str | None:
        item = self.table.get(_run_key(run_id))
        return str(item["document"]) if item else None

    def save(self, run_id: str, document: str, step: int) -> None:
        """Write the run at ``step``: refused (StaleRunError) unless it stands at ``step - 1`` (absent for 0)."""
        condition = "attribute_not_exists(pk)" if step == 0 else "step = :previous"
        values = {":previous": step - 1} if step else None
        item = {**_run_key(run_id), "document": document, "step": step,
                "expires_at": int(time.time()) + RUN_RETENTION_SECONDS}
        kwargs: dict[str, Any] = {"ConditionExpression": condition}
        if values:
            kwargs["ExpressionAttributeValues"] = serialize(values)
        try:
            self.table.put(item, **kwargs)
        except ClientError as error:
            if _is_condition_failure(error):
                raise StaleRunError(f"reconcile run {run_id} is past step {step - 1}") from error
            raise

    def save_last(self, document: str) -> None:
        self.table.put({**_LAST_KEY, "document": document})

    def last(self) -> str | None:
        item = self.table.get(_LAST_KEY)
        return str(item["document"]) if item else None
