"""Inbound events: everything that reaches dealsync's receivers and workers, as pydantic models.

- HubSpot app webhooks (HTTP API → receiver): :class:`HubSpotWebhookEvent`, :class:`HubSpotWebhookBatch`,
  :func:`parse_hubspot_batch` (reference/hubspot.md §5).
- Salesforce Outbound Messages (SOAP on the same API): :class:`OutboundMessage`,
  :func:`parse_outbound_message`, :func:`ack_response` (reference/salesforce.md §4a).
- Salesforce Change Data Capture through Event Relay (EventBridge → SQS): :class:`SalesforceChangeEvent`
  (reference/salesforce.md §4b, §4c).
- The messages dealsync puts on its own queues, and one union per queue with a ``parse_*_queue_body``
  function and typed SQS record/event models for Powertools (DESIGN §2, §3).
- :func:`request_body`, :func:`request_headers`, :func:`request_url`, :func:`inbound_request`: the raw
  request behind an API Gateway HTTP API (payload v2) event.

Vendor payloads are read leniently: unknown keys are ignored and the vendor's camelCase keys are aliases
of snake_case attributes (they serialise back under the vendor's keys). What dealsync relies on is
checked: the event types, the ids, the 100-event batches. dealsync's own queue messages are strict:
unknown keys are refused, Salesforce ids are checked (and 15-character ids widened to 18), datetimes
must carry a time zone.
"""

import base64
import binascii
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import IPv4Network, IPv6Network
from typing import Annotated, Any, Final, Literal, Self

import defusedxml
import defusedxml.ElementTree as DefusedElementTree
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayProxyEventV2Model,
    EventBridgeModel,
    SqsModel,
    SqsRecordModel,
)
from pydantic import (
    AfterValidator,
    AliasChoices,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Json,
    RootModel,
    SecretStr,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

__all__ = [
    "HUBSPOT_MAX_BATCH",
    "OUTBOUND_MESSAGE_MAX_NOTIFICATIONS",
    "RESYNC_CHANGE_SOURCE",
    "SALESFORCE_CHANGE_MAX_IDS",
    "ChangeEventDetail",
    "ChangeEventHeader",
    "ChangeEventPayload",
    "ChangeSource",
    "ChangeType",
    "HubSpotChangeMessage",
    "HubSpotId",
    "HubSpotQueueBody",
    "HubSpotQueueEvent",
    "HubSpotQueueRecord",
    "HubSpotSubscriptionType",
    "HubSpotWebhookBatch",
    "HubSpotWebhookEvent",
    "ImportChunkMessage",
    "ImportObject",
    "ImportQueueBody",
    "ImportQueueEvent",
    "ImportQueueRecord",
    "ImportStartMessage",
    "InboundRequest",
    "OutboundMessage",
    "OutboundMessageError",
    "OutboundNotification",
    "RollupMessage",
    "RollupQueueBody",
    "RollupQueueEvent",
    "RollupQueueRecord",
    "SalesforceChangeEvent",
    "SalesforceChangeMessage",
    "SalesforceId",
    "SalesforceObject",
    "SalesforceQueueBody",
    "SalesforceQueueEvent",
    "SalesforceQueueRecord",
    "ScheduledTask",
    "ScheduledTaskName",
    "ack_response",
    "deal_resync_messages",
    "describe_invalid",
    "inbound_request",
    "parse_hubspot_batch",
    "parse_hubspot_queue_body",
    "parse_import_queue_body",
    "parse_outbound_message",
    "parse_rollup_queue_body",
    "parse_salesforce_queue_body",
    "request_body",
    "request_headers",
    "request_url",
    "salesforce_id_18",
]

HUBSPOT_MAX_BATCH: Final = 100  # "Each request can contain up to 100 events" (hubspot.md §5.3)
OUTBOUND_MESSAGE_MAX_NOTIFICATIONS: Final = 100  # WSDL: Notification maxOccurs="100" (salesforce.md §4a)
SALESFORCE_CHANGE_MAX_IDS: Final = 200  # one SOQL `Id IN (...)` / sObject Collections read

# ---------------------------------------------------------------------------------------------------
# Salesforce ids
# ---------------------------------------------------------------------------------------------------

_SF_ID_RE: Final = re.compile(r"[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?")
_SF_SUFFIX_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_SHOWABLE_RE: Final = re.compile(r"[a-zA-Z0-9*]{1,24}")

SalesforceObject = Literal["Opportunity", "OpportunityContactRole", "Account", "Contact"]
"""The Salesforce objects whose changes travel on the Salesforce changes queue."""
ImportObject = Literal["Account", "Contact", "Opportunity"]
ChangeSource = Literal["outbound_message", "change_event", "poll", "resync", "import"]
ScheduledTaskName = Literal["salesforce_poll", "rollup_full_recompute", "reconcile"]

# Key prefixes of the standard objects dealsync moves (fixed in every org).
_KEY_PREFIXES: Final[dict[SalesforceObject, str]] = {
    "Account": "001",
    "Contact": "003",
    "Opportunity": "006",
    "OpportunityContactRole": "00K",
}
_SALESFORCE_OBJECTS: Final[dict[str, SalesforceObject]] = {name: name for name in _KEY_PREFIXES}


def _sf_checksum(id15: str) -> str:
    suffix = ""
    for block in range(3):
        bits = 0
        for i, char in enumerate(id15[block * 5 : block * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << i
        suffix += _SF_SUFFIX_ALPHABET[bits]
    return suffix


def _shown(value: str) -> str:
    """``value`` quoted when it looks like an id (a typo worth showing); otherwise only its length: a value in
    an id's place may be anything — a name, an e-mail — and error messages reach logs and HTTP answers."""
    if _SHOWABLE_RE.fullmatch(value):
        return repr(value)
    return f"a value of {len(value)} characters"


def salesforce_id_18(value: str) -> str:
    """The canonical 18-character form of a 15- or 18-character Salesforce id (salesforce.md §1.6).

    An 18-character id is read as Salesforce reads it, in any letter case: its suffix says which of the
    first 15 characters are upper case. Raises ValueError when ``value`` is not an id, or when its
    suffix cannot describe its first 15 characters (an upper-case bit on a digit, a character outside
    the suffix alphabet).
    """
    if not _SF_ID_RE.fullmatch(value):
        raise ValueError(f"{_shown(value)} is not a Salesforce id (15 or 18 letters and digits)")
    if len(value) == 15:
        return value + _sf_checksum(value)
    suffix = value[15:].upper()
    chars = list(value[:15])
    for block, code in enumerate(suffix):
        bits = _SF_SUFFIX_ALPHABET.find(code)
        if bits < 0:
            raise ValueError(f"{value!r} is not a valid Salesforce id: {code!r} cannot appear in its suffix")
        for position in range(5):
            index = block * 5 + position
            upper = bool(bits & (1 << position))
            if upper and not chars[index].isalpha():
                raise ValueError(
                    f"{value!r} is not a valid Salesforce id: its suffix {suffix!r} does not match "
                    "its first 15 characters"
                )
            chars[index] = chars[index].upper() if upper else chars[index].lower()
    return "".join(chars) + suffix


SalesforceId = Annotated[StrictStr, AfterValidator(salesforce_id_18)]
"""A Salesforce record id: 15 or 18 characters in, always the canonical 18 characters out."""


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _check_key_prefix(sobject: SalesforceObject, ids: Sequence[str]) -> None:
    prefix = _KEY_PREFIXES[sobject]
    wrong = [i for i in ids if not i.startswith(prefix)]
    if wrong:
        shown = ", ".join(wrong[:5]) + (", ..." if len(wrong) > 5 else "")
        raise ValueError(f"ids of {sobject} start with {prefix!r}; these do not: {shown}")


# ---------------------------------------------------------------------------------------------------
# HubSpot app webhooks (hubspot.md §5)
# ---------------------------------------------------------------------------------------------------

HubSpotSubscriptionType = Literal[
    "deal.creation",
    "deal.propertyChange",
    "deal.deletion",
    "deal.associationChange",
    "deal.merge",
    "deal.restore",
    "contact.creation",
    "contact.propertyChange",
    "contact.deletion",
    "contact.associationChange",
    "contact.merge",
    "contact.restore",
    "contact.privacyDeletion",
    "company.creation",
    "company.propertyChange",
    "company.deletion",
    "company.associationChange",
    "company.merge",
    "company.restore",
]
"""The subscription types dealsync understands (deal.* of §5.1, and the contact/company variants)."""

_HUBSPOT_OBJECT_TYPES: Final[dict[str, Literal["deal", "contact", "company"]]] = {
    "deal": "deal",
    "contact": "contact",
    "company": "company",
}

# What each kind of event must carry besides the common fields: (attribute, payload key).
_HUBSPOT_REQUIRED: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "propertyChange": (("property_name", "propertyName"),),
    "associationChange": (
        ("association_type", "associationType"),
        ("from_object_id", "fromObjectId"),
        ("to_object_id", "toObjectId"),
    ),
    "merge": (("primary_object_id", "primaryObjectId"), ("merged_object_ids", "mergedObjectIds")),
}


HubSpotId = Annotated[int, Field(ge=1, le=2**63 - 1)]
"""A HubSpot record, portal or app id: a positive 64-bit integer."""
_HubSpotLabel = Annotated[str, Field(max_length=1000)]  # names, sources, flags: short by nature


class HubSpotWebhookEvent(BaseModel):
    """One event of a HubSpot app-webhook delivery (hubspot.md §5.2).

    Attributes are snake_case; the payload's camelCase keys are their aliases, and the model serialises
    back to them. ``subscriptionType`` is also read from ``eventType`` (the guide's name for it).
    Association events carry no ``objectId`` in real deliveries: ``object_id`` is then their
    ``fromObjectId`` (the object the event is about). ``subscriptionId`` is missing from some captured
    association events, so it is optional.
    """

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        coerce_numbers_to_str=True,
    )

    event_id: int
    subscription_id: int | None = None
    portal_id: HubSpotId
    app_id: HubSpotId
    occurred_at: int = Field(ge=0, description="Epoch milliseconds")
    subscription_type: HubSpotSubscriptionType = Field(
        validation_alias=AliasChoices("subscriptionType", "eventType", "subscription_type")
    )
    attempt_number: int = Field(default=0, ge=0)
    object_id: HubSpotId
    object_type_id: _HubSpotLabel | None = None
    property_name: _HubSpotLabel | None = None
    property_value: str | None = None  # up to 65,536 characters in HubSpot; the receiver may drop it (workers re-read)
    change_source: _HubSpotLabel | None = None
    source_id: _HubSpotLabel | None = None
    change_flag: _HubSpotLabel | None = None
    # associationChange
    association_type: _HubSpotLabel | None = None
    from_object_id: HubSpotId | None = None
    to_object_id: HubSpotId | None = None
    association_removed: bool | None = None
    is_primary_association: bool | None = None
    # merge
    primary_object_id: HubSpotId | None = None
    merged_object_ids: list[HubSpotId] = Field(default_factory=list, max_length=HUBSPOT_MAX_BATCH)
    new_object_id: HubSpotId | None = None
    number_of_properties_moved: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _association_subject(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "objectId" in data or "object_id" in data:
            return data
        kind = data.get("subscriptionType", data.get("eventType", data.get("subscription_type")))
        if isinstance(kind, str) and kind.endswith(".associationChange"):
            subject = data.get("fromObjectId", data.get("from_object_id"))
            if subject is not None:
                return {**data, "objectId": subject}
        return data

    @model_validator(mode="after")
    def _fields_of_the_kind(self) -> Self:
        missing = [key for attr, key in _HUBSPOT_REQUIRED.get(self.action, ()) if getattr(self, attr) in (None, [])]
        if missing:
            raise ValueError(f"{self.subscription_type} event {self.event_id} lacks {', '.join(missing)}")
        return self

    @property
    def object_type(self) -> Literal["deal", "contact", "company"]:
        return _HUBSPOT_OBJECT_TYPES[self.subscription_type.partition(".")[0]]

    @property
    def action(self) -> str:
        """``creation``, ``propertyChange``, ``deletion``, ``associationChange``, ``merge``, ``restore``..."""
        return self.subscription_type.partition(".")[2]

    @property
    def occurred_at_utc(self) -> datetime:
        return datetime.fromtimestamp(self.occurred_at / 1000, tz=UTC)

    def is_own_change(self, app_id: int | str) -> bool:
        """True for the echo of a write made by the app ``app_id`` (hubspot.md §5.6)."""
        return self.change_source == "INTEGRATION" and self.source_id == str(app_id)


class HubSpotWebhookBatch(RootModel[list[HubSpotWebhookEvent]]):
    """The body of one webhook delivery: a JSON array of 1 to 100 events."""

    root: list[HubSpotWebhookEvent] = Field(min_length=1, max_length=HUBSPOT_MAX_BATCH)


def parse_hubspot_batch(body: str | bytes) -> list[HubSpotWebhookEvent]:
    """The events of a HubSpot webhook request body; pydantic ValidationError when it is not one."""
    return HubSpotWebhookBatch.model_validate_json(body).root


# ---------------------------------------------------------------------------------------------------
# Salesforce Outbound Messages (salesforce.md §4a)
# ---------------------------------------------------------------------------------------------------

_SOAP_ENV_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
_OUTBOUND_NS: Final = "http://soap.sforce.com/2005/09/outbound"
_XSI_NS: Final = "http://www.w3.org/2001/XMLSchema-instance"

_ACK_RESPONSE: Final = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
  <soapenv:Body>
    <notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">
      <Ack>true</Ack>
    </notificationsResponse>
  </soapenv:Body>
</soapenv:Envelope>
"""


class OutboundMessageError(ValueError):
    """The request is not a Salesforce Outbound Message dealsync can accept; the text says why."""


class OutboundNotification(BaseModel):
    """One ``<Notification>``: the notification id (de-duplication key) and the record's chosen fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    notification_id: SalesforceId
    sobject_type: str = Field(min_length=1, description='e.g. "Opportunity", from xsi:type="sf:Opportunity"')
    record_id: SalesforceId
    fields: dict[str, str | None] = Field(
        description="Field API name -> text as sent; None for xsi:nil or empty elements. Includes Id."
    )

    @model_validator(mode="after")
    def _record_of_the_type(self) -> Self:
        sobject = _SALESFORCE_OBJECTS.get(self.sobject_type)
        if sobject is not None:
            _check_key_prefix(sobject, [self.record_id])
        return self


class OutboundMessage(BaseModel):
    """A ``<notifications>`` request. ``session_id`` is a credential: it never appears in logs or reprs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    organization_id: SalesforceId
    action_id: SalesforceId
    session_id: SecretStr | None = None
    enterprise_url: str
    partner_url: str
    notifications: list[OutboundNotification] = Field(min_length=1, max_length=OUTBOUND_MESSAGE_MAX_NOTIFICATIONS)

    def is_from_org(self, org_id: str) -> bool:
        """Whether the message comes from ``org_id`` (15 or 18 characters; the first 15 are compared)."""
        return len(org_id) in (15, 18) and self.organization_id[:15] == org_id[:15]

    @property
    def record_ids(self) -> list[str]:
        """The records notified, each once, in message order."""
        return _unique(n.record_id for n in self.notifications)

    @property
    def notification_ids(self) -> list[str]:
        return [n.notification_id for n in self.notifications]

    @property
    def sobject_types(self) -> set[str]:
        return {n.sobject_type for n in self.notifications}


def _local_name(tag: str) -> str:
    return tag.rpartition("}")[2]


def _is_nil(element: Any) -> bool:
    return str(element.get(f"{{{_XSI_NS}}}nil", "")).strip().lower() in ("true", "1")


def _child_text(parent: Any, name: str, *, where: str, nillable: bool = False) -> str | None:
    element = parent.find(f"{{{_OUTBOUND_NS}}}{name}")
    if element is None:
        if nillable:
            return None
        raise OutboundMessageError(f"outbound message: {where} has no <{name}>")
    if _is_nil(element) or not (element.text or "").strip():
        if nillable:
            return None
        raise OutboundMessageError(f"outbound message: <{name}> of {where} is empty")
    return str(element.text).strip()


def describe_invalid(exc: ValueError) -> str:
    """Where and why an input is invalid, never the input itself (it may carry names, e-mails or
    descriptions): safe for logs and error answers."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    return "; ".join(f"{'.'.join(str(part) for part in err['loc']) or 'message'}: {err['msg']}"
                     for err in exc.errors(include_input=False, include_url=False))


def _parse_notification(element: Any, index: int) -> OutboundNotification:
    where = f"Notification {index + 1}"
    notification_id = _child_text(element, "Id", where=where)
    sobject = element.find(f"{{{_OUTBOUND_NS}}}sObject")
    if sobject is None:
        raise OutboundMessageError(f"outbound message: {where} has no <sObject>")
    xsi_type = str(sobject.get(f"{{{_XSI_NS}}}type", "")).strip()
    sobject_type = xsi_type.rpartition(":")[2]
    if not sobject_type:
        raise OutboundMessageError(f"outbound message: the <sObject> of {where} has no xsi:type")
    fields: dict[str, str | None] = {}
    for child in sobject:
        if not isinstance(child.tag, str) or len(child):
            continue  # comments, processing instructions, nested structures: not field values
        text = child.text
        fields[_local_name(child.tag)] = None if _is_nil(child) or not text else text
    record_id = fields.get("Id")
    if not record_id:
        raise OutboundMessageError(f"outbound message: the <sObject> of {where} has no <sf:Id>")
    try:
        return OutboundNotification(
            notification_id=str(notification_id),
            sobject_type=sobject_type,
            record_id=record_id.strip(),
            fields=fields,
        )
    except ValidationError as exc:
        raise OutboundMessageError(f"outbound message: {where}: {describe_invalid(exc)}") from exc


def parse_outbound_message(xml: bytes | str) -> OutboundMessage:
    """Parse a Salesforce Outbound Message (SOAP 1.1 ``notifications`` request).

    Parsed with defusedxml: a document with a DTD or entity declarations is refused (Salesforce never
    sends one). Every problem raises :class:`OutboundMessageError` naming its cause.
    """
    try:
        root = DefusedElementTree.fromstring(xml, forbid_dtd=True)
    except defusedxml.DefusedXmlException as exc:
        raise OutboundMessageError(
            f"outbound message refused: the XML declares a DTD or entities ({type(exc).__name__}); "
            "Salesforce never sends one"
        ) from exc
    except DefusedElementTree.ParseError as exc:
        raise OutboundMessageError(f"outbound message is not well-formed XML: {exc}") from exc

    if root.tag != f"{{{_SOAP_ENV_NS}}}Envelope":
        namespace = root.tag[1:].partition("}")[0] if root.tag.startswith("{") else "none"
        raise OutboundMessageError(
            f"not a SOAP 1.1 outbound message: the root element is <{_local_name(root.tag)}> "
            f"(namespace {namespace}), expected soapenv:Envelope"
        )
    body = root.find(f"{{{_SOAP_ENV_NS}}}Body")
    if body is None:
        raise OutboundMessageError("not an outbound message: the SOAP envelope has no Body")
    notifications = body.find(f"{{{_OUTBOUND_NS}}}notifications")
    if notifications is None:
        found = ", ".join(f"<{_local_name(child.tag)}>" for child in body) or "nothing"
        raise OutboundMessageError(
            f"not an outbound message: the SOAP Body holds {found}, expected <notifications> "
            f"of namespace {_OUTBOUND_NS}"
        )

    where = "<notifications>"
    organization_id = _child_text(notifications, "OrganizationId", where=where)
    action_id = _child_text(notifications, "ActionId", where=where)
    session_id = _child_text(notifications, "SessionId", where=where, nillable=True)
    enterprise_url = _child_text(notifications, "EnterpriseUrl", where=where)
    partner_url = _child_text(notifications, "PartnerUrl", where=where)
    elements = notifications.findall(f"{{{_OUTBOUND_NS}}}Notification")
    if not elements:
        raise OutboundMessageError("outbound message: <notifications> holds no <Notification>")
    if len(elements) > OUTBOUND_MESSAGE_MAX_NOTIFICATIONS:
        raise OutboundMessageError(
            f"outbound message: {len(elements)} notifications, at most {OUTBOUND_MESSAGE_MAX_NOTIFICATIONS} are allowed"
        )
    parsed = [_parse_notification(element, index) for index, element in enumerate(elements)]
    try:
        return OutboundMessage(
            organization_id=str(organization_id),
            action_id=str(action_id),
            session_id=SecretStr(session_id) if session_id is not None else None,
            enterprise_url=str(enterprise_url),
            partner_url=str(partner_url),
            notifications=parsed,
        )
    except ValidationError as exc:
        raise OutboundMessageError(f"outbound message: {describe_invalid(exc)}") from exc


def ack_response() -> str:
    """The SOAP acknowledgement Salesforce expects (HTTP 200, ``text/xml``) once the message is safe."""
    return _ACK_RESPONSE


# ---------------------------------------------------------------------------------------------------
# Change Data Capture through Event Relay (salesforce.md §4b, §4c)
# ---------------------------------------------------------------------------------------------------

ChangeType = Literal[
    "CREATE",
    "UPDATE",
    "DELETE",
    "UNDELETE",
    "GAP_CREATE",
    "GAP_UPDATE",
    "GAP_DELETE",
    "GAP_UNDELETE",
    "GAP_OVERFLOW",
]

_BITMAP_FIELD_RE: Final = re.compile(r"(?:\d+-)?0x[0-9A-Fa-f]+")
_ORIGIN_CLIENT_RE: Final = re.compile(r"(?:^|;)\s*client=([^;]*)")


class ChangeEventHeader(BaseModel):
    """``ChangeEventHeader`` of a change event. Field lists are kept raw: names, or Pub/Sub bitmaps
    such as ``"0x650004E0"`` / ``"4-0x10"`` (how Event Relay sends them is unconfirmed)."""

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    entity_name: str = Field(min_length=1)
    record_ids: list[str] = Field(default_factory=list)
    change_type: ChangeType
    change_origin: str = ""
    transaction_key: str = ""
    sequence_number: int = 0
    commit_timestamp: int = Field(ge=0, description="Epoch milliseconds of the commit")
    commit_number: int | None = None
    commit_user: str = ""
    changed_fields: list[str] = Field(default_factory=list)
    nulled_fields: list[str] = Field(default_factory=list)
    diff_fields: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ids_unless_overflow(self) -> Self:
        if self.change_type != "GAP_OVERFLOW" and not self.record_ids:
            raise ValueError(f"{self.change_type} change event for {self.entity_name} has no recordIds")
        sobject = _SALESFORCE_OBJECTS.get(self.entity_name)
        if sobject is not None and not self.has_wildcard_ids:  # ids of the objects dealsync syncs are checked
            _check_key_prefix(sobject, [salesforce_id_18(record_id) for record_id in self.record_ids])
        return self

    @property
    def is_gap(self) -> bool:
        """A gap or overflow event: no field values, re-read the records (or, overflow, the entity)."""
        return self.change_type.startswith("GAP_")

    @property
    def is_overflow(self) -> bool:
        return self.change_type == "GAP_OVERFLOW"

    @property
    def is_delete(self) -> bool:
        return self.change_type in ("DELETE", "GAP_DELETE")

    @property
    def has_wildcard_ids(self) -> bool:
        """``recordIds`` like ``006*`` (lossy field type conversions): every record may have changed."""
        return any("*" in record_id for record_id in self.record_ids)

    @property
    def needs_full_requery(self) -> bool:
        """The event names no concrete records: re-query the whole entity."""
        return self.is_overflow or self.has_wildcard_ids or not self.record_ids

    @property
    def has_bitmap_fields(self) -> bool:
        """Whether the field lists are Pub/Sub bitmaps to decode against the schema, not names."""
        lists = (self.changed_fields, self.nulled_fields, self.diff_fields)
        return any(_BITMAP_FIELD_RE.fullmatch(item) for items in lists for item in items)

    @property
    def origin_client(self) -> str | None:
        """The ``client=`` value of ``changeOrigin`` (set by ``Sforce-Call-Options``), or None."""
        match = _ORIGIN_CLIENT_RE.search(self.change_origin)
        if match is None:
            return None
        return match.group(1).strip() or None

    @property
    def commit_time(self) -> datetime:
        return datetime.fromtimestamp(self.commit_timestamp / 1000, tz=UTC)


class ChangeEventPayload(BaseModel):
    """``detail.payload``: the header plus the record's field values (any other keys, kept as sent)."""

    model_config = ConfigDict(extra="allow", frozen=True, validate_by_name=True, serialize_by_alias=True)

    header: ChangeEventHeader = Field(alias="ChangeEventHeader")

    @property
    def field_values(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ChangeEventDetail(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    payload: ChangeEventPayload


class SalesforceChangeEvent(EventBridgeModel):
    """A change event relayed by Salesforce Event Relay to EventBridge (record under ``detail.payload``)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, serialize_by_alias=True)

    detail: ChangeEventDetail

    @field_validator("detail_type")
    @classmethod
    def _a_change_event(cls, value: str) -> str:
        if not value.endswith("ChangeEvent"):
            raise ValueError(f"detail-type {value!r} is not a Salesforce change event (…ChangeEvent)")
        return value

    @property
    def header(self) -> ChangeEventHeader:
        return self.detail.payload.header

    @property
    def field_values(self) -> dict[str, Any]:
        return self.detail.payload.field_values

    @property
    def entity_name(self) -> str:
        return self.header.entity_name

    @property
    def record_ids(self) -> list[str]:
        return self.header.record_ids

    @property
    def is_gap(self) -> bool:
        return self.header.is_gap

    @property
    def origin_client(self) -> str | None:
        return self.header.origin_client

    @property
    def org_id(self) -> str | None:
        """The org id from ``source`` = ``aws.partner/salesforce.com/<orgId>/<channelId>``."""
        return self._source_part(2)

    @property
    def channel_id(self) -> str | None:
        return self._source_part(3)

    def _source_part(self, index: int) -> str | None:
        parts = self.source.split("/")
        if len(parts) == 4 and parts[:2] == ["aws.partner", "salesforce.com"]:
            return parts[index]
        return None

    def to_change_messages(self, received_at: datetime) -> list["SalesforceChangeMessage"]:
        """The event as "these ids changed" messages (≤200 ids each); [] when it names no concrete
        records of a synced object (overflow, wildcard ids, another entity): see ``needs_full_requery``."""
        header = self.header
        sobject = _SALESFORCE_OBJECTS.get(header.entity_name)
        if header.needs_full_requery or sobject is None:
            return []
        return SalesforceChangeMessage.batches(
            sobject,
            header.record_ids,
            source="change_event",
            received_at=received_at,
            deleted=header.is_delete,
        )


# ---------------------------------------------------------------------------------------------------
# dealsync's own queue messages
# ---------------------------------------------------------------------------------------------------

_OWN_MESSAGE = ConfigDict(extra="forbid", frozen=True)


class SalesforceChangeMessage(BaseModel):
    """On the Salesforce changes queue: "these Salesforce records changed, re-read them"."""

    model_config = _OWN_MESSAGE

    kind: Literal["salesforce_changes"] = "salesforce_changes"
    object: SalesforceObject
    ids: list[SalesforceId] = Field(min_length=1, max_length=SALESFORCE_CHANGE_MAX_IDS)
    deleted: StrictBool = False
    source: ChangeSource
    received_at: AwareDatetime

    @field_validator("ids")
    @classmethod
    def _each_once(cls, ids: list[str]) -> list[str]:
        return _unique(ids)

    @model_validator(mode="after")
    def _ids_of_the_object(self) -> Self:
        _check_key_prefix(self.object, self.ids)
        return self

    @classmethod
    def batches(
        cls,
        object: SalesforceObject,
        ids: Iterable[str],
        *,
        source: ChangeSource,
        received_at: datetime,
        deleted: bool = False,
    ) -> list[Self]:
        """Messages for any number of ids, at most 200 (distinct, 18-character) ids each."""
        unique = _unique(salesforce_id_18(i) for i in ids)
        return [
            cls(
                object=object,
                ids=unique[start : start + SALESFORCE_CHANGE_MAX_IDS],
                deleted=deleted,
                source=source,
                received_at=received_at,
            )
            for start in range(0, len(unique), SALESFORCE_CHANGE_MAX_IDS)
        ]


class HubSpotChangeMessage(BaseModel):
    """On the HubSpot changes queue: the events of one webhook delivery, as received."""

    model_config = _OWN_MESSAGE

    kind: Literal["hubspot_changes"] = "hubspot_changes"
    events: list[HubSpotWebhookEvent] = Field(min_length=1, max_length=HUBSPOT_MAX_BATCH)
    received_at: AwareDatetime


class ImportChunkMessage(BaseModel):
    """On the import queue: one chunk (≤100 records) of an import job."""

    model_config = _OWN_MESSAGE

    kind: Literal["import_chunk"] = "import_chunk"
    job_id: StrictStr = Field(min_length=1)
    chunk: StrictInt = Field(ge=0)
    object: ImportObject
    ids: list[SalesforceId] = Field(min_length=1, max_length=100)
    # The records as the coordinator read them (opportunity imports), in the order of ``ids``: the worker
    # does not read Salesforce again. Empty: the worker reads the records by id.
    records: list[dict[str, Any]] = Field(default_factory=list, max_length=100)

    @field_validator("ids")
    @classmethod
    def _each_once(cls, ids: list[str]) -> list[str]:
        return _unique(ids)

    @model_validator(mode="after")
    def _ids_of_the_object(self) -> Self:
        _check_key_prefix(self.object, self.ids)
        if self.records and [str(record.get("Id")) for record in self.records] != self.ids:
            raise ValueError("the records of a chunk are its ids' records, in the same order")
        return self


class ImportStartMessage(BaseModel):
    """On the import queue: start (or continue) enumerating an import job's records into chunks."""

    model_config = _OWN_MESSAGE

    kind: Literal["import_start"] = "import_start"
    job_id: StrictStr = Field(min_length=1)
    object: ImportObject
    chunk_size: StrictInt = Field(default=100, ge=1, le=100)


class RollupMessage(BaseModel):
    """On the rollup queue: recompute the rollups of these contacts (Salesforce Contact ids, DESIGN 1.7)."""

    model_config = _OWN_MESSAGE

    kind: Literal["rollup"] = "rollup"
    contact_ids: list[SalesforceId] = Field(min_length=1, max_length=100)

    @field_validator("contact_ids")
    @classmethod
    def _each_once(cls, ids: list[str]) -> list[str]:
        return _unique(ids)

    @model_validator(mode="after")
    def _contact_ids(self) -> Self:
        _check_key_prefix("Contact", self.contact_ids)
        return self


class ScheduledTask(BaseModel):
    """Sent by an EventBridge schedule through the InputTransformer of template.yaml."""

    model_config = _OWN_MESSAGE

    kind: Literal["scheduled"] = "scheduled"
    task: ScheduledTaskName
    time: AwareDatetime
    event_id: StrictStr = Field(min_length=1)


# --- one union per queue ----------------------------------------------------------------------------


def _tasks_allowed(queue: str, *tasks: str) -> AfterValidator:
    def check(value: ScheduledTask) -> ScheduledTask:
        if value.task not in tasks:
            raise ValueError(
                f"scheduled task {value.task!r} does not belong on the {queue} queue (expected {' or '.join(tasks)})"
            )
        return value

    return AfterValidator(check)


def _queue_tag(value: Any) -> str | None:
    """The union tag of a queue body: its ``kind``; for a change-event envelope (no ``kind``),
    ``change_event``. None (→ a validation error) for anything else."""
    if isinstance(value, dict):
        kind = value.get("kind")
        if isinstance(kind, str):
            return kind
        if kind is None and "detail-type" in value and "detail" in value:
            return "change_event"
        return None
    if isinstance(value, SalesforceChangeEvent):
        return "change_event"
    kind = getattr(value, "kind", None)
    return kind if isinstance(kind, str) else None


def _none_of(queue: str, expected: str) -> Discriminator:
    return Discriminator(
        _queue_tag,
        custom_error_type="unknown_queue_message",
        custom_error_message=f"the body is none of the messages of the {queue} queue ({expected})",
    )


SalesforceQueueBody = Annotated[
    Annotated[SalesforceChangeMessage, Tag("salesforce_changes")]
    | Annotated[SalesforceChangeEvent, Tag("change_event")]
    | Annotated[ScheduledTask, _tasks_allowed("Salesforce changes", "salesforce_poll", "reconcile"), Tag("scheduled")],
    _none_of(
        "Salesforce changes",
        "kind 'salesforce_changes', an Event Relay change-event envelope, or kind 'scheduled'",
    ),
]
HubSpotQueueBody = HubSpotChangeMessage
ImportQueueBody = Annotated[
    Annotated[ImportChunkMessage, Tag("import_chunk")] | Annotated[ImportStartMessage, Tag("import_start")],
    _none_of("import", "kind 'import_chunk' or kind 'import_start'"),
]
RollupQueueBody = Annotated[
    Annotated[RollupMessage, Tag("rollup")]
    | Annotated[ScheduledTask, _tasks_allowed("rollup", "rollup_full_recompute"), Tag("scheduled")],
    _none_of("rollup", "kind 'rollup' or kind 'scheduled'"),
]

_SALESFORCE_QUEUE_BODY: Final = TypeAdapter[SalesforceQueueBody](
    SalesforceQueueBody, config=ConfigDict(title="Salesforce changes queue body")
)
_IMPORT_QUEUE_BODY: Final = TypeAdapter[ImportQueueBody](ImportQueueBody, config=ConfigDict(title="import queue body"))
_ROLLUP_QUEUE_BODY: Final = TypeAdapter[RollupQueueBody](RollupQueueBody, config=ConfigDict(title="rollup queue body"))


def parse_salesforce_queue_body(body: str | bytes) -> SalesforceQueueBody:
    """A Salesforce changes queue body: SalesforceChangeMessage, SalesforceChangeEvent or ScheduledTask."""
    return _SALESFORCE_QUEUE_BODY.validate_json(body)


def parse_hubspot_queue_body(body: str | bytes) -> HubSpotQueueBody:
    return HubSpotChangeMessage.model_validate_json(body)


def parse_import_queue_body(body: str | bytes) -> ImportQueueBody:
    """An import queue body: ImportChunkMessage or ImportStartMessage."""
    return _IMPORT_QUEUE_BODY.validate_json(body)


def parse_rollup_queue_body(body: str | bytes) -> RollupQueueBody:
    """A rollup queue body: RollupMessage or ScheduledTask (``rollup_full_recompute``)."""
    return _ROLLUP_QUEUE_BODY.validate_json(body)


# --- typed SQS records and events (for Powertools BatchProcessor(model=...) and the parser) ----------


class SalesforceQueueRecord(SqsRecordModel):
    body: Json[SalesforceQueueBody]


class HubSpotQueueRecord(SqsRecordModel):
    body: Json[HubSpotQueueBody]


class ImportQueueRecord(SqsRecordModel):
    body: Json[ImportQueueBody]


class RollupQueueRecord(SqsRecordModel):
    body: Json[RollupQueueBody]


class SalesforceQueueEvent(SqsModel):
    Records: Sequence[SalesforceQueueRecord]


class HubSpotQueueEvent(SqsModel):
    Records: Sequence[HubSpotQueueRecord]


class ImportQueueEvent(SqsModel):
    Records: Sequence[ImportQueueRecord]


class RollupQueueEvent(SqsModel):
    Records: Sequence[RollupQueueRecord]


# ---------------------------------------------------------------------------------------------------
# The raw request behind an HTTP API (payload v2) event
# ---------------------------------------------------------------------------------------------------


def request_body(event: APIGatewayProxyEventV2Model) -> bytes:
    """The request body exactly as sent (base64-decoded when ``isBase64Encoded``); b"" when absent."""
    body = event.body
    if body is None:
        return b""
    if not isinstance(body, str):
        raise TypeError("the event body was already parsed into a model; the raw body is gone")
    if event.isBase64Encoded:
        try:
            return base64.b64decode(body, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"the event says isBase64Encoded but its body is not base64: {exc}") from exc
    return body.encode("utf-8")


def request_headers(event: APIGatewayProxyEventV2Model) -> dict[str, str]:
    """The headers with lower-cased names (HTTP API already lower-cases them; local callers may not)."""
    return {name.lower(): value for name, value in event.headers.items()}


def request_url(event: APIGatewayProxyEventV2Model) -> str:
    """``<scheme>://<domainName><rawPath>[?<rawQueryString>]``: the URL the caller used, as HubSpot signs
    it (v3). The scheme is ``x-forwarded-proto`` (set by API Gateway, always https there; http in a local
    runtime without TLS). Behind a custom domain with a base-path mapping, prefer the configured URL."""
    forwarded = request_headers(event).get("x-forwarded-proto", "").split(",", 1)[0].strip().lower()
    scheme = forwarded if forwarded in ("http", "https") else "https"
    url = f"{scheme}://{event.requestContext.domainName}{event.rawPath}"
    return f"{url}?{event.rawQueryString}" if event.rawQueryString else url


@dataclass(frozen=True, slots=True)
class InboundRequest:
    """What a receiver needs of an HTTP API request."""

    method: str
    url: str
    path: str
    headers: dict[str, str]
    body: bytes
    source_ip: str
    request_id: str
    received_at: datetime

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


def _address(source_ip: object) -> str:
    """Powertools parses ``sourceIp`` into a network: give back the plain address."""
    if isinstance(source_ip, IPv4Network | IPv6Network) and source_ip.num_addresses == 1:
        return str(source_ip.network_address)
    return str(source_ip)


def inbound_request(event: APIGatewayProxyEventV2Model) -> InboundRequest:
    """The parts of an HTTP API event a receiver uses, with the raw body and lower-cased headers."""
    context = event.requestContext
    return InboundRequest(
        method=context.http.method,
        url=request_url(event),
        path=event.rawPath,
        headers=request_headers(event),
        body=request_body(event),
        source_ip=_address(context.http.sourceIp),
        request_id=context.requestId,
        received_at=context.timeEpoch,
    )


RESYNC_CHANGE_SOURCE: Final = "DEALSYNC_RESYNC"  # changeSource of the deal events a resync puts on the queue


def deal_resync_messages(deal_ids: Sequence[str], *, portal_id: str, app_id: str,
                         now: datetime) -> list[HubSpotChangeMessage]:
    """HubSpotChanges messages asking the worker to re-read these deals with their associations."""
    occurred = int(now.timestamp() * 1000)
    events = [
        HubSpotWebhookEvent(
            event_id=uuid.uuid4().int >> 65, portal_id=int(portal_id or 0), app_id=int(app_id or 0),
            occurred_at=occurred, subscription_type="deal.creation", object_id=int(deal_id),
            change_source=RESYNC_CHANGE_SOURCE,
        )
        for deal_id in dict.fromkeys(deal_ids)
    ]
    return [HubSpotChangeMessage(events=events[start:start + HUBSPOT_MAX_BATCH], received_at=now)
            for start in range(0, len(events), HUBSPOT_MAX_BATCH)]
