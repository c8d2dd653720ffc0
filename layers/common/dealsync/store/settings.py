"""The sync toggles with the rules of DESIGN 1.1, and the operator options."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from dealsync.models.domain import SyncOptions, SyncToggles
from dealsync.store.dynamo import DynamoTable, iso, now_utc, parse_iso

TOGGLES_KEY = {"pk": "SETTINGS", "sk": "TOGGLES"}
OPTIONS_KEY = {"pk": "SETTINGS", "sk": "OPTIONS"}

STEP_COMPANY_SYNC = "turn on company sync first (dealsync toggle company-sync on)"
STEP_ACCOUNT_IMPORT = "run an account import to completion first (dealsync import accounts)"
STEP_DEAL_SYNC = "turn on deal sync first (dealsync toggle deal-sync on)"
STEP_DEAL_SYNC_OFF = "turn off deal sync first (dealsync toggle deal-sync off): deal sync needs company sync"


class ToggleRefusedError(Exception):
    """A toggle or import was refused; the message names every missing step."""

    def __init__(self, action: str, missing_steps: list[str]) -> None:
        self.action = action
        self.missing_steps = missing_steps
        super().__init__(f"Cannot {action}: " + "; ".join(missing_steps) + ".")


def _toggles(item: dict[str, Any] | None) -> SyncToggles:
    if not item:
        return SyncToggles()
    return SyncToggles(
        company_sync=bool(item.get("company_sync", False)),
        account_import_completed=bool(item.get("account_import_completed", False)),
        deal_sync=bool(item.get("deal_sync", False)),
        updated_at=parse_iso(item.get("updated_at")),
    )


def _is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class SettingsStore:
    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    def toggles(self) -> SyncToggles:
        return _toggles(self.table.get(TOGGLES_KEY))

    def _set(self, field: str, value: bool, condition: str | None = None,
             values: dict[str, Any] | None = None) -> SyncToggles:
        item = self.table.update(
            TOGGLES_KEY,
            f"SET {field} = :value, updated_at = :now",
            values={":value": value, ":now": iso(now_utc()), **(values or {})},
            condition=condition,
        )
        return _toggles(item)

    def set_company_sync(self, on: bool) -> SyncToggles:
        if on:
            return self._set("company_sync", True)
        try:  # deal sync depends on company sync: refuse to pull it out from under it
            return self._set(
                "company_sync", False,
                condition="attribute_not_exists(deal_sync) OR deal_sync = :false", values={":false": False},
            )
        except ClientError as error:
            if _is_condition_failure(error):
                raise ToggleRefusedError("turn off company sync", [STEP_DEAL_SYNC_OFF]) from error
            raise

    def mark_account_import_completed(self) -> SyncToggles:
        return self._set("account_import_completed", True)

    def set_deal_sync(self, on: bool) -> SyncToggles:
        if not on:
            return self._set("deal_sync", False)
        try:  # checked in the write itself, so a concurrent change cannot slip between check and set
            return self._set(
                "deal_sync", True,
                condition="company_sync = :true AND account_import_completed = :true", values={":true": True},
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise
            current = self.toggles()
            missing = []
            if not current.company_sync:
                missing.append(STEP_COMPANY_SYNC)
            if not current.account_import_completed:
                missing.append(STEP_ACCOUNT_IMPORT)
            raise ToggleRefusedError("turn on deal sync", missing or [STEP_COMPANY_SYNC]) from error

    def require_deal_sync(self, action: str) -> SyncToggles:
        current = self.toggles()
        if not current.deal_sync:
            raise ToggleRefusedError(action, [STEP_DEAL_SYNC])
        return current

    def require_company_sync(self, action: str) -> SyncToggles:
        current = self.toggles()
        if not current.company_sync:
            raise ToggleRefusedError(action, [STEP_COMPANY_SYNC])
        return current

    def options(self) -> SyncOptions:
        item = self.table.get(OPTIONS_KEY) or {}
        return SyncOptions.model_validate({key: value for key, value in item.items() if key not in ("pk", "sk")})

    def set_options(self, **changes: Any) -> SyncOptions:
        merged = self.options().model_copy(update=changes)
        validated = SyncOptions.model_validate(merged.model_dump())
        self.table.put({**OPTIONS_KEY, **validated.model_dump(mode="json")})
        return validated
