"""Pipelines and stages (DESIGN 1.3): one HubSpot pipeline per Salesforce opportunity record type.

- Pipeline label `Salesforce - <18-char RecordTypeId>`, or `Salesforce - Default pipeline` when the org
  has a single pipeline (no record types or one); that one is keyed `default` in the stage maps.
- Stages: the record type's sales-process stages in Salesforce order (UI API picklist values)
  joined to `OpportunityStage` rows. Probability = DefaultProbability / 100 rounded to one decimal
  with ROUND_HALF_UP (75 % -> 0.8, 25 % -> 0.3, 5 % -> 0.1); won stages 1.0, lost stages 0.0.
- Record types past the pipeline limit do not sync (PIPELINE_LIMIT). Which ones fit is
  deterministic: record types that already have a pipeline keep it, in their existing order; then
  new ones by name (case-insensitive), then id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from dealsync.mapping.values import sf_id_18
from dealsync.models.domain import ErrorCategory, StageMapping

DEFAULT_RECORD_TYPE_KEY = "default"
MASTER_RECORD_TYPE_ID = "012000000000000AAA"
PIPELINE_LABEL_PREFIX = "Salesforce - "
DEFAULT_PIPELINE_LABEL = f"{PIPELINE_LABEL_PREFIX}Default pipeline"
_ONE_TENTH = Decimal("0.1")


def normalise_record_type_key(record_type_key: str) -> str:
    return record_type_key if record_type_key == DEFAULT_RECORD_TYPE_KEY else sf_id_18(record_type_key)


def pipeline_label(record_type_key: str) -> str:
    if record_type_key == DEFAULT_RECORD_TYPE_KEY:
        return DEFAULT_PIPELINE_LABEL
    return f"{PIPELINE_LABEL_PREFIX}{sf_id_18(record_type_key)}"


def stage_probability(default_probability: object, *, closed: bool, won: bool) -> Decimal:
    """HubSpot stage probability: 0.0-1.0 in steps of 0.1, as HubSpot requires."""
    if won:
        return Decimal("1.0")
    if closed:
        return Decimal("0.0")
    try:
        percent = Decimal(str(default_probability)) if default_probability is not None else Decimal(0)
    except InvalidOperation:
        percent = Decimal(0)
    fraction = (percent / 100).quantize(_ONE_TENTH, rounding=ROUND_HALF_UP)
    return min(max(fraction, Decimal("0.0")), Decimal("1.0"))


@dataclass(frozen=True)
class OpportunityStageRow:
    """One `OpportunityStage` row (SOQL): the org-wide facts about a stage value."""

    master_label: str  # the value stored in Opportunity.StageName
    api_name: str | None = None
    is_active: bool = True
    is_closed: bool = False
    is_won: bool = False
    default_probability: Decimal | int | float | str | None = None
    sort_order: int | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> OpportunityStageRow:
        return cls(
            master_label=str(record["MasterLabel"]), api_name=record.get("ApiName"),
            is_active=bool(record.get("IsActive", True)), is_closed=bool(record.get("IsClosed", False)),
            is_won=bool(record.get("IsWon", False)), default_probability=record.get("DefaultProbability"),
            sort_order=record.get("SortOrder"),
        )


@dataclass(frozen=True)
class RecordTypeStages:
    """An opportunity record type and its sales-process stage values, in Salesforce order."""

    record_type_id: str
    name: str
    stage_values: tuple[str, ...]
    active: bool = True

    @classmethod
    def from_picklist_values(cls, record_type_id: str, name: str, ui_api_response: Mapping[str, Any],
                             *, active: bool = True) -> RecordTypeStages:
        """From `GET .../ui-api/object-info/Opportunity/picklist-values/{recordTypeId}/StageName`."""
        values = tuple(str(entry["value"]) for entry in ui_api_response.get("values", []))
        return cls(sf_id_18(record_type_id), name, values, active)


@dataclass(frozen=True)
class PipelineStageSpec:
    label: str  # the Salesforce stage name
    display_order: int
    probability: Decimal
    closed: bool
    won: bool

    def metadata(self, *, include_is_closed: bool = True) -> dict[str, str]:
        # isClosed tells an open 0 % stage from a lost one; the reference sees it in responses only,
        # so callers can leave it out if a HubSpot account refuses it.
        metadata = {"probability": f"{self.probability:.1f}"}
        if include_is_closed:
            metadata["isClosed"] = "true" if self.closed else "false"
        return metadata


@dataclass(frozen=True)
class PipelineSpec:
    record_type_key: str  # 18-char record type id, or "default"
    label: str
    display_order: int
    stages: tuple[PipelineStageSpec, ...]

    def create_body(self, *, include_is_closed: bool = True) -> dict[str, Any]:
        """The body of `POST /crm/v3/pipelines/deals`."""
        return {
            "label": self.label,
            "displayOrder": self.display_order,
            "stages": [
                {"label": stage.label, "displayOrder": stage.display_order,
                 "metadata": stage.metadata(include_is_closed=include_is_closed)}
                for stage in self.stages
            ],
        }


@dataclass(frozen=True)
class PipelinePlan:
    pipelines: tuple[PipelineSpec, ...]
    over_limit: tuple[str, ...] = ()  # record type keys that do not sync (PIPELINE_LIMIT)


def _index_stage_rows(rows: Iterable[OpportunityStageRow]) -> dict[str, OpportunityStageRow]:
    index: dict[str, OpportunityStageRow] = {}
    for row in rows:
        if row.api_name:
            index.setdefault(row.api_name, row)
    for row in rows:
        index[row.master_label] = row  # the stored value wins over an equal ApiName
    return index


def build_stages(stage_values: Sequence[str], rows: Iterable[OpportunityStageRow]) -> tuple[PipelineStageSpec, ...]:
    """A record type's stages joined to OpportunityStage; a value without a row is an open 0 % stage."""
    index = _index_stage_rows(list(rows))
    stages: list[PipelineStageSpec] = []
    seen: set[str] = set()
    for value in stage_values:
        if value in seen:  # HubSpot stage labels are unique within a pipeline
            continue
        seen.add(value)
        row = index.get(value)
        closed, won = (row.is_closed, row.is_won) if row else (False, False)
        probability = stage_probability(row.default_probability if row else None, closed=closed, won=won)
        label = row.master_label if row else value
        stages.append(PipelineStageSpec(label, len(stages), probability, closed, won))
    return tuple(stages)


def master_stage_values(rows: Iterable[OpportunityStageRow]) -> tuple[str, ...]:
    """All active stages in SortOrder: the stage list of an org without record types."""
    active = [row for row in rows if row.is_active]
    ordered = sorted(enumerate(active), key=lambda pair: (pair[1].sort_order is None, pair[1].sort_order or 0, pair[0]))
    return tuple(row.master_label for _, row in ordered)


def plan_pipelines(
    record_types: Sequence[RecordTypeStages],
    stage_rows: Sequence[OpportunityStageRow],
    *,
    limit: int | None,
    existing: Sequence[StageMapping] = (),
) -> PipelinePlan:
    """The pipelines to have, in order, and the record types past `limit`.

    `limit` is how many Salesforce pipelines may exist (HubSpot's limit minus pipelines not ours);
    None for no limit. Inactive record types get no pipeline. With at most one active record type
    the org has a single "default" pipeline (from that record type's stages, or every active stage).
    """
    active = [rt for rt in record_types if rt.active and sf_id_18(rt.record_type_id) != MASTER_RECORD_TYPE_ID]
    if len(active) <= 1:
        values = active[0].stage_values if active else master_stage_values(stage_rows)
        candidates = [(DEFAULT_RECORD_TYPE_KEY, values)]
    else:
        existing_order = {sf_id_18(m.record_type_id): position for position, m in enumerate(existing)}
        ordered = sorted(active, key=lambda rt: (
            existing_order.get(sf_id_18(rt.record_type_id), len(existing_order)),
            rt.name.casefold(), sf_id_18(rt.record_type_id),
        ))
        candidates = [(sf_id_18(rt.record_type_id), rt.stage_values) for rt in ordered]
    fitting = candidates if limit is None else candidates[: max(limit, 0)]
    pipelines = tuple(
        PipelineSpec(key, pipeline_label(key), position, build_stages(values, stage_rows))
        for position, (key, values) in enumerate(fitting)
    )
    return PipelinePlan(pipelines, tuple(key for key, _ in candidates[len(fitting):]))


def stage_mapping_from_pipeline(record_type_key: str, pipeline: Mapping[str, Any]) -> StageMapping:
    """The stage map of a created (or found) HubSpot pipeline: stage label (= Salesforce stage) -> stage id."""
    return StageMapping(
        record_type_id=normalise_record_type_key(record_type_key),
        pipeline_id=str(pipeline["id"]),
        label=str(pipeline.get("label") or pipeline_label(record_type_key)),
        stages={str(stage["label"]): str(stage["id"]) for stage in pipeline.get("stages", [])},
    )


class StageLookupError(LookupError):
    def __init__(self, message: str, *, category: ErrorCategory) -> None:
        super().__init__(message)
        self.message = message
        self.category = category


class StageMap:
    """Stage lookups both ways over the stored StageMappings."""

    def __init__(self, mappings: Iterable[StageMapping]) -> None:
        self._by_record_type: dict[str, StageMapping] = {}
        self._by_pipeline: dict[str, StageMapping] = {}
        for mapping in mappings:
            self._by_record_type[normalise_record_type_key(mapping.record_type_id)] = mapping
            self._by_pipeline[mapping.pipeline_id] = mapping

    @property
    def mappings(self) -> list[StageMapping]:
        return list(self._by_record_type.values())

    def for_record_type(self, record_type_id: str | None) -> StageMapping | None:
        """The record type's pipeline; in a single-pipeline org every opportunity uses the default one."""
        if record_type_id:
            found = self._by_record_type.get(sf_id_18(record_type_id))
            if found is not None:
                return found
        return self._by_record_type.get(DEFAULT_RECORD_TYPE_KEY)

    def for_pipeline(self, pipeline_id: str | None) -> StageMapping | None:
        return self._by_pipeline.get(pipeline_id) if pipeline_id else None

    def syncs_pipeline(self, pipeline_id: str | None) -> bool:
        """False for a deal outside the Salesforce pipelines: its link pauses, a new one is not sent."""
        return self.for_pipeline(pipeline_id) is not None

    def to_hubspot(self, record_type_id: str | None, stage_name: str) -> tuple[str, str]:
        """(pipeline id, stage id) for an opportunity's record type and StageName."""
        mapping = self.for_record_type(record_type_id)
        if mapping is None:
            raise StageLookupError(f"record type {record_type_id or '(none)'} has no HubSpot pipeline "
                                   "(past the pipeline limit)", category=ErrorCategory.PIPELINE_LIMIT)
        stage_id = mapping.stages.get(stage_name)
        if stage_id is None:
            raise StageLookupError(f"stage {stage_name!r} is not in HubSpot pipeline {mapping.pipeline_id}",
                                   category=ErrorCategory.UNMAPPED_STAGE)
        return mapping.pipeline_id, stage_id

    def to_salesforce(self, pipeline_id: str | None, stage_id: str | None) -> tuple[str, str]:
        """(record type key, StageName) for a deal's pipeline and stage; the key is "default" or an 18-char id."""
        mapping = self.for_pipeline(pipeline_id)
        if mapping is None:
            raise StageLookupError(f"HubSpot pipeline {pipeline_id or '(none)'} does not sync to Salesforce",
                                   category=ErrorCategory.UNMAPPED_STAGE)
        for stage_name, mapped_id in mapping.stages.items():
            if mapped_id == stage_id:
                return normalise_record_type_key(mapping.record_type_id), stage_name
        raise StageLookupError(
            f"HubSpot stage {stage_id or '(none)'} of pipeline {pipeline_id} has no Salesforce stage",
            category=ErrorCategory.UNMAPPED_STAGE)

    def record_type_key(self, record_type_id: str | None) -> str | None:
        mapping = self.for_record_type(record_type_id)
        return normalise_record_type_key(mapping.record_type_id) if mapping is not None else None
