"""The CRM search API: filter groups (ORed) of filters (ANDed), sorts, a free-text query, paging
with ``after`` and HubSpot's limits (200 per page, 10,000 results, 5 groups x 6 filters, 18 in all)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dealsync_local.hubspot.common import HubSpotError, ObjectType, parse_timestamp
from dealsync_local.hubspot.schema import PropertyDef
from dealsync_local.hubspot.store import Record, Store

MAX_LIMIT = 200
DEFAULT_LIMIT = 10
RESULT_CAP = 10_000
MAX_GROUPS = 5
MAX_FILTERS_PER_GROUP = 6
MAX_FILTERS = 18
MAX_QUERY = 3000
OPERATORS = frozenset({"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY",
                       "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"})
_TOKEN_SPLIT = re.compile(r"[\s,;:()\[\]{}\"'!?/\\|]+")

Comparable = float | int | str


def _bad(message: str) -> HubSpotError:
    return HubSpotError(400, message, "VALIDATION_ERROR")


def _numeric(prop: PropertyDef) -> bool:
    return prop.type == "number" or prop.name == "hs_object_id"


def comparable(prop: PropertyDef, text: str, *, strict: bool) -> Comparable | None:
    """A value made comparable for its property type; None when it cannot be (strict: raise)."""
    if _numeric(prop):
        try:
            return float(text)
        except ValueError:
            if strict:
                raise _bad(f"{text} is not a valid number for property {prop.name}") from None
            return None
    if prop.type in ("date", "datetime"):
        moment = parse_timestamp(text)
        if moment is None and strict:
            raise _bad(f"{text} is not a valid date for property {prop.name}; use epoch milliseconds")
        return moment
    return text.strip().lower()


@dataclass
class Filter:
    prop: PropertyDef
    operator: str
    value: Comparable | None = None
    high: Comparable | None = None
    values: set[Comparable] = field(default_factory=set)
    token: re.Pattern[str] | None = None

    def matches(self, store: Store, kind: ObjectType, record: Record) -> bool:
        op = self.operator
        if op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            raw = store.value_of(kind, record, self.prop.name)
            present = raw is not None and raw != ""
            if op == "HAS_PROPERTY":
                return present
            if op == "NOT_HAS_PROPERTY":
                return not present
            assert self.token is not None
            found = present and _has_token(self.token, str(raw))
            return found if op == "CONTAINS_TOKEN" else not found
        current = comparable_of(store, kind, record, self.prop)
        if op == "NEQ":
            return current is None or current != self.value
        if op == "NOT_IN":
            return current is None or current not in self.values
        if current is None:
            return False
        if op == "EQ":
            return current == self.value
        if op == "IN":
            return current in self.values
        try:
            if op == "LT":
                return current < self.value  # type: ignore[operator]
            if op == "LTE":
                return current <= self.value  # type: ignore[operator]
            if op == "GT":
                return current > self.value  # type: ignore[operator]
            if op == "GTE":
                return current >= self.value  # type: ignore[operator]
            if op == "BETWEEN":
                return self.value <= current <= self.high  # type: ignore[operator]
        except TypeError:
            return False
        return False


def comparable_of(store: Store, kind: ObjectType, record: Record, prop: PropertyDef) -> Comparable | None:
    """A record's value of ``prop`` made comparable, without formatting and re-parsing timestamps the
    record already holds."""
    name = prop.name
    if name in ("hs_lastmodifieddate", "lastmodifieddate"):
        return record.updated_ms
    if name == "hs_object_id":
        return float(record.id)
    raw = store.value_of(kind, record, name)
    if raw is None or raw == "":
        return None
    return comparable(prop, raw, strict=False)


def _has_token(pattern: re.Pattern[str], text: str) -> bool:
    lowered = text.lower()
    if pattern.fullmatch(lowered):
        return True
    return any(pattern.fullmatch(token) for token in _TOKEN_SPLIT.split(lowered) if token)


@dataclass
class SearchRequest:
    groups: list[list[Filter]]
    sorts: list[tuple[PropertyDef, bool]]  # property, descending
    query: list[str]
    properties: list[str] | None
    limit: int
    after: int


def parse(store: Store, kind: ObjectType, body: Any) -> SearchRequest:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise _bad("The search request must be a JSON object")
    schema = store.schema(kind)

    def prop_named(name: Any) -> PropertyDef:
        prop = schema.get(str(name)) if name is not None else None
        if prop is None or prop.archived:
            raise _bad(f"Property \"{name}\" does not exist on {kind.name}")
        return prop

    limit = body.get("limit", DEFAULT_LIMIT)
    try:
        limit = int(limit if limit is not None else DEFAULT_LIMIT)
    except (TypeError, ValueError):
        raise _bad(f"limit must be an integer, got {limit!r}") from None
    if limit < 0 or limit > MAX_LIMIT:
        raise _bad(f"limit must be between 0 and {MAX_LIMIT}, got {limit}")
    after_raw = body.get("after") or "0"
    try:
        after = int(str(after_raw))
    except ValueError:
        raise _bad(f"after must be formatted as an integer, got {after_raw!r}") from None
    if after < 0:
        raise _bad(f"after must not be negative, got {after}")
    if after >= RESULT_CAP:
        raise _bad(f"Search results are limited to {RESULT_CAP} per query; paging beyond that is not possible "
                   f"(after={after}). Narrow the filters instead.")
    query = body.get("query") or ""
    if not isinstance(query, str):
        raise _bad("query must be a string")
    if len(query) > MAX_QUERY:
        raise _bad(f"query must be at most {MAX_QUERY} characters")
    raw_groups = body.get("filterGroups") or []
    if not isinstance(raw_groups, list):
        raise _bad("filterGroups must be a list")
    if len(raw_groups) > MAX_GROUPS:
        raise _bad(f"Too many filter groups: {len(raw_groups)}; at most {MAX_GROUPS} are allowed")
    total = 0
    groups: list[list[Filter]] = []
    for group in raw_groups:
        raw_filters = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(raw_filters, list):
            raise _bad("Each filter group needs a filters list")
        if len(raw_filters) > MAX_FILTERS_PER_GROUP:
            raise _bad(f"Too many filters in a group: {len(raw_filters)}; at most {MAX_FILTERS_PER_GROUP} are allowed")
        total += len(raw_filters)
        groups.append([_parse_filter(f, prop_named) for f in raw_filters])
    if total > MAX_FILTERS:
        raise _bad(f"Too many filters: {total}; at most {MAX_FILTERS} are allowed across all groups")
    sorts: list[tuple[PropertyDef, bool]] = []
    for item in body.get("sorts") or []:
        if isinstance(item, str):
            descending = item.startswith("-")
            sorts.append((prop_named(item.lstrip("-")), descending))
        elif isinstance(item, dict):
            direction = str(item.get("direction") or "ASCENDING").upper()
            if direction not in ("ASCENDING", "DESCENDING"):
                raise _bad(f"Sort direction must be ASCENDING or DESCENDING, got {direction}")
            sorts.append((prop_named(item.get("propertyName")), direction == "DESCENDING"))
        else:
            raise _bad("Each sort must be a property name or {propertyName, direction}")
    properties = body.get("properties")
    if properties is not None and not isinstance(properties, list):
        raise _bad("properties must be a list of property names")
    words = [w for w in _TOKEN_SPLIT.split(query.lower()) if w]
    return SearchRequest(groups, sorts, words, [str(p) for p in properties] if properties else None, limit, after)


def _parse_filter(raw: Any, prop_named: Callable[[Any], PropertyDef]) -> Filter:
    if not isinstance(raw, dict):
        raise _bad("Each filter must be an object with propertyName and operator")
    prop = prop_named(raw.get("propertyName"))
    operator = str(raw.get("operator") or "EQ").upper()
    if operator not in OPERATORS:
        raise _bad(f"Unknown filter operator {operator}; valid operators: {', '.join(sorted(OPERATORS))}")
    found = Filter(prop, operator)
    if operator in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
        return found
    if operator in ("IN", "NOT_IN"):
        values = raw.get("values")
        if not isinstance(values, list) or not values:
            raise _bad(f"Operator {operator} needs a non-empty values list")
        found.values = {v for v in (comparable(prop, str(x), strict=True) for x in values) if v is not None}
        return found
    value = raw.get("value")
    if value is None:
        raise _bad(f"Operator {operator} on {prop.name} needs a value")
    if operator in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        text = str(value).lower()
        found.token = re.compile(".*".join(re.escape(part) for part in text.split("*")))
        return found
    found.value = comparable(prop, str(value), strict=True)
    if operator == "BETWEEN":
        high = raw.get("highValue")
        if high is None:
            raise _bad("Operator BETWEEN needs a highValue")
        found.high = comparable(prop, str(high), strict=True)
    return found


def execute(store: Store, kind: ObjectType, request: SearchRequest) -> tuple[int, list[Record], int | None]:
    """``(total, page, next_after)``: every match is counted; at most 10,000 can be paged through."""
    value_of = store.value_of
    searchable = [p for p in kind.searchable if p in store.schema(kind)]
    matched: list[Record] = []
    for record in store.active(kind):
        if request.groups and not any(all(f.matches(store, kind, record) for f in group)
                                      for group in request.groups):
            continue
        if request.query and not _query_matches(request.query, [value_of(kind, record, p) for p in searchable]):
            continue
        matched.append(record)
    for prop, descending in reversed(request.sorts):
        keyed = [(comparable_of(store, kind, r, prop), r) for r in matched]
        present = [pair for pair in keyed if pair[0] is not None]
        absent = [r for key, r in keyed if key is None]
        present.sort(key=lambda pair: pair[0], reverse=descending)  # type: ignore[arg-type,return-value]
        matched = [r for _, r in present] + absent
    total = len(matched)
    window = min(total, RESULT_CAP)
    end = min(request.after + request.limit, window)
    page = matched[request.after:end]
    next_after = end if end < window and request.limit > 0 else None
    return total, page, next_after


def _query_matches(words: list[str], values: list[str | None]) -> bool:
    tokens = [t for v in values if v for t in _TOKEN_SPLIT.split(v.lower()) if t]
    return all(any(t.startswith(w) or w in t for t in tokens) for w in words)
