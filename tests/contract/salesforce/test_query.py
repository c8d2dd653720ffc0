"""SOQL over REST query/queryAll: the subset dealsync uses, pagination, and Salesforce's errors."""


from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceMalformedRequest

from dealsync_local.salesforce.soql import compile_soql


@pytest.fixture
def sample(org: Any) -> dict[str, list[str]]:
    today = dt.datetime.now(dt.UTC).date()
    ids: dict[str, list[str]] = org.app.load({
        "User": [{"FirstName": "Sam", "LastName": "Seller", "Email": "Sam.Seller@Acme.example",
                  "Username": "sam@acme.example", "Alias": "sseller", "TimeZoneSidKey": "GMT",
                  "LocaleSidKey": "en_US", "EmailEncodingKey": "UTF-8", "LanguageLocaleKey": "en_US"}],
        "Account": [{"Name": "Globex"}, {"Name": "Initech"}],
        "Contact": [{"LastName": "Ng", "Email": "ng@globex.example", "AccountId": "@Account:0"}],
        "Opportunity": [
            {"Name": "Alpha", "StageName": "Prospecting", "CloseDate": today.isoformat(), "Amount": 100,
             "AccountId": "@Account:0", "OwnerId": "@User:0", "HubSpot_Deal_Id__c": "h-1"},
            {"Name": "Beta", "StageName": "Closed Won", "CloseDate": "2026-01-15", "Amount": 300,
             "AccountId": "@Account:1", "CreatedDate": "2026-01-01T10:00:00.000+0000"},
            {"Name": "Gamma_1", "StageName": "Closed Lost", "CloseDate": "2025-06-30",
             "Description": "It's \"quoted\"", "CreatedDate": "2025-12-31T23:30:00.000+0000"},
            {"Name": "delta 100%", "StageName": "Qualification", "CloseDate": "2027-03-01", "Amount": 200,
             "AccountId": "@Account:0", "HubSpot_Deal_Id__c": "h-4"},
        ],
        "OpportunityContactRole": [{"OpportunityId": "@Opportunity:0", "ContactId": "@Contact:0",
                                    "Role": "Economic Buyer", "IsPrimary": True}],
    })
    return ids


def names(result: dict[str, Any]) -> list[str]:
    return [r["Name"] for r in result["records"]]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Name = 'alpha'", ["Alpha"]),  # text comparison ignores case
        ("Name != 'Alpha'", ["Beta", "Gamma_1", "delta 100%"]),
        ("Name <> 'Alpha' AND Amount = null", ["Gamma_1"]),
        ("Amount > 100", ["Beta", "delta 100%"]),
        ("Amount >= 100 AND Amount <= 200", ["Alpha", "delta 100%"]),
        ("Amount < 150 OR Amount = NULL", ["Alpha", "Gamma_1"]),
        ("StageName IN ('Closed Won', 'Closed Lost')", ["Beta", "Gamma_1"]),
        ("StageName NOT IN ('Closed Won', 'Closed Lost')", ["Alpha", "delta 100%"]),
        ("Name LIKE 'gam%'", ["Gamma_1"]),
        ("Name LIKE '%100\\%'", ["delta 100%"]),
        ("Name LIKE 'Gamma\\_1'", ["Gamma_1"]),
        ("NOT Name LIKE '%a'", ["Gamma_1", "delta 100%"]),
        ("(IsClosed = true AND IsWon = false) OR (Amount > 250)", ["Beta", "Gamma_1"]),
        ("NOT (IsClosed = true)", ["Alpha", "delta 100%"]),
        ("CloseDate < 2026-01-01", ["Gamma_1"]),
        ("CloseDate = TODAY", ["Alpha"]),
        ("CloseDate > NEXT_N_DAYS:30", ["delta 100%"]),
        ("CreatedDate < 2025-12-31T23:15:00-01:00", ["Gamma_1"]),
        ("CreatedDate < 2026-01-01T00:15:00+01:00", []),
        ("CreatedDate >= 2026-01-01T00:00:00Z AND CreatedDate < 2026-01-02T00:00:00Z", ["Beta"]),
        ("CreatedDate = LAST_N_DAYS:3", ["Alpha", "delta 100%"]),
        ("Account.Name = 'Globex'", ["Alpha", "delta 100%"]),
        ("Owner.Email = 'sam.seller@acme.example'", ["Alpha"]),
        ("HubSpot_Deal_Id__c IN ('h-1', 'H-4', 'nope')", ["Alpha", "delta 100%"]),
        ("Id IN (SELECT OpportunityId FROM OpportunityContactRole WHERE Role = 'Economic Buyer')", ["Alpha"]),
        ("AccountId != null AND StageName = 'Closed Won'", ["Beta"]),
    ],
)
def test_where_clauses(sf: Any, sample: dict[str, list[str]], where: str, expected: list[str]) -> None:
    result = sf.query(f"SELECT Name FROM Opportunity WHERE {where} ORDER BY Name")
    assert sorted(names(result), key=str.lower) == sorted(expected, key=str.lower)


def test_select_shapes(sf: Any, sample: dict[str, list[str]]) -> None:
    alpha = sample["Opportunity"][0]
    result = sf.query(
        "SELECT Id, Name, Owner.Email, Account.Name, Account.Owner.Email, Amount, CloseDate, "
        "(SELECT ContactId, Role, IsPrimary, Contact.Email FROM OpportunityContactRoles) "
        f"FROM Opportunity WHERE Id = '{alpha[:15]}'"
    )
    assert result["totalSize"] == 1 and result["done"] is True
    row = result["records"][0]
    assert list(row) == ["attributes", "Id", "Name", "Owner", "Account", "Amount", "CloseDate",
                         "OpportunityContactRoles"]
    owner_url = f"/services/data/v59.0/sobjects/User/{sample['User'][0]}"
    assert row["Owner"] == {"attributes": {"type": "User", "url": owner_url},
                            "Email": "Sam.Seller@Acme.example"}
    assert row["Account"]["Name"] == "Globex"
    assert row["Account"]["Owner"]["Email"] == "riley.morgan@acme.example"
    roles = row["OpportunityContactRoles"]
    assert roles["totalSize"] == 1 and roles["records"][0]["Role"] == "Economic Buyer"
    assert roles["records"][0]["attributes"]["type"] == "OpportunityContactRole"
    assert roles["records"][0]["Contact"]["Email"] == "ng@globex.example"
    beta = sf.query(f"SELECT Account.Name, (SELECT Id FROM OpportunityContactRoles) FROM Opportunity "
                    f"WHERE Id = '{sample['Opportunity'][2]}'")["records"][0]
    assert beta["Account"] is None and beta["OpportunityContactRoles"] is None
    assert sf.query("SELECT COUNT() FROM Opportunity WHERE Amount != null") == {
        "totalSize": 3, "done": True, "records": []}
    counted = sf.query("SELECT COUNT(Id) total FROM Opportunity")["records"][0]
    assert counted["total"] == 4 and counted["attributes"]["type"] == "AggregateResult"
    lowered = sf.query("select name, stagename from opportunity where name = 'Beta'")["records"][0]
    assert (lowered["Name"], lowered["StageName"]) == ("Beta", "Closed Won")
    fields = sf.query("SELECT FIELDS(STANDARD) FROM Opportunity LIMIT 1")["records"][0]
    assert "HubSpot_Deal_Id__c" not in fields and "StageName" in fields


def test_order_limit_offset(sf: Any, sample: dict[str, list[str]]) -> None:
    by_amount = sf.query("SELECT Name FROM Opportunity ORDER BY Amount DESC NULLS LAST, Name")
    assert names(by_amount) == ["Beta", "delta 100%", "Alpha", "Gamma_1"]
    nulls_first = sf.query("SELECT Name FROM Opportunity ORDER BY Amount ASC")
    assert names(nulls_first)[0] == "Gamma_1"
    paged = sf.query("SELECT Name FROM Opportunity ORDER BY Name LIMIT 2 OFFSET 1")
    assert names(paged) == ["Beta", "delta 100%"]
    by_parent = sf.query("SELECT Name FROM Opportunity WHERE AccountId != null ORDER BY Account.Name DESC, Name")
    assert names(by_parent) == ["Beta", "Alpha", "delta 100%"]


@pytest.mark.parametrize(
    ("soql", "code", "fragment"),
    [
        ("SELECT Id FROM Opportunity WHERE", "MALFORMED_QUERY", "unexpected token: <EOF>"),
        ("SELECT Id Name FROM Opportunity", "MALFORMED_QUERY", "unexpected token: 'Name'"),
        ("SELECT Id FROM Opportunity WHERE Name = 'a' AND Amount > 1 OR Amount < 0", "MALFORMED_QUERY",
         "unexpected token: 'OR'"),
        ("SELECT Foo__c FROM Opportunity", "INVALID_FIELD",
         "No such column 'Foo__c' on entity 'Opportunity'. If you are attempting to use a custom field"),
        ("SELECT Boss.Email FROM Opportunity", "INVALID_FIELD", "Didn't understand relationship 'Boss'"),
        ("SELECT Id FROM Deal", "INVALID_TYPE", "sObject type 'Deal' is not supported"),
        ("SELECT Id, (SELECT Id FROM Roles) FROM Opportunity", "INVALID_TYPE",
         "Didn't understand relationship 'Roles'"),
        ("SELECT Id FROM Opportunity WHERE CloseDate > 2026-01-01T00:00:00Z", "INVALID_QUERY_FILTER_OPERATOR",
         "must be of type date and should not be enclosed in quotes"),
        ("SELECT Id FROM Opportunity WHERE SystemModstamp > 2026-01-01", "INVALID_QUERY_FILTER_OPERATOR",
         "must be of type dateTime"),
        ("SELECT Id FROM Opportunity WHERE Amount = '5'", "INVALID_QUERY_FILTER_OPERATOR", "must be of type double"),
        ("SELECT Id FROM Opportunity WHERE Id = 'abc'", "INVALID_QUERY_FILTER_OPERATOR", "invalid ID field: abc"),
        ("SELECT Id FROM Opportunity WHERE Description = 'x'", "INVALID_FIELD", "can not be filtered"),
    ],
)
def test_query_errors(sf: Any, soql: str, code: str, fragment: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query(soql)
    error = content_of(exc)[0]
    assert error["errorCode"] == code
    assert fragment in error["message"]
    assert "ERROR at Row:1:Column:" in error["message"]


def test_pagination_across_pages(org: Any, sf: Any) -> None:
    org.app.load({"Opportunity": [{"Name": f"Bulk {i:05d}", "StageName": "Prospecting", "CloseDate": "2026-12-31"}
                                  for i in range(4500)]})
    first = sf.query("SELECT Id, Name FROM Opportunity ORDER BY Name")
    assert (first["totalSize"], first["done"], len(first["records"])) == (4500, False, 2000)
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    assert first["nextRecordsUrl"].endswith("-2000")
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert second["records"][0]["Name"] == "Bulk 02000" and second["done"] is False
    everything = sf.query_all("SELECT Id FROM Opportunity")
    assert everything["totalSize"] == 4500 and len({r["Id"] for r in everything["records"]}) == 4500
    small = sf.query("SELECT Id FROM Opportunity", headers={"Sforce-Query-Options": "batchSize=500"})
    assert len(small["records"]) == 500 and small["nextRecordsUrl"].endswith("-500")
    tiny = sf.query("SELECT Id FROM Opportunity", headers={"Sforce-Query-Options": "batchSize=10"})
    assert len(tiny["records"]) == 200  # the minimum batch size
    with pytest.raises(SalesforceMalformedRequest) as bad_locator:
        sf.query_more("/services/data/v59.0/query/01g000000000000AAA-2000", identifier_is_url=True)
    assert content_of(bad_locator)[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_uri_longer_than_16k_is_refused(sf: Any) -> None:
    def id_list(count: int) -> str:
        return ",".join(f"'0068d{n:010d}AAA'" for n in range(count))

    with pytest.raises(SalesforceGeneralError) as exc:
        sf.query(f"SELECT Id FROM Opportunity WHERE Id IN ({id_list(800)})")
    assert exc.value.status == 414
    assert sf.query(f"SELECT Id FROM Opportunity WHERE Id IN ({id_list(200)})")["totalSize"] == 0


def test_query_all_includes_deleted_rows(sf: Any, new_opportunity: Callable[..., str]) -> None:
    kept, removed = new_opportunity(Name="Kept"), new_opportunity(Name="Removed")
    sf.Opportunity.delete(removed)
    assert [r["Id"] for r in sf.query("SELECT Id FROM Opportunity")["records"]] == [kept]
    rows = sf.query_all("SELECT Id, IsDeleted FROM Opportunity ORDER BY Name", include_deleted=True)["records"]
    assert [(r["Id"], r["IsDeleted"]) for r in rows] == [(kept, False), (removed, True)]
    only_deleted = sf.query_all("SELECT Id FROM Opportunity WHERE IsDeleted = true", include_deleted=True)
    assert [r["Id"] for r in only_deleted["records"]] == [removed]
    assert sf.query("SELECT Id FROM Opportunity WHERE IsDeleted = true")["totalSize"] == 0


def test_id_and_external_id_filters_use_indexes(org: Any, sample: dict[str, list[str]]) -> None:
    now = dt.datetime.now(dt.UTC)
    by_id = compile_soql(org.app.store, f"SELECT Id FROM Opportunity WHERE Id IN ('{sample['Opportunity'][1]}')", now)
    assert by_id.candidates(False) == [sample["Opportunity"][1]]
    by_external = compile_soql(org.app.store, "SELECT Id FROM Opportunity WHERE HubSpot_Deal_Id__c = 'H-1'", now)
    assert by_external.candidates(False) == [sample["Opportunity"][0]]
    by_parent = compile_soql(org.app.store, "SELECT Id FROM OpportunityContactRole "
                                            f"WHERE OpportunityId = '{sample['Opportunity'][0]}'", now)
    assert by_parent.candidates(False) == sample["OpportunityContactRole"]
    scan = compile_soql(org.app.store, "SELECT Id FROM Opportunity WHERE Name = 'Alpha'", now)
    assert scan.candidates(False) is None


def content_of(exc: pytest.ExceptionInfo[Any]) -> Any:
    """The parsed JSON error body simple-salesforce attaches to its exceptions."""
    body: Any = exc.value.content
    return body


def test_opportunity_field_history_has_a_row_per_tracked_change(org: Any, sf: Any, person: Any) -> None:
    opportunity_id = person.Opportunity.create({"Name": "Tracked", "StageName": "Prospecting",
                                                "CloseDate": "2026-12-31", "Amount": 10})["id"]
    person.Opportunity.update(opportunity_id, {"Amount": 20, "NextStep": "not tracked"})
    sf.Opportunity.update(opportunity_id, {"StageName": "Qualification", "Amount": 20})
    rows = sf.query_all(f"SELECT Field, OldValue, NewValue, CreatedById, CreatedDate FROM OpportunityFieldHistory "
                        f"WHERE OpportunityId = '{opportunity_id}' ORDER BY CreatedDate ASC")["records"]
    assert [(row["Field"], row["OldValue"], row["NewValue"]) for row in rows] == [
        ("created", None, None), ("Amount", "10.0", "20.0"), ("StageName", "Prospecting", "Qualification")]
    assert [row["CreatedById"] for row in rows] == [org.app.person_user_id] * 2 + [org.app.integration_user_id]
    assert all(row["CreatedDate"] for row in rows)
    with pytest.raises(SalesforceMalformedRequest, match="INVALID_TYPE_FOR_OPERATION"):
        sf.restful("sobjects/OpportunityFieldHistory", method="POST",
                   json={"OpportunityId": opportunity_id, "Field": "Amount"})
