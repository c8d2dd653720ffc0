"""HubSpot webhook signatures against the vectors HubSpot and its SDK publish (reference §5.5)."""

from __future__ import annotations

import pytest

from dealsync.webhooks.hubspot_signature import SignatureError, sign_v1, sign_v2, sign_v3, verify

SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
SDK_BODY = b"{'example_field':'example_value'}"
URL = "https://www.example.com/webhook_uri"


def test_published_vectors() -> None:
    assert sign_v3(SECRET, "POST", URL, SDK_BODY, "1693657560000") == "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y="
    assert sign_v2(SECRET, "POST", URL, SDK_BODY) == "4fe4e3a7d3cf09db53be39d0a58130e2aaba074ec123a9e355b876a689a1c383"
    assert sign_v2(SECRET, "GET", URL, b"") == "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
    assert sign_v1(SECRET, SDK_BODY) == "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750"
    doc_body = (b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
                b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM",'
                b'"changeFlag":"NEW","appId":54321}]')
    assert sign_v1(SECRET, doc_body) == "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"


def test_v3_decodes_the_listed_escapes_only() -> None:
    encoded = "https://www.example.com/webhook%3Aa%2Fb?x=%2Cy%20z"
    decoded = "https://www.example.com/webhook:a/b?x=,y%20z"
    assert sign_v3(SECRET, "POST", encoded, b"", "1") == sign_v3(SECRET, "POST", decoded, b"", "1")


def test_verify_picks_the_version_and_checks_the_window() -> None:
    now = 1693657560000
    headers = {"x-hubspot-signature-v3": "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=",
               "x-hubspot-request-timestamp": "1693657560000"}
    assert verify(SECRET, "POST", URL, SDK_BODY, headers, now + 299_000) == "v3"
    with pytest.raises(SignatureError, match="older than 5 minutes"):
        verify(SECRET, "POST", URL, SDK_BODY, headers, now + 301_000)
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, "POST", URL, SDK_BODY + b" ", headers, now)
    v2 = {"x-hubspot-signature": sign_v2(SECRET, "POST", URL, SDK_BODY), "x-hubspot-signature-version": "v2"}
    assert verify(SECRET, "POST", URL, SDK_BODY, v2, now) == "v2"
    v1 = {"x-hubspot-signature": sign_v1(SECRET, SDK_BODY), "x-hubspot-signature-version": "v1"}
    assert verify(SECRET, "POST", URL, SDK_BODY, v1, now) == "v1"
    with pytest.raises(SignatureError, match="unknown signature version"):
        verify(SECRET, "POST", URL, SDK_BODY, {**v1, "x-hubspot-signature-version": "v9"}, now)
    with pytest.raises(SignatureError, match="no HubSpot signature"):
        verify(SECRET, "POST", URL, SDK_BODY, {}, now)
