"""DESIGN 1.3 end to end: one HubSpot pipeline per record type within HubSpot's limit, named by the
record type id, with that record type's stages; past the limit, PIPELINE_LIMIT; a record type change
moves the deal to the other pipeline."""

from __future__ import annotations

import pytest

from dealsync.models.domain import ErrorCategory
from tests.pipelines.conftest import RECORD_TYPES, PipelineWorld

pytestmark = pytest.mark.e2e


def test_pipelines_per_record_type_within_the_limit(pipeline_world: PipelineWorld) -> None:
    stage_maps = pipeline_world.context.store.config.load().stage_maps
    # Alphabetical by name within the limit: Enterprise and Partner fit, Renewal does not.
    fitting = {pipeline_world.record_types["Enterprise"], pipeline_world.record_types["Partner"]}
    assert set(stage_maps) == fitting
    pipelines = {str(p["id"]): p for p in pipeline_world.context.hubspot.pipelines("deals")}
    for record_type_id in fitting:
        pipeline = pipelines[stage_maps[record_type_id].pipeline_id]
        assert pipeline["label"] == f"Salesforce - {record_type_id}"
        name = next(n for n, rt in pipeline_world.record_types.items() if rt == record_type_id)
        assert [stage["label"] for stage in sorted(pipeline["stages"], key=lambda s: s["display_order"])] \
            == RECORD_TYPES[name]


def _opportunity(pipeline_world: PipelineWorld, name: str, record_type: str, stage: str) -> str:
    opportunity_id: str = pipeline_world.salesforce.create("Opportunity", {
        "Name": name, "StageName": stage, "CloseDate": "2027-01-31", "Amount": 100,
        "AccountId": pipeline_world.account_id, "RecordTypeId": pipeline_world.record_types[record_type]})
    return opportunity_id


def test_record_type_past_the_limit_gets_pipeline_limit_and_no_deal(pipeline_world: PipelineWorld) -> None:
    opportunity_id = _opportunity(pipeline_world, "Initech renewal", "Renewal", "Qualification")
    pipeline_world.settle()
    assert pipeline_world.deal_for(opportunity_id) is None
    errors = pipeline_world.context.store.errors.for_record(opportunity_id)
    assert [error.category for error in errors] == [ErrorCategory.PIPELINE_LIMIT]


def test_record_type_change_moves_the_deal_to_the_other_pipeline(pipeline_world: PipelineWorld) -> None:
    opportunity_id = _opportunity(pipeline_world, "Initech expansion", "Enterprise", "Prospecting")
    pipeline_world.settle()
    stage_maps = pipeline_world.context.store.config.load().stage_maps
    enterprise = stage_maps[pipeline_world.record_types["Enterprise"]]
    partner = stage_maps[pipeline_world.record_types["Partner"]]
    deal = pipeline_world.deal_for(opportunity_id)
    assert deal is not None
    assert deal["properties"]["pipeline"] == enterprise.pipeline_id
    assert deal["properties"]["dealstage"] == enterprise.stages["Prospecting"]

    pipeline_world.salesforce.update("Opportunity", opportunity_id, {
        "RecordTypeId": pipeline_world.record_types["Partner"], "StageName": "Perception Analysis"})
    pipeline_world.settle()
    moved = pipeline_world.deal_for(opportunity_id)
    assert moved is not None
    assert moved["id"] == deal["id"]
    assert moved["properties"]["pipeline"] == partner.pipeline_id
    assert moved["properties"]["dealstage"] == partner.stages["Perception Analysis"]
