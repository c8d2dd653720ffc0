"""What an opportunity import's coordinator reads from Salesforce, shaped as the sync engine reads it.

The coordinator enumerates FULL records — the engine's own SELECT (``records.opportunity_select``), contact
roles included — so the import workers never read Salesforce again:

* up to the import's Bulk threshold (``imports.BULK_THRESHOLD``) rows: REST query pages (2,000
  records each, roles as a parent-child subquery), each record stripped of its ``attributes``;
* above it: Bulk API 2.0, which has no subqueries — one query job for the opportunities ordered by
  ``Id`` and one for the contact roles ordered by ``OpportunityId``, joined by a streaming merge
  (:func:`merge_contact_roles`) so that memory holds one results page of each, whatever the org's size.
  The CSV text is typed back to what the REST API returns (:func:`typed_bulk_row`), so the engine sees
  the same record either way.

Records are then cut into chunks (:func:`chunk_records`) of at most 100 records whose JSON stays under
:data:`CHUNK_MAX_BYTES` — a chunk rides in one SQS message (256 KB) and one DynamoDB item (400 KB). A
record too large for that on its own travels by id alone and is read back by the worker.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from dealsync.services.context import SyncContext
from dealsync.services.records import ROLE_FIELDS, opportunity_fields_read, opportunity_select

CHUNK_SIZE: Final = 100
CHUNK_MAX_BYTES: Final = 200_000  # a chunk's records as JSON; the message's envelope and ids fit in the rest
BULK_PAGE_ROWS: Final = 10_000  # rows per Bulk API 2.0 results page: bounds what the coordinator holds
ROLES_KEY: Final = "OpportunityContactRoles"
ROLE_TYPES: Final = {"IsPrimary": "boolean", "IsDeleted": "boolean"}
ROLE_SOQL: Final = (f"SELECT {', '.join(ROLE_FIELDS)}, OpportunityId "  # noqa: S608 - constant names
                    "FROM OpportunityContactRole ORDER BY OpportunityId, Id")
_NUMBER_TYPES: Final = frozenset({"double", "currency", "percent"})


class EnumerationOrderError(ValueError):
    """A Bulk API 2.0 stream did not come in the order the merge relies on: nothing may be dropped silently."""


@dataclass
class RecordChunk:
    """Consecutive records of one chunk. ``records`` empty: the chunk travels by id (a record too large)."""

    ids: list[str]
    records: list[dict[str, Any]] = field(default_factory=list)


def record_json(record: Mapping[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), default=str)


def typed_bulk_row(row: Mapping[str, str], field_types: Mapping[str, str]) -> dict[str, Any]:
    """A Bulk API 2.0 CSV row as the REST API returns the record: null for an empty cell, JSON booleans
    and numbers, datetimes as ``...+0000``."""
    record: dict[str, Any] = {}
    for name, text in row.items():
        kind = field_types.get(name)
        if text == "":
            record[name] = False if kind == "boolean" else None
        elif kind == "boolean":
            record[name] = text.lower() == "true"
        elif kind == "int":
            record[name] = int(float(text))
        elif kind in _NUMBER_TYPES:
            record[name] = float(text)
        elif kind == "datetime" and text.endswith("Z"):
            record[name] = text[:-1] + "+0000"
        else:
            record[name] = text
    return record


def compact_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A REST query record without ``attributes`` or paging fields: what the chunk carries."""
    compact = {name: value for name, value in record.items() if name != "attributes"}
    roles = (record.get(ROLES_KEY) or {}).get("records") or []
    compact[ROLES_KEY] = {"records": [{name: role.get(name) for name in ROLE_FIELDS} for role in roles]} \
        if roles else None
    return compact


def sort_key(record_id: str) -> str:
    """How SOQL's ORDER BY compares ids: case-insensitively (English locales compare the UTF-8 values of
    the upper-case characters); 18-character ids stay distinct that way."""
    return record_id.upper()


def merge_contact_roles(opportunities: Iterable[dict[str, Any]],
                        roles: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """Opportunities ordered by ``Id`` joined with contact roles ordered by ``OpportunityId``, streaming.

    Roles of opportunities the first stream does not have (created after its snapshot) are passed over.
    Either stream out of the order :func:`sort_key` expects raises :class:`EnumerationOrderError` instead
    of losing roles."""
    role_stream = iter(roles)
    pending = next(role_stream, None)
    last_opportunity = last_role = ""
    for opportunity in opportunities:
        opportunity_id = str(opportunity["Id"])
        key = sort_key(opportunity_id)
        if key <= last_opportunity:
            raise EnumerationOrderError(f"opportunities not in Id order: {opportunity_id} after {last_opportunity}")
        last_opportunity = key
        found: list[dict[str, Any]] = []
        while pending is not None and sort_key(str(pending["OpportunityId"])) <= key:
            owner = sort_key(str(pending["OpportunityId"]))
            if owner < last_role:
                raise EnumerationOrderError(f"contact roles not in OpportunityId order: {pending['OpportunityId']} "
                                            f"after {last_role}")
            last_role = owner
            if owner == key:
                found.append({name: pending.get(name) for name in ROLE_FIELDS})
            pending = next(role_stream, None)
        opportunity[ROLES_KEY] = {"records": found} if found else None
        yield opportunity


def chunk_records(records: Iterable[dict[str, Any]], size: int = CHUNK_SIZE,
                  max_bytes: int = CHUNK_MAX_BYTES) -> Iterator[RecordChunk]:
    """Consecutive chunks of at most ``size`` records whose JSON together stays within ``max_bytes``; a
    record larger than ``max_bytes`` alone becomes a chunk of its own that travels by id."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    chunk = RecordChunk(ids=[])
    used = 0
    for record in records:
        weight = len(record_json(record).encode()) + 1
        if chunk.ids and (len(chunk.ids) >= size or used + weight > max_bytes):
            yield chunk
            chunk, used = RecordChunk(ids=[]), 0
        if weight > max_bytes:
            yield RecordChunk(ids=[str(record["Id"])])
            continue
        chunk.ids.append(str(record["Id"]))
        chunk.records.append(record)
        used += weight
    if chunk.ids:
        yield chunk


def enumerate_opportunities(context: SyncContext, bulk_threshold: int) -> Iterator[dict[str, Any]]:
    """Every opportunity with its contact roles, in ``Id`` order (REST pages, or Bulk API 2.0 above
    ``bulk_threshold`` rows)."""
    specs = context.field_specs(context.config())
    salesforce = context.salesforce
    if salesforce.count("Opportunity") > bulk_threshold:
        types = {name: str(describe.get("type")) for name, describe in context.opportunity_fields().items()}
        fields = ", ".join(opportunity_fields_read(context, specs))
        opportunities = (typed_bulk_row(row, types) for row in salesforce.bulk_query(
            f"SELECT {fields} FROM Opportunity ORDER BY Id", max_records=BULK_PAGE_ROWS))  # noqa: S608 - describe names
        roles = (typed_bulk_row(row, ROLE_TYPES) for row in salesforce.bulk_query(ROLE_SOQL,
                                                                                 max_records=BULK_PAGE_ROWS))
        yield from merge_contact_roles(opportunities, roles)
        return
    soql = f"SELECT {opportunity_select(context, specs)} FROM Opportunity ORDER BY Id"  # noqa: S608 - describe names
    for record in salesforce.iter_query(soql):
        yield compact_record(record)


def read_opportunities(context: SyncContext, ids: list[str]) -> list[dict[str, Any]]:
    """Opportunities read by id with the same SELECT, for a chunk that travels by id."""
    select = opportunity_select(context, context.field_specs(context.config()))
    return [compact_record(record) for record in context.salesforce.query_by_ids(select, "Opportunity", ids)]
