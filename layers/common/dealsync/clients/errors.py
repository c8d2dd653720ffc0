"""What a CRM failure means for the sync: retry later, or a sync error with a category."""

from __future__ import annotations

from dealsync.models.domain import ErrorCategory


class CrmError(Exception):
    """A failed CRM call, already classified."""

    def __init__(self, crm: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{crm}: {message}")
        self.crm = crm
        self.message = message
        self.status = status


class TransientCrmError(CrmError):
    """Worth retrying: 5xx, timeouts, rate limits that reset soon, lock contention."""


class ApiBudgetExceededError(CrmError):
    """The daily allowance is spent: pause until it resets (sync error API_BUDGET)."""

    category = ErrorCategory.API_BUDGET


class PermanentCrmError(CrmError):
    """Will fail again until something changes (data, mapping, permission): recorded, not retried."""

    def __init__(self, crm: str, message: str, category: ErrorCategory, *, status: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(crm, message, status=status)
        self.category = category
        self.code = code


class RecordError(PermanentCrmError):
    """One record of a batch failed; the rest of the batch went through."""

    def __init__(self, crm: str, record_id: str, message: str, category: ErrorCategory, *,
                 status: int | None = None, code: str | None = None) -> None:
        super().__init__(crm, f"{record_id}: {message}", category, status=status, code=code)
        self.record_id = record_id
