"""The emulated portal's state: records of deals, contacts and companies with property histories,
unique-value indexes, associations, pipelines, owners and property definitions.

Not thread-safe by itself: callers hold :attr:`Store.lock` around every call (the app does so per
request). Every change is reported to :attr:`Store.listener` as :class:`Change` objects, from which
the webhook dispatcher builds events.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dealsync_local.hubspot.associations import (
    ASSOCIATION_TYPES,
    DEFAULT_TYPE,
    AssociationIndex,
    AssociationType,
)
from dealsync_local.hubspot.common import (
    COMPANIES,
    CONTACTS,
    DEALS,
    IMPORT_SOURCE,
    OBJECT_TYPES,
    Change,
    HubSpotError,
    ObjectType,
    PropertyProblem,
    Source,
    iso,
    not_found,
    now_ms,
    object_type,
    parse_timestamp,
    property_error,
)
from dealsync_local.hubspot.pipelines import (
    PIPELINE_LIMITS,
    Pipeline,
    Stage,
    build_stage,
    check_stage_labels,
    default_pipeline,
    parse_probability,
)
from dealsync_local.hubspot.schema import (
    ROLLUP_PROPERTIES,
    InvalidValue,
    Option,
    PropertyDef,
    PropertyGroup,
    check_definition,
    default_groups,
    default_properties,
    normalize_value,
)

History = tuple[str, int, Source]  # value, timestamp ms, source
MAX_UNIQUE_PROPERTIES = 10
NEVER_IN_EVENTS = frozenset({"hs_lastmodifieddate", "lastmodifieddate", "hs_object_id",
                             "num_unique_conversion_events"})


class Record:
    """One CRM record. ``values`` is shared with ``initial`` until the first update (copy on write),
    so a freshly loaded record costs one dict."""

    __slots__ = ("archived", "archived_ms", "created_ms", "created_source", "history", "id", "initial",
                 "updated_ms", "values")

    def __init__(self, record_id: int, values: dict[str, str], created_ms: int, source: Source) -> None:
        self.id = record_id
        self.values = values
        self.initial = values
        self.history: dict[str, list[History]] | None = None
        self.created_ms = created_ms
        self.updated_ms = created_ms
        self.created_source = source
        self.archived = False
        self.archived_ms: int | None = None

    def history_of(self, name: str) -> list[History]:
        """Newest first, as HubSpot lists ``propertiesWithHistory``."""
        entries: list[History] = []
        if self.history and name in self.history:
            entries.extend(reversed(self.history[name]))
        initial = self.initial.get(name)
        if initial is not None and initial != "":
            entries.append((initial, self.created_ms, self.created_source))
        return entries


@dataclass
class Owner:
    id: str
    email: str
    first_name: str
    last_name: str
    user_id: int | None
    created_ms: int
    updated_ms: int
    teams: list[dict[str, Any]] = field(default_factory=list)
    archived: bool = False
    type: str = "PERSON"

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id, "email": self.email, "firstName": self.first_name, "lastName": self.last_name,
            "type": self.type, "createdAt": iso(self.created_ms), "updatedAt": iso(self.updated_ms),
            "archived": self.archived, "teams": self.teams,
        }
        if self.user_id is not None:
            body["userId"] = self.user_id
            body["userIdIncludingInactive"] = self.user_id
        return body


@dataclass
class BatchResult:
    """What a batch write produced: records (with their trace id and whether they are new) and the
    errors of the inputs that failed (multi-status mode only)."""

    results: list[tuple[Record, str | None, bool]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class UniqueClaims:
    """Unique values claimed and given up by the inputs of one batch so far."""

    claimed: dict[tuple[str, str], object] = field(default_factory=dict)
    released: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class _Prepared:
    record: Record | None
    values: dict[str, str]
    associations: list[tuple[AssociationType, int]]
    trace_id: str | None


class Store:
    def __init__(self, *, portal_id: int, app_id: int, closedate_type: str = "datetime",
                 readonly_rollups: bool = False) -> None:
        self.lock = threading.RLock()
        self.portal_id = portal_id
        self.app_id = app_id
        self.closedate_type = closedate_type
        self.readonly_rollups = readonly_rollups
        self.pipeline_limit = PIPELINE_LIMITS["professional"]
        self.listener: Callable[[list[Change]], None] | None = None
        # Told of an update that changed no value, and whether a value it rewrote was last set by someone
        # else than the writer's kind (a person's value written back by the integration: an echo).
        self.unchanged_listener: Callable[[ObjectType, int, Source, bool], None] | None = None
        self.reset()

    # --- lifecycle --------------------------------------------------------------------------------
    def reset(self) -> None:
        created = now_ms()
        self.records: dict[str, dict[int, Record]] = {t.name: {} for t in OBJECT_TYPES}
        self.order: dict[str, list[int]] = {t.name: [] for t in OBJECT_TYPES}
        self.aliases: dict[str, dict[int, int]] = {t.name: {} for t in OBJECT_TYPES}
        self.next_id: dict[str, int] = {t.name: t.id_base for t in OBJECT_TYPES}
        self.properties: dict[str, dict[str, PropertyDef]] = {
            t.name: default_properties(t, created, closedate_type=self.closedate_type,
                                       readonly_rollups=self.readonly_rollups)
            for t in OBJECT_TYPES
        }
        self.groups: dict[str, dict[str, PropertyGroup]] = {t.name: default_groups(t) for t in OBJECT_TYPES}
        self.unique: dict[str, dict[str, dict[str, int]]] = {
            t.name: {p.name: {} for p in self.properties[t.name].values() if p.has_unique_value}
            for t in OBJECT_TYPES
        }
        self.assoc = AssociationIndex()
        self.pipelines: dict[str, Pipeline] = {"default": default_pipeline(created)}
        self.owners: dict[str, Owner] = {}
        self._next_owner = 100_001
        self._next_user = 5_000_001
        self._next_pipeline = 100_000_001
        self._next_stage = 200_000_001
        self._pending: list[Change] = []

    def set_readonly_rollups(self, enabled: bool) -> None:
        self.readonly_rollups = enabled
        for name in ROLLUP_PROPERTIES:
            prop = self.properties[CONTACTS.name][name]
            prop.read_only_value = enabled
            prop.calculated = enabled

    def set_closedate_type(self, kind: str) -> None:
        if kind not in ("date", "datetime"):
            raise ValueError("closedate_type must be 'date' or 'datetime'")
        self.closedate_type = kind
        self.properties[DEALS.name]["closedate"].type = kind

    # --- change reporting ---------------------------------------------------------------------------
    def _emit(self, change: Change) -> None:
        self._pending.append(change)

    def flush_changes(self) -> None:
        if not self._pending:
            return
        changes, self._pending = self._pending, []
        if self.listener is not None:
            self.listener(changes)

    # --- lookups -------------------------------------------------------------------------------------
    def schema(self, kind: ObjectType) -> dict[str, PropertyDef]:
        return self.properties[kind.name]

    def unique_property(self, kind: ObjectType, name: str) -> PropertyDef:
        prop = self.schema(kind).get(name)
        if name == "hs_object_id":
            return self.schema(kind)["hs_object_id"]
        if prop is None or prop.archived:
            raise HubSpotError(400, f"Property \"{name}\" does not exist", "VALIDATION_ERROR",
                               context={"propertyName": [name]})
        if not prop.has_unique_value:
            raise HubSpotError(400, f"Property \"{name}\" is not a unique identifier property; idProperty must "
                                    "have hasUniqueValue set to true", "VALIDATION_ERROR",
                               context={"propertyName": [name]})
        return prop

    def find(self, kind: ObjectType, key: str, id_property: str | None = None, *,
             archived: bool | None = False) -> Record | None:
        """The record ``key`` names (by id, or by a unique property value), following merges.
        ``archived``: False = active only, True = archived only, None = either."""
        records = self.records[kind.name]
        record: Record | None = None
        if id_property and id_property != "hs_object_id":
            self.unique_property(kind, id_property)
            value = key.strip().lower() if id_property == "email" else key
            found = self.unique[kind.name][id_property].get(value)
            if found is not None:
                record = records.get(found)
            elif archived is not False:
                for candidate in records.values():
                    if candidate.archived and candidate.values.get(id_property) == value:
                        record = candidate
                        break
        else:
            try:
                record_id = int(str(key).strip())
            except ValueError:
                return None
            record_id = self.aliases[kind.name].get(record_id, record_id)
            record = records.get(record_id)
        if record is None:
            return None
        if archived is None or record.archived == archived:
            return record
        return None

    def get(self, kind: ObjectType, key: str, id_property: str | None = None, *,
            archived: bool | None = False) -> Record:
        record = self.find(kind, key, id_property, archived=archived)
        if record is None:
            raise not_found(kind, key)
        return record

    def stage_of(self, record: Record) -> Stage | None:
        pipeline = self.pipelines.get(record.values.get("pipeline") or "")
        if pipeline is None:
            return None
        return pipeline.stage(record.values.get("dealstage") or "")

    def associated(self, kind: ObjectType, record_id: int, to_kind: ObjectType) -> dict[int, set[int]]:
        """Associated active records of ``to_kind`` with their type ids (seen from ``kind``)."""
        targets = self.assoc.targets(kind, record_id, to_kind)
        records = self.records[to_kind.name]
        return {tid: types for tid, types in targets.items()
                if types and tid in records and not records[tid].archived}

    def value_of(self, kind: ObjectType, record: Record, name: str) -> str | None:
        """A property's current value (None when never set), calculated properties included."""
        if name == "hs_object_id":
            return str(record.id)
        if name in ("hs_lastmodifieddate", "lastmodifieddate"):
            return iso(record.updated_ms)
        if kind is DEALS:
            if name in ("hs_is_closed", "hs_is_closed_won", "hs_is_closed_lost", "hs_deal_stage_probability"):
                stage = self.stage_of(record)
                if stage is None:
                    return None
                if name == "hs_deal_stage_probability":
                    return stage.probability
                flag = {"hs_is_closed": stage.is_closed, "hs_is_closed_won": stage.is_won,
                        "hs_is_closed_lost": stage.is_lost}[name]
                return "true" if flag else "false"
            if name == "num_associated_contacts":
                return str(len(self.associated(DEALS, record.id, CONTACTS)))
        if kind is CONTACTS and self.readonly_rollups and name in ROLLUP_PROPERTIES:
            return self._rollup(record, name)
        return record.values.get(name)

    def _rollup(self, contact: Record, name: str) -> str | None:
        """What HubSpot calculates itself when the rollups are read-only."""
        deals = [self.records[DEALS.name][i] for i in self.associated(CONTACTS, contact.id, DEALS)]
        if name == "num_associated_deals":
            return str(len(deals))
        if not deals:
            return None
        if name == "first_deal_created_date":
            return iso(min(parse_timestamp(d.values.get("createdate", "")) or d.created_ms for d in deals))
        won = [d for d in deals if (s := self.stage_of(d)) is not None and s.is_won]
        if not won:
            return None
        if name == "recent_deal_close_date":
            closes = [parse_timestamp(d.values.get("closedate", "")) for d in won]
            known = [c for c in closes if c is not None]
            return iso(max(known)) if known else None
        if name == "recent_deal_amount":
            latest = max(won, key=lambda d: parse_timestamp(d.values.get("closedate", "")) or 0)
            return latest.values.get("amount") or None
        total = sum(float(d.values.get("amount") or 0) for d in won)
        return f"{total:g}" if total != int(total) else str(int(total))

    # --- rendering -----------------------------------------------------------------------------------
    def render(self, kind: ObjectType, record: Record, properties: list[str] | None = None,
               history: list[str] | None = None, associations: list[ObjectType] | None = None,
               *, new: bool | None = None, trace_id: str | None = None) -> dict[str, Any]:
        names = list(kind.default_properties) if not properties else list(properties)
        for always in ("hs_object_id", "createdate", kind.modified_property):
            if always not in names:
                names.append(always)
        schema = self.schema(kind)
        props: dict[str, str | None] = {}
        for name in names:
            if name in schema and not schema[name].archived:
                props[name] = self.value_of(kind, record, name)
        body: dict[str, Any] = {"id": str(record.id), "properties": props,
                                "createdAt": iso(record.created_ms), "updatedAt": iso(record.updated_ms),
                                "archived": record.archived}
        if record.archived_ms is not None:
            body["archivedAt"] = iso(record.archived_ms)
        if history:
            with_history: dict[str, list[dict[str, Any]]] = {}
            for name in history:
                if name not in schema:
                    continue
                entries = record.history_of(name)
                if not entries and name in ("hs_object_id", "hs_lastmodifieddate", "lastmodifieddate"):
                    value = self.value_of(kind, record, name) or ""
                    entries = [(value, record.updated_ms, Source("CALCULATED", ""))]
                with_history[name] = [self._history_entry(e) for e in entries]
            body["propertiesWithHistory"] = with_history
        if associations:
            assoc_body: dict[str, Any] = {}
            for to_kind in associations:
                results = []
                for to_id, types in sorted(self.associated(kind, record.id, to_kind).items()):
                    for type_id in sorted(types, key=lambda t: (not ASSOCIATION_TYPES[t].primary, t)):
                        results.append({"id": str(to_id), "type": ASSOCIATION_TYPES[type_id].v3_name})
                if results:
                    assoc_body[to_kind.name] = {"results": results}
            if assoc_body:
                body["associations"] = assoc_body
        if new is not None:
            body["new"] = new
        if trace_id is not None:
            body["objectWriteTraceId"] = trace_id
        return body

    @staticmethod
    def _history_entry(entry: History) -> dict[str, Any]:
        value, ms, source = entry
        item: dict[str, Any] = {"value": value, "timestamp": iso(ms), "sourceType": source.change_source}
        if source.source_id:
            item["sourceId"] = source.source_id
        if source.user_id is not None:
            item["updatedByUserId"] = source.user_id
        return item

    # --- listing -------------------------------------------------------------------------------------
    def page(self, kind: ObjectType, after: str | None, limit: int, archived: bool) -> tuple[list[Record], str | None]:
        order = self.order[kind.name]
        records = self.records[kind.name]
        start = 0
        if after:
            try:
                start = bisect.bisect_right(order, int(after))
            except ValueError:
                raise HubSpotError(400, f"Invalid 'after' value: {after}", "VALIDATION_ERROR") from None
        found: list[Record] = []
        position = start
        while position < len(order) and len(found) < limit + 1:
            record = records.get(order[position])
            position += 1
            if record is None or record.archived != archived:
                continue
            found.append(record)
        if len(found) > limit:
            return found[:limit], str(found[limit - 1].id)
        return found, None

    def active(self, kind: ObjectType) -> Iterable[Record]:
        return (r for r in self.records[kind.name].values() if not r.archived)

    # --- validation ----------------------------------------------------------------------------------
    def validate(self, kind: ObjectType, raw: Any, existing: Record | None, source: Source, *,
                 creating: bool) -> dict[str, str]:
        """Normalized values for ``raw`` or HubSpot's "Property values were not valid" error."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise HubSpotError(400, "properties must be an object of property names to values", "VALIDATION_ERROR")
        schema = self.schema(kind)
        problems: list[PropertyProblem] = []
        values: dict[str, str] = {}
        for name, value in raw.items():
            prop = schema.get(name)
            if prop is None or prop.archived:
                problems.append(PropertyProblem(name, "PROPERTY_DOESNT_EXIST", f"Property \"{name}\" does not exist"))
                continue
            if prop.read_only_value:
                problems.append(PropertyProblem(name, "READ_ONLY_VALUE",
                                                f"\"{name}\" is a read only property; its value cannot be set."))
                continue
            try:
                normalized = normalize_value(prop, value)
                if prop.dynamic == "owner" and normalized:
                    owner = self.owners.get(normalized)
                    if owner is None or owner.archived:
                        raise InvalidValue(PropertyProblem(
                            name, "INVALID_OPTION", f"{normalized} was not one of the allowed options: "
                            f"[{', '.join(o.id for o in self.owners.values() if not o.archived)}]"))
            except InvalidValue as exc:
                problems.append(exc.problem)
                continue
            values[name] = normalized
        if kind is DEALS:
            problems.extend(self._check_deal_stage(values, existing, source, creating=creating))
        if problems:
            raise property_error(problems, self.portal_id)
        return values

    def _check_deal_stage(self, values: dict[str, str], existing: Record | None, source: Source, *,
                          creating: bool) -> list[PropertyProblem]:
        if not creating and "pipeline" not in values and "dealstage" not in values:
            return []
        current = existing.values if existing is not None else {}
        pipeline_id = values.get("pipeline", current.get("pipeline", "")) or ""
        if not pipeline_id:
            if "pipeline" in values:
                return [PropertyProblem("pipeline", "INVALID_OPTION", "A deal must belong to a pipeline")]
            default = self.default_pipeline()
            pipeline_id = default.id if default else ""
            values["pipeline"] = pipeline_id
        pipeline = self.pipelines.get(pipeline_id)
        if pipeline is None or pipeline.archived:
            allowed = ", ".join(p.id for p in self.pipelines.values() if not p.archived)
            return [PropertyProblem("pipeline", "INVALID_OPTION",
                                    f"{pipeline_id} was not one of the allowed options: [{allowed}]")]
        stage_id = values.get("dealstage", current.get("dealstage", "")) or ""
        allowed_stages = ", ".join(s.id for s in pipeline.active_stages())
        if not stage_id:
            return [PropertyProblem("dealstage", "INVALID_OPTION",
                                    f"A deal in pipeline {pipeline_id} needs a dealstage, one of: [{allowed_stages}]")]
        stage = pipeline.stage(stage_id)
        if stage is None:
            return [PropertyProblem("dealstage", "INVALID_OPTION",
                                    f"{stage_id} was not one of the allowed options: [{allowed_stages}]")]
        # A person moving a deal into a closed stage in the UI sets its close date (reference §3.8).
        moved = "dealstage" in values and (existing is None or existing.values.get("dealstage") != stage_id)
        if source.change_source == "CRM_UI" and stage.is_closed and moved and "closedate" not in values:
            moment = now_ms()
            values["closedate"] = iso(moment) if self.closedate_type == "datetime" else iso(
                moment - moment % 86_400_000)[:10]
        return []

    def default_pipeline(self) -> Pipeline | None:
        default = self.pipelines.get("default")
        if default is not None and not default.archived:
            return default
        active = self.active_pipelines()
        return active[0] if active else None

    def check_unique(self, kind: ObjectType, values: Mapping[str, str], record_id: int | None,
                     claims: UniqueClaims | None = None) -> None:
        """Refuse a value held by another record, or claimed by an earlier input of the same batch.
        Values an earlier input of the batch gives up are free for later inputs (inputs apply in order)."""
        claims = claims if claims is not None else UniqueClaims()
        owner: object = record_id if record_id is not None else object()
        index = self.unique[kind.name]
        for name, value in values.items():
            if name not in index or value == "":
                continue
            holder = index[name].get(value)
            if holder is not None and holder != record_id and (name, value) not in claims.released:
                raise self._conflict(kind, name, value, holder)
            claimed = claims.claimed.get((name, value))
            if claimed is not None and claimed != owner:
                raise HubSpotError(409, f"Two inputs of this batch set {name} to {value}; unique values must "
                                        "differ", "CONFLICT", context={"propertyName": [name]})
        current = self.records[kind.name].get(record_id) if record_id is not None else None
        for name, value in values.items():
            if name not in index:
                continue
            if value != "":
                claims.claimed[(name, value)] = owner
            old = current.values.get(name) if current is not None else None
            if old and old != value:
                claims.released.add((name, old))

    @staticmethod
    def _conflict(kind: ObjectType, name: str, value: str, holder: int) -> HubSpotError:
        title = kind.singular.capitalize()
        return HubSpotError(409, f"{title} already exists. Existing ID: {holder}", "CONFLICT",
                            context={"propertyName": [name], "existingObjectId": [str(holder)]})

    def prepare_associations(self, kind: ObjectType, raw: Any) -> list[tuple[AssociationType, int]]:
        if not raw:
            return []
        if not isinstance(raw, list):
            raise HubSpotError(400, "associations must be a list", "VALIDATION_ERROR")
        out: list[tuple[AssociationType, int]] = []
        for item in raw:
            to = item.get("to") if isinstance(item, dict) else None
            types = item.get("types") if isinstance(item, dict) else None
            if not isinstance(to, dict) or "id" not in to or not isinstance(types, list) or not types:
                raise HubSpotError(400, "Each association needs to.id and a non-empty types list", "VALIDATION_ERROR")
            for spec in types:
                kind_of = self.association_type(spec, from_kind=kind)
                target = self.find(kind_of.to_type, str(to["id"]))
                if target is None:
                    raise HubSpotError(
                        400, f"{kind_of.to_type.label} {to['id']} does not exist, so it cannot be associated "
                             f"with this {kind.singular}", "VALIDATION_ERROR",
                        sub_category="crm.associations.INVALID_OBJECT_IDS", context={"toObjectId": [str(to["id"])]})
                out.append((kind_of, target.id))
        return out

    @staticmethod
    def association_type(spec: Any, *, from_kind: ObjectType, to_kind: ObjectType | None = None) -> AssociationType:
        if not isinstance(spec, dict) or "associationTypeId" not in spec:
            raise HubSpotError(400, "Each association type needs associationCategory and associationTypeId",
                               "VALIDATION_ERROR")
        category = spec.get("associationCategory", "HUBSPOT_DEFINED")
        try:
            type_id = int(spec["associationTypeId"])
        except (TypeError, ValueError):
            raise HubSpotError(400, f"Invalid associationTypeId {spec['associationTypeId']!r}",
                               "VALIDATION_ERROR") from None
        found = ASSOCIATION_TYPES.get(type_id)
        if (category != "HUBSPOT_DEFINED" or found is None or found.from_type is not from_kind
                or (to_kind is not None and found.to_type is not to_kind)):
            target = to_kind.name if to_kind else "?"
            raise HubSpotError(
                400, f"{category} association type {type_id} is not valid from {from_kind.name} to {target}",
                "VALIDATION_ERROR", sub_category="crm.associations.INVALID_ASSOCIATION_TYPE")
        return found

    # --- writes --------------------------------------------------------------------------------------
    def _new_id(self, kind: ObjectType) -> int:
        value = self.next_id[kind.name]
        self.next_id[kind.name] = value + 1
        return value

    def _insert(self, kind: ObjectType, values: dict[str, str], source: Source, moment: int) -> Record:
        record_id = self._new_id(kind)
        values = {k: v for k, v in values.items() if v != ""}
        values.setdefault("createdate", iso(moment))
        record = Record(record_id, values, moment, source)
        self.records[kind.name][record_id] = record
        self.order[kind.name].append(record_id)
        index = self.unique[kind.name]
        for name, value in values.items():
            if name in index:
                index[name][value] = record_id
        return record

    def create(self, kind: ObjectType, properties: Any, associations: Any, source: Source) -> Record:
        values = self.validate(kind, properties, None, source, creating=True)
        self.check_unique(kind, values, None)
        links = self.prepare_associations(kind, associations)
        record = self._apply_create(kind, _Prepared(None, values, links, None), source)
        self.flush_changes()
        return record

    def _apply_create(self, kind: ObjectType, prepared: _Prepared, source: Source) -> Record:
        moment = now_ms()
        record = self._insert(kind, prepared.values, source, moment)
        self._emit(Change("creation", kind, record.id, moment, source))
        for name, value in prepared.values.items():
            if value != "" and name not in NEVER_IN_EVENTS:
                self._emit(Change("propertyChange", kind, record.id, moment, source, name, value,
                                  extra={"onCreate": True}))
        for kind_of, target in prepared.associations:
            self._associate(kind_of, record.id, target, source)
        return record

    def update(self, kind: ObjectType, record: Record, properties: Any, source: Source) -> Record:
        values = self.validate(kind, properties, record, source, creating=False)
        self.check_unique(kind, values, record.id)
        self._apply_update(kind, record, values, source)
        self.flush_changes()
        return record

    def _apply_update(self, kind: ObjectType, record: Record, values: Mapping[str, str], source: Source) -> None:
        changes = {k: v for k, v in values.items() if record.values.get(k, "") != v}
        if not changes:
            if self.unchanged_listener is not None:
                bounced = any(entries[0][2].change_source != source.change_source
                              for entries in (record.history_of(name) for name in values) if entries)
                self.unchanged_listener(kind, record.id, source, bounced)
            return
        moment = now_ms()
        if record.values is record.initial:
            record.values = dict(record.values)
        if record.history is None:
            record.history = {}
        index = self.unique[kind.name]
        for name, value in changes.items():
            old = record.values.get(name)
            if name in index:
                if old and index[name].get(old) == record.id:
                    del index[name][old]
                if value:
                    index[name][value] = record.id
            record.values[name] = value
            record.history.setdefault(name, []).append((value, moment, source))
            if name not in NEVER_IN_EVENTS:
                self._emit(Change("propertyChange", kind, record.id, moment, source, name, value))
        record.updated_ms = moment

    def archive(self, kind: ObjectType, record: Record, source: Source) -> None:
        if record.archived:
            return
        moment = now_ms()
        record.archived = True
        record.archived_ms = moment
        index = self.unique[kind.name]
        for name, by_value in index.items():
            value = record.values.get(name)
            if value and by_value.get(value) == record.id:
                del by_value[value]
        self._emit(Change("deletion", kind, record.id, moment, source))
        self.flush_changes()

    def restore(self, kind: ObjectType, key: str, source: Source) -> Record:
        """What a person does from the recycling bin in the UI (not possible through the API)."""
        record = self.find(kind, key, archived=True)
        if record is None:
            raise not_found(kind, key)
        index = self.unique[kind.name]
        for name in index:
            value = record.values.get(name)
            if value and index[name].get(value) not in (None, record.id):
                raise self._conflict(kind, name, value, index[name][value])
        for name in index:
            value = record.values.get(name)
            if value:
                index[name][value] = record.id
        moment = now_ms()
        record.archived = False
        record.archived_ms = None
        record.updated_ms = moment
        self._emit(Change("restore", kind, record.id, moment, source))
        self.flush_changes()
        return record

    def merge(self, kind: ObjectType, primary_key: str, merged_key: str, source: Source) -> Record:
        """Merge ``merged`` into ``primary``: the primary keeps its id; blank primary properties take
        the merged record's values; associations move; the merged id becomes an alias."""
        primary = self.get(kind, primary_key)
        merged = self.get(kind, merged_key)
        if primary.id == merged.id:
            raise HubSpotError(400, "A record cannot be merged with itself", "VALIDATION_ERROR")
        moment = now_ms()
        index = self.unique[kind.name]
        for name, by_value in index.items():
            value = merged.values.get(name)
            if value and by_value.get(value) == merged.id:
                del by_value[value]
        moved: dict[str, str] = {}
        schema = self.schema(kind)
        for name, value in merged.values.items():
            prop = schema.get(name)
            if (value and not primary.values.get(name) and prop is not None and not prop.read_only_value
                    and name not in ("createdate", "hs_merged_object_ids")):
                moved[name] = value
        merged_ids = [str(merged.id)]
        earlier = merged.values.get("hs_merged_object_ids")
        if earlier:
            merged_ids.extend(earlier.split(";"))
        existing_ids = primary.values.get("hs_merged_object_ids")
        all_ids = (existing_ids.split(";") if existing_ids else []) + merged_ids
        self._apply_update(kind, primary, {**moved, "hs_merged_object_ids": ";".join(all_ids)}, source)
        for to_name, targets in list(self.assoc.all_from(kind, merged.id).items()):
            to_kind = object_type(to_name)
            for to_id, types in list(targets.items()):
                for type_id in list(types):
                    self.assoc.remove(type_id, merged.id, to_id)
                    if to_kind is kind and to_id == primary.id:
                        continue
                    self.assoc.add(self._merged_type(type_id, primary, to_id), primary.id, to_id)
        merged.archived = True
        merged.archived_ms = moment
        self.records[kind.name].pop(merged.id)
        aliases = self.aliases[kind.name]
        for alias, target in list(aliases.items()):
            if target == merged.id:
                aliases[alias] = primary.id
        aliases[merged.id] = primary.id
        self._emit(Change("merge", kind, primary.id, moment, source, extra={
            "primaryObjectId": primary.id, "mergedObjectIds": [merged.id], "newObjectId": primary.id,
            "numberOfPropertiesMoved": len(moved)}))
        self.flush_changes()
        return primary

    def _merged_type(self, type_id: int, primary: Record, to_id: int) -> int:
        """A merge keeps the primary record's associations as they are ("the associated records of the
        primary record will be maintained", HubSpot's merge guide): a record has one primary company, so a
        merged record's primary company joins the primary record unlabeled when it has its own."""
        kind_of = ASSOCIATION_TYPES[type_id]
        if not kind_of.primary or kind_of.from_type is COMPANIES or kind_of.unlabeled_id is None:
            return type_id
        held = self.assoc.targets(kind_of.from_type, primary.id, COMPANIES)
        if any(type_id in types for company_id, types in held.items() if company_id != to_id):
            return kind_of.unlabeled_id
        return type_id

    # --- batches -------------------------------------------------------------------------------------
    @staticmethod
    def _multi_status(inputs: list[Any]) -> bool:
        """HubSpot processes a batch with partial failures (207) when every input carries an
        ``objectWriteTraceId``; otherwise the first failure fails the whole batch."""
        return bool(inputs) and all(isinstance(i, dict) and i.get("objectWriteTraceId") for i in inputs)

    @staticmethod
    def _check_duplicate_ids(inputs: list[Any]) -> None:
        seen: set[str] = set()
        duplicates: list[str] = []
        for item in inputs:
            key = str(item.get("id")) if isinstance(item, dict) else ""
            if key in seen:
                duplicates.append(key)
            seen.add(key)
        if duplicates:
            listed = ", ".join(duplicates)
            raise HubSpotError(400, f"Duplicate IDs found in batch input: [{listed}]. IDs must be unique",
                               "VALIDATION_ERROR")

    def batch_create(self, kind: ObjectType, inputs: list[Any], source: Source) -> BatchResult:
        multi = self._multi_status(inputs)
        outcome = BatchResult()
        prepared: list[_Prepared] = []
        pending = UniqueClaims()
        for item in inputs:
            trace = item.get("objectWriteTraceId") if isinstance(item, dict) else None
            try:
                if not isinstance(item, dict):
                    raise HubSpotError(400, "Each input must be an object", "VALIDATION_ERROR")
                values = self.validate(kind, item.get("properties"), None, source, creating=True)
                self.check_unique(kind, values, None, pending)
                links = self.prepare_associations(kind, item.get("associations"))
                prepared.append(_Prepared(None, values, links, trace))
            except HubSpotError as exc:
                if not multi:
                    raise
                outcome.errors.append(exc.standard_error(trace))
        for item in prepared:
            outcome.results.append((self._apply_create(kind, item, source), item.trace_id, True))
        self.flush_changes()
        return outcome

    def batch_update(self, kind: ObjectType, inputs: list[Any], source: Source) -> BatchResult:
        self._check_duplicate_ids(inputs)
        multi = self._multi_status(inputs)
        outcome = BatchResult()
        prepared: list[_Prepared] = []
        pending = UniqueClaims()
        for item in inputs:
            trace = item.get("objectWriteTraceId") if isinstance(item, dict) else None
            try:
                if not isinstance(item, dict) or "id" not in item:
                    raise HubSpotError(400, "Each input needs an id and properties", "VALIDATION_ERROR")
                record = self.find(kind, str(item["id"]), item.get("idProperty"))
                if record is None:
                    raise HubSpotError(
                        404, f"Could not get some {kind.label} objects, they may be deleted or not exist. Check "
                             "that ids are valid.", "OBJECT_NOT_FOUND", context={"ids": [str(item["id"])]})
                values = self.validate(kind, item.get("properties"), record, source, creating=False)
                self.check_unique(kind, values, record.id, pending)
                prepared.append(_Prepared(record, values, [], trace))
            except HubSpotError as exc:
                if not multi:
                    raise
                outcome.errors.append(exc.standard_error(trace))
        for item in prepared:
            assert item.record is not None
            self._apply_update(kind, item.record, item.values, source)
            outcome.results.append((item.record, item.trace_id, False))
        self.flush_changes()
        return outcome

    def batch_upsert(self, kind: ObjectType, inputs: list[Any], source: Source,
                     id_property: str | None = None) -> BatchResult:
        self._check_duplicate_ids(inputs)
        multi = self._multi_status(inputs)
        outcome = BatchResult()
        prepared: list[_Prepared] = []
        pending = UniqueClaims()
        for item in inputs:
            trace = item.get("objectWriteTraceId") if isinstance(item, dict) else None
            try:
                if not isinstance(item, dict) or "id" not in item:
                    raise HubSpotError(400, "Each input needs an id, an idProperty and properties", "VALIDATION_ERROR")
                key_property = item.get("idProperty") or id_property
                if not key_property:
                    raise HubSpotError(400, "idProperty is required for upsert: the name of a property with unique "
                                            "values", "VALIDATION_ERROR")
                prop = self.unique_property(kind, key_property)
                if prop.name == "hs_object_id":
                    raise HubSpotError(400, "Upsert needs a custom unique-value property as idProperty",
                                       "VALIDATION_ERROR")
                record = self.find(kind, str(item["id"]), key_property)
                raw = dict(item.get("properties") or {})
                if record is None:
                    raw.setdefault(key_property, item["id"])
                values = self.validate(kind, raw, record, source, creating=record is None)
                if record is None and values.get(key_property) != normalize_value(prop, item["id"]):
                    raise HubSpotError(400, f"properties.{key_property} differs from the input id", "VALIDATION_ERROR")
                self.check_unique(kind, values, record.id if record else None, pending)
                prepared.append(_Prepared(record, values, [], trace))
            except InvalidValue as exc:
                error = property_error([exc.problem], self.portal_id)
                if not multi:
                    raise error from None
                outcome.errors.append(error.standard_error(trace))
            except HubSpotError as exc:
                if not multi:
                    raise
                outcome.errors.append(exc.standard_error(trace))
        for item in prepared:
            if item.record is None:
                outcome.results.append((self._apply_create(kind, item, source), item.trace_id, True))
            else:
                self._apply_update(kind, item.record, item.values, source)
                outcome.results.append((item.record, item.trace_id, False))
        self.flush_changes()
        return outcome

    def batch_read(self, kind: ObjectType, inputs: list[Any], id_property: str | None,
                   archived: bool) -> tuple[list[Record], list[dict[str, Any]]]:
        if id_property:
            self.unique_property(kind, id_property)
        found: list[Record] = []
        seen: set[int] = set()
        missing: list[str] = []
        for item in inputs:
            if not isinstance(item, dict) or "id" not in item:
                raise HubSpotError(400, "Each input needs an id", "VALIDATION_ERROR")
            record = self.find(kind, str(item["id"]), id_property, archived=archived)
            if record is None:
                missing.append(str(item["id"]))
            elif record.id not in seen:
                seen.add(record.id)
                found.append(record)
        errors = []
        if missing:
            errors.append(HubSpotError(
                404, f"Could not get some {kind.label} objects, they may be deleted or not exist. Check that ids "
                     "are valid.", "OBJECT_NOT_FOUND", context={"ids": missing}).standard_error())
        return found, errors

    def batch_archive(self, kind: ObjectType, inputs: list[Any], source: Source) -> None:
        for item in inputs:
            if not isinstance(item, dict) or "id" not in item:
                raise HubSpotError(400, "Each input needs an id", "VALIDATION_ERROR")
        for item in inputs:
            record = self.find(kind, str(item["id"]))
            if record is not None:
                self.archive(kind, record, source)

    # --- associations --------------------------------------------------------------------------------
    def _associate(self, kind_of: AssociationType, from_id: int, to_id: int, source: Source) -> None:
        """Add one association type (HubSpot also adds the unlabeled type along with a primary one, and
        a record has at most one primary company)."""
        moment = now_ms()
        wanted = [kind_of]
        if kind_of.primary and kind_of.unlabeled_id is not None:
            wanted.append(ASSOCIATION_TYPES[kind_of.unlabeled_id])
        if kind_of.primary:
            # The side that can have only one primary is the deal/contact side.
            owner_type = kind_of if kind_of.from_type is not COMPANIES else ASSOCIATION_TYPES[kind_of.inverse_id]
            owner_id, company_id = (from_id, to_id) if owner_type is kind_of else (to_id, from_id)
            for other, types in list(self.assoc.targets(owner_type.from_type, owner_id, COMPANIES).items()):
                if other != company_id and owner_type.type_id in types:
                    self.assoc.remove(owner_type.type_id, owner_id, other)
                    self._association_events(owner_type, owner_id, other, True, moment, source)
        for item in wanted:
            if self.assoc.add(item.type_id, from_id, to_id):
                self._association_events(item, from_id, to_id, False, moment, source)

    def _dissociate(self, kind_of: AssociationType, from_id: int, to_id: int, source: Source) -> None:
        moment = now_ms()
        if self.assoc.remove(kind_of.type_id, from_id, to_id):
            self._association_events(kind_of, from_id, to_id, True, moment, source)

    def _association_events(self, kind_of: AssociationType, from_id: int, to_id: int, removed: bool,
                            moment: int, source: Source) -> None:
        """One event per side, as HubSpot fires them."""
        inverse = ASSOCIATION_TYPES[kind_of.inverse_id]
        for side, a_id, b_id in ((kind_of, from_id, to_id), (inverse, to_id, from_id)):
            self._emit(Change("associationChange", side.from_type, a_id, moment, source, extra={
                "associationType": side.webhook_name, "fromObjectId": a_id, "toObjectId": b_id,
                "associationRemoved": removed, "isPrimaryAssociation": side.primary}))

    def associate(self, from_kind: ObjectType, from_id: int, to_kind: ObjectType, to_id: int,
                  specs: list[Any] | None, source: Source) -> list[str]:
        """Create labelled (``specs``) or default (None) associations; returns the labels between the pair."""
        if specs is None:
            kinds = [ASSOCIATION_TYPES[DEFAULT_TYPE[(from_kind.name, to_kind.name)]]]
        else:
            if not specs:
                raise HubSpotError(400, "At least one association type is required", "VALIDATION_ERROR")
            kinds = [self.association_type(s, from_kind=from_kind, to_kind=to_kind) for s in specs]
        for kind_of in kinds:
            self._associate(kind_of, from_id, to_id, source)
        self.flush_changes()
        return self.labels_between(from_kind, from_id, to_kind, to_id)

    def labels_between(self, from_kind: ObjectType, from_id: int, to_kind: ObjectType, to_id: int) -> list[str]:
        types = self.assoc.types(from_kind, from_id, to_kind, to_id)
        return sorted({label for t in types if (label := ASSOCIATION_TYPES[t].label)})

    def dissociate(self, from_kind: ObjectType, from_id: int, to_kind: ObjectType, to_id: int,
                   specs: list[Any] | None, source: Source) -> None:
        """Remove all associations between the pair (``specs`` None) or only the given types;
        removing the unlabeled type removes every type."""
        current = set(self.assoc.types(from_kind, from_id, to_kind, to_id))
        if specs is None:
            remove = current
        else:
            remove = {self.association_type(s, from_kind=from_kind, to_kind=to_kind).type_id for s in specs}
            if any(not ASSOCIATION_TYPES[t].primary for t in remove):
                remove = current
        for type_id in sorted(remove, key=lambda t: not ASSOCIATION_TYPES[t].primary):
            if type_id in current:
                self._dissociate(ASSOCIATION_TYPES[type_id], from_id, to_id, source)
        self.flush_changes()

    def association_rows(self, from_kind: ObjectType, from_id: int, to_kind: ObjectType) -> list[dict[str, Any]]:
        rows = []
        for to_id, types in sorted(self.associated(from_kind, from_id, to_kind).items()):
            ordered = sorted(types, key=lambda t: (not ASSOCIATION_TYPES[t].primary, t))
            rows.append({"toObjectId": to_id, "associationTypes": [
                {"category": "HUBSPOT_DEFINED", "typeId": t, "label": ASSOCIATION_TYPES[t].label}
                for t in ordered]})
        return rows

    # --- pipelines ----------------------------------------------------------------------------------
    def active_pipelines(self) -> list[Pipeline]:
        return sorted((p for p in self.pipelines.values() if not p.archived), key=lambda p: (p.display_order, p.label))

    def pipeline(self, pipeline_id: str) -> Pipeline:
        found = self.pipelines.get(pipeline_id)
        if found is None or found.archived:
            raise HubSpotError(404, f"Unable to find pipeline {pipeline_id}", "OBJECT_NOT_FOUND",
                               context={"pipelineId": [pipeline_id]})
        return found

    def _new_stage_id(self) -> str:
        self._next_stage += 1
        return str(self._next_stage)

    def _stage_ids(self) -> set[str]:
        return {s.id for p in self.pipelines.values() for s in p.stages}

    def _build_stages(self, raw: Any, moment: int) -> list[Stage]:
        if not isinstance(raw, list) or not raw:
            raise HubSpotError(400, "A deal pipeline needs at least one stage", "VALIDATION_ERROR")
        taken = self._stage_ids()
        stages = []
        for position, item in enumerate(raw):
            stage = build_stage(item, position, moment, self._new_stage_id, taken)
            taken.add(stage.id)
            stages.append(stage)
        check_stage_labels(stages)
        return stages

    def _check_label(self, label: Any, own_id: str | None) -> str:
        if not isinstance(label, str) or not label.strip():
            raise HubSpotError(400, "Pipeline label is required", "VALIDATION_ERROR")
        for other in self.pipelines.values():
            if not other.archived and other.id != own_id and other.label.strip().lower() == label.strip().lower():
                raise HubSpotError(409, f"A pipeline with label '{label}' already exists", "CONFLICT",
                                   sub_category="PipelineError.DUPLICATE_PIPELINE_LABEL")
        return label

    def create_pipeline(self, body: Any) -> Pipeline:
        if not isinstance(body, dict):
            raise HubSpotError(400, "Invalid pipeline input", "VALIDATION_ERROR")
        active = len(self.active_pipelines())
        if active >= self.pipeline_limit:
            raise HubSpotError(
                400, f"You have reached the limit of {self.pipeline_limit} deal pipelines for this account. "
                     "Upgrade your subscription or delete a pipeline to create a new one.", "VALIDATION_ERROR",
                sub_category="PipelineError.PIPELINE_LIMIT_EXCEEDED",
                context={"limit": [str(self.pipeline_limit)], "usage": [str(active)]})
        label = self._check_label(body.get("label"), None)
        moment = now_ms()
        stages = self._build_stages(body.get("stages"), moment)
        pipeline_id = str(body.get("pipelineId") or "")
        if pipeline_id and pipeline_id in self.pipelines:
            raise HubSpotError(409, f"A pipeline with id {pipeline_id} already exists", "CONFLICT")
        if not pipeline_id:
            self._next_pipeline += 1
            pipeline_id = str(self._next_pipeline)
        order = body.get("displayOrder", len(self.pipelines))
        pipeline = Pipeline(pipeline_id, label, int(order) if order is not None else 0, moment, moment, stages)
        self.pipelines[pipeline_id] = pipeline
        return pipeline

    def _deals_in(self, pipeline_id: str, stage_id: str | None = None) -> int:
        count = 0
        for record in self.active(DEALS):
            if record.values.get("pipeline") == pipeline_id and (
                    stage_id is None or record.values.get("dealstage") == stage_id):
                count += 1
        return count

    def replace_pipeline(self, pipeline_id: str, body: Any, validate_usages: bool) -> Pipeline:
        pipeline = self.pipeline(pipeline_id)
        if not isinstance(body, dict):
            raise HubSpotError(400, "Invalid pipeline input", "VALIDATION_ERROR")
        label = self._check_label(body.get("label"), pipeline_id)
        moment = now_ms()
        own = {s.id for s in pipeline.stages}
        others = self._stage_ids() - own
        stages = []
        for position, item in enumerate(body.get("stages") or []):
            stage = build_stage(item, position, moment, self._new_stage_id, others)
            others.add(stage.id)
            stages.append(stage)
        if not stages:
            raise HubSpotError(400, "A deal pipeline needs at least one stage", "VALIDATION_ERROR")
        check_stage_labels(stages)
        kept = {s.id for s in stages}
        if validate_usages:
            for old in pipeline.active_stages():
                if old.id not in kept and self._deals_in(pipeline_id, old.id):
                    raise self._stage_in_use(old.id)
        pipeline.label = label
        pipeline.display_order = int(body.get("displayOrder", pipeline.display_order))
        previous = {s.id: s for s in pipeline.stages}
        for stage in stages:
            if stage.id in previous:
                stage.created_ms = previous[stage.id].created_ms
        pipeline.stages = stages
        pipeline.updated_ms = moment
        return pipeline

    def patch_pipeline(self, pipeline_id: str, body: Any) -> Pipeline:
        if not isinstance(body, dict):
            raise HubSpotError(400, "Invalid pipeline input", "VALIDATION_ERROR")
        pipeline = self.pipelines.get(pipeline_id)
        if pipeline is None or (pipeline.archived and body.get("archived") is not False):
            pipeline = self.pipeline(pipeline_id)  # raises HubSpot's 404
        if "label" in body:
            pipeline.label = self._check_label(body["label"], pipeline_id)
        if "displayOrder" in body:
            pipeline.display_order = int(body["displayOrder"])
        if body.get("archived") is False and pipeline.archived:
            pipeline.archived = False
            pipeline.archived_ms = None
        pipeline.updated_ms = now_ms()
        return pipeline

    @staticmethod
    def _stage_in_use(stage_id: str) -> HubSpotError:
        return HubSpotError(409, f"Stage {stage_id} is used by existing deals; move them before deleting it",
                            "CONFLICT", sub_category="PipelineError.STAGE_IN_USE", context={"stageId": [stage_id]})

    def delete_pipeline(self, pipeline_id: str, validate: bool) -> None:
        pipeline = self.pipeline(pipeline_id)
        if len(self.active_pipelines()) <= 1:
            raise HubSpotError(400, "An account must keep at least one deal pipeline", "VALIDATION_ERROR",
                               sub_category="PipelineError.LAST_PIPELINE")
        if validate and self._deals_in(pipeline_id):
            raise HubSpotError(409, f"Pipeline {pipeline_id} has deals; move them before deleting it", "CONFLICT",
                               sub_category="PipelineError.PIPELINE_IN_USE")
        pipeline.archived = True
        pipeline.archived_ms = now_ms()

    def stage(self, pipeline_id: str, stage_id: str) -> Stage:
        stage = self.pipeline(pipeline_id).stage(stage_id)
        if stage is None:
            raise HubSpotError(404, f"Unable to find stage {stage_id} in pipeline {pipeline_id}", "OBJECT_NOT_FOUND")
        return stage

    def create_stage(self, pipeline_id: str, body: Any) -> Stage:
        pipeline = self.pipeline(pipeline_id)
        moment = now_ms()
        stage = build_stage(body, len(pipeline.stages), moment, self._new_stage_id, self._stage_ids())
        check_stage_labels([*pipeline.stages, stage])
        pipeline.stages.append(stage)
        pipeline.updated_ms = moment
        return stage

    def update_stage(self, pipeline_id: str, stage_id: str, body: Any, *, replace: bool) -> Stage:
        pipeline = self.pipeline(pipeline_id)
        stage = self.stage(pipeline_id, stage_id)
        if not isinstance(body, dict):
            raise HubSpotError(400, "Invalid stage input", "VALIDATION_ERROR")
        if replace:
            fresh = build_stage({**body, "stageId": None}, stage.display_order, stage.created_ms, lambda: stage.id,
                                set())
            stage.label, stage.display_order = fresh.label, fresh.display_order
            stage.probability, stage.is_closed = fresh.probability, fresh.is_closed
        else:
            if "metadata" in body:
                merged = {"probability": stage.probability, "isClosed": stage.is_closed, **(body["metadata"] or {})}
                stage.probability, stage.is_closed = parse_probability(merged)
            if "label" in body:
                if not str(body["label"]).strip():
                    raise HubSpotError(400, "Stage label is required", "VALIDATION_ERROR")
                stage.label = str(body["label"])
            if "displayOrder" in body:
                stage.display_order = int(body["displayOrder"])
        check_stage_labels(pipeline.stages)
        stage.updated_ms = pipeline.updated_ms = now_ms()
        return stage

    def delete_stage(self, pipeline_id: str, stage_id: str, validate: bool) -> None:
        pipeline = self.pipeline(pipeline_id)
        stage = self.stage(pipeline_id, stage_id)
        if validate and self._deals_in(pipeline_id, stage_id):
            raise self._stage_in_use(stage_id)
        if len(pipeline.active_stages()) <= 1:
            raise HubSpotError(400, "A pipeline must keep at least one stage", "VALIDATION_ERROR")
        stage.archived = True
        stage.archived_ms = pipeline.updated_ms = now_ms()

    def pipeline_options(self) -> list[Option]:
        return [Option(p.label, p.id, p.display_order) for p in self.active_pipelines()]

    def stage_options(self) -> list[Option]:
        return [Option(s.label, s.id, s.display_order, description=f"pipeline {p.id}")
                for p in self.active_pipelines() for s in p.active_stages()]

    # --- owners --------------------------------------------------------------------------------------
    def add_owner(self, data: Mapping[str, Any]) -> Owner:
        email = str(data.get("email") or "").strip().lower()
        if not email:
            raise ValueError("an owner needs an email")
        moment = now_ms()
        owner_id = str(data.get("id") or "")
        if not owner_id:
            owner_id = str(self._next_owner)
            self._next_owner += 1
        if owner_id in self.owners:
            raise ValueError(f"owner {owner_id} exists")
        user_id = data.get("userId")
        if user_id is None:
            user_id = self._next_user
            self._next_user += 1
        teams = list(data.get("teams") or [])
        owner = Owner(owner_id, email, str(data.get("firstName") or ""), str(data.get("lastName") or ""),
                      int(user_id), moment, moment, teams, bool(data.get("archived", False)),
                      str(data.get("type") or "PERSON"))
        self.owners[owner_id] = owner
        return owner

    # --- properties ----------------------------------------------------------------------------------
    def property_json(self, kind: ObjectType, prop: PropertyDef) -> dict[str, Any]:
        options: list[Option] | None = None
        if prop.dynamic == "pipeline":
            options = self.pipeline_options()
        elif prop.dynamic == "dealstage":
            options = self.stage_options()
        elif prop.dynamic == "owner":
            options = []
        return prop.to_json(options)

    def get_property(self, kind: ObjectType, name: str, archived: bool = False) -> PropertyDef:
        prop = self.schema(kind).get(name)
        if prop is None or prop.archived != archived:
            raise HubSpotError(404, f"Unable to find property {name} for object type {kind.type_id}",
                               "OBJECT_NOT_FOUND", context={"propertyName": [name]})
        return prop

    def create_property(self, kind: ObjectType, body: Any) -> PropertyDef:
        if not isinstance(body, dict):
            raise HubSpotError(400, "Invalid property input", "VALIDATION_ERROR")
        missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
        if missing:
            raise HubSpotError(400, f"Missing required fields: {', '.join(missing)}", "VALIDATION_ERROR",
                               context={"missing": missing})
        name = str(body["name"])
        if not name.replace("_", "").isalnum() or name != name.lower() or name[0].isdigit():
            raise HubSpotError(400, f"Property name '{name}' must be lower case letters, digits and underscores, "
                                    "starting with a letter", "VALIDATION_ERROR")
        existing = self.schema(kind).get(name)
        if existing is not None and not existing.archived:
            raise HubSpotError(409, f"Property named '{name}' already exists.", "OBJECT_ALREADY_EXISTS",
                               context={"name": [name]})
        type_, field_type = str(body["type"]), str(body["fieldType"])
        check_definition(type_, field_type)
        group = str(body["groupName"])
        if group not in self.groups[kind.name] or self.groups[kind.name][group].archived:
            raise HubSpotError(400, f"Property group '{group}' does not exist", "VALIDATION_ERROR",
                               context={"groupName": [group]})
        unique = bool(body.get("hasUniqueValue", False))
        if unique:
            if type_ not in ("string", "number"):
                raise HubSpotError(400, "Only string and number properties can require unique values",
                                   "VALIDATION_ERROR")
            count = sum(1 for p in self.schema(kind).values()
                        if p.has_unique_value and not p.hubspot_defined and not p.archived)
            if count >= MAX_UNIQUE_PROPERTIES:
                raise HubSpotError(400, f"An object can have at most {MAX_UNIQUE_PROPERTIES} unique value "
                                        "properties", "VALIDATION_ERROR")
        options = [Option.from_json(o, i) for i, o in enumerate(body.get("options") or [])]
        if type_ == "enumeration" and not options:
            raise HubSpotError(400, "Enumeration properties need at least one option", "VALIDATION_ERROR")
        if type_ == "bool" and not options:
            options = [Option("Yes", "true", 0), Option("No", "false", 1)]
        moment = now_ms()
        prop = PropertyDef(
            name, str(body["label"]), type_, field_type, group, description=str(body.get("description") or ""),
            options=options, display_order=int(body.get("displayOrder", -1)), has_unique_value=unique,
            hidden=bool(body.get("hidden", False)), hubspot_defined=False, read_only_definition=False,
            archivable=True, form_field=bool(body.get("formField", False)), created_ms=moment, updated_ms=moment,
            external_options=bool(body.get("externalOptions", False)),
            referenced_object_type=body.get("referencedObjectType"))
        if prop.referenced_object_type == "OWNER":
            prop.dynamic = "owner"
        self.schema(kind)[name] = prop
        if unique:
            self.unique[kind.name][name] = {}
        return prop

    def update_property(self, kind: ObjectType, name: str, body: Any) -> PropertyDef:
        prop = self.get_property(kind, name)
        if not isinstance(body, dict):
            raise HubSpotError(400, "Invalid property input", "VALIDATION_ERROR")
        if prop.read_only_definition and set(body) - {"label", "description", "displayOrder", "hidden", "formField",
                                                       "groupName"}:
            raise HubSpotError(400, f"Property {name} is a HubSpot defined property; its definition is read only",
                               "VALIDATION_ERROR", sub_category="PropertyError.READ_ONLY_DEFINITION")
        type_ = str(body.get("type", prop.type))
        field_type = str(body.get("fieldType", prop.field_type))
        check_definition(type_, field_type)
        if "groupName" in body and body["groupName"] not in self.groups[kind.name]:
            raise HubSpotError(400, f"Property group '{body['groupName']}' does not exist", "VALIDATION_ERROR")
        prop.type, prop.field_type = type_, field_type
        for key, attr in (("label", "label"), ("description", "description"), ("groupName", "group_name")):
            if key in body:
                setattr(prop, attr, str(body[key]))
        for key, attr in (("hidden", "hidden"), ("formField", "form_field")):
            if key in body:
                setattr(prop, attr, bool(body[key]))
        if "displayOrder" in body:
            prop.display_order = int(body["displayOrder"])
        if "options" in body:
            prop.options = [Option.from_json(o, i) for i, o in enumerate(body["options"] or [])]
        prop.updated_ms = now_ms()
        return prop

    def archive_property(self, kind: ObjectType, name: str) -> None:
        prop = self.get_property(kind, name)
        if not prop.archivable:
            raise HubSpotError(400, f"Property {name} is a HubSpot defined property and cannot be archived",
                               "VALIDATION_ERROR", sub_category="PropertyError.NOT_ARCHIVABLE")
        prop.archived = True
        prop.archived_ms = now_ms()
        self.unique[kind.name].pop(name, None)

    def create_group(self, kind: ObjectType, body: Any) -> PropertyGroup:
        if not isinstance(body, dict) or not body.get("name") or not body.get("label"):
            raise HubSpotError(400, "A property group needs a name and a label", "VALIDATION_ERROR")
        name = str(body["name"])
        existing = self.groups[kind.name].get(name)
        if existing is not None and not existing.archived:
            raise HubSpotError(409, f"Property group named '{name}' already exists.", "OBJECT_ALREADY_EXISTS")
        group = PropertyGroup(name, str(body["label"]), int(body.get("displayOrder", -1)))
        self.groups[kind.name][name] = group
        return group

    def group(self, kind: ObjectType, name: str) -> PropertyGroup:
        group = self.groups[kind.name].get(name)
        if group is None or group.archived:
            raise HubSpotError(404, f"Unable to find property group {name}", "OBJECT_NOT_FOUND")
        return group

    # --- seeding -------------------------------------------------------------------------------------
    def load(self, data: Mapping[str, Any]) -> dict[str, list[str]]:
        """Seed records quickly, without webhooks (what an import does). Items are property dicts, or
        ``{"properties": {...}, "associations": [...]}`` where ``to.id`` may be ``"#N"``: the N-th item
        of the matching type in this same load; ``hubspot_owner_id`` may be ``"#N"``: the N-th owner."""
        unknown = set(data) - {"owners", "pipelines", "contacts", "companies", "deals"}
        if unknown:
            raise ValueError(f"unknown load keys: {sorted(unknown)}")
        out: dict[str, list[str]] = {}
        out["owners"] = [self.add_owner(o).id for o in data.get("owners") or []]
        out["pipelines"] = [self.create_pipeline(p).id for p in data.get("pipelines") or []]
        moment = now_ms()
        pending_links: list[tuple[ObjectType, int, list[Any]]] = []
        for kind in (COMPANIES, CONTACTS, DEALS):
            ids: list[str] = []
            pending = UniqueClaims()
            for position, item in enumerate(data.get(kind.name) or []):
                if not isinstance(item, dict):
                    raise ValueError(f"{kind.name}[{position}] must be an object")
                props = item["properties"] if isinstance(item.get("properties"), dict) else item
                owner_ref = props.get("hubspot_owner_id")
                if isinstance(owner_ref, str) and owner_ref.startswith("#"):
                    position_ref = int(owner_ref[1:])
                    if not 0 <= position_ref < len(out["owners"]):
                        raise ValueError(f"{kind.name}[{position}]: owner {owner_ref} is not in this load")
                    props = {**props, "hubspot_owner_id": out["owners"][position_ref]}
                try:
                    values = self.validate(kind, props, None, IMPORT_SOURCE, creating=True)
                    self.check_unique(kind, values, None, pending)
                except HubSpotError as exc:
                    raise ValueError(f"{kind.name}[{position}]: {exc.message}") from None
                record = self._insert(kind, values, IMPORT_SOURCE, moment)
                ids.append(str(record.id))
                if item.get("associations"):
                    pending_links.append((kind, record.id, item["associations"]))
            out[kind.name] = ids
        for kind, record_id, links in pending_links:
            for link in links:
                to_id = str(link.get("to", {}).get("id", ""))
                for spec in link.get("types") or []:
                    kind_of = self.association_type(spec, from_kind=kind)
                    if to_id.startswith("#"):
                        position = int(to_id[1:])
                        target_ids = out[kind_of.to_type.name]
                        if not 0 <= position < len(target_ids):
                            raise ValueError(f"association target {to_id} is not in this load")
                        target = int(target_ids[position])
                    else:
                        found = self.find(kind_of.to_type, to_id)
                        if found is None:
                            raise ValueError(f"association target {kind_of.to_type.name} {to_id} does not exist")
                        target = found.id
                    self.assoc.add(kind_of.type_id, record_id, target)
                    if kind_of.primary and kind_of.unlabeled_id is not None:
                        self.assoc.add(kind_of.unlabeled_id, record_id, target)
        self._pending.clear()
        return out
