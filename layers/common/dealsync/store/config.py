"""Field mappings, value maps and stage maps: small, read in one query, written by the operator.

Mapping and value-map items carry `updated_at`, so a worker that cached the CRM facts (describe,
properties) before the operator added a mapping knows to read them again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from dealsync.models.domain import FieldMapping, StageMapping
from dealsync.store.dynamo import DynamoTable, iso, now_utc, parse_iso

CONFIG_PK = "CONFIG"


@dataclass(frozen=True)
class StoredConfig:
    mappings: dict[str, FieldMapping] = field(default_factory=dict)  # by Salesforce field
    value_maps: dict[str, dict[str, str]] = field(default_factory=dict)  # SF field -> {SF value: HS value}
    stage_maps: dict[str, StageMapping] = field(default_factory=dict)  # by record type id
    mappings_changed_at: datetime | None = None  # the latest mapping or value-map write

    def stage_map_for_pipeline(self, pipeline_id: str) -> StageMapping | None:
        return next((m for m in self.stage_maps.values() if m.pipeline_id == pipeline_id), None)


class ConfigStore:
    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    def load(self) -> StoredConfig:
        mappings: dict[str, FieldMapping] = {}
        value_maps: dict[str, dict[str, str]] = {}
        stage_maps: dict[str, StageMapping] = {}
        changed: list[datetime] = []
        for item in self.table.query("pk = :pk", {":pk": CONFIG_PK}, consistent=True):
            kind, _, name = item["sk"].partition("#")
            if kind == "MAPPING":
                mappings[name] = FieldMapping.model_validate(item["value"])
            elif kind == "VALUEMAP":
                value_maps[name] = dict(item["value"])
            elif kind == "PIPELINE":
                stage_maps[name] = StageMapping.model_validate(item["value"])
                continue
            if (moment := parse_iso(item.get("updated_at"))) is not None:
                changed.append(moment)
        return StoredConfig(mappings, value_maps, stage_maps, max(changed) if changed else None)

    def put_mapping(self, mapping: FieldMapping) -> None:
        self.table.put({"pk": CONFIG_PK, "sk": f"MAPPING#{mapping.salesforce_field}",
                        "value": mapping.model_dump(mode="json"), "updated_at": iso(now_utc())})

    def delete_mapping(self, salesforce_field: str) -> None:
        self.table.delete({"pk": CONFIG_PK, "sk": f"MAPPING#{salesforce_field}"})

    def put_value_map(self, salesforce_field: str, pairs: dict[str, str]) -> None:
        self.table.put({"pk": CONFIG_PK, "sk": f"VALUEMAP#{salesforce_field}", "value": dict(pairs),
                        "updated_at": iso(now_utc())})

    def delete_value_map(self, salesforce_field: str) -> None:
        self.table.delete({"pk": CONFIG_PK, "sk": f"VALUEMAP#{salesforce_field}"})

    def put_stage_map(self, mapping: StageMapping) -> None:
        self.table.put({"pk": CONFIG_PK, "sk": f"PIPELINE#{mapping.record_type_id}",
                        "value": mapping.model_dump(mode="json")})

    def delete_stage_map(self, record_type_id: str) -> None:
        self.table.delete({"pk": CONFIG_PK, "sk": f"PIPELINE#{record_type_id}"})
