"""Salesforce error values and the exceptions that carry them to a response."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SfError:
    code: str
    message: str
    fields: tuple[str, ...] = ()

    def rest(self) -> dict[str, Any]:
        """The REST shape: ``{"message", "errorCode", "fields"}``."""
        return {"message": self.message, "errorCode": self.code, "fields": list(self.fields)}

    def item(self) -> dict[str, Any]:
        """The shape inside save results (sObject Collections): ``{"statusCode", "message", "fields"}``."""
        return {"statusCode": self.code, "message": self.message, "fields": list(self.fields)}


class ApiError(Exception):
    """A request-level failure rendered as a JSON error array with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.errors = [SfError(code, message, fields)]


@dataclass
class RecordError(Exception):
    """One record could not be saved (status 400 unless said otherwise)."""

    errors: list[SfError]
    status: int = 400
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__("; ".join(f"{e.code}: {e.message}" for e in self.errors))

    @classmethod
    def one(cls, code: str, message: str, fields: tuple[str, ...] = (), status: int = 400) -> RecordError:
        return cls([SfError(code, message, fields)], status)


class MultipleMatchesError(Exception):
    """An external id matched more than one record (HTTP 300)."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(f"{len(ids)} records match")
        self.ids = ids


NOT_FOUND_MESSAGE = "The requested resource does not exist"


def not_found() -> ApiError:
    return ApiError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
