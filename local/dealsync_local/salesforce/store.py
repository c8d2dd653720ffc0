"""The org's records in memory: validation with Salesforce's error codes, derived fields, indexes,
the recycle bin, and the change records that feed Outbound Messages and change events.

Every record is a plain dict of stored values (see ``values.py``) that is replaced, never mutated,
when it changes, so a journal of previous dicts is enough to roll a transaction back (``allOrNone``).
All methods expect the caller to hold the emulator's lock.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dealsync_local.salesforce.errors import MultipleMatchesError, RecordError, SfError
from dealsync_local.salesforce.ids import KEY_PREFIXES, MASTER_RECORD_TYPE_ID, IdFactory, normalize_id
from dealsync_local.salesforce.schema import (
    DEFAULT_PICKLISTS,
    FORECAST_CATEGORY_BY_LABEL,
    FORECAST_CATEGORY_LABELS,
    FieldDef,
    ObjectDef,
    build_schema,
)
from dealsync_local.salesforce.values import (
    Clock,
    canonical_date,
    canonical_datetime,
    cdc_value,
    format_datetime,
)

Record = dict[str, Any]

LOAD_ORDER = (
    "Organization", "User", "OpportunityStage", "BusinessProcess", "RecordType", "Account", "Contact",
    "Opportunity", "OpportunityContactRole",
)
SYSTEM_PICKLISTS: dict[str, list[str]] = {
    "TimeZoneSidKey": ["America/Los_Angeles", "America/New_York", "America/Chicago", "Europe/London",
                       "Europe/Berlin", "Europe/Paris", "Asia/Tokyo", "Australia/Sydney", "GMT"],
    "LocaleSidKey": ["en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "ja_JP"],
    "DefaultLocaleSidKey": ["en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "ja_JP"],
    "EmailEncodingKey": ["UTF-8", "ISO-8859-1"],
    "LanguageLocaleKey": ["en_US", "de", "fr", "es", "ja"],
    "UserType": ["Standard"],
    "OrganizationType": ["Enterprise Edition", "Unlimited Edition", "Developer Edition"],
}
_CDC_EXCLUDED = frozenset({"Id", "IsDeleted", "SystemModstamp"})
_COMPOUND_NAME_PARTS = ("Salutation", "FirstName", "LastName")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NUMBER_RE = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")
_AUDIT_FIELDS = ("CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp")


# The Opportunity fields this org tracks in field history, by the name OpportunityFieldHistory.Field gives
# them (lookups by their relationship: Owner, Account, RecordType).
TRACKED_OPPORTUNITY_FIELDS: dict[str, str] = {
    "Name": "Name", "Amount": "Amount", "CloseDate": "CloseDate", "StageName": "StageName", "Type": "Type",
    "Description": "Description", "OwnerId": "Owner", "AccountId": "Account", "RecordTypeId": "RecordType",
}


@dataclass
class WriteContext:
    """Who writes and through what: ``change_origin`` becomes ``ChangeEventHeader.changeOrigin``."""

    user_id: str
    change_origin: str = ""


@dataclass
class Change:
    entity: str
    change_type: str  # CREATE | UPDATE | DELETE | UNDELETE
    record_id: str
    user_id: str
    changed_fields: list[str] = field(default_factory=list)
    nulled_fields: list[str] = field(default_factory=list)
    payload: dict[str, Any] = field(default_factory=dict)
    written_fields: list[str] = field(default_factory=list)  # an update's request fields, changed or not


class Table:
    def __init__(self, obj: ObjectDef, unique_fields: Sequence[str], ref_fields: Sequence[str]) -> None:
        self.obj = obj
        self.rows: dict[str, Record] = {}
        self.unique_fields = tuple(unique_fields)
        self.ref_fields = tuple(ref_fields)
        self.unique: dict[str, dict[str, list[str]]] = {name: {} for name in unique_fields}
        self.refs: dict[str, dict[str, dict[str, None]]] = {name: {} for name in ref_fields}
        self.deleted_at: dict[str, str] = {}
        self.cascade_parent: dict[str, str] = {}

    @property
    def name(self) -> str:
        return self.obj.name


_UndoEntry = tuple[Table, str, Record | None, str | None, str | None]


class Journal:
    """A savepoint: ``rollback()`` undoes every write made since it was opened."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.owner = False
        self.start = 0

    def __enter__(self) -> Journal:
        if self.store._undo is None:
            self.store._undo = []
            self.owner = True
        self.start = len(self.store._undo)
        return self

    def rollback(self) -> None:
        undo = self.store._undo
        if undo is None:
            return
        entries = undo[self.start:]
        del undo[self.start:]
        for entry in reversed(entries):
            self.store._restore(entry)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.rollback()
        if self.owner:
            self.store._undo = None


class Store:
    def __init__(self, *, clock: Clock, ids: IdFactory, lock: threading.RLock | None = None,
                 multi_currency: bool = False, currencies: Sequence[str] = ("USD", "EUR", "GBP"),
                 corporate_currency: str = "USD", external_id_unique: bool = True) -> None:
        self.clock = clock
        self.ids = ids
        self.lock = lock or threading.RLock()
        self.multi_currency = multi_currency
        self.currencies = list(currencies)
        self.corporate_currency = corporate_currency
        self.external_id_unique = external_id_unique
        self.picklists: dict[str, list[str]] = {k: list(v) for k, v in DEFAULT_PICKLISTS.items()}
        self.default_record_type_id: str | None = None
        self._undo: list[_UndoEntry] | None = None
        self._load_now = ""
        self.schema: dict[str, ObjectDef] = {}
        self.tables: dict[str, Table] = {}
        self.by_prefix: dict[str, Table] = {}
        self.stages: dict[str, Record] = {}
        self.bp_stages: dict[str, list[str]] = {}
        self._stage_cache: dict[str | None, list[str]] = {}
        self.custom_fields: dict[str, dict[str, FieldDef]] = {}  # object -> name -> field, kept across rebuilds
        self.clear()

    # --- lifecycle -------------------------------------------------------------------------------
    def clear(self) -> None:
        full = build_schema(multi_currency=True, opportunity_record_types=True)
        self.schema = build_schema(multi_currency=self.multi_currency, opportunity_record_types=False)
        self.tables = {}
        for name, obj in self.schema.items():
            unique = [f.name for f in full[name].fields.values() if f.unique or f.name == "Username"]
            refs = [rel.field for other in full.values() for rel in other.child_relationships
                    if rel.child == name]
            self.tables[name] = Table(obj, unique, sorted(set(refs)))
        self.by_prefix = {KEY_PREFIXES[name]: table for name, table in self.tables.items()}
        self.stages = {}
        self.bp_stages = {}
        self._stage_cache = {}
        self.default_record_type_id = None
        self._undo = None
        self.custom_fields = {}

    def rebuild_schema(self) -> None:
        has_record_types = any(
            rt.get("SobjectType") == "Opportunity" for rt in self.tables["RecordType"].rows.values()
        )
        self._stage_cache = {}
        self.schema = build_schema(multi_currency=self.multi_currency,
                                   opportunity_record_types=has_record_types)
        for obj_name, fields in self.custom_fields.items():
            for fdef in fields.values():
                self.schema[obj_name].add_field(fdef)
        for name, table in self.tables.items():
            table.obj = self.schema[name]

    def add_custom_field(self, obj_name: str, fdef: FieldDef, picklist_values: Sequence[str] = ()) -> None:
        """Add a custom field (``__c``) to an object, as an admin does in Setup; existing rows get it blank."""
        obj = self.schema[obj_name]
        if obj.field(fdef.name) is not None:
            raise ValueError(f"{obj_name} already has a field named {fdef.name}")
        self.custom_fields.setdefault(obj_name, {})[fdef.name] = fdef
        if picklist_values:
            self.picklists[f"{obj_name}.{fdef.name}"] = list(picklist_values)
        obj.add_field(fdef)
        blank = obj.blank[fdef.name]
        table = self.tables[obj_name]
        for record_id, rec in table.rows.items():
            table.rows[record_id] = {**rec, fdef.name: blank}

    def set_multi_currency(self, enabled: bool) -> None:
        if enabled == self.multi_currency:
            return
        self.multi_currency = enabled
        self.rebuild_schema()
        if enabled:
            for table in self.tables.values():
                if "CurrencyIsoCode" in table.obj.fields:
                    for rid, rec in table.rows.items():
                        if rec.get("CurrencyIsoCode") is None:
                            table.rows[rid] = {**rec, "CurrencyIsoCode": self.corporate_currency}

    def journal(self) -> Journal:
        return Journal(self)

    # --- reads -----------------------------------------------------------------------------------
    def table(self, name: str) -> Table:
        return self.tables[name]

    def object_named(self, name: str) -> ObjectDef | None:
        """Case-insensitive lookup of an sObject type."""
        for obj_name, obj in self.schema.items():
            if obj_name.lower() == name.lower():
                return obj
        return None

    def row(self, record_id: str | None) -> Record | None:
        if not record_id:
            return None
        table = self.by_prefix.get(record_id[:3])
        return table.rows.get(record_id) if table else None

    def live(self, record_id: str | None) -> Record | None:
        rec = self.row(record_id)
        if rec is None or rec.get("IsDeleted"):
            return None
        return rec

    def children(self, child: str, field_name: str, parent_id: str) -> list[Record]:
        table = self.tables[child]
        ids = table.refs.get(field_name, {}).get(parent_id, {})
        return [table.rows[i] for i in ids]

    def find_external(self, type_name: str, field_name: str, value: str) -> list[str]:
        table = self.tables[type_name]
        index = table.unique.get(field_name)
        if index is not None:
            return list(index.get(value.lower(), ()))
        lowered = value.lower()
        return [rid for rid, rec in table.rows.items()
                if not rec.get("IsDeleted") and isinstance(rec.get(field_name), str)
                and rec[field_name].lower() == lowered]

    # --- picklists and stages --------------------------------------------------------------------
    def refresh_stages(self) -> None:
        rows = sorted(self.tables["OpportunityStage"].rows.values(),
                      key=lambda r: (r.get("SortOrder") or 0, r["MasterLabel"]))
        self.stages = {r["MasterLabel"]: r for r in rows}
        self._stage_cache = {}

    def active_stages(self) -> list[str]:
        return [label for label, rec in self.stages.items() if rec.get("IsActive")]

    def stages_for_record_type(self, record_type_id: str | None) -> list[str]:
        """Active stages of the record type's sales process, in picklist order."""
        cached = self._stage_cache.get(record_type_id)
        if cached is None:
            cached = self._stage_cache[record_type_id] = self._stages_for_record_type(record_type_id)
        return cached

    def _stages_for_record_type(self, record_type_id: str | None) -> list[str]:
        active = self.active_stages()
        if record_type_id in (None, MASTER_RECORD_TYPE_ID):
            return active
        rt = self.tables["RecordType"].rows.get(record_type_id or "")
        if rt is None or not rt.get("BusinessProcessId"):
            return active
        allowed = set(self.bp_stages.get(rt["BusinessProcessId"], ()))
        return [label for label in active if label in allowed]

    def picklist_values(self, obj_name: str, field_name: str,
                        record_type_id: str | None = None) -> list[tuple[str, str]]:
        """(value, label) pairs of a picklist field."""
        if obj_name == "Opportunity" and field_name == "StageName":
            return [(s, s) for s in self.stages_for_record_type(record_type_id)]
        if field_name == "ForecastCategoryName":
            return [(label, label) for label in FORECAST_CATEGORY_LABELS.values()]
        if field_name == "ForecastCategory":
            return list(FORECAST_CATEGORY_LABELS.items())
        if field_name in ("CurrencyIsoCode", "DefaultCurrencyIsoCode"):
            return [(c, c) for c in self.currencies]
        if field_name in SYSTEM_PICKLISTS:
            return [(v, v) for v in SYSTEM_PICKLISTS[field_name]]
        return [(v, v) for v in self.picklists.get(f"{obj_name}.{field_name}", [])]

    def default_opportunity_record_type(self) -> str | None:
        rts = self.tables["RecordType"].rows
        chosen = self.default_record_type_id
        if chosen and chosen in rts and rts[chosen].get("IsActive"):
            return chosen
        for rid, rt in rts.items():
            if rt.get("SobjectType") == "Opportunity" and rt.get("IsActive"):
                return rid
        return None

    # --- index maintenance -----------------------------------------------------------------------
    def _index(self, table: Table, rec: Record) -> None:
        rid = rec["Id"]
        if table.unique_fields and not rec.get("IsDeleted"):
            for name in table.unique_fields:
                value = rec.get(name)
                if value is not None:
                    table.unique[name].setdefault(value.lower(), []).append(rid)
        for name in table.ref_fields:
            value = rec.get(name)
            if value:
                bucket = table.refs[name].get(value)
                if bucket is None:
                    bucket = table.refs[name][value] = {}
                bucket[rid] = None

    def _unindex(self, table: Table, rec: Record) -> None:
        rid = rec["Id"]
        if table.unique_fields and not rec.get("IsDeleted"):
            for name in table.unique_fields:
                value = rec.get(name)
                if value is not None:
                    ids = table.unique[name].get(value.lower())
                    if ids and rid in ids:
                        ids.remove(rid)
                        if not ids:
                            del table.unique[name][value.lower()]
        for name in table.ref_fields:
            value = rec.get(name)
            if value:
                bucket = table.refs[name].get(value)
                if bucket is not None:
                    bucket.pop(rid, None)
                    if not bucket:
                        del table.refs[name][value]

    def _put(self, table: Table, rec: Record) -> None:
        rid = rec["Id"]
        old = table.rows.get(rid)
        if self._undo is not None:
            self._undo.append((table, rid, old, table.deleted_at.get(rid), table.cascade_parent.get(rid)))
        if old is not None:
            self._unindex(table, old)
        table.rows[rid] = rec
        self._index(table, rec)

    def _restore(self, entry: _UndoEntry) -> None:
        table, rid, old, deleted_at, cascade_parent = entry
        current = table.rows.get(rid)
        if current is not None:
            self._unindex(table, current)
        if old is None:
            table.rows.pop(rid, None)
        else:
            table.rows[rid] = old
            self._index(table, old)
        for mapping, value in ((table.deleted_at, deleted_at), (table.cascade_parent, cascade_parent)):
            if value is None:
                mapping.pop(rid, None)
            else:
                mapping[rid] = value

    # --- input conversion ------------------------------------------------------------------------
    def convert(self, obj: ObjectDef, data: Mapping[str, Any], *, mode: str) -> dict[str, Any]:
        """Turn a JSON body into stored values. ``mode`` is ``create``, ``update`` or ``load``."""
        named: dict[str, tuple[FieldDef, Any]] = {}
        for key, raw in data.items():
            if key == "attributes":
                continue
            fdef = obj.field(key)
            if fdef is None:
                raise RecordError.one("INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}")
            named[fdef.name] = (fdef, raw)
        if mode != "load":
            blocked = [name for name, (fdef, _) in named.items()
                       if not (fdef.createable if mode == "create" else fdef.updateable)]
            if blocked:
                raise RecordError.one(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {', '.join(blocked)}. Please check the security "
                    "settings of this field and verify that it is read/write for your profile or "
                    "permission set.",
                    tuple(blocked),
                )
        return {name: _coerce(fdef, raw) for name, (fdef, raw) in named.items()}

    # --- validation ------------------------------------------------------------------------------
    def _check_required(self, obj: ObjectDef, rec: Record, names: Iterable[str]) -> None:
        missing = [name for name in names if obj.fields[name].required and rec.get(name) is None]
        if missing:
            raise RecordError.one("REQUIRED_FIELD_MISSING",
                                  f"Required fields are missing: [{', '.join(missing)}]", tuple(missing))

    def _check_references(self, obj: ObjectDef, rec: Record, names: Iterable[str]) -> None:
        for name in names:
            fdef = obj.fields[name]
            value = rec.get(name)
            if fdef.type != "reference" or value is None:
                continue
            canonical = normalize_id(value)
            if canonical is None:
                raise RecordError.one("MALFORMED_ID", f"{fdef.label}: id value of incorrect type: {value}",
                                      (name,))
            target_type = fdef.reference_to[0]
            if canonical[:3] != KEY_PREFIXES[target_type]:
                raise RecordError.one("FIELD_INTEGRITY_EXCEPTION",
                                      f"{fdef.label}: id value of incorrect type: {value}", (name,))
            target = self.tables[target_type].rows.get(canonical)
            if target is None:
                raise RecordError.one("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
            if target.get("IsDeleted"):
                raise RecordError.one("ENTITY_IS_DELETED", "entity is deleted", (name,))
            if name == "OwnerId" and not target.get("IsActive"):
                raise RecordError.one(
                    "INACTIVE_OWNER_OR_USER",
                    f"operation performed with inactive user [{canonical}] as owner of [{obj.name.lower()}]",
                    (name,),
                )
            rec[name] = canonical

    def _check_picklists(self, obj: ObjectDef, rec: Record, names: Iterable[str]) -> None:
        for name in names:
            fdef = obj.fields[name]
            value = rec.get(name)
            if not fdef.restricted_picklist or value is None:
                continue
            allowed = {v for v, _ in self.picklist_values(obj.name, name)}
            if value not in allowed:
                raise _bad_picklist(fdef, value)

    def _check_unique(self, table: Table, rec: Record, names: Iterable[str]) -> None:
        for name in names:
            if name not in table.unique_fields or rec.get(name) is None:
                continue
            if name == "HubSpot_Deal_Id__c" and not self.external_id_unique:
                continue
            others = [rid for rid in table.unique[name].get(rec[name].lower(), ()) if rid != rec["Id"]]
            if others:
                if name == "Username":
                    raise RecordError.one("DUPLICATE_USERNAME", "Duplicate Username.", (name,))
                raise RecordError.one(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {name} duplicates value on record with id: {others[0]}",
                )

    # --- object rules ----------------------------------------------------------------------------
    def _derive(self, table: Table, rec: Record, old: Record | None, given: set[str],
                ctx: WriteContext, changes: list[Change]) -> None:
        obj = table.obj
        if "CurrencyIsoCode" in obj.fields and rec.get("CurrencyIsoCode") is None and old is None:
            rec["CurrencyIsoCode"] = self.corporate_currency
        if obj.name in ("Contact", "User") and ({"FirstName", "LastName"} & given or old is None):
            rec["Name"] = " ".join(p for p in (rec.get("FirstName"), rec.get("LastName")) if p) or None
        if obj.name == "Opportunity":
            self._derive_opportunity(rec, old, given)
        elif obj.name == "OpportunityContactRole":
            self._derive_contact_role(rec, old, given, ctx, changes)

    def _derive_opportunity(self, rec: Record, old: Record | None, given: set[str]) -> None:
        obj = self.schema["Opportunity"]
        if "RecordTypeId" in obj.fields:
            if old is None and rec.get("RecordTypeId") is None:
                rec["RecordTypeId"] = self.default_opportunity_record_type()
            rt_id = rec.get("RecordTypeId")
            if rt_id is not None and ("RecordTypeId" in given or old is None):
                rt = self.tables["RecordType"].rows.get(rt_id)
                if rt is None or rt.get("SobjectType") != "Opportunity" or not rt.get("IsActive"):
                    raise RecordError.one(
                        "INVALID_CROSS_REFERENCE_KEY",
                        f"Record Type ID: this ID value isn't valid for the user: {rt_id}",
                        ("RecordTypeId",),
                    )
        stage_name = rec.get("StageName")
        check_stage = old is None or bool(given & {"StageName", "RecordTypeId"})
        if check_stage and stage_name not in self.stages_for_record_type(rec.get("RecordTypeId")):
            raise _bad_picklist(obj.fields["StageName"], stage_name)
        stage = self.stages.get(stage_name or "")
        if stage is not None:
            rec["IsClosed"] = bool(stage.get("IsClosed"))
            rec["IsWon"] = bool(stage.get("IsWon"))
            if old is None or old.get("StageName") != stage_name:
                if "Probability" not in given:
                    rec["Probability"] = stage.get("DefaultProbability")
                if "ForecastCategoryName" not in given:
                    rec["ForecastCategoryName"] = stage.get("ForecastCategoryName")
        probability = rec.get("Probability")
        if probability is not None and not 0 <= probability <= 100:
            raise RecordError.one(
                "NUMBER_OUTSIDE_VALID_RANGE",
                f"Probability (%): value outside of valid range on numeric field: {probability:g}",
                ("Probability",),
            )
        category_name = rec.get("ForecastCategoryName")
        if category_name is not None and category_name not in FORECAST_CATEGORY_BY_LABEL:
            raise _bad_picklist(obj.fields["ForecastCategoryName"], category_name)
        rec["ForecastCategory"] = FORECAST_CATEGORY_BY_LABEL.get(category_name or "")
        if old is not None and old.get("HasOpportunityLineItem") and "Amount" in given:
            rec["Amount"] = old.get("Amount")  # silently ignored, as Salesforce does
        amount = rec.get("Amount")
        rec["ExpectedRevenue"] = (
            round(amount * probability / 100.0, 2) if amount is not None and probability is not None else None
        )

    def _derive_contact_role(self, rec: Record, old: Record | None, given: set[str],
                             ctx: WriteContext, changes: list[Change]) -> None:
        opp_table = self.tables["Opportunity"]
        opp = opp_table.rows.get(rec["OpportunityId"])
        if opp is None:
            return
        if rec.get("IsPrimary"):
            ocr_table = self.tables["OpportunityContactRole"]
            for sibling in self.children("OpportunityContactRole", "OpportunityId", opp["Id"]):
                if sibling["Id"] != rec["Id"] and sibling.get("IsPrimary") and not sibling.get("IsDeleted"):
                    updated = {**sibling, "IsPrimary": False}
                    self._stamp(updated, ctx)
                    self._put(ocr_table, updated)
                    changes.append(self._update_change(ocr_table.obj, sibling, updated, ctx))
            if opp.get("ContactId") != rec.get("ContactId"):
                self._put(opp_table, {**opp, "ContactId": rec.get("ContactId")})
        elif old is not None and old.get("IsPrimary") and opp.get("ContactId") == old.get("ContactId"):
            self._put(opp_table, {**opp, "ContactId": None})

    # --- change records --------------------------------------------------------------------------
    def _payload(self, obj: ObjectDef, rec: Record, names: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
        payload: dict[str, Any] = {}
        listed: list[str] = []
        compound = obj.name in ("Contact", "User")
        for name in names:
            fdef = obj.fields.get(name)
            if fdef is None or name in _CDC_EXCLUDED or fdef.calculated:
                continue
            if compound and name == "Name":
                continue
            if compound and name in _COMPOUND_NAME_PARTS:
                payload.setdefault("Name", {})[name] = rec.get(name)
                listed.append(f"Name.{name}")
                continue
            payload[name] = cdc_value(fdef, rec.get(name))
            listed.append(name)
        return payload, listed

    def _create_change(self, obj: ObjectDef, rec: Record, ctx: WriteContext,
                       change_type: str = "CREATE") -> Change:
        names = [name for name in obj.fields if rec.get(name) is not None]
        payload, _ = self._payload(obj, rec, names)
        return Change(obj.name, change_type, rec["Id"], ctx.user_id, payload=payload)

    def _update_change(self, obj: ObjectDef, old: Record, new: Record, ctx: WriteContext) -> Change:
        changed = [name for name in obj.fields
                   if name not in _AUDIT_FIELDS and old.get(name) != new.get(name)]
        changed.append("LastModifiedDate")
        if old.get("LastModifiedById") != new.get("LastModifiedById"):
            changed.append("LastModifiedById")
        payload, listed = self._payload(obj, new, changed)
        nulled = [name for name in listed if "." not in name and new.get(name) is None]
        return Change(obj.name, "UPDATE", new["Id"], ctx.user_id, listed, nulled, payload)

    def _track_history(self, old: Record | None, new: Record, ctx: WriteContext) -> None:
        """OpportunityFieldHistory rows for the tracked fields a write changed ("created" for a new record)."""
        table = self.tables.get("OpportunityFieldHistory")
        if table is None:
            return
        fields = TRACKED_OPPORTUNITY_FIELDS.items() if old is not None else [("Id", "created")]
        for name, history_name in fields:
            before = None if old is None else old.get(name)
            if old is not None and before == new.get(name):
                continue
            self._put(table, {
                **self.new_record(table.obj), "Id": self.ids.next(table.obj.key_prefix), "OpportunityId": new["Id"],
                "Field": history_name, "DataType": "Text", "IsDeleted": False,
                "OldValue": None if before is None else str(before)[:255],
                "NewValue": None if old is None or new.get(name) is None else str(new.get(name))[:255],
                "CreatedDate": new["LastModifiedDate"], "CreatedById": ctx.user_id,
            })

    def _stamp(self, rec: Record, ctx: WriteContext, *, created: bool = False) -> None:
        now = format_datetime(self.clock.now())
        if created:
            rec["CreatedDate"] = now
            rec["CreatedById"] = ctx.user_id
        rec["LastModifiedDate"] = now
        rec["LastModifiedById"] = ctx.user_id
        rec["SystemModstamp"] = now

    # --- writes ----------------------------------------------------------------------------------
    def new_record(self, obj: ObjectDef) -> Record:
        return dict(obj.blank)

    def create(self, type_name: str, data: Mapping[str, Any], ctx: WriteContext) -> tuple[str, list[Change]]:
        table = self.tables[type_name]
        obj = table.obj
        if not obj.createable:
            raise RecordError.one("INVALID_TYPE_FOR_OPERATION", "entity type cannot be inserted")
        if "Id" in data:
            raise RecordError.one("INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call",
                                  ("Id",))
        values = self.convert(obj, data, mode="create")
        rec = self.new_record(obj)
        rec.update(values)
        rec["Id"] = self.ids.next(obj.key_prefix)
        if "OwnerId" in obj.fields and rec.get("OwnerId") is None:
            rec["OwnerId"] = ctx.user_id
        self._stamp(rec, ctx, created=True)
        self._check_required(obj, rec, obj.required_fields)
        self._check_references(obj, rec, values)
        if "OwnerId" in obj.fields and "OwnerId" not in values:
            self._check_references(obj, rec, ["OwnerId"])
        changes: list[Change] = []
        with self.journal():
            self._derive(table, rec, None, set(values), ctx, changes)
            self._check_picklists(obj, rec, obj.fields)
            self._check_unique(table, rec, table.unique_fields)
            self._put(table, rec)
            if type_name == "Opportunity":
                self._track_history(None, rec, ctx)
        return rec["Id"], [self._create_change(obj, rec, ctx), *changes]

    def update(self, type_name: str, record_id: str, data: Mapping[str, Any],
               ctx: WriteContext) -> list[Change]:
        table = self.tables[type_name]
        obj = table.obj
        old = self.existing(type_name, record_id, for_write=True)
        body = dict(data)
        if "Id" in body and normalize_id(body.pop("Id")) != old["Id"]:
            raise RecordError.one("INVALID_ID_FIELD", "The Id field should not be specified in the sobject data.")
        if not obj.updateable:
            raise RecordError.one("INVALID_TYPE_FOR_OPERATION", "entity type cannot be updated")
        values = self.convert(obj, body, mode="update")
        rec = {**old, **values}
        self._stamp(rec, ctx)
        self._check_required(obj, rec, values)
        self._check_references(obj, rec, values)
        changes: list[Change] = []
        with self.journal():
            self._derive(table, rec, old, set(values), ctx, changes)
            self._check_picklists(obj, rec, values)
            self._check_unique(table, rec, values)
            self._put(table, rec)
            if type_name == "Opportunity":
                self._track_history(old, rec, ctx)
        change = self._update_change(obj, old, rec, ctx)
        change.written_fields = sorted(values)
        return [change, *changes]

    def upsert(self, type_name: str, field_name: str, value: str, data: Mapping[str, Any],
               ctx: WriteContext) -> tuple[str, bool, list[Change]]:
        obj = self.tables[type_name].obj
        fdef = obj.field(field_name)
        if fdef is None or not (fdef.external_id or fdef.name == "Id"):
            raise RecordError.one("NOT_FOUND",
                                  f"Provided external ID field does not exist or is not accessible: {field_name}",
                                  status=404)
        body = dict(data)
        for key in list(body):
            if key.lower() == fdef.name.lower():
                given = body.pop(key)
                if given is not None and str(given).lower() != value.lower():
                    raise RecordError.one(
                        "INVALID_FIELD",
                        f"{fdef.name}: the value in the request body does not match the value in the URL",
                        (fdef.name,),
                    )
        if fdef.name == "Id":
            if not value:
                record_id, changes = self.create(type_name, body, ctx)
                return record_id, True, changes
            return value, False, self.update(type_name, value, body, ctx)
        matches = self.find_external(type_name, fdef.name, value)
        if len(matches) > 1:
            raise MultipleMatchesError(matches)
        if matches:
            return matches[0], False, self.update(type_name, matches[0], body, ctx)
        record_id, changes = self.create(type_name, {**body, fdef.name: value}, ctx)
        return record_id, True, changes

    def existing(self, type_name: str | None, record_id: str, *, for_write: bool = False) -> Record:
        """The live record for a single-record request, or the error Salesforce gives."""
        canonical = normalize_id(record_id)
        if canonical is None:
            raise RecordError.one("MALFORMED_ID", f"malformed id {record_id}", status=400)
        table = self.by_prefix.get(canonical[:3])
        if table is None or (type_name is not None and table.name != type_name):
            raise RecordError.one("MALFORMED_ID",
                                  f"{type_name or 'Record'} ID: id value of incorrect type: {record_id}",
                                  ("Id",), status=400)
        rec = table.rows.get(canonical)
        if rec is None:
            if for_write:
                raise RecordError.one("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", status=404)
            raise RecordError.one("NOT_FOUND", "The requested resource does not exist", status=404)
        if rec.get("IsDeleted"):
            if for_write:
                raise RecordError.one("ENTITY_IS_DELETED", "entity is deleted", status=404)
            raise RecordError.one("NOT_FOUND", "The requested resource does not exist", status=404)
        return rec

    def delete(self, type_name: str | None, record_id: str, ctx: WriteContext) -> list[Change]:
        rec = self.existing(type_name, record_id, for_write=True)
        table = self.by_prefix[rec["Id"][:3]]
        if not table.obj.deletable:
            raise RecordError.one("INVALID_TYPE_FOR_OPERATION", "entity type cannot be deleted")
        changes: list[Change] = []
        with self.journal():
            self._delete(table, rec, ctx, changes, cascade_parent=None)
        return changes

    def _delete(self, table: Table, rec: Record, ctx: WriteContext, changes: list[Change],
                cascade_parent: str | None) -> None:
        now = format_datetime(self.clock.now())
        deleted = {**rec, "IsDeleted": True, "SystemModstamp": now}
        self._put(table, deleted)
        table.deleted_at[rec["Id"]] = now
        if cascade_parent is not None:
            table.cascade_parent[rec["Id"]] = cascade_parent
        changes.append(Change(table.name, "DELETE", rec["Id"], ctx.user_id))
        for rel in table.obj.child_relationships:
            if not rel.cascade_delete:
                continue
            child_table = self.tables[rel.child]
            for child in self.children(rel.child, rel.field, rec["Id"]):
                if not child.get("IsDeleted"):
                    self._delete(child_table, child, ctx, changes, cascade_parent=rec["Id"])
        if table.name == "OpportunityContactRole" and rec.get("IsPrimary"):
            opp = self.tables["Opportunity"].rows.get(rec["OpportunityId"])
            if opp is not None and opp.get("ContactId") == rec.get("ContactId"):
                self._put(self.tables["Opportunity"], {**opp, "ContactId": None})

    def undelete(self, record_id: str, ctx: WriteContext) -> list[Change]:
        canonical = normalize_id(record_id)
        table = self.by_prefix.get(canonical[:3]) if canonical else None
        rec = table.rows.get(canonical) if table and canonical else None
        if table is None or rec is None:
            raise RecordError.one("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        if not rec.get("IsDeleted"):
            raise RecordError.one("UNDELETE_FAILED", "Entity is not in the recycle bin")
        if table.cascade_parent.get(rec["Id"]) and self.live(table.cascade_parent[rec["Id"]]) is None:
            raise RecordError.one("UNDELETE_FAILED", "Undelete the parent record first")
        changes: list[Change] = []
        with self.journal():
            self._undelete(table, rec, ctx, changes)
        return changes

    def _undelete(self, table: Table, rec: Record, ctx: WriteContext, changes: list[Change]) -> None:
        restored = {**rec, "IsDeleted": False}
        self._stamp(restored, ctx)
        self._check_unique(table, restored, table.unique_fields)
        self._put(table, restored)
        table.deleted_at.pop(rec["Id"], None)
        table.cascade_parent.pop(rec["Id"], None)
        changes.append(self._create_change(table.obj, restored, ctx, "UNDELETE"))
        for rel in table.obj.child_relationships:
            if not rel.cascade_delete:
                continue
            child_table = self.tables[rel.child]
            for child in self.children(rel.child, rel.field, rec["Id"]):
                if child.get("IsDeleted") and child_table.cascade_parent.get(child["Id"]) == rec["Id"]:
                    self._undelete(child_table, child, ctx, changes)

    # --- replication -----------------------------------------------------------------------------
    def updated_ids(self, type_name: str, start: str, end: str) -> list[str]:
        return [rid for rid, rec in self.tables[type_name].rows.items()
                if not rec.get("IsDeleted") and start <= rec["SystemModstamp"] <= end]

    def deleted_records(self, type_name: str, start: str, end: str) -> list[tuple[str, str]]:
        return [(rid, when) for rid, when in self.tables[type_name].deleted_at.items() if start <= when <= end]

    # --- loading ---------------------------------------------------------------------------------
    def load(self, data: Mapping[str, Sequence[Mapping[str, Any]]], default_owner: str | None) -> dict[str, list[str]]:
        """Insert records as they are (no notifications); raise ValueError naming the bad record."""
        unknown = set(data) - set(LOAD_ORDER)
        if unknown:
            raise ValueError(f"cannot load objects of type {sorted(unknown)}")
        loaded: dict[str, list[str]] = {}
        self._load_now = format_datetime(self.clock.now())
        with self.journal() as journal:
            try:
                for type_name in LOAD_ORDER:
                    rows = data.get(type_name)
                    if not rows:
                        continue
                    if not isinstance(rows, list | tuple):
                        raise ValueError(f"{type_name} must be a list of field dicts")
                    ids = loaded.setdefault(type_name, [])
                    for index, raw in enumerate(rows):
                        try:
                            ids.append(self._load_one(type_name, raw, default_owner, loaded))
                        except RecordError as exc:
                            raise ValueError(f"{type_name}[{index}]: {exc}") from None
                    if type_name == "OpportunityStage":
                        self.refresh_stages()
                    if type_name == "RecordType":
                        self.rebuild_schema()
            except BaseException:
                journal.rollback()
                self.refresh_stages()
                self.rebuild_schema()
                raise
        return loaded

    def _load_one(self, type_name: str, raw: Mapping[str, Any], default_owner: str | None,
                  loaded: Mapping[str, list[str]]) -> str:
        table = self.tables[type_name]
        obj = table.obj
        if not isinstance(raw, Mapping):
            raise RecordError.one("JSON_PARSER_ERROR", "each record must be an object of field values")
        body = {key: (_resolve_ref(value, loaded) if isinstance(value, str) and value[:1] == "@" else value)
                for key, value in raw.items()}
        stages = body.pop("Stages", None)
        record_id = body.pop("Id", None)
        if type_name == "RecordType" and stages is not None:
            process = {"Name": f"{body.get('Name') or body.get('DeveloperName')} Process",
                       "TableEnumOrId": body.get("SobjectType", "Opportunity"), "IsActive": True,
                       "Stages": stages}
            body["BusinessProcessId"] = self._load_one("BusinessProcess", process, default_owner, loaded)
        if type_name == "OpportunityStage":
            body.setdefault("ApiName", body.get("MasterLabel"))
            body.setdefault("IsActive", True)
            category = body.get("ForecastCategory")
            label = body.get("ForecastCategoryName")
            if label is None and category is not None:
                body["ForecastCategoryName"] = FORECAST_CATEGORY_LABELS.get(category, category)
            elif category is None and label is not None:
                body["ForecastCategory"] = FORECAST_CATEGORY_BY_LABEL.get(label, label)
            body.setdefault("SortOrder", len(self.tables["OpportunityStage"].rows) + 1)
        values = self.convert(obj, body, mode="load")
        if record_id is not None:
            canonical = normalize_id(record_id)
            if canonical is None or canonical[:3] != obj.key_prefix:
                raise RecordError.one("MALFORMED_ID", f"malformed id {record_id}")
            old = table.rows.get(canonical)
            self.ids.skip_past(canonical)
        else:
            canonical, old = self.ids.next(obj.key_prefix), None
        rec = {**old} if old is not None else self.new_record(obj)
        rec.update(values)
        rec["Id"] = canonical
        if "OwnerId" in obj.fields and rec.get("OwnerId") is None:
            rec["OwnerId"] = default_owner
        creator = rec.get("CreatedById") or default_owner or canonical
        rec["CreatedById"] = creator
        rec["LastModifiedById"] = rec.get("LastModifiedById") or creator
        rec["CreatedDate"] = rec.get("CreatedDate") or self._load_now
        rec["LastModifiedDate"] = rec.get("LastModifiedDate") or rec["CreatedDate"]
        rec["SystemModstamp"] = rec.get("SystemModstamp") or rec["LastModifiedDate"]
        self._check_required(obj, rec, obj.required_fields)
        self._check_references(obj, rec, [n for n in values if n not in ("CreatedById", "LastModifiedById")])
        self._derive(table, rec, old, set(values), WriteContext(default_owner or canonical), [])
        self._check_picklists(obj, rec, values)
        self._check_unique(table, rec, table.unique_fields)
        if type_name == "BusinessProcess":
            names = list(stages or [])
            missing = [s for s in names if s not in self.stages]
            if missing:
                raise RecordError.one("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                      f"unknown stages for the sales process: {missing}")
            self.bp_stages[canonical] = names
            self._stage_cache = {}
        self._put(table, rec)
        if rec.get("IsDeleted"):
            table.deleted_at[canonical] = rec["SystemModstamp"]
        return canonical


def _resolve_ref(value: Any, loaded: Mapping[str, list[str]]) -> Any:
    """``"@Account:3"`` → the id of the fourth Account of this load."""
    if isinstance(value, str) and value.startswith("@") and ":" in value:
        type_name, _, index = value[1:].partition(":")
        ids = loaded.get(type_name)
        if ids is not None and index.isdigit() and int(index) < len(ids):
            return ids[int(index)]
        raise RecordError.one("INVALID_CROSS_REFERENCE_KEY", f"unresolved reference {value}")
    return value


def _bad_picklist(fdef: FieldDef, value: Any) -> RecordError:
    return RecordError.one("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                           f"{fdef.label}: bad value for restricted picklist field: {value}", (fdef.name,))


def _parser_error(kind: str, raw: Any) -> RecordError:
    token = "VALUE_STRING" if isinstance(raw, str) else (
        "VALUE_TRUE" if raw is True else "VALUE_FALSE" if raw is False else
        "START_OBJECT" if isinstance(raw, dict) else "START_ARRAY" if isinstance(raw, list) else "VALUE_NUMBER"
    )
    shown = raw if isinstance(raw, str | int | float) else ("{" if isinstance(raw, dict) else "[")
    return RecordError.one(
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {kind} from {token} value {shown} or request may be missing a "
        "required field",
    )


def _coerce(fdef: FieldDef, raw: Any) -> Any:
    kind = fdef.type
    if raw is None:
        return False if kind == "boolean" else None
    if fdef.is_string or kind in ("id", "reference"):
        if isinstance(raw, bool):
            raw = "true" if raw else "false"
        elif isinstance(raw, int | float):
            raw = f"{raw:g}" if isinstance(raw, float) else str(raw)
        elif not isinstance(raw, str):
            raise _parser_error("string", raw)
        if raw == "":
            return None
        if fdef.is_string and fdef.length and len(raw) > fdef.length:
            raise RecordError.one("STRING_TOO_LONG",
                                  f"{fdef.label}: data value too large: {raw[:255]} (max length={fdef.length})",
                                  (fdef.name,))
        if kind == "email" and not _EMAIL_RE.match(raw):
            raise RecordError.one("INVALID_EMAIL_ADDRESS", f"{fdef.label}: invalid email address: {raw}",
                                  (fdef.name,))
        return raw
    if kind == "boolean":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise _parser_error("boolean", raw)
    if fdef.is_number:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise _parser_error("double" if kind != "int" else "int", raw)
        if isinstance(raw, str):
            if not _NUMBER_RE.match(raw):
                raise _parser_error("double" if kind != "int" else "int", raw)
            raw = float(raw)
        if kind == "int":
            if float(raw) != int(raw):
                raise _parser_error("int", raw)
            return int(raw)
        return float(round(float(raw), fdef.scale)) if fdef.scale or kind != "double" else float(raw)
    if kind in ("date", "datetime"):
        if not isinstance(raw, str):
            raise _parser_error(kind, raw)
        try:
            return canonical_date(raw) if kind == "date" else canonical_datetime(raw)
        except ValueError:
            raise _parser_error(kind, raw) from None
    return raw


def iter_chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


__all__ = ["Change", "MultipleMatchesError", "Record", "RecordError", "SfError", "Store", "Table", "WriteContext"]
