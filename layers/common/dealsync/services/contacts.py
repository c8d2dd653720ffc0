"""Salesforce contacts ⇄ HubSpot contacts: linked by e-mail (DESIGN 1.4), created in HubSpot when missing."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from dealsync.models.domain import LinkKind, Side
from dealsync.services.context import SyncContext

LIFECYCLE = "lifecyclestage"


def link_contacts(context: SyncContext, contact_ids: Sequence[str]) -> dict[str, str]:
    """Salesforce contact id -> HubSpot contact id; unlinked contacts matched by e-mail or created."""
    linked = {cid: link.hubspot_id for cid, link in
              context.store.links.get_many(LinkKind.CONTACT, Side.SALESFORCE, contact_ids).items() if link.is_active}
    missing = [cid for cid in contact_ids if cid not in linked]
    if not missing:
        return linked
    contacts = context.salesforce.query_by_ids("Id, Email, FirstName, LastName", "Contact", missing)
    with_email = {str(c["Email"]).strip().lower(): c for c in contacts if c.get("Email")}
    found: dict[str, str] = {}
    stages: dict[str, str] = {}  # HubSpot contact id -> lifecycle stage seen now
    if with_email:
        for existing in context.hubspot.batch_read("contacts", list(with_email), ["email", LIFECYCLE],
                                                   id_property="email"):
            properties = existing.get("properties") or {}
            email = str(properties.get("email") or "").lower()
            if email in with_email:
                found[str(with_email[email]["Id"])] = str(existing["id"])
                stages[str(existing["id"])] = str(properties.get(LIFECYCLE) or "")
    to_create = [c for c in contacts if str(c["Id"]) not in found]
    if to_create:
        # Upsert on e-mail: idempotent, so a retry after a timeout creates nobody twice. Results come back
        # in no promised order, so they are matched by e-mail; contacts without one are created one by one.
        by_email = {str(c["Email"]).strip().lower(): c for c in to_create if c.get("Email")}
        if by_email:
            inputs = [{"id": email, "properties": _properties(contact)} for email, contact in by_email.items()]
            for result in context.hubspot.batch_upsert("contacts", "email", inputs):
                email = str(result.get("properties", {}).get("email") or "").lower()
                if "error" not in result and email in by_email:
                    found[str(by_email[email]["Id"])] = str(result["id"])
                    _note_stage(stages, result)
        for contact in (c for c in to_create if not c.get("Email")):
            created = context.hubspot.batch_create("contacts", [{"properties": _properties(contact)}])
            if created and "error" not in created[0]:
                found[str(contact["Id"])] = str(created[0]["id"])
                _note_stage(stages, created[0])
    for sf_id, hs_id in found.items():
        linked[sf_id] = context.store.links.create(LinkKind.CONTACT, sf_id, hs_id).link.hubspot_id
    # The stage seen at linking, so the rollup worker can move it forward without reading the contact;
    # the lifecyclestage webhook keeps it current from now on (a stage already known is fresher).
    seen_ms = int(time.time() * 1000)
    context.store.rollups.note_lifecycle_stages(
        {sf_id: (hs_id, stages[hs_id], seen_ms) for sf_id, hs_id in found.items()
         if linked[sf_id] == hs_id and hs_id in stages},
        only_if_unknown=True)
    return linked



def _properties(contact: dict[str, object]) -> dict[str, str]:
    values = {"email": contact.get("Email"), "firstname": contact.get("FirstName"), "lastname": contact.get("LastName")}
    return {key: str(value) for key, value in values.items() if value}


def _note_stage(stages: dict[str, str], written: dict[str, Any]) -> None:
    """A write's result names the stage only if HubSpot returned it (a portal may default new contacts'
    stage); otherwise it stays unknown and the rollup worker reads it once."""
    properties = written.get("properties") or {}
    if LIFECYCLE in properties:
        stages[str(written["id"])] = str(properties[LIFECYCLE] or "")
