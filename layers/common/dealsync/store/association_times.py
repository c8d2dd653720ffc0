"""When a person last changed each of a deal's associations in HubSpot: the company, and each contact.

HubSpot keeps no history of associations; its webhooks' occurredAt is the only time there is. The HubSpot
changes worker notes it here as the webhooks arrive, so that the Salesforce → HubSpot direction can tell
an association a person changed in HubSpot after Salesforce's change (which it must not overwrite) from
one Salesforce changed last. One item per deal, a number per association, expiring after a week.
The Salesforce → HubSpot direction notes its own association writes in the same item (``own_``), and so does
the HubSpot worker for the companies it puts back on deals: the HubSpot worker then knows the deal shows
dealsync's write, not a person's later change still on its way.
The HubSpot worker notes the contact roles it deletes in Salesforce (``roledel_``): Salesforce does not say who
deleted a record, and a role deleted later than dealsync's own deletion is a person's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dealsync.store.dynamo import DynamoTable, Key

TTL_SECONDS = 7 * 24 * 3600
COMPANY = "company"
_PREFIX = "at_"
_OWN_PREFIX = "own_"
_OWN_STATE_PREFIX = "ownis_"
ON_DEAL = "on"  # the state dealsync wrote of a contact association (a company's is the company id, "" for none)
OFF_DEAL = "off"
_ROLE_DELETED_PREFIX = "roledel_"


@dataclass(frozen=True)
class AssociationTimes:
    """A deal's latest person changes in HubSpot: of its company association, and by contact id."""

    company: datetime | None = None
    contacts: Mapping[str, datetime] = field(default_factory=dict)
    # When dealsync last wrote the company association (either direction), and each contact's (Salesforce → HubSpot).
    own_company: datetime | None = None
    own_contacts: Mapping[str, datetime] = field(default_factory=dict)
    # What it wrote: ON_DEAL / OFF_DEAL by contact, the company id (or "") under COMPANY.
    own_states: Mapping[str, str] = field(default_factory=dict)
    # When the HubSpot → Salesforce direction last deleted the opportunity's role of each contact.
    roles_deleted: Mapping[str, datetime] = field(default_factory=dict)


def _key(deal_id: str) -> Key:
    return {"pk": f"ASSOCTIMES#{deal_id}", "sk": "ASSOCTIMES"}


def _moment(milliseconds: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(milliseconds))


class AssociationTimesStore:
    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    def note(self, deal_id: str, target: str, occurred_ms: int) -> None:
        """A person changed the deal's ``target`` association (``COMPANY`` or a contact id) at ``occurred_ms``;
        kept unless a later time is there already (webhooks come duplicated and out of order)."""
        self.table.update_if(
            _key(deal_id), "SET #at = :at, expires_at = :expires", "attribute_not_exists(#at) OR #at < :at",
            names={"#at": f"{_PREFIX}{target}"},
            values={":at": int(occurred_ms), ":expires": int(time.time()) + TTL_SECONDS})

    def note_own(self, deal_id: str, states: Mapping[str, str], written_ms: int) -> None:
        """dealsync wrote these associations of the deal at ``written_ms``: by contact id, ON_DEAL or OFF_DEAL;
        under ``COMPANY``, the primary company it set ("" for none)."""
        if not states:
            return
        names = {f"#t{index}": f"{_OWN_PREFIX}{name}" for index, name in enumerate(states)}
        names.update({f"#s{index}": f"{_OWN_STATE_PREFIX}{name}" for index, name in enumerate(states)})
        values: dict[str, object] = {":at": int(written_ms), ":expires": int(time.time()) + TTL_SECONDS}
        values.update({f":s{index}": state for index, state in enumerate(states.values())})
        assignments = [f"#t{index} = :at, #s{index} = :s{index}" for index in range(len(states))]
        self.table.update(_key(deal_id), "SET " + ", ".join(assignments) + ", expires_at = :expires",
                          names=names, values=values)

    def note_roles_deleted(self, deal_id: str, contact_ids: Iterable[str], deleted_ms: int) -> None:
        """dealsync deleted the opportunity's roles of these (HubSpot) contacts at ``deleted_ms``."""
        self._note_now(deal_id, _ROLE_DELETED_PREFIX, contact_ids, deleted_ms)

    def _note_now(self, deal_id: str, prefix: str, targets: Iterable[str], moment_ms: int) -> None:
        names = {f"#t{index}": f"{prefix}{target}" for index, target in enumerate(dict.fromkeys(targets))}
        if not names:
            return
        self.table.update(
            _key(deal_id), "SET " + ", ".join(f"{name} = :at" for name in names) + ", expires_at = :expires",
            names=names, values={":at": int(moment_ms), ":expires": int(time.time()) + TTL_SECONDS})

    def for_deals(self, deal_ids: Iterable[str]) -> dict[str, AssociationTimes]:
        """The deals that have any (one read per 100 deals)."""
        items = self.table.batch_get([_key(deal_id) for deal_id in dict.fromkeys(deal_ids)], consistent=True)
        found: dict[str, AssociationTimes] = {}
        for item in items:
            deal_id = str(item["pk"]).split("#", 1)[1]
            times = {name.removeprefix(_PREFIX): _moment(value) for name, value in item.items()
                     if name.startswith(_PREFIX)}
            own = {name.removeprefix(_OWN_PREFIX): _moment(value) for name, value in item.items()
                   if name.startswith(_OWN_PREFIX)}
            own_states = {name.removeprefix(_OWN_STATE_PREFIX): str(value) for name, value in item.items()
                          if name.startswith(_OWN_STATE_PREFIX)}
            roles_deleted = {name.removeprefix(_ROLE_DELETED_PREFIX): _moment(value) for name, value in item.items()
                             if name.startswith(_ROLE_DELETED_PREFIX)}
            company, own_company = times.pop(COMPANY, None), own.pop(COMPANY, None)
            found[deal_id] = AssociationTimes(company=company, contacts=times, own_company=own_company,
                                              own_contacts=own, own_states=own_states, roles_deleted=roles_deleted)
        return found
