"""Pipelines and stages (probability rules, the default pipeline, the per-tier limit and the limits
endpoint), owners, and properties (definitions, groups, read-only rollups)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hubspot.crm.contacts import ApiException as ContactsApiException
from hubspot.crm.contacts import SimplePublicObjectInput as ContactInput
from hubspot.crm.deals import SimplePublicObjectInputForCreate
from hubspot.crm.owners import ApiException as OwnersApiException
from hubspot.crm.pipelines import ApiException, PipelineInput, PipelinePatchInput, PipelineStageInput
from hubspot.crm.properties import ApiException as PropertiesApiException
from hubspot.crm.properties import PropertyCreate, PropertyGroupCreate, PropertyUpdate

from dealsync_local.hubspot import HubSpotEmulator
from dealsync_local.hubspot.testing import HubSpotHttp


def stages(*specs: tuple[str, Any, bool]) -> list[PipelineStageInput]:
    out = []
    for order, (label, probability, closed) in enumerate(specs):
        metadata: dict[str, Any] = {"probability": probability}
        if closed:
            metadata["isClosed"] = "true"
        out.append(PipelineStageInput(label=label, display_order=order, metadata=metadata))
    return out


def sf_pipeline(label: str) -> PipelineInput:
    return PipelineInput(label=label, display_order=1, stages=stages(
        ("Prospecting", 0.1, False), ("Negotiation", "0.9", False), ("Closed Won", 1.0, True),
        ("Closed Lost", 0, True)))


def test_default_pipeline(client: Any) -> None:
    pipelines = client.crm.pipelines.pipelines_api.get_all("deals").results
    assert [(p.id, p.label) for p in pipelines] == [("default", "Sales Pipeline")]
    got = [(s.id, s.metadata["probability"], s.metadata["isClosed"]) for s in pipelines[0].stages]
    assert got == [("appointmentscheduled", "0.2", "false"), ("qualifiedtobuy", "0.4", "false"),
                   ("presentationscheduled", "0.6", "false"), ("decisionmakerboughtin", "0.8", "false"),
                   ("contractsent", "0.9", "false"), ("closedwon", "1.0", "true"), ("closedlost", "0.0", "true")]


def test_create_pipeline_and_probability_rules(client: Any) -> None:
    created = client.crm.pipelines.pipelines_api.create("deals", sf_pipeline("Salesforce - 012000000000001AAA"))
    assert created.id.isdigit()
    assert [(s.label, s.metadata["probability"], s.metadata["isClosed"]) for s in created.stages] == [
        ("Prospecting", "0.1", "false"), ("Negotiation", "0.9", "false"), ("Closed Won", "1.0", "true"),
        ("Closed Lost", "0.0", "true")]
    deal = client.crm.deals.basic_api.create(SimplePublicObjectInputForCreate(properties={
        "dealname": "In new pipeline", "pipeline": created.id, "dealstage": created.stages[2].id}))
    got = client.crm.deals.basic_api.get_by_id(deal.id, properties=["hs_is_closed_won"])
    assert got.properties["hs_is_closed_won"] == "true"

    def refused(*specs: tuple[str, Any, bool], label: str = "Broken") -> dict[str, Any]:
        with pytest.raises(ApiException) as caught:
            client.crm.pipelines.pipelines_api.create("deals", PipelineInput(label=label, display_order=2,
                                                                             stages=stages(*specs)))
        assert caught.value.status in (400, 409)
        body: dict[str, Any] = json.loads(caught.value.body)
        return body

    assert refused(("A", 1.5, False))["category"] == "VALIDATION_ERROR"
    assert refused(("A", 0.25, False))["category"] == "VALIDATION_ERROR"
    assert refused(("A", 0.5, True))["category"] == "VALIDATION_ERROR"  # closed: won 1.0 or lost 0.0
    assert refused(("A", 0.1, False), ("a", 0.2, False))["category"] == "VALIDATION_ERROR"  # labels unique
    assert refused(("A", 0.1, False), label="Salesforce - 012000000000001AAA")["category"] == "CONFLICT"
    with pytest.raises(ApiException):
        client.crm.pipelines.pipelines_api.create("deals", PipelineInput(
            label="No metadata", display_order=3, stages=[PipelineStageInput(label="A", display_order=0,
                                                                            metadata={})]))


def test_pipeline_limit_per_tier_and_limits_endpoint(client: Any, hs: HubSpotEmulator, http: HubSpotHttp) -> None:
    hs.apply_config({"tier": "starter"})
    limits = http.get("/crm/v3/limits/pipelines").json()
    deals = limits["hubspotDefinedObjectTypes"][0]
    assert (deals["objectTypeId"], deals["limit"], deals["usage"]) == ("0-3", 2, 1)
    assert set(limits["customObjectTypes"]) == {"byObjectType", "overallLimit", "overallPercentage", "overallUsage"}
    client.crm.pipelines.pipelines_api.create("deals", sf_pipeline("Salesforce - A"))
    with pytest.raises(ApiException) as caught:
        client.crm.pipelines.pipelines_api.create("deals", sf_pipeline("Salesforce - B"))
    assert caught.value.status == 400
    body = json.loads(caught.value.body)
    assert body["subCategory"] == "PipelineError.PIPELINE_LIMIT_EXCEEDED"
    assert http.get("/crm/v3/limits/pipelines").json()["hubspotDefinedObjectTypes"][0]["usage"] == 2
    hs.apply_config({"tier": "enterprise"})
    assert http.get("/crm/v3/limits/pipelines").json()["hubspotDefinedObjectTypes"][0]["limit"] == 100
    hs.apply_config({"pipeline_limit": 3})
    client.crm.pipelines.pipelines_api.create("deals", sf_pipeline("Salesforce - B"))
    with pytest.raises(ApiException):
        client.crm.pipelines.pipelines_api.create("deals", sf_pipeline("Salesforce - C"))


def test_stage_crud_and_deletes(client: Any, http: HubSpotHttp) -> None:
    api = client.crm.pipelines
    pipeline = api.pipelines_api.create("deals", sf_pipeline("Salesforce - X"))
    added = api.pipeline_stages_api.create("deals", pipeline.id, PipelineStageInput(
        label="Discovery", display_order=0, metadata={"probability": 0.3}))
    assert added.metadata == {"isClosed": "false", "probability": "0.3"}
    listed = api.pipeline_stages_api.get_all("deals", pipeline.id).results
    assert "Discovery" in [s.label for s in listed]
    from hubspot.crm.pipelines import PipelineStagePatchInput

    patched = api.pipeline_stages_api.update("deals", pipeline.id, added.id, PipelineStagePatchInput(
        label="Discovery call", metadata={"probability": "0.4"}))
    assert (patched.label, patched.metadata["probability"]) == ("Discovery call", "0.4")
    client.crm.deals.basic_api.create(SimplePublicObjectInputForCreate(properties={
        "dealname": "Uses the stage", "pipeline": pipeline.id, "dealstage": added.id}))
    in_use = http.request("DELETE", f"/crm/v3/pipelines/deals/{pipeline.id}/stages/{added.id}",
                          params={"validateReferencesBeforeDelete": "true"})
    assert in_use.status_code == 409
    assert in_use.json()["subCategory"] == "PipelineError.STAGE_IN_USE"
    renamed = api.pipelines_api.update("deals", pipeline.id, PipelinePatchInput(label="Salesforce - Y"))
    assert renamed.label == "Salesforce - Y"
    with pytest.raises(ApiException) as caught:
        api.pipelines_api.archive("deals", pipeline.id, validate_references_before_delete=True)
    assert caught.value.status == 409
    api.pipelines_api.archive("deals", pipeline.id)
    assert [p.id for p in api.pipelines_api.get_all("deals").results] == ["default"]
    with pytest.raises(ApiException) as caught:  # the last pipeline stays
        api.pipelines_api.archive("deals", "default")
    assert caught.value.status == 400


def test_owners_lookup_by_email_and_paging(client: Any, hs: HubSpotEmulator) -> None:
    ids = hs.load(owners=[{"email": f"rep{i}@example.com", "firstName": "Rep", "lastName": str(i)}
                          for i in range(5)])["owners"]
    found = client.crm.owners.owners_api.get_page(email="REP3@example.com")
    assert [o.id for o in found.results] == [ids[3]]
    owner = found.results[0]
    assert (owner.email, owner.first_name, owner.last_name, owner.type, owner.archived) == (
        "rep3@example.com", "Rep", "3", "PERSON", False)
    assert isinstance(owner.user_id, int)
    page = client.crm.owners.owners_api.get_page(limit=2)
    assert len(page.results) == 2 and page.paging.next.after == page.results[-1].id
    rest = client.crm.owners.owners_api.get_page(limit=10, after=page.paging.next.after)
    assert len(rest.results) == 3
    assert client.crm.owners.owners_api.get_by_id(ids[0]).email == "rep0@example.com"
    by_user = client.crm.owners.owners_api.get_by_id(str(owner.user_id), id_property="userId")
    assert by_user.id == ids[3]
    with pytest.raises(OwnersApiException) as caught:
        client.crm.owners.owners_api.get_by_id("1")
    assert caught.value.status == 404
    deal = client.crm.deals.basic_api.create(SimplePublicObjectInputForCreate(properties={
        "dealname": "Owned", "dealstage": "qualifiedtobuy", "hubspot_owner_id": ids[1]}))
    assert client.crm.deals.basic_api.get_by_id(deal.id, properties=["hubspot_owner_id"]).properties[
        "hubspot_owner_id"] == ids[1]


def test_properties_definitions_and_custom_properties(client: Any) -> None:
    api = client.crm.properties
    deal_props = {p.name: p for p in api.core_api.get_all("deals").results}
    assert {"dealname", "amount", "closedate", "dealstage", "pipeline", "hubspot_owner_id", "dealtype",
            "description", "deal_currency_code", "createdate", "hs_lastmodifieddate", "hs_object_id"} <= set(deal_props)
    assert [o.value for o in deal_props["dealtype"].options] == ["newbusiness", "existingbusiness"]
    assert deal_props["hs_object_id"].modification_metadata.read_only_value is True
    assert deal_props["dealname"].modification_metadata.read_only_value is False
    assert "closedwon" in [o.value for o in deal_props["dealstage"].options]
    contact_props = {p.name: p for p in api.core_api.get_all("contacts").results}
    assert contact_props["email"].has_unique_value is True
    assert [o.value for o in contact_props["lifecyclestage"].options] == [
        "subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer",
        "evangelist", "other"]
    api.groups_api.create("deals", PropertyGroupCreate(name="salesforce_sync", label="Salesforce sync"))
    assert "salesforce_sync" in [g.name for g in api.groups_api.get_all("deals").results]
    created = api.core_api.create("deals", PropertyCreate(
        name="salesforce_opportunity_id", label="Salesforce opportunity id", type="string", field_type="text",
        group_name="salesforce_sync", has_unique_value=True))
    assert created.has_unique_value and created.modification_metadata.archivable
    assert created.hubspot_defined is False
    with pytest.raises(PropertiesApiException) as caught:
        api.core_api.create("deals", PropertyCreate(name="salesforce_opportunity_id", label="again", type="string",
                                                    field_type="text", group_name="salesforce_sync"))
    assert caught.value.status == 409
    with pytest.raises(PropertiesApiException) as caught:  # enumeration needs select/radio/checkbox
        api.core_api.create("deals", PropertyCreate(name="sf_kind", label="Kind", type="enumeration",
                                                    field_type="text", group_name="salesforce_sync",
                                                    options=[{"label": "A", "value": "a", "hidden": False}]))
    assert caught.value.status == 400
    with pytest.raises(PropertiesApiException) as caught:
        api.core_api.create("deals", PropertyCreate(name="x_y", label="X", type="string", field_type="text",
                                                    group_name="no_such_group"))
    assert caught.value.status == 400
    with pytest.raises(PropertiesApiException) as caught:
        api.core_api.archive("deals", "dealname")
    assert caught.value.status == 400
    updated = api.core_api.update("deals", "salesforce_opportunity_id", PropertyUpdate(label="SF Opportunity"))
    assert updated.label == "SF Opportunity"
    api.core_api.archive("deals", "salesforce_opportunity_id")
    with pytest.raises(PropertiesApiException):
        api.core_api.get_by_name("deals", "salesforce_opportunity_id")


def test_rollup_properties_can_be_switched_read_only(client: Any, hs: HubSpotEmulator) -> None:
    world = hs.load(contacts=[{"email": "buyer@example.com"}], deals=[
        {"properties": {"dealname": "Won", "dealstage": "closedwon", "amount": "100",
                        "closedate": "2024-05-01T00:00:00Z"},
         "associations": [{"to": {"id": "#0"}, "types": [
             {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}]}]},
        {"properties": {"dealname": "Open", "dealstage": "qualifiedtobuy", "amount": "50"},
         "associations": [{"to": {"id": "#0"}, "types": [
             {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}]}]}])
    contact = world["contacts"][0]
    meta = client.crm.properties.core_api.get_by_name("contacts", "total_revenue").modification_metadata
    assert meta.read_only_value is False
    client.crm.contacts.basic_api.update(contact, ContactInput(properties={"total_revenue": "5"}))
    hs.apply_config({"readonly_rollup_properties": True})
    meta = client.crm.properties.core_api.get_by_name("contacts", "total_revenue").modification_metadata
    assert meta.read_only_value is True
    with pytest.raises(ContactsApiException) as caught:
        client.crm.contacts.basic_api.update(contact, ContactInput(properties={"num_associated_deals": "2"}))
    assert caught.value.status == 400
    listed = json.loads(json.loads(caught.value.body)["message"].removeprefix("Property values were not valid: "))
    assert listed[0]["error"] == "READ_ONLY_VALUE"
    # Read-only, HubSpot calculates them from the contact's deals.
    got = client.crm.contacts.basic_api.get_by_id(contact, properties=[
        "num_associated_deals", "total_revenue", "recent_deal_amount", "recent_deal_close_date"])
    assert got.properties["num_associated_deals"] == "2"
    assert got.properties["total_revenue"] == "100"
    assert got.properties["recent_deal_amount"] == "100"
    assert got.properties["recent_deal_close_date"] == "2024-05-01T00:00:00.000Z"
