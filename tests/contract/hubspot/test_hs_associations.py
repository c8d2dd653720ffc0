"""Associations v4 with HubSpot's type ids: single and batch create/read/archive, default
associations, primary companies, both directions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hubspot.crm.associations.v4 import (
    ApiException,
    AssociationSpec,
    BatchInputPublicAssociationMultiArchive,
    BatchInputPublicAssociationMultiPost,
    BatchInputPublicFetchAssociationsBatchRequest,
    PublicAssociationMultiArchive,
    PublicAssociationMultiPost,
    PublicFetchAssociationsBatchRequest,
    PublicObjectId,
)

from dealsync_local.hubspot import HubSpotEmulator
from dealsync_local.hubspot.testing import HubSpotHttp


@pytest.fixture
def world(hs: HubSpotEmulator) -> dict[str, list[str]]:
    return hs.load(
        contacts=[{"email": f"c{i}@example.com"} for i in range(3)],
        companies=[{"name": "Acme"}, {"name": "Globex"}],
        deals=[{"dealname": f"D{i}", "dealstage": "qualifiedtobuy"} for i in range(3)],
    )


def spec(type_id: int) -> AssociationSpec:
    return AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=type_id)


def types_of(client: Any, from_type: str, from_id: str, to_type: str) -> dict[str, list[tuple[int, str | None]]]:
    page = client.crm.associations.v4.basic_api.get_page(from_type, from_id, to_type)
    return {str(r.to_object_id): [(t.type_id, t.label) for t in r.association_types] for r in page.results}


def test_labelled_primary_company_and_both_directions(client: Any, world: dict[str, list[str]]) -> None:
    deal, (acme, globex) = world["deals"][0], world["companies"]
    labels = client.crm.associations.v4.basic_api.create("deals", deal, "companies", acme, [spec(5)])
    assert labels.labels == ["Primary"]
    assert labels.from_object_type_id == "0-3" and labels.to_object_type_id == "0-2"
    assert types_of(client, "deals", deal, "companies") == {acme: [(5, "Primary"), (341, None)]}
    assert types_of(client, "companies", acme, "deals") == {deal: [(6, "Primary"), (342, None)]}
    # A deal has one primary company: a new primary demotes the old one to unlabeled.
    client.crm.associations.v4.basic_api.create("0-3", deal, "0-2", globex, [spec(5)])
    assert types_of(client, "deals", deal, "companies") == {acme: [(341, None)],
                                                            globex: [(5, "Primary"), (341, None)]}
    with pytest.raises(ApiException) as caught:  # a contact type between a deal and a company
        client.crm.associations.v4.basic_api.create("deals", deal, "companies", acme, [spec(3)])
    assert caught.value.status == 400


def test_default_association_list_and_delete(client: Any, http: HubSpotHttp, world: dict[str, list[str]]) -> None:
    deal, contact = world["deals"][0], world["contacts"][0]
    result = client.crm.associations.v4.basic_api.create_default("deals", deal, "contacts", contact)
    assert result.status == "COMPLETE"
    assert {(r.association_spec.association_type_id, r._from.id) for r in result.results} == {(3, deal), (4, contact)}
    assert types_of(client, "deals", deal, "contacts") == {contact: [(3, None)]}
    assert types_of(client, "contacts", contact, "deals") == {deal: [(4, None)]}
    raw = http.get(f"/crm/v4/objects/deals/{deal}/associations/contacts").json()
    assert raw["results"][0]["associationTypes"][0] == {"category": "HUBSPOT_DEFINED", "typeId": 3, "label": None}
    client.crm.associations.v4.basic_api.archive("deals", deal, "contacts", contact)
    assert types_of(client, "contacts", contact, "deals") == {}
    assert http.request("DELETE", f"/crm/v4/objects/deals/{deal}/associations/contacts/{contact}").status_code == 204


def test_batch_create_read_archive(client: Any, http: HubSpotHttp, world: dict[str, list[str]]) -> None:
    deals, contacts = world["deals"], world["contacts"]
    created = client.crm.associations.v4.batch_api.create("deals", "contacts", BatchInputPublicAssociationMultiPost(
        inputs=[PublicAssociationMultiPost(_from=PublicObjectId(id=deals[0]), to=PublicObjectId(id=c), types=[spec(3)])
                for c in contacts[:2]]
        + [PublicAssociationMultiPost(_from=PublicObjectId(id=deals[1]), to=PublicObjectId(id=contacts[2]),
                                      types=[spec(3)])]))
    assert created.status == "COMPLETE" and len(created.results) == 3
    request = BatchInputPublicFetchAssociationsBatchRequest(
        inputs=[PublicFetchAssociationsBatchRequest(id=d) for d in deals])
    read = client.crm.associations.v4.batch_api.get_page("deals", "contacts", request)
    by_deal = {r._from.id: sorted(str(t.to_object_id) for t in r.to) for r in read.results}
    assert by_deal == {deals[0]: sorted(contacts[:2]), deals[1]: [contacts[2]]}
    assert read.num_errors == 1  # the third deal has no contacts
    error = read.errors[0]
    assert error.sub_category == "crm.associations.NO_ASSOCIATIONS_FOUND"
    assert error.context == {"fromObjectId": [deals[2]]}
    raw = http.post("/crm/v4/associations/deals/contacts/batch/read", {"inputs": [{"id": deals[2]}]})
    assert raw.status_code == 207
    client.crm.associations.v4.batch_api.archive("deals", "contacts", BatchInputPublicAssociationMultiArchive(
        inputs=[PublicAssociationMultiArchive(_from=PublicObjectId(id=deals[0]), to=[PublicObjectId(id=contacts[0])])]))
    assert set(types_of(client, "deals", deals[0], "contacts")) == {contacts[1]}
    partial = http.post("/crm/v4/associations/deals/contacts/batch/create", {"inputs": [
        {"from": {"id": deals[2]}, "to": {"id": contacts[0]}, "types": [
            {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}]},
        {"from": {"id": deals[2]}, "to": {"id": "999"}, "types": [
            {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}]}]})
    assert partial.status_code == 207
    assert len(partial.json()["results"]) == 1 and partial.json()["numErrors"] == 1


def test_removing_only_the_primary_label(client: Any, http: HubSpotHttp, world: dict[str, list[str]]) -> None:
    deal, acme = world["deals"][0], world["companies"][0]
    client.crm.associations.v4.basic_api.create("deals", deal, "companies", acme, [spec(5)])
    response = http.post("/crm/v4/associations/deals/companies/batch/labels/archive", {"inputs": [
        {"from": {"id": deal}, "to": {"id": acme}, "types": [
            {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 5}]}]})
    assert response.status_code == 204
    assert types_of(client, "deals", deal, "companies") == {acme: [(341, None)]}


def test_archived_records_leave_association_lists(client: Any, world: dict[str, list[str]]) -> None:
    deal, contact = world["deals"][0], world["contacts"][0]
    client.crm.associations.v4.basic_api.create("deals", deal, "contacts", contact, [spec(3)])
    client.crm.deals.basic_api.archive(deal)
    assert types_of(client, "contacts", contact, "deals") == {}


def test_labels_and_batch_limits(http: HubSpotHttp) -> None:
    labels = http.get("/crm/v4/associations/deals/companies/labels").json()["results"]
    assert {(label["typeId"], label["label"]) for label in labels} == {(5, "Primary"), (341, None)}
    too_many = http.post("/crm/v4/associations/deals/contacts/batch/read",
                         {"inputs": [{"id": str(i)} for i in range(1_001)]})
    assert too_many.status_code == 400
    assert json.loads(too_many.text)["category"] == "VALIDATION_ERROR"
