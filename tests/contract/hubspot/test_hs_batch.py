"""Batch endpoints: limits, 207 multi-status with objectWriteTraceId, upsert on a unique property,
unique-value conflicts, batch read by idProperty and property histories by source."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hubspot.crm.contacts import BatchReadInputSimplePublicObjectId as ContactsBatchRead
from hubspot.crm.contacts import SimplePublicObjectId as ContactId
from hubspot.crm.deals import (
    ApiException,
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    SimplePublicObjectBatchInput,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectId,
    SimplePublicObjectInput,
)
from hubspot.crm.properties import PropertyCreate, PropertyGroupCreate

from dealsync_local.hubspot import HubSpotEmulator
from dealsync_local.hubspot.testing import HubSpotHttp


@pytest.fixture
def sf_property(client: Any) -> str:
    """dealsync's unique key on deals."""
    client.crm.properties.groups_api.create("deals", PropertyGroupCreate(name="salesforce_sync",
                                                                         label="Salesforce sync"))
    client.crm.properties.core_api.create("deals", PropertyCreate(
        name="salesforce_opportunity_id", label="Salesforce opportunity id", type="string", field_type="text",
        group_name="salesforce_sync", has_unique_value=True))
    return "salesforce_opportunity_id"


def deal_input(i: int, **extra: Any) -> SimplePublicObjectBatchInputForCreate:
    return SimplePublicObjectBatchInputForCreate(
        properties={"dealname": f"Deal {i}", "dealstage": "qualifiedtobuy", **extra}, associations=[], **{})


def upsert(i: str, **props: str) -> SimplePublicObjectBatchInputUpsert:
    return SimplePublicObjectBatchInputUpsert(id=i, id_property="salesforce_opportunity_id", properties=props)


def test_batch_create_shape_and_the_100_limit(client: Any, http: HubSpotHttp) -> None:
    created = client.crm.deals.batch_api.create(
        BatchInputSimplePublicObjectBatchInputForCreate(inputs=[deal_input(i) for i in range(100)]))
    assert created.status == "COMPLETE"
    assert len(created.results) == 100 and created.started_at <= created.completed_at
    raw = http.post("/crm/v3/objects/deals/batch/create",
                    {"inputs": [{"properties": {"dealname": "x", "dealstage": "qualifiedtobuy"}}]})
    assert raw.status_code == 201
    assert set(raw.json()) >= {"status", "results", "startedAt", "completedAt"}
    with pytest.raises(ApiException) as caught:
        client.crm.deals.batch_api.create(
            BatchInputSimplePublicObjectBatchInputForCreate(inputs=[deal_input(i) for i in range(101)]))
    assert caught.value.status == 400
    body = json.loads(caught.value.body)
    assert body["category"] == "VALIDATION_ERROR"
    assert body["message"] == ("The maximum number of inputs supported in a batch is 100. Please reduce the "
                               "number of items and try again")
    for op in ("read", "update", "upsert", "archive"):
        response = http.post(f"/crm/v3/objects/deals/batch/{op}", {"inputs": [{"id": str(i)} for i in range(101)]})
        assert response.status_code == 400, op
    assert len(client.crm.deals.get_all()) == 101


def test_batch_create_without_trace_ids_is_all_or_nothing(client: Any) -> None:
    with pytest.raises(ApiException) as caught:
        client.crm.deals.batch_api.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
            deal_input(1), deal_input(2, dealtype="no-such-type"), deal_input(3)]))
    assert caught.value.status == 400
    assert client.crm.deals.basic_api.get_page().results == []


def test_batch_create_with_trace_ids_answers_207(client: Any, http: HubSpotHttp) -> None:
    response = http.post("/crm/v3/objects/deals/batch/create", {"inputs": [
        {"properties": {"dealname": "ok", "dealstage": "qualifiedtobuy"}, "objectWriteTraceId": "t-ok"},
        {"properties": {"dealname": "bad", "dealstage": "qualifiedtobuy", "missing": "x"},
         "objectWriteTraceId": "t-bad"},
    ]})
    assert response.status_code == 207
    body = response.json()
    assert body["status"] == "COMPLETE"
    assert body["numErrors"] == 1
    assert [r["objectWriteTraceId"] for r in body["results"]] == ["t-ok"]
    error = body["errors"][0]
    assert error["status"] == "error"
    assert error["category"] == "VALIDATION_ERROR"
    assert error["context"]["objectWriteTraceId"] == ["t-bad"]
    assert '"error":"PROPERTY_DOESNT_EXIST"' in error["message"]
    assert {"links", "errors"} <= set(error)  # required by the spec's StandardError
    # Through the SDK the 207 is a normal answer with errors.
    result = client.crm.deals.batch_api.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
        SimplePublicObjectBatchInputForCreate(properties={"dealname": "a", "dealstage": "nope"}, associations=[],
                                              object_write_trace_id="a"),
        SimplePublicObjectBatchInputForCreate(properties={"dealname": "b", "dealstage": "closedwon"}, associations=[],
                                              object_write_trace_id="b")]))
    assert [r.object_write_trace_id for r in result.results] == ["b"]
    assert result.errors[0].context["objectWriteTraceId"] == ["a"]
    assert result.num_errors == 1


def test_upsert_creates_then_updates_on_the_unique_property(client: Any, sf_property: str) -> None:
    first = client.crm.deals.batch_api.upsert(BatchInputSimplePublicObjectBatchInputUpsert(inputs=[
        upsert("006000000000001AAA", dealname="One", dealstage="qualifiedtobuy"),
        upsert("006000000000002AAA", dealname="Two", dealstage="closedwon")]))
    assert [r.new for r in first.results] == [True, True]
    assert first.results[0].properties["salesforce_opportunity_id"] == "006000000000001AAA"
    second = client.crm.deals.batch_api.upsert(BatchInputSimplePublicObjectBatchInputUpsert(inputs=[
        upsert("006000000000001AAA", dealname="One (renamed)"),
        upsert("006000000000003AAA", dealname="Three", dealstage="qualifiedtobuy")]))
    assert [r.new for r in second.results] == [False, True]
    assert second.results[0].id == first.results[0].id
    assert second.results[0].properties["dealname"] == "One (renamed)"
    assert len(client.crm.deals.get_all()) == 3
    with pytest.raises(ApiException) as caught:  # the same id twice in one batch
        client.crm.deals.batch_api.upsert(BatchInputSimplePublicObjectBatchInputUpsert(inputs=[
            upsert("006000000000001AAA", dealname="x"), upsert("006000000000001AAA", dealname="y")]))
    assert "Duplicate IDs" in json.loads(caught.value.body)["message"]
    with pytest.raises(ApiException) as caught:  # idProperty must be a unique-value property
        client.crm.deals.batch_api.upsert(BatchInputSimplePublicObjectBatchInputUpsert(inputs=[
            SimplePublicObjectBatchInputUpsert(id="x", id_property="dealname", properties={})]))
    assert caught.value.status == 400
    with pytest.raises(ApiException) as caught:  # creating needs a valid stage too
        client.crm.deals.batch_api.upsert(BatchInputSimplePublicObjectBatchInputUpsert(inputs=[
            upsert("006000000000009AAA", dealname="no stage")]))
    assert caught.value.status == 400


def test_unique_values_are_enforced_on_every_write(client: Any, sf_property: str) -> None:
    created = client.crm.deals.batch_api.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
        deal_input(1, salesforce_opportunity_id="A"), deal_input(2, salesforce_opportunity_id="B")]))
    a, b = created.results
    with pytest.raises(ApiException) as caught:
        client.crm.deals.basic_api.update(b.id, SimplePublicObjectInput(properties={"salesforce_opportunity_id": "A"}))
    assert caught.value.status == 409
    body = json.loads(caught.value.body)
    assert body["category"] == "CONFLICT"
    assert body["message"].endswith(f"Existing ID: {a.id}")
    with pytest.raises(ApiException) as caught:
        client.crm.deals.batch_api.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
            deal_input(3, salesforce_opportunity_id="C"), deal_input(4, salesforce_opportunity_id="C")]))
    assert caught.value.status == 409
    # Freed values can be taken again, within the same batch too.
    client.crm.deals.batch_api.update(BatchInputSimplePublicObjectBatchInput(inputs=[
        SimplePublicObjectBatchInput(id=a.id, properties={"salesforce_opportunity_id": "Z"}),
        SimplePublicObjectBatchInput(id=b.id, properties={"salesforce_opportunity_id": "A"})]))
    assert client.crm.deals.basic_api.get_by_id("A", id_property="salesforce_opportunity_id").id == b.id


def test_batch_update_by_id_property_and_207_for_missing(client: Any, sf_property: str, http: HubSpotHttp) -> None:
    client.crm.deals.batch_api.upsert(BatchInputSimplePublicObjectBatchInputUpsert(inputs=[
        upsert("OPP-1", dealname="One", dealstage="qualifiedtobuy")]))
    updated = client.crm.deals.batch_api.update(BatchInputSimplePublicObjectBatchInput(inputs=[
        SimplePublicObjectBatchInput(id="OPP-1", id_property="salesforce_opportunity_id",
                                     properties={"amount": "42"})]))
    assert updated.results[0].properties["amount"] == "42"
    response = http.post("/crm/v3/objects/deals/batch/update", {"inputs": [
        {"id": "OPP-1", "idProperty": "salesforce_opportunity_id", "properties": {"amount": "43"},
         "objectWriteTraceId": "1"},
        {"id": "OPP-404", "idProperty": "salesforce_opportunity_id", "properties": {"amount": "1"},
         "objectWriteTraceId": "2"}]})
    assert response.status_code == 207
    assert response.json()["errors"][0]["category"] == "OBJECT_NOT_FOUND"
    assert response.json()["errors"][0]["context"]["objectWriteTraceId"] == ["2"]


def test_batch_read_by_id_property_with_missing_ids(client: Any, http: HubSpotHttp) -> None:
    from hubspot.crm.contacts import BatchInputSimplePublicObjectBatchInputForCreate as Batch
    from hubspot.crm.contacts import SimplePublicObjectBatchInputForCreate as Input

    client.crm.contacts.batch_api.create(Batch(inputs=[
        Input(properties={"email": f"c{i}@example.com", "firstname": f"C{i}"}, associations=[]) for i in range(3)]))
    read = client.crm.contacts.batch_api.read(ContactsBatchRead(
        id_property="email", properties=["firstname"], properties_with_history=[],
        inputs=[ContactId(id="c1@example.com"), ContactId(id="C2@EXAMPLE.com")]))
    assert sorted(r.properties["firstname"] for r in read.results) == ["C1", "C2"]
    response = http.post("/crm/v3/objects/contacts/batch/read", {
        "idProperty": "email", "properties": ["email"], "propertiesWithHistory": [],
        "inputs": [{"id": "c0@example.com"}, {"id": "nobody@example.com"}, {"id": "ghost@example.com"}]})
    assert response.status_code == 207
    body = response.json()
    assert [r["properties"]["email"] for r in body["results"]] == ["c0@example.com"]
    assert body["errors"][0]["category"] == "OBJECT_NOT_FOUND"
    assert body["errors"][0]["context"]["ids"] == ["nobody@example.com", "ghost@example.com"]


def test_history_reads_are_limited_to_50_inputs(client: Any, http: HubSpotHttp) -> None:
    ids = [r.id for r in client.crm.deals.batch_api.create(BatchInputSimplePublicObjectBatchInputForCreate(
        inputs=[deal_input(i) for i in range(51)])).results]
    ok = client.crm.deals.batch_api.read(BatchReadInputSimplePublicObjectId(
        properties=[], properties_with_history=["dealname"], inputs=[SimplePublicObjectId(id=i) for i in ids[:50]]))
    assert len(ok.results) == 50
    response = http.post("/crm/v3/objects/deals/batch/read", {
        "properties": [], "propertiesWithHistory": ["dealname"], "inputs": [{"id": i} for i in ids]})
    assert response.status_code == 400
    assert "property histories is 50" in response.json()["message"]


def test_history_records_the_change_source(client: Any, person: Any, hs: HubSpotEmulator) -> None:
    created = client.crm.deals.batch_api.create(BatchInputSimplePublicObjectBatchInputForCreate(
        inputs=[deal_input(1, amount="10")]))
    deal_id = created.results[0].id
    person.crm.deals.basic_api.update(deal_id, SimplePublicObjectInput(properties={"amount": "20"}))
    client.crm.deals.basic_api.update(deal_id, SimplePublicObjectInput(properties={"amount": "20"}))  # no change
    client.crm.deals.basic_api.update(deal_id, SimplePublicObjectInput(properties={"amount": "30"}))
    read = client.crm.deals.batch_api.read(BatchReadInputSimplePublicObjectId(
        properties=["amount"], properties_with_history=["amount"], inputs=[SimplePublicObjectId(id=deal_id)]))
    history = read.results[0].properties_with_history["amount"]
    assert [h.value for h in history] == ["30", "20", "10"]  # newest first; the no-op left no entry
    assert [h.source_type for h in history] == ["INTEGRATION", "CRM_UI", "INTEGRATION"]
    assert history[0].source_id == str(hs.app_id)
    assert history[1].source_id == f"userId:{hs.person_user_id}"
    assert history[1].updated_by_user_id == hs.person_user_id
    assert history[0].timestamp > history[1].timestamp > history[2].timestamp
    single = client.crm.deals.basic_api.get_by_id(deal_id, properties_with_history=["amount", "dealname"])
    assert [h.value for h in single.properties_with_history["dealname"]] == ["Deal 1"]


def test_batch_archive_is_204_and_ignores_unknown_ids(client: Any) -> None:
    ids = [r.id for r in client.crm.deals.batch_api.create(BatchInputSimplePublicObjectBatchInputForCreate(
        inputs=[deal_input(i) for i in range(3)])).results]
    client.crm.deals.batch_api.archive(BatchInputSimplePublicObjectId(
        inputs=[SimplePublicObjectId(id=ids[0]), SimplePublicObjectId(id="123")]))
    assert sorted(d.id for d in client.crm.deals.get_all()) == sorted(ids[1:])
    archived = client.crm.deals.batch_api.read(BatchReadInputSimplePublicObjectId(
        properties=[], properties_with_history=[], inputs=[SimplePublicObjectId(id=ids[0])]), archived=True)
    assert archived.results[0].archived is True
