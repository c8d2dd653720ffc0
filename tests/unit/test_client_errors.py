"""The per-CRM error classifiers: every failure is either retried or becomes a sync-error category."""

from __future__ import annotations

import json

import pytest
import requests
from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceMalformedRequest, SalesforceRefusedRequest

from dealsync.clients import hubspot, salesforce
from dealsync.clients.credentials import SalesforceCredentials
from dealsync.clients.errors import ApiBudgetExceededError, PermanentCrmError, RecordError, TransientCrmError
from dealsync.clients.ratelimit import SlidingWindowLimiter
from dealsync.models.domain import ErrorCategory


def _sf_error(cls: type, status: int, code: str, message: str) -> Exception:
    content = [{"errorCode": code, "message": message}]
    error: Exception = cls("https://x/services/data/v59.0/sobjects/Opportunity", status, "Opportunity", content)
    return error


@pytest.mark.parametrize(
    ("error", "expected_type", "category"),
    [
        (_sf_error(SalesforceRefusedRequest, 403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
         ApiBudgetExceededError, ErrorCategory.API_BUDGET),
        (_sf_error(SalesforceMalformedRequest, 400, "FIELD_CUSTOM_VALIDATION_EXCEPTION", "Amount must be positive"),
         PermanentCrmError, ErrorCategory.SALESFORCE_VALIDATION),
        (_sf_error(SalesforceRefusedRequest, 403, "INSUFFICIENT_ACCESS", "no access"),
         PermanentCrmError, ErrorCategory.PERMISSION),
        (_sf_error(SalesforceMalformedRequest, 400, "UNABLE_TO_LOCK_ROW", "locked"), TransientCrmError, None),
        (_sf_error(SalesforceGeneralError, 503, "SERVER_UNAVAILABLE", "down"), TransientCrmError, None),
        (requests.ConnectTimeout("slow"), TransientCrmError, None),
    ],
)
def test_salesforce_classifier(error: Exception, expected_type: type, category: ErrorCategory | None) -> None:
    classified = salesforce.classify(error)
    assert type(classified) is expected_type
    if category is not None:
        assert getattr(classified, "category", None) is category


def test_salesforce_record_errors_name_the_record_and_cause() -> None:
    results = [
        {"id": "006A", "success": True, "errors": []},
        {"success": False, "errors": [{"statusCode": "STRING_TOO_LONG", "message": "Name: data value too large",
                                       "fields": ["Name"]}]},
        {"success": False, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "locked"}]},
    ]
    failures = salesforce.record_errors(results, ["deal-1", "deal-2", "deal-3"])
    assert set(failures) == {"deal-2", "deal-3"}
    validation = failures["deal-2"]
    assert isinstance(validation, RecordError)
    assert validation.category is ErrorCategory.SALESFORCE_VALIDATION
    assert "deal-2" in str(validation) and "STRING_TOO_LONG" in str(validation)
    assert isinstance(failures["deal-3"], TransientCrmError)


@pytest.mark.parametrize(
    ("status", "body", "expected_type", "category"),
    [
        (429, {"status": "error", "policyName": "DAILY", "message": "You have reached your daily limit."},
         ApiBudgetExceededError, ErrorCategory.API_BUDGET),
        (429, {"status": "error", "policyName": "TEN_SECONDLY_ROLLING", "message": "slow down"},
         TransientCrmError, None),
        (502, {"message": "bad gateway"}, TransientCrmError, None),
        (401, {"category": "INVALID_AUTHENTICATION", "message": "bad token"}, PermanentCrmError,
         ErrorCategory.PERMISSION),
        (400, {"category": "VALIDATION_ERROR", "message": "Property values were not valid"}, PermanentCrmError,
         ErrorCategory.HUBSPOT_VALIDATION),
    ],
)
def test_hubspot_classifier(status: int, body: dict[str, str], expected_type: type,
                            category: ErrorCategory | None) -> None:
    classified = hubspot.classify_response(status, json.dumps(body).encode(),
                                           {"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"})
    assert type(classified) is expected_type
    if category is not None:
        assert getattr(classified, "category", None) is category
    if body.get("policyName") == "TEN_SECONDLY_ROLLING":
        assert getattr(classified, "retry_after", None) == 10.0


def test_sliding_window_limiter_waits_for_a_free_slot() -> None:
    limiter = SlidingWindowLimiter(limit=3, window_seconds=0.2)
    waits = [limiter.acquire() for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] > 0.1


class _FailingOrg:
    """A Salesforce connection whose every REST call fails with the given error."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.sent: list[str] = []

    def restful(self, path: str, method: str = "GET", **_: object) -> object:
        self.sent.append(f"{method} {path}")
        raise self.error


def test_salesforce_updates_are_sent_again_once_at_once_and_reads_with_backoff() -> None:
    # Sent again after a backoff, an update would carry values older than a person's edit made meanwhile:
    # once, at once, then the caller syncs the records again from a fresh read.
    credentials = SalesforceCredentials(auth="client_credentials", login_url="https://login.example",
                                        client_id="id", org_id="00D000000000001AAA")
    client = salesforce.SalesforceClient(credentials, backoff_seconds=60)  # a backoff would hang the test
    org = _FailingOrg(_sf_error(SalesforceGeneralError, 503, "SERVER_UNAVAILABLE", "down"))
    client._sf = org  # type: ignore[assignment]
    with pytest.raises(TransientCrmError):
        client.update("Opportunity", [{"Id": "006000000000001AAA", "Amount": 5}])
    assert org.sent == ["PATCH composite/sobjects"] * salesforce.WRITE_ATTEMPTS
    client.backoff_seconds = 0
    org.sent.clear()
    with pytest.raises(TransientCrmError):
        client._rest("limits")
    assert len(org.sent) == client.max_attempts
