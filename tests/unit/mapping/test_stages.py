"""Pipelines for record types, stage probabilities, the pipeline limit and stage lookups."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from dealsync.mapping.stages import (
    DEFAULT_PIPELINE_LABEL,
    OpportunityStageRow,
    RecordTypeStages,
    StageLookupError,
    StageMap,
    build_stages,
    master_stage_values,
    pipeline_label,
    plan_pipelines,
    stage_mapping_from_pipeline,
    stage_probability,
)
from dealsync.models.domain import ErrorCategory, StageMapping

ROWS = [
    OpportunityStageRow("Prospecting", "Prospecting", default_probability=10, sort_order=1),
    OpportunityStageRow("Qualification", "Qualification", default_probability=25, sort_order=2),
    OpportunityStageRow("Negotiation/Review", "Negotiation", default_probability=75, sort_order=4),
    OpportunityStageRow("Proposal", "Proposal", default_probability=65, sort_order=3),
    OpportunityStageRow("Closed Won", "Closed_Won", is_closed=True, is_won=True, default_probability=100, sort_order=9),
    OpportunityStageRow("Closed Lost", "Closed_Lost", is_closed=True, default_probability=0, sort_order=10),
    OpportunityStageRow("Dormant", "Dormant", is_active=False, default_probability=5, sort_order=11),
]
RT_A = "012000000000001AAA"
RT_B = "012000000000002AAA"
RT_C = "012000000000003AAA"


@pytest.mark.parametrize(("percent", "expected"), [
    (0, "0.0"), (5, "0.1"), (10, "0.1"), (14, "0.1"), (15, "0.2"), (25, "0.3"), (50, "0.5"), (65, "0.7"),
    (75, "0.8"), (94, "0.9"), (95, "1.0"), (100, "1.0"), (None, "0.0"), ("20", "0.2"), (150, "1.0"), (-5, "0.0"),
])
def test_probability_rounds_half_up_to_a_tenth(percent: object, expected: str) -> None:
    assert stage_probability(percent, closed=False, won=False) == Decimal(expected)


def test_won_and_lost_probabilities_ignore_default_probability() -> None:
    assert stage_probability(40, closed=True, won=True) == Decimal("1.0")
    assert stage_probability(40, closed=True, won=False) == Decimal("0.0")


def test_stages_follow_the_record_types_order_and_join_opportunity_stage() -> None:
    stages = build_stages(["Prospecting", "Negotiation/Review", "Closed Won", "Closed Lost"], ROWS)
    assert [(s.label, s.display_order, str(s.probability), s.closed, s.won) for s in stages] == [
        ("Prospecting", 0, "0.1", False, False),
        ("Negotiation/Review", 1, "0.8", False, False),
        ("Closed Won", 2, "1.0", True, True),
        ("Closed Lost", 3, "0.0", True, False),
    ]


def test_stage_join_falls_back_to_api_name_and_unknown_is_open() -> None:
    stages = build_stages(["Closed_Won", "Mystery", "Mystery"], ROWS)
    assert [(s.label, str(s.probability), s.closed) for s in stages] == [
        ("Closed Won", "1.0", True), ("Mystery", "0.0", False),
    ]


def test_master_stage_values_are_active_ones_in_sort_order() -> None:
    assert master_stage_values(ROWS) == (
        "Prospecting", "Qualification", "Proposal", "Negotiation/Review", "Closed Won", "Closed Lost",
    )


def test_org_without_record_types_gets_the_default_pipeline() -> None:
    plan = plan_pipelines([], ROWS, limit=None)
    assert [(p.record_type_key, p.label) for p in plan.pipelines] == [("default", DEFAULT_PIPELINE_LABEL)]
    assert [s.label for s in plan.pipelines[0].stages][:2] == ["Prospecting", "Qualification"]
    assert plan.over_limit == ()


def test_org_with_one_record_type_gets_the_default_pipeline_with_its_stages() -> None:
    record_types = [RecordTypeStages(RT_A, "Sales", ("Prospecting", "Closed Won")),
                    RecordTypeStages(RT_B, "Old", ("Prospecting",), active=False),
                    RecordTypeStages("012000000000000AAA", "Master", ("Prospecting",))]
    plan = plan_pipelines(record_types, ROWS, limit=5)
    assert [(p.record_type_key, p.label) for p in plan.pipelines] == [("default", "Salesforce - Default pipeline")]
    assert [s.label for s in plan.pipelines[0].stages] == ["Prospecting", "Closed Won"]


def test_several_record_types_get_one_pipeline_each_in_a_stable_order() -> None:
    record_types = [RecordTypeStages(RT_C, "renewals", ("Closed Won",)),
                    RecordTypeStages(RT_A, "Sales", ("Prospecting",)),
                    RecordTypeStages(RT_B, "Partners", ("Proposal",))]
    plan = plan_pipelines(record_types, ROWS, limit=None)
    assert [p.record_type_key for p in plan.pipelines] == [RT_B, RT_C, RT_A]  # by name, case-insensitive
    assert [p.label for p in plan.pipelines] == [f"Salesforce - {RT_B}", f"Salesforce - {RT_C}", f"Salesforce - {RT_A}"]
    assert [p.display_order for p in plan.pipelines] == [0, 1, 2]


def test_record_types_past_the_limit_do_not_sync_and_existing_ones_keep_their_slot() -> None:
    record_types = [RecordTypeStages(RT_A, "A", ("Prospecting",)), RecordTypeStages(RT_B, "B", ("Prospecting",)),
                    RecordTypeStages(RT_C, "C", ("Prospecting",))]
    plan = plan_pipelines(record_types, ROWS, limit=2)
    assert [p.record_type_key for p in plan.pipelines] == [RT_A, RT_B]
    assert plan.over_limit == (RT_C,)
    existing = [StageMapping(record_type_id=RT_C, pipeline_id="p3", label="x", stages={})]
    kept = plan_pipelines(record_types, ROWS, limit=2, existing=existing)
    assert [p.record_type_key for p in kept.pipelines] == [RT_C, RT_A]
    assert kept.over_limit == (RT_B,)
    assert plan_pipelines([], ROWS, limit=0).over_limit == ("default",)


def test_fifteen_character_record_type_ids_become_eighteen() -> None:
    record_types = [RecordTypeStages(RT_A[:15], "A", ("Prospecting",)), RecordTypeStages(RT_B, "B", ("Proposal",))]
    assert plan_pipelines(record_types, ROWS, limit=None).pipelines[0].label == f"Salesforce - {RT_A}"
    assert pipeline_label(RT_A[:15]) == f"Salesforce - {RT_A}"


def test_pipeline_create_body() -> None:
    plan = plan_pipelines([RecordTypeStages(RT_A, "A", ("Prospecting", "Closed Won", "Closed Lost")),
                           RecordTypeStages(RT_B, "B", ("Proposal",))], ROWS, limit=None)
    assert plan.pipelines[0].create_body() == {
        "label": f"Salesforce - {RT_A}",
        "displayOrder": 0,
        "stages": [
            {"label": "Prospecting", "displayOrder": 0, "metadata": {"probability": "0.1", "isClosed": "false"}},
            {"label": "Closed Won", "displayOrder": 1, "metadata": {"probability": "1.0", "isClosed": "true"}},
            {"label": "Closed Lost", "displayOrder": 2, "metadata": {"probability": "0.0", "isClosed": "true"}},
        ],
    }
    bare = plan.pipelines[0].create_body(include_is_closed=False)
    assert bare["stages"][0]["metadata"] == {"probability": "0.1"}


def test_record_type_stages_from_ui_api_response() -> None:
    response = {"values": [{"label": "Prospecting", "value": "Prospecting", "validFor": []},
                           {"label": "Won", "value": "Closed Won", "validFor": []}], "defaultValue": None}
    stages = RecordTypeStages.from_picklist_values(RT_A[:15], "Sales", response)
    assert stages == RecordTypeStages(RT_A, "Sales", ("Prospecting", "Closed Won"))


def test_opportunity_stage_row_from_soql_record() -> None:
    row = OpportunityStageRow.from_record({"attributes": {}, "MasterLabel": "Closed Won", "ApiName": "Closed_Won",
                                           "IsActive": True, "IsClosed": True, "IsWon": True,
                                           "DefaultProbability": 100.0, "SortOrder": 9})
    assert (row.master_label, row.is_closed, row.is_won, row.default_probability) == ("Closed Won", True, True, 100.0)


def test_stage_mapping_from_created_pipeline() -> None:
    response = {"id": "732", "label": f"Salesforce - {RT_A}",
                "stages": [{"id": "1001", "label": "Prospecting"}, {"id": "1002", "label": "Closed Won"}]}
    mapping = stage_mapping_from_pipeline(RT_A[:15], response)
    assert mapping == StageMapping(record_type_id=RT_A, pipeline_id="732", label=f"Salesforce - {RT_A}",
                                   stages={"Prospecting": "1001", "Closed Won": "1002"})


STAGE_MAP = StageMap([
    StageMapping(record_type_id=RT_A, pipeline_id="pa", label="a", stages={"Prospecting": "a1", "Closed Won": "a2"}),
    StageMapping(record_type_id=RT_B[:15], pipeline_id="pb", label="b", stages={"Proposal": "b1"}),
])


def test_stage_lookups_both_ways() -> None:
    assert STAGE_MAP.to_hubspot(RT_A, "Closed Won") == ("pa", "a2")
    assert STAGE_MAP.to_hubspot(RT_A[:15], "Prospecting") == ("pa", "a1")
    assert STAGE_MAP.to_salesforce("pa", "a2") == (RT_A, "Closed Won")
    assert STAGE_MAP.to_salesforce("pb", "b1") == (RT_B, "Proposal")  # stored 15-char id comes back as 18
    assert STAGE_MAP.syncs_pipeline("pa")
    assert not STAGE_MAP.syncs_pipeline("default")


@pytest.mark.parametrize(("call", "category", "text"), [
    (lambda: STAGE_MAP.to_hubspot(RT_A, "Qualification"), ErrorCategory.UNMAPPED_STAGE, "'Qualification'"),
    (lambda: STAGE_MAP.to_hubspot(RT_C, "Prospecting"), ErrorCategory.PIPELINE_LIMIT, RT_C),
    (lambda: STAGE_MAP.to_hubspot(None, "Prospecting"), ErrorCategory.PIPELINE_LIMIT, "(none)"),
    (lambda: STAGE_MAP.to_salesforce("pa", "zz"), ErrorCategory.UNMAPPED_STAGE, "zz"),
    (lambda: STAGE_MAP.to_salesforce("default", "appointmentscheduled"), ErrorCategory.UNMAPPED_STAGE,
     "does not sync"),
])
def test_stage_lookup_errors(call: Callable[[], object], category: ErrorCategory, text: str) -> None:
    with pytest.raises(StageLookupError) as info:
        call()
    assert info.value.category is category
    assert text in info.value.message


def test_single_pipeline_org_maps_every_record_type_to_default() -> None:
    single = StageMap([StageMapping(record_type_id="default", pipeline_id="p1", label="d", stages={"A": "s1"})])
    assert single.to_hubspot(None, "A") == ("p1", "s1")
    assert single.to_hubspot(RT_A, "A") == ("p1", "s1")
    assert single.to_salesforce("p1", "s1") == ("default", "A")
    assert single.record_type_key(RT_A) == "default"
