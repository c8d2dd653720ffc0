"""Sessions, OAuth grants, the daily API allocation and injected faults."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceRefusedRequest,
)


def test_versions_resources_and_limits(org: Any, sf: Any) -> None:
    versions = org.session().get(f"{org.url}/services/data/").json()
    assert {"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"} in versions
    assert sf.restful("")["query"] == "/services/data/v59.0/query"
    limits = sf.limits()
    assert limits["DailyApiRequests"]["Max"] == 100_000
    assert limits["DailyApiRequests"]["Remaining"] == 100_000 - 2
    sf.query("SELECT Id FROM Opportunity")
    assert sf.api_usage["api-usage"].used == 3 and sf.api_usage["api-usage"].total == 100_000
    unknown = org.session().get(f"{org.url}/services/data/v12.0/limits",
                                headers={"Authorization": f"Bearer {org.app.integration_token}"})
    assert unknown.status_code == 404 and unknown.json()[0]["errorCode"] == "NOT_FOUND"
    newer = org.client()
    newer.sf_version = "62.0"
    newer.base_url = newer.base_url.replace("v59.0", "v62.0")
    assert newer.query("SELECT COUNT() FROM User")["totalSize"] == 2


def test_bad_or_missing_token_is_an_invalid_session(org: Any) -> None:
    stranger = org.client("00D000000000000!not-a-token")
    with pytest.raises(SalesforceExpiredSession) as exc:
        stranger.query("SELECT Id FROM Opportunity")
    assert exc.value.status == 401
    assert content_of(exc) == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID",
                                  "fields": []}]
    bare = org.session().get(f"{org.url}/services/data/v59.0/query", params={"q": "SELECT Id FROM User"})
    assert bare.status_code == 401 and bare.json()[0]["errorCode"] == "INVALID_SESSION_ID"


def test_rotated_token_expires_the_old_session(org: Any, sf: Any) -> None:
    new_token = org.control("rotate_token")["integration_token"]
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM User")
    assert org.client(new_token).query("SELECT COUNT() FROM User")["totalSize"] == 2


def test_oauth_client_credentials(org: Any) -> None:
    session = org.session()
    url = f"{org.url}/services/oauth2/token"
    granted = session.post(url, data={"grant_type": "client_credentials"},
                           auth=(org.app.client_id, org.app.client_secret))
    assert granted.status_code == 200, granted.text
    body = granted.json()
    assert set(body) == {"access_token", "instance_url", "id", "token_type", "issued_at", "signature", "scope"}
    assert body["instance_url"] == org.url and body["token_type"] == "Bearer"
    assert org.client(body["access_token"]).query("SELECT COUNT() FROM User")["totalSize"] == 2
    in_form = session.post(url, data={"grant_type": "client_credentials", "client_id": org.app.client_id,
                                      "client_secret": org.app.client_secret})
    assert in_form.status_code == 200
    wrong = session.post(url, data={"grant_type": "client_credentials"}, auth=(org.app.client_id, "nope"))
    assert wrong.status_code == 400
    assert wrong.json() == {"error": "invalid_client", "error_description": "invalid client credentials"}
    unsupported = session.post(url, data={"grant_type": "password"})
    assert unsupported.json()["error"] == "unsupported_grant_type"


def test_oauth_jwt_bearer(org: Any) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    org.configure(jwt_public_key=public_pem)
    url = f"{org.url}/services/oauth2/token"
    session = org.session()

    def grant(signing_key: Any = key, **claims: Any) -> requests.Response:
        payload = {"iss": org.app.client_id, "sub": org.app.integration_username,
                   "aud": "https://login.salesforce.com", "exp": int(time.time()) + 180, **claims}
        assertion = jwt.encode(payload, signing_key, algorithm="RS256")
        response: requests.Response = session.post(url, data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})
        return response

    ok = grant()
    assert ok.status_code == 200 and ok.json()["access_token"] == org.app.integration_token
    assert grant(iss="someone-else").json()["error"] == "invalid_client_id"
    assert grant(sub="riley.morgan@acme-corp.example").json() == {
        "error": "invalid_grant", "error_description": "user hasn't approved this consumer"}
    assert grant(aud="https://example.com").json()["error_description"] == "audience is invalid"
    assert grant(exp=int(time.time()) - 10).json()["error"] == "invalid_grant"
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = grant(other_key)
    assert forged.status_code == 400 and forged.json() == {"error": "invalid_grant",
                                                           "error_description": "invalid assertion"}
    garbage = session.post(url, data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                      "assertion": "not.a.jwt"})
    assert garbage.json()["error"] == "invalid_grant"


def test_daily_request_limit(org: Any, sf: Any, person: Any) -> None:
    org.configure(daily_request_limit=5, daily_requests_used=3)
    sf.query("SELECT Id FROM User")
    sf.query("SELECT Id FROM User")
    assert sf.api_usage["api-usage"].used == 5
    with pytest.raises(SalesforceRefusedRequest) as exc:
        sf.query("SELECT Id FROM User")
    assert exc.value.status == 403
    assert content_of(exc) == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED",
                                  "fields": []}]
    raw = org.session().get(f"{org.url}/services/data/v59.0/limits",
                            headers={"Authorization": f"Bearer {org.app.integration_token}"})
    assert raw.status_code == 403 and raw.headers["Sforce-Limit-Info"] == "api-usage=5/5"
    # The person using the org is neither counted nor refused.
    assert person.query("SELECT COUNT() FROM User")["totalSize"] == 2
    org.configure(daily_request_limit=10)
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 2


def test_injected_faults_hit_only_the_integration(org: Any, sf: Any, person: Any) -> None:
    org.control("faults", {"error_rate": 1.0})
    with pytest.raises(SalesforceGeneralError) as exc:
        sf.query("SELECT Id FROM User")
    assert exc.value.status == 503 and content_of(exc)[0]["errorCode"] == "SERVER_UNAVAILABLE"
    token = org.session().post(f"{org.url}/services/oauth2/token", data={"grant_type": "client_credentials"},
                               auth=(org.app.client_id, org.app.client_secret))
    assert token.status_code == 503
    assert person.query("SELECT COUNT() FROM User")["totalSize"] == 2
    org.control("faults", {"error_rate": 1.0, "error_status": 500})
    with pytest.raises(SalesforceGeneralError) as server_error:
        sf.Opportunity.create({"Name": "x"})
    assert server_error.value.status == 500
    org.control("faults", {"timeout_rate": 1.0, "timeout_hold_seconds": 0.05})
    with pytest.raises(requests.ConnectionError):
        sf.query("SELECT Id FROM User")
    org.control("faults", {})
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 2
    stats = org.session().get(f"{org.url}/__emulator/stats").json()
    assert stats["by_route"]["GET /services/data/v<version>/query/"] >= 4


def content_of(exc: pytest.ExceptionInfo[Any]) -> Any:
    """The parsed JSON error body simple-salesforce attaches to its exceptions."""
    body: Any = exc.value.content
    return body
