"""Provisioning HubSpot pipelines for Salesforce record types (DESIGN 1.3), safe to repeat.

Reads the record types, their sales-process stages (UI API) and OpportunityStage; creates the
pipelines that fit within the account's limit; stores record type ⇄ pipeline and stage ⇄ stage maps.
"""

from __future__ import annotations

from dataclasses import dataclass

from dealsync.mapping.stages import (
    OpportunityStageRow,
    RecordTypeStages,
    pipeline_label,
    plan_pipelines,
    stage_mapping_from_pipeline,
)
from dealsync.models.domain import StageMapping
from dealsync.observability import logger
from dealsync.services.context import SyncContext

TIER_PIPELINE_LIMITS = {"free": 1, "starter": 2, "professional": 15, "enterprise": 100}


@dataclass(frozen=True)
class PipelineReport:
    mappings: tuple[StageMapping, ...]
    created: tuple[str, ...]
    over_limit: tuple[str, ...]
    limit: int | None


def _record_types(context: SyncContext) -> list[RecordTypeStages]:
    if not context.has_record_types:
        return []
    rows = context.salesforce.query(
        "SELECT Id, Name, IsActive FROM RecordType WHERE SobjectType = 'Opportunity' ORDER BY Name")
    record_types = []
    for row in rows:
        if not row.get("IsActive"):
            continue
        picklists = context.salesforce.picklist_values("Opportunity", row["Id"])
        stage_values = picklists.get("picklistFieldValues", {}).get("StageName", {})
        record_types.append(RecordTypeStages.from_picklist_values(row["Id"], row["Name"], stage_values))
    return record_types


def _limit(context: SyncContext, ours: set[str], pipelines: list[dict[str, object]]) -> int | None:
    """How many Salesforce pipelines may exist: HubSpot's limit less the pipelines that are not ours."""
    options = context.options()
    limit = context.hubspot.pipeline_limit()
    if limit is None:
        limit = options.pipeline_limit or TIER_PIPELINE_LIMITS.get(options.hubspot_tier)
    if limit is None:
        return None
    foreign = sum(1 for pipeline in pipelines if str(pipeline["id"]) not in ours)
    return max(limit - foreign, 0)


def provision_pipelines(context: SyncContext) -> PipelineReport:
    config = context.config()
    existing = list(config.stage_maps.values())
    stage_rows = [OpportunityStageRow.from_record(row) for row in context.salesforce.query(
        "SELECT MasterLabel, ApiName, IsActive, IsClosed, IsWon, DefaultProbability, SortOrder "
        "FROM OpportunityStage ORDER BY SortOrder")]
    hubspot_pipelines = context.hubspot.pipelines("deals")
    by_id = {str(pipeline["id"]): pipeline for pipeline in hubspot_pipelines}
    by_label = {str(pipeline["label"]): pipeline for pipeline in hubspot_pipelines}
    ours = {mapping.pipeline_id for mapping in existing if mapping.pipeline_id in by_id}
    ours |= {str(p["id"]) for p in hubspot_pipelines if str(p["label"]).startswith("Salesforce - ")}
    limit = _limit(context, ours, hubspot_pipelines)
    plan = plan_pipelines(_record_types(context), stage_rows, limit=limit, existing=existing)

    mappings: list[StageMapping] = []
    created: list[str] = []
    for spec in plan.pipelines:
        current = config.stage_maps.get(spec.record_type_key)
        pipeline = by_id.get(current.pipeline_id) if current else None
        if pipeline is None:
            # A pipeline created before its map was saved (a crash in between) is found by label.
            pipeline = by_label.get(pipeline_label(spec.record_type_key))
        if pipeline is None:
            pipeline = context.hubspot.create_pipeline(spec.create_body(), "deals")
            created.append(spec.label)
        mapping = stage_mapping_from_pipeline(spec.record_type_key, pipeline)
        missing_stages = [stage.label for stage in spec.stages if stage.label not in mapping.stages]
        if missing_stages:
            logger.warning("pipeline lacks Salesforce stages", extra={
                "pipeline_id": mapping.pipeline_id, "stages": missing_stages})
        if current != mapping:
            context.store.config.put_stage_map(mapping)
        mappings.append(mapping)
    for key in plan.over_limit:
        if key in config.stage_maps:
            context.store.config.delete_stage_map(key)
    logger.info("pipelines provisioned", extra={"pipelines": len(mappings), "pipelines_created": len(created),
                                                "over_limit": list(plan.over_limit), "limit": limit})
    return PipelineReport(tuple(mappings), tuple(created), tuple(plan.over_limit), limit)
