"""The DynamoDB store: one table (SyncTable) holding links, shadows, toggles, configuration,
cursors, jobs, sync errors and the rollup projection."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dealsync.store.association_times import AssociationTimesStore
from dealsync.store.config import ConfigStore, StoredConfig
from dealsync.store.cursors import CursorStore
from dealsync.store.dedupe import DedupeStore
from dealsync.store.dynamo import DynamoTable
from dealsync.store.errors import ErrorStore
from dealsync.store.jobs import JobStore
from dealsync.store.links import LinkNotFoundError, LinkStore, StaleShadowError
from dealsync.store.rollups import RollupStore
from dealsync.store.settings import SettingsStore, ToggleRefusedError
from dealsync.store.usage import UsageStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

__all__ = [
    "LinkNotFoundError",
    "StaleShadowError",
    "StoredConfig",
    "SyncStore",
    "ToggleRefusedError",
]


class SyncStore:
    """Every store over one table and one client."""

    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table = DynamoTable(table_name, client)
        self.links = LinkStore(self.table)
        self.settings = SettingsStore(self.table)
        self.config = ConfigStore(self.table)
        self.cursors = CursorStore(self.table)
        self.jobs = JobStore(self.table)
        self.errors = ErrorStore(self.table)
        self.rollups = RollupStore(self.table)
        self.dedupe = DedupeStore(self.table)
        self.usage = UsageStore(self.table)
        self.association_times = AssociationTimesStore(self.table)

    @classmethod
    def from_settings(cls) -> SyncStore:
        from dealsync.settings import get_settings

        return cls(get_settings().sync_table_name)
