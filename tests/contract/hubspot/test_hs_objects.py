"""Objects (deals, contacts, companies) through the real client: shapes from the OpenAPI specs,
authentication, archive/restore, paging and HubSpot's validation errors."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from hubspot.crm.companies import SimplePublicObjectInputForCreate as CompanyCreate
from hubspot.crm.contacts import ApiException as ContactsApiException
from hubspot.crm.contacts import SimplePublicObjectInputForCreate as ContactCreate
from hubspot.crm.deals import ApiException, SimplePublicObjectInput, SimplePublicObjectInputForCreate
from hubspot.crm.objects import SimplePublicObjectInputForCreate as ObjectCreate
from hubspot.crm.properties import PropertyCreate

from dealsync_local.hubspot import HubSpotEmulator
from dealsync_local.hubspot.testing import HubSpotHttp

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def body_of(exc: Any) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(exc.body)
    return parsed


def new_deal(client: Any, **props: str) -> Any:
    properties = {"dealname": "Acme renewal", "dealstage": "appointmentscheduled", **props}
    return client.crm.deals.basic_api.create(SimplePublicObjectInputForCreate(properties=properties))


def test_missing_and_bad_tokens_get_hubspots_401(http: HubSpotHttp, client: Any, hs: HubSpotEmulator) -> None:
    response = http.get("/crm/v3/objects/deals", who=None)
    assert response.status_code == 401
    body = response.json()
    assert body["status"] == "error"
    assert body["category"] == "INVALID_AUTHENTICATION"
    assert "Authentication credentials not found" in body["message"]
    uuid.UUID(body["correlationId"])
    assert http.get("/crm/v3/objects/deals", who="pat-na1-forged").status_code == 401
    from hubspot import HubSpot

    bad = HubSpot(access_token="pat-na1-wrong", host=http.base_url, ssl_ca_cert=http.session.verify)
    with pytest.raises(ApiException) as caught:
        bad.crm.deals.basic_api.get_page()
    assert caught.value.status == 401
    assert body_of(caught.value)["category"] == "INVALID_AUTHENTICATION"
    # Neither counts as a request of the app.
    assert hs.limiter.daily_used == 0


def test_unknown_route_and_object_type(http: HubSpotHttp) -> None:
    response = http.get("/crm/v3/nothing-here")
    assert response.status_code == 404
    assert response.json()["status"] == "error"
    response = http.get("/crm/v3/objects/widgets")
    assert response.status_code == 400
    assert response.json()["message"] == "Unable to infer object type from: widgets"


def test_create_read_update_with_spec_shapes(client: Any, http: HubSpotHttp) -> None:
    deal = new_deal(client, amount="1500.00", closedate="2019-12-07T16:50:06.678Z")
    assert deal.id.isdigit()
    props = deal.properties
    assert props["hs_object_id"] == deal.id
    assert props["pipeline"] == "default"  # one pipeline: the default
    assert ISO_MS.match(props["createdate"]) and ISO_MS.match(props["hs_lastmodifieddate"])
    assert props["amount"] == "1500.00"
    assert props["closedate"] == "2019-12-07T16:50:06.678Z"
    raw = http.get(f"/crm/v3/objects/deals/{deal.id}").json()
    assert set(raw) >= {"id", "properties", "createdAt", "updatedAt", "archived"}
    assert raw["archived"] is False and "archivedAt" not in raw
    # Explicit properties: unset ones come back null, unknown names are ignored.
    got = client.crm.deals.basic_api.get_by_id(deal.id, properties=["dealname", "description", "not_a_prop"])
    assert got.properties["dealname"] == "Acme renewal"
    assert got.properties["description"] is None
    assert "not_a_prop" not in got.properties
    assert {"hs_object_id", "createdate", "hs_lastmodifieddate"} <= set(got.properties)
    updated = client.crm.deals.basic_api.update(deal.id, SimplePublicObjectInput(properties={"amount": 2000}))
    assert updated.properties["amount"] == "2000"
    assert updated.updated_at > deal.updated_at
    # The same deal through the object type id path of the spec.
    by_type_id = client.crm.objects.basic_api.get_by_id("0-3", deal.id, properties=["amount"])
    assert by_type_id.properties["amount"] == "2000"
    created = client.crm.objects.basic_api.create("0-3", ObjectCreate(
        properties={"dealname": "Via 0-3", "dealstage": "qualifiedtobuy"}))
    assert http.get(f"/crm/v3/objects/deals/{created.id}").json()["properties"]["dealname"] == "Via 0-3"


def test_archive_is_204_then_only_readable_as_archived(client: Any, http: HubSpotHttp, hs: HubSpotEmulator) -> None:
    deal = new_deal(client)
    response = http.request("DELETE", f"/crm/v3/objects/deals/{deal.id}")
    assert response.status_code == 204 and response.content == b""
    with pytest.raises(ApiException) as caught:
        client.crm.deals.basic_api.get_by_id(deal.id)
    assert caught.value.status == 404
    assert body_of(caught.value)["category"] == "OBJECT_NOT_FOUND"
    archived = client.crm.deals.basic_api.get_by_id(deal.id, archived=True)
    assert archived.archived is True and archived.archived_at is not None
    listed = client.crm.deals.basic_api.get_page(archived=True)
    assert [d.id for d in listed.results] == [deal.id]
    assert client.crm.deals.basic_api.get_page().results == []
    with pytest.raises(ApiException) as caught:
        client.crm.deals.basic_api.update(deal.id, SimplePublicObjectInput(properties={"amount": "1"}))
    assert caught.value.status == 404
    # Restoring is a person's action in the UI, offered as a control endpoint.
    restored = http.control("restore", {"id": deal.id}).json()
    assert restored["archived"] is False
    assert client.crm.deals.basic_api.get_by_id(deal.id).archived is False
    client.crm.deals.basic_api.archive(deal.id)
    assert hs.restore(deal.id)["id"] == deal.id  # the same as a Python method


def test_list_pages_with_after(client: Any) -> None:
    from hubspot.crm.contacts import BatchInputSimplePublicObjectBatchInputForCreate as Batch
    from hubspot.crm.contacts import SimplePublicObjectBatchInputForCreate as Input

    client.crm.contacts.batch_api.create(Batch(inputs=[
        Input(properties={"email": f"p{i}@example.com"}, associations=[]) for i in range(25)]))
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = client.crm.contacts.basic_api.get_page(limit=10, after=after, properties=["email"])
        pages += 1
        seen.extend(c.id for c in page.results)
        if page.paging is None:
            break
        after = page.paging.next.after
        assert page.paging.next.link.endswith(f"after={after}")
    assert pages == 3
    assert len(seen) == len(set(seen)) == 25
    assert seen == sorted(seen, key=int)
    assert client.crm.contacts.get_all(properties=["email"])[0].properties["email"] == "p0@example.com"


def test_unknown_property_is_refused_as_hubspot_does(client: Any) -> None:
    with pytest.raises(ApiException) as caught:
        new_deal(client, sf_nonexistent="x")
    assert caught.value.status == 400
    body = body_of(caught.value)
    assert body["category"] == "VALIDATION_ERROR"
    assert body["message"].startswith("Property values were not valid: ")
    listed = json.loads(body["message"].removeprefix("Property values were not valid: "))
    assert listed[0]["error"] == "PROPERTY_DOESNT_EXIST"
    assert listed[0]["name"] == "sf_nonexistent"
    assert listed[0]["message"] == 'Property "sf_nonexistent" does not exist'
    assert body["errors"][0]["code"] == "PROPERTY_DOESNT_EXIST"
    assert body["errors"][0]["context"] == {"propertyName": ["sf_nonexistent"]}
    assert client.crm.deals.basic_api.get_page().results == []


def test_values_are_validated_by_property_type(client: Any) -> None:
    def problem(**props: str) -> dict[str, Any]:
        with pytest.raises(ApiException) as caught:
            new_deal(client, **props)
        assert caught.value.status == 400
        listed: list[dict[str, Any]] = json.loads(
            body_of(caught.value)["message"].removeprefix("Property values were not valid: "))
        return listed[0]

    assert problem(dealtype="bigdeal")["error"] == "INVALID_OPTION"
    assert problem(amount="12,5")["error"] in ("INVALID_INTEGER", "INVALID_DOUBLE")
    assert problem(closedate="next tuesday")["error"] == "INVALID_DATETIME"
    assert problem(hs_lastmodifieddate="2024-01-01T00:00:00Z")["error"] == "READ_ONLY_VALUE"
    assert problem(dealstage="qualifiedtobuyyy")["name"] == "dealstage"
    assert problem(pipeline="nope")["name"] == "pipeline"
    assert problem(hubspot_owner_id="999")["error"] == "INVALID_OPTION"
    # Datetimes take ISO or epoch milliseconds and come back as ISO with milliseconds.
    deal = new_deal(client, closedate="1430438400123", dealtype="newbusiness", amount="10.5")
    assert deal.properties["closedate"] == "2015-05-01T00:00:00.123Z"


def test_date_properties_must_be_midnight_utc(client: Any) -> None:
    client.crm.properties.core_api.create("deals", PropertyCreate(
        name="contract_start", label="Contract start", type="date", field_type="date", group_name="dealinformation"))
    ok = new_deal(client, contract_start="1430438400000")
    got = client.crm.deals.basic_api.get_by_id(ok.id, properties=["contract_start"])
    assert got.properties["contract_start"] == "2015-05-01"
    assert new_deal(client, contract_start="2015-05-02").id
    with pytest.raises(ApiException) as caught:
        new_deal(client, contract_start="1430438400001")
    listed = json.loads(body_of(caught.value)["message"].removeprefix("Property values were not valid: "))
    assert listed[0]["error"] == "INVALID_DATE"
    assert "not midnight" in listed[0]["message"]


def test_closedate_type_is_configurable_and_dates_enforced(client: Any, hs: HubSpotEmulator) -> None:
    assert client.crm.properties.core_api.get_by_name("deals", "closedate").type == "datetime"
    hs.apply_config({"closedate_type": "date"})
    assert client.crm.properties.core_api.get_by_name("deals", "closedate").type == "date"
    assert new_deal(client, closedate="2024-03-31").properties["closedate"] == "2024-03-31"
    with pytest.raises(ApiException):
        new_deal(client, closedate="2024-03-31T10:00:00Z")


def test_deal_needs_a_valid_pipeline_and_stage_pair(client: Any) -> None:
    with pytest.raises(ApiException) as caught:
        client.crm.deals.basic_api.create(SimplePublicObjectInputForCreate(properties={"dealname": "No stage"}))
    assert caught.value.status == 400
    from hubspot.crm.pipelines import PipelineInput, PipelineStageInput

    other = client.crm.pipelines.pipelines_api.create("deals", PipelineInput(label="Salesforce - Default pipeline",
                                                                             display_order=1, stages=[
        PipelineStageInput(label="Prospecting", display_order=0, metadata={"probability": "0.1"}),
        PipelineStageInput(label="Won", display_order=1, metadata={"probability": "1.0", "isClosed": "true"})]))
    stage = other.stages[0].id
    with pytest.raises(ApiException):  # the stage is not in the default pipeline
        new_deal(client, dealstage=stage)
    deal = new_deal(client, pipeline=other.id, dealstage=stage)
    with pytest.raises(ApiException):  # moving pipelines needs a stage of the new one
        client.crm.deals.basic_api.update(deal.id, SimplePublicObjectInput(properties={"pipeline": "default"}))
    moved = client.crm.deals.basic_api.update(deal.id, SimplePublicObjectInput(
        properties={"pipeline": "default", "dealstage": "contractsent"}))
    assert moved.properties["pipeline"] == "default"
    assert moved.properties["dealstage"] == "contractsent"


def test_calculated_deal_properties_follow_the_stage(client: Any) -> None:
    deal = new_deal(client, dealstage="closedwon")
    got = client.crm.deals.basic_api.get_by_id(deal.id, properties=[
        "hs_is_closed", "hs_is_closed_won", "hs_deal_stage_probability"])
    assert got.properties["hs_is_closed"] == "true"
    assert got.properties["hs_is_closed_won"] == "true"
    assert got.properties["hs_deal_stage_probability"] == "1.0"


def test_a_person_closing_a_deal_in_the_ui_sets_the_close_date(client: Any, person: Any) -> None:
    deal = new_deal(client)
    person.crm.deals.basic_api.update(deal.id, SimplePublicObjectInput(properties={"dealstage": "closedlost"}))
    assert client.crm.deals.basic_api.get_by_id(deal.id).properties["closedate"] is not None
    by_api = new_deal(client)
    client.crm.deals.basic_api.update(by_api.id, SimplePublicObjectInput(properties={"dealstage": "closedwon"}))
    assert client.crm.deals.basic_api.get_by_id(by_api.id).properties["closedate"] is None


def test_contact_email_is_unique_lowercased_and_an_id_property(client: Any) -> None:
    first = client.crm.contacts.basic_api.create(ContactCreate(properties={"email": "Ada@Example.COM",
                                                                           "firstname": "Ada"}))
    assert first.properties["email"] == "ada@example.com"
    with pytest.raises(ContactsApiException) as caught:
        client.crm.contacts.basic_api.create(ContactCreate(properties={"email": "ada@example.com"}))
    assert caught.value.status == 409
    body = body_of(caught.value)
    assert body["category"] == "CONFLICT"
    assert body["message"] == f"Contact already exists. Existing ID: {first.id}"
    by_email = client.crm.contacts.basic_api.get_by_id("ADA@example.com", id_property="email")
    assert by_email.id == first.id
    with pytest.raises(ContactsApiException) as caught:
        client.crm.contacts.basic_api.create(ContactCreate(properties={"email": "not-an-email"}))
    assert caught.value.status == 400
    with pytest.raises(ContactsApiException) as caught:  # firstname is not unique: no idProperty
        client.crm.contacts.basic_api.get_by_id("Ada", id_property="firstname")
    assert caught.value.status == 400


def test_custom_unique_property_on_companies(client: Any) -> None:
    from hubspot.crm.companies import ApiException as CompaniesApiException
    from hubspot.crm.properties import PropertyGroupCreate

    client.crm.properties.groups_api.create("companies", PropertyGroupCreate(name="salesforce_sync",
                                                                             label="Salesforce sync"))
    client.crm.properties.core_api.create("companies", PropertyCreate(
        name="salesforce_account_id", label="Salesforce account id", type="string", field_type="text",
        group_name="salesforce_sync", has_unique_value=True))
    acme = client.crm.companies.basic_api.create(CompanyCreate(properties={
        "name": "Acme", "domain": "acme.example", "salesforce_account_id": "001000000000001AAA"}))
    with pytest.raises(CompaniesApiException) as caught:
        client.crm.companies.basic_api.create(CompanyCreate(properties={
            "name": "Acme again", "salesforce_account_id": "001000000000001AAA"}))
    assert caught.value.status == 409
    assert body_of(caught.value)["message"].endswith(f"Existing ID: {acme.id}")
    found = client.crm.companies.basic_api.get_by_id("001000000000001AAA", id_property="salesforce_account_id")
    assert found.id == acme.id
    # Archiving releases the value; the id property no longer finds the archived company.
    client.crm.companies.basic_api.archive(acme.id)
    again = client.crm.companies.basic_api.create(CompanyCreate(properties={
        "name": "Acme II", "salesforce_account_id": "001000000000001AAA"}))
    assert again.id != acme.id


def test_create_with_associations_and_read_them_back(client: Any) -> None:
    contact = client.crm.contacts.basic_api.create(ContactCreate(properties={"email": "buyer@acme.example"}))
    company = client.crm.companies.basic_api.create(CompanyCreate(properties={"name": "Acme"}))
    deal = client.crm.deals.basic_api.create(SimplePublicObjectInputForCreate(
        properties={"dealname": "With links", "dealstage": "qualifiedtobuy"},
        associations=[
            {"to": {"id": contact.id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}]},
            {"to": {"id": company.id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 5}]},
        ]))
    got = client.crm.deals.basic_api.get_by_id(deal.id, associations=["contacts", "companies"])
    contacts = [(a.id, a.type) for a in got.associations["contacts"].results]
    companies = [(a.id, a.type) for a in got.associations["companies"].results]
    assert contacts == [(contact.id, "deal_to_contact")]
    assert companies == [(company.id, "deal_to_company"), (company.id, "deal_to_company_unlabeled")]
    back = client.crm.contacts.basic_api.get_by_id(contact.id, associations=["deals"])
    assert [(a.id, a.type) for a in back.associations["deals"].results] == [(deal.id, "contact_to_deal")]
    with pytest.raises(ApiException) as caught:  # an association to a record that does not exist
        client.crm.deals.basic_api.create(SimplePublicObjectInputForCreate(
            properties={"dealname": "Bad link", "dealstage": "qualifiedtobuy"},
            associations=[{"to": {"id": "424242"},
                           "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}]}]))
    assert caught.value.status == 400


def test_merge_api_keeps_the_primary(client: Any, http: HubSpotHttp) -> None:
    primary = new_deal(client, dealname="Primary")
    other = new_deal(client, dealname="Other", amount="99")
    merged = http.post("/crm/v3/objects/deals/merge",
                       {"primaryObjectId": primary.id, "objectIdToMerge": other.id}).json()
    assert merged["id"] == primary.id
    got = client.crm.deals.basic_api.get_by_id(other.id, properties=["amount", "hs_merged_object_ids", "dealname"])
    assert got.id == primary.id  # the merged id now reads the surviving record
    assert got.properties["hs_merged_object_ids"] == other.id
    assert got.properties["amount"] == "99"  # blank on the primary, taken from the merged deal
    assert got.properties["dealname"] == "Primary"
