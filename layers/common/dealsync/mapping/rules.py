"""The sync decision (DESIGN 1.2): per field with its shadow, then over a whole record.

A side "changed" when its canonical value differs from the shadow (the last value both sides agreed
on); an incoming value equal to the shadow is not a change, which is what turns echoes into no-ops.

- two_way: when only one side changed, it wins. Both changed to different values: the later change
  wins (a conflict). Blank is a value like any other: either side clears the other.
- prefer_salesforce_unless_blank: a non-blank Salesforce value goes to HubSpot (HubSpot edits are
  reset to it). Salesforce blank: if Salesforce was just cleared, HubSpot is cleared (if HubSpot
  changed too, the later change wins, a conflict); otherwise HubSpot's value goes to Salesforce.
- always_salesforce: a non-blank Salesforce value, or a clearing in Salesforce, goes to HubSpot.
  Salesforce blank and unchanged: nothing (HubSpot keeps its value; nothing goes to Salesforce).
- dont_sync: nothing, ever; no shadow is kept.

New link, no shadow yet (`NO_SHADOW`): blank is no change, so a non-blank side is "changed";
two values that differ are resolved by the rule (two_way: the later change), without counting a conflict.

Timestamps: Salesforce's field time (field history), else the record's (change-event commit time or
SystemModstamp, none when dealsync made the last change), against the HubSpot property's timestamp. A
missing timestamp loses to a present one; a tie goes to the side the change came from (`origin`), else
to Salesforce, the system of record. A value dealsync copied onto a side (that side's history says so)
is not a change of that side: the other side's value wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any, Final

from dealsync.mapping.fields import AMOUNT_FIELD, HAS_PRODUCTS_FIELD, OWNER_FIELD, RECORD_TYPE_FIELD, FieldSpec
from dealsync.mapping.owners import (
    OwnerDirectory,
    OwnerError,
    hubspot_owner_for,
    owner_canonical_from_hubspot,
    salesforce_owner_for,
)
from dealsync.mapping.stages import DEFAULT_RECORD_TYPE_KEY, StageLookupError, StageMap
from dealsync.mapping.values import (
    ConversionError,
    FieldValue,
    SalesforceValue,
    Unconvertible,
    ValueKind,
    canonical_from_hubspot,
    canonical_from_salesforce,
    canonical_reference,
    fit_for_salesforce,
    sf_id_18,
    to_hubspot,
    to_salesforce,
)
from dealsync.models.domain import ErrorCategory, ShadowValue, Side, SyncRule


class NoShadow(Enum):
    NO_SHADOW = "no_shadow"


NO_SHADOW: Final = NoShadow.NO_SHADOW
ShadowInput = ShadowValue | NoShadow


class Action(StrEnum):
    NONE = "none"
    TO_HUBSPOT = "to_hubspot"
    TO_SALESFORCE = "to_salesforce"


@dataclass(frozen=True)
class FieldDecision:
    action: Action
    value: FieldValue  # the value to write (None clears); with NONE, the value the sides hold
    shadow: ShadowInput  # the new shadow; NO_SHADOW = none to keep
    conflict: bool = False
    winner: Side | None = None

    @property
    def blocked(self) -> Unconvertible | None:
        """The winning value when it cannot be written (e.g. an unmapped value): nothing is written."""
        if self.action is not Action.NONE and isinstance(self.value, Unconvertible):
            return self.value
        return None


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def later_side(salesforce_at: datetime | None, hubspot_at: datetime | None, origin: Side | None = None) -> Side:
    sf_at, hs_at = _utc(salesforce_at), _utc(hubspot_at)
    if sf_at is not None and hs_at is not None and sf_at != hs_at:
        return Side.SALESFORCE if sf_at > hs_at else Side.HUBSPOT
    if sf_at is None and hs_at is not None:
        return Side.HUBSPOT
    if hs_at is None and sf_at is not None:
        return Side.SALESFORCE
    return origin or Side.SALESFORCE


def _agree(salesforce: FieldValue, hubspot: FieldValue) -> bool:
    if isinstance(salesforce, Unconvertible) or isinstance(hubspot, Unconvertible):
        return False
    return salesforce == hubspot


def decide_field(
    rule: SyncRule,
    salesforce: FieldValue,
    hubspot: FieldValue,
    shadow: ShadowInput,
    *,
    salesforce_changed_at: datetime | None = None,
    hubspot_changed_at: datetime | None = None,
    origin: Side | None = None,
    hubspot_copied: bool = False,
    hubspot_cleared: bool = False,
    salesforce_copied: bool = False,
    salesforce_rewritten: bool = False,
    hubspot_rewritten: bool = False,
) -> FieldDecision:
    """One field's decision from canonical values (see the module docstring for the semantics).

    `hubspot_copied`: HubSpot's value is one dealsync copied from Salesforce (its property history says so),
    so HubSpot did not change it, whatever the shadow says (a shadow can lag behind when a worker died
    between the CRM write and the link write), and the copy's timestamp is not a change time. Salesforce's
    value is the same one or a later change: it wins.
    `hubspot_cleared`: HubSpot's blank was set (its property history has it): without a shadow, that is a
    change like any value, not a field nobody filled in.
    `salesforce_copied`: the same for Salesforce (its field history says dealsync made the last change):
    HubSpot's value wins. When both sides hold copies, Salesforce's wins as the system of record.
    `salesforce_rewritten` / `hubspot_rewritten`: that side holds the agreed value again, but its own history
    says a person set it after the other side's change (A → B → A): it changed too, and the times decide."""
    has_shadow = not isinstance(shadow, NoShadow)
    if has_shadow:
        sf_changed, hs_changed = salesforce != shadow, hubspot != shadow
        sf_changed = sf_changed or salesforce_rewritten
        hs_changed = hs_changed or hubspot_rewritten
    else:
        sf_changed, hs_changed = salesforce is not None, hubspot is not None or hubspot_cleared
    if salesforce_copied:
        sf_changed, hs_changed = False, not _agree(salesforce, hubspot)
    if hubspot_copied:
        sf_changed, hs_changed = not _agree(salesforce, hubspot), False
    both_changed = sf_changed and hs_changed and not _agree(salesforce, hubspot)

    def write(side: Side, *, conflict: bool = False) -> FieldDecision:
        value = salesforce if side is Side.SALESFORCE else hubspot
        new_shadow: ShadowInput = shadow if isinstance(value, Unconvertible) else value
        if _agree(salesforce, hubspot):
            return FieldDecision(Action.NONE, value, new_shadow, conflict, side)
        action = Action.TO_HUBSPOT if side is Side.SALESFORCE else Action.TO_SALESFORCE
        return FieldDecision(action, value, new_shadow, conflict, side)

    def settled() -> FieldDecision:
        if _agree(salesforce, hubspot):
            new_shadow: ShadowInput = salesforce if not isinstance(salesforce, Unconvertible) else shadow
            return FieldDecision(Action.NONE, salesforce, new_shadow)
        return FieldDecision(Action.NONE, salesforce, shadow)

    def by_time() -> Side:
        return later_side(salesforce_changed_at, hubspot_changed_at, origin)

    match rule:
        case SyncRule.DONT_SYNC:
            return FieldDecision(Action.NONE, salesforce, shadow)
        case SyncRule.TWO_WAY:
            if sf_changed and hs_changed:
                return write(by_time(), conflict=has_shadow) if both_changed else settled()
            if sf_changed:
                return write(Side.SALESFORCE)
            if hs_changed:
                return write(Side.HUBSPOT)
            return settled()
        case SyncRule.PREFER_SALESFORCE_UNLESS_BLANK:
            if salesforce is not None:
                return write(Side.SALESFORCE, conflict=has_shadow and both_changed)
            if sf_changed:  # cleared in Salesforce
                if hs_changed and hubspot is not None:
                    return write(by_time(), conflict=True)
                return write(Side.SALESFORCE)
            if hubspot is not None:  # the Salesforce field is empty: HubSpot's value may pass
                return write(Side.HUBSPOT)
            return settled()
        case SyncRule.ALWAYS_SALESFORCE:
            if salesforce is not None or sf_changed:
                return write(Side.SALESFORCE, conflict=has_shadow and both_changed)
            return FieldDecision(Action.NONE, salesforce, None if has_shadow else NO_SHADOW)
    raise ValueError(f"unknown sync rule {rule!r}")


# --- whole records ----------------------------------------------------------------------------

@dataclass(frozen=True)
class SideSnapshot:
    """One side of a linked pair as just read: raw API values and when they changed.

    Salesforce: the record's fields (simple-salesforce dict), `changed_at` = SystemModstamp or the
    change event's commit time. HubSpot: the deal's `properties`, `field_changed_at` = property
    timestamps (propertiesWithHistory), `changed_at` = updatedAt as the fallback, `copied_fields` = the
    properties whose current value dealsync itself wrote there and `last_copies` the last value it wrote to
    each (known from the same history). Salesforce's `field_changed_at` and `copied_fields` come from
    OpportunityFieldHistory when it was read.
    A field missing from `values` was not read: it is left alone (and a warning says so), unless
    `missing_is_blank` (for an API that leaves empty values out).
    """

    values: Mapping[str, Any]
    changed_at: datetime | None = None
    field_changed_at: Mapping[str, datetime] = field(default_factory=dict)
    exists: bool = True
    missing_is_blank: bool = False
    # Fields (Salesforce) or properties (HubSpot) whose current value dealsync wrote, from their history.
    copied_fields: frozenset[str] = frozenset()
    # HubSpot: the last value dealsync wrote to each property, and when (its newest version from dealsync).
    last_copies: Mapping[str, tuple[str, datetime]] = field(default_factory=dict)
    # Salesforce: when dealsync made the latest change of each of its copied fields (field history).
    copied_at: Mapping[str, datetime] = field(default_factory=dict)

    @classmethod
    def absent(cls) -> SideSnapshot:
        """The side of a record that is about to be created."""
        return cls(values={}, exists=False)

    def holds_copy(self, names: Sequence[str]) -> bool:
        """The value these fields make together (a stage is pipeline and stage, or record type and stage)
        is dealsync's copy: it made the newest change among them. A person may have changed one of them
        before dealsync wrote the other; the pair is then what dealsync wrote. A person's change in the same
        moment as dealsync's (Salesforce keeps times to the second) may be the later one: not a copy."""
        if all(name in self.copied_fields for name in names):
            return True
        times = {name: moment for name in names
                 if (moment := _utc(self.field_changed_at.get(name) or self.copied_at.get(name))) is not None}
        if not times:
            return False
        newest = max(times.values())
        return all(name in self.copied_fields for name, moment in times.items() if moment == newest)

    def changed_at_for(self, names: Iterable[str]) -> datetime | None:
        moments = [moment for name in names if (moment := _utc(self.field_changed_at.get(name))) is not None]
        return max(moments) if moments else _utc(self.changed_at)


@dataclass(frozen=True)
class FieldError:
    field: str  # the mapping's Salesforce field
    category: ErrorCategory
    message: str


@dataclass(frozen=True)
class FieldWarning:
    field: str
    message: str


@dataclass(frozen=True)
class RecordDecision:
    hubspot_properties: dict[str, str]  # the deal patch; "" clears a property
    salesforce_fields: dict[str, SalesforceValue]  # the opportunity patch; None clears a field
    shadow: dict[str, ShadowValue]  # the link's new shadow (replaces the old one)
    fields: dict[str, FieldDecision]  # by shadow key, for logs and metrics
    conflicts: tuple[str, ...] = ()
    errors: tuple[FieldError, ...] = ()
    warnings: tuple[FieldWarning, ...] = ()
    # Fields where one side holds the agreed value and was modified after the other side's change: decide
    # again with both sides' per-field histories (the value may have been set again, A → B → A).
    recheck: tuple[str, ...] = ()

    @property
    def writes_anything(self) -> bool:
        return bool(self.hubspot_properties or self.salesforce_fields)


@dataclass
class _Builder:
    hubspot: dict[str, str] = field(default_factory=dict)
    salesforce: dict[str, SalesforceValue] = field(default_factory=dict)
    shadow: dict[str, ShadowValue] = field(default_factory=dict)
    fields: dict[str, FieldDecision] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)
    warnings: list[FieldWarning] = field(default_factory=list)
    recheck: list[str] = field(default_factory=list)

    def keep_shadow(self, key: str, shadow: ShadowInput) -> None:
        if not isinstance(shadow, NoShadow):
            self.shadow[key] = shadow

    def error(self, key: str, error: ConversionError | OwnerError | StageLookupError) -> None:
        self.errors.append(FieldError(key, error.category, error.message))


def _unconvertible(exc: ValueError, category: ErrorCategory) -> Unconvertible:
    if isinstance(exc, ConversionError):
        return Unconvertible(exc)
    return Unconvertible(ConversionError(str(exc), category=category))


def _raw_text(value: Any) -> str:
    return "" if value is None else str(value)


class _RecordContext:
    def __init__(self, salesforce: SideSnapshot, hubspot: SideSnapshot, stages: StageMap, owners: OwnerDirectory,
                 salesforce_read_only: frozenset[str]) -> None:
        self.salesforce = salesforce
        self.hubspot = hubspot
        self.stages = stages
        self.owners = owners
        read_only = set(salesforce_read_only)
        if salesforce.values.get(HAS_PRODUCTS_FIELD) is True:
            read_only.add(AMOUNT_FIELD)  # Salesforce silently ignores Amount on opportunities with products
        self.salesforce_read_only = frozenset(read_only)

    def salesforce_value(self, spec: FieldSpec) -> FieldValue:
        if not self.salesforce.exists:
            return None
        values = self.salesforce.values
        if spec.kind is ValueKind.STAGE:
            stage_name = canonical_from_salesforce(ValueKind.PICKLIST, values.get(spec.salesforce_field))
            if stage_name is None:
                return None
            record_type_id = canonical_reference(values.get(RECORD_TYPE_FIELD))
            try:
                self.stages.to_hubspot(record_type_id, stage_name)
            except StageLookupError as exc:
                return Unconvertible(ConversionError(exc.message, category=exc.category))
            return f"{self.stages.record_type_key(record_type_id)}:{stage_name}"
        try:
            return canonical_from_salesforce(spec.kind, values.get(spec.salesforce_field))
        except ValueError as exc:
            return _unconvertible(exc, ErrorCategory.HUBSPOT_VALIDATION)

    def hubspot_value(self, spec: FieldSpec, salesforce: FieldValue) -> tuple[FieldValue, bool]:
        """The HubSpot value, canonical and fitted to the Salesforce field; and whether text was cut."""
        if not self.hubspot.exists:
            return None, False
        return self.canonical_hubspot(spec, self.hubspot.values.get(spec.hubspot_property), salesforce)

    def salesforce_changed_at(self, spec: FieldSpec, salesforce: FieldValue) -> datetime | None:
        """When Salesforce's value changed, at the latest. The record's stamp moves with every field; but
        when the last value dealsync copied to HubSpot is Salesforce's current one, that value was already
        there when dealsync copied it: it changed no later than the copy — unless the field's own history
        (a time of its own) says when a person set it, which may be after the copy (A → B → A)."""
        changed_at = _utc(self.salesforce.changed_at_for(spec.salesforce_fields))
        if self.salesforce_field_times(spec):
            return changed_at
        copy = self.hubspot.last_copies.get(spec.hubspot_property)
        if copy is None or isinstance(salesforce, Unconvertible):
            return changed_at
        raw, copied_at = copy
        if spec.kind is ValueKind.STAGE:
            copied_value = self.copied_stage(raw)
        else:
            copied_value, _ = self.canonical_hubspot(spec, raw, salesforce)
        if copied_value != salesforce:
            return changed_at
        copied_at_utc = _utc(copied_at)
        if copied_at_utc is None:
            return changed_at
        return copied_at_utc if changed_at is None else min(changed_at, copied_at_utc)

    def copied_stage(self, stage_id: str) -> FieldValue:
        """The stage dealsync last copied to HubSpot, as a canonical value. Stage ids are unique across a
        portal's pipelines, so the stage names its pipeline (dealsync writes the pipeline only when it
        changes, so the last pipeline it copied may be older)."""
        for mapping in self.stages.mappings:
            if stage_id in mapping.stages.values():
                try:
                    key, stage_name = self.stages.to_salesforce(mapping.pipeline_id, stage_id)
                except StageLookupError:
                    return None
                return f"{key}:{stage_name}"
        return None

    def salesforce_field_times(self, spec: FieldSpec) -> list[datetime]:
        """When a person last set the spec's Salesforce fields, from field history (empty: not known)."""
        return [moment for name in spec.salesforce_fields
                if (moment := _utc(self.salesforce.field_changed_at.get(name))) is not None]

    def hubspot_property_times(self, spec: FieldSpec) -> list[datetime]:
        """When the spec's HubSpot properties last changed, from property history (empty: not read)."""
        return [moment for name in spec.hubspot_properties
                if (moment := _utc(self.hubspot.field_changed_at.get(name))) is not None]

    def rewritten(self, spec: FieldSpec, shadow: ShadowInput, salesforce: FieldValue,
                  hubspot: FieldValue) -> tuple[bool, bool, bool]:
        """(Salesforce rewrote the agreed value, HubSpot did, decide again with histories). A side holding
        the agreed value while the other changed it is unchanged — unless a person set that value again
        after the other side's change. Only a side's own per-field time can say so; when all that is known
        is that the record was modified after that change, the field is to be decided again."""
        if isinstance(shadow, NoShadow) or not self.salesforce.exists or not self.hubspot.exists:
            return False, False, False
        sf_same, hs_same = salesforce == shadow, hubspot == shadow
        if sf_same == hs_same:
            return False, False, False
        hubspot_times = self.hubspot_property_times(spec)
        if sf_same:  # HubSpot changed it: did Salesforce set the agreed value again later?
            if self.hubspot.holds_copy(spec.hubspot_properties):
                return False, False, False  # HubSpot's value is dealsync's copy: no change there
            hubspot_at = max(hubspot_times) if hubspot_times else _utc(self.hubspot.changed_at)
            if hubspot_at is None:
                return False, False, False
            salesforce_times = self.salesforce_field_times(spec)
            if salesforce_times:
                return max(salesforce_times) > hubspot_at, False, False
            record_at = _utc(self.salesforce.changed_at)  # a person's last change of the record, if any
            return False, False, record_at is not None and record_at > hubspot_at
        # Salesforce changed it: did HubSpot set the agreed value again later?
        if self.salesforce.holds_copy(spec.salesforce_fields):
            return False, False, False
        salesforce_at = self.salesforce_changed_at(spec, salesforce)
        if salesforce_at is None:
            return False, False, False
        if hubspot_times:
            copied = self.hubspot.holds_copy(spec.hubspot_properties)
            return False, not copied and max(hubspot_times) > salesforce_at, False
        record_at = _utc(self.hubspot.changed_at)
        return False, False, record_at is not None and record_at > salesforce_at

    def canonical_hubspot(self, spec: FieldSpec, raw: Any, salesforce: FieldValue) -> tuple[FieldValue, bool]:
        values = self.hubspot.values
        if spec.kind is ValueKind.OWNER:
            current = salesforce if isinstance(salesforce, str) else None
            return owner_canonical_from_hubspot(_raw_text(raw) or None, self.owners,
                                                current_salesforce_owner_id=current), False
        if spec.kind is ValueKind.STAGE:
            if not _raw_text(raw):
                return None, False
            try:
                key, stage_name = self.stages.to_salesforce(_raw_text(values.get("pipeline")), _raw_text(raw))
            except StageLookupError as exc:
                return Unconvertible(ConversionError(exc.message, category=exc.category)), False
            return f"{key}:{stage_name}", False
        try:
            value = canonical_from_hubspot(spec.kind, raw, spec.value_map, spec.salesforce_field)
        except ValueError as exc:
            return _unconvertible(exc, ErrorCategory.SALESFORCE_VALIDATION), False
        return fit_for_salesforce(spec.kind, value, length=spec.length, scale=spec.scale)

    def missing(self, spec: FieldSpec) -> list[str]:
        missing: list[str] = []
        if self.salesforce.exists and not self.salesforce.missing_is_blank:
            # RecordTypeId does not exist in orgs without record types
            missing += [f"Salesforce {name}" for name in spec.salesforce_fields
                        if name != RECORD_TYPE_FIELD and name not in self.salesforce.values]
        if self.hubspot.exists and not self.hubspot.missing_is_blank:
            missing += [f"HubSpot {name}" for name in spec.hubspot_properties if name not in self.hubspot.values]
        return missing


def decide_record(
    specs: Sequence[FieldSpec],
    salesforce: SideSnapshot,
    hubspot: SideSnapshot,
    shadow: Mapping[str, ShadowValue] | None,
    *,
    stages: StageMap,
    owners: OwnerDirectory,
    origin: Side | None = None,
    salesforce_read_only: Iterable[str] = (),
    pending: Mapping[str, Mapping[str, ShadowValue]] | None = None,
) -> RecordDecision:
    """Every mapped field's decision, as the patches to apply and the link's new shadow.

    `shadow` None means a new link (no shadow yet; a key missing from a stored shadow is the same
    for that field). A field's error (UNMAPPED_VALUE, UNMAPPED_STAGE, OWNER_NOT_FOUND, ...) never
    stops the other fields. `salesforce_read_only`: fields HubSpot values must not be written to;
    HubSpot is reset to Salesforce instead (Amount is added when HasOpportunityLineItem is true).
    The same happens when HubSpot clears a field Salesforce requires (Name, CloseDate, ...).
    Persist the returned shadow only once both patches have been applied.
    `pending`: the link's write-ahead values left by a sync that stopped before saving its shadow, by the
    side they were written to; a field whose value on that side is the pending one counts it as agreed.
    """
    context = _RecordContext(salesforce, hubspot, stages, owners, frozenset(salesforce_read_only))
    out = _Builder()
    for spec in specs:
        if spec.rule is SyncRule.DONT_SYNC:
            continue
        key = spec.key
        old: ShadowInput = shadow[key] if shadow is not None and key in shadow else NO_SHADOW
        missing = context.missing(spec)
        if missing:
            out.warnings.append(FieldWarning(key, f"not synced: {', '.join(missing)} was not read"))
            out.keep_shadow(key, old)
            continue
        sf_value = context.salesforce_value(spec)
        hs_value, truncated = context.hubspot_value(spec, sf_value)
        written_to_hubspot = (pending or {}).get(Side.HUBSPOT.value, {})
        written_to_salesforce = (pending or {}).get(Side.SALESFORCE.value, {})
        if key in written_to_hubspot and written_to_hubspot[key] == hs_value:
            old = written_to_hubspot[key]  # that sync's write reached HubSpot: the value was agreed
        elif key in written_to_salesforce and written_to_salesforce[key] == sf_value:
            old = written_to_salesforce[key]
        rule = SyncRule.TWO_WAY if spec.kind is ValueKind.OWNER else spec.rule
        salesforce_rewritten, hubspot_rewritten, recheck = (
            context.rewritten(spec, old, sf_value, hs_value) if rule is SyncRule.TWO_WAY else (False, False, False))
        if recheck:
            out.recheck.append(key)
        decision = decide_field(
            rule, sf_value, hs_value, old,
            salesforce_changed_at=context.salesforce_changed_at(spec, sf_value),
            hubspot_changed_at=hubspot.changed_at_for(spec.hubspot_properties),
            origin=origin,
            hubspot_copied=hubspot.exists and hubspot.holds_copy(spec.hubspot_properties),
            hubspot_cleared=hubspot.exists and hs_value is None
            and all(name in hubspot.field_changed_at for name in spec.hubspot_properties),
            salesforce_copied=salesforce.exists and salesforce.holds_copy(spec.salesforce_fields),
            salesforce_rewritten=salesforce_rewritten,
            hubspot_rewritten=hubspot_rewritten,
        )
        out.fields[key] = decision
        if decision.conflict:
            out.conflicts.append(key)
        if spec.kind is ValueKind.OWNER:
            _apply_owner(spec, decision, sf_value, context, out)
        elif spec.kind is ValueKind.STAGE:
            _apply_stage(spec, decision, sf_value, context, out)
        else:
            _apply_value(spec, decision, old, sf_value, truncated, context, out)
    return RecordDecision(out.hubspot, out.salesforce, out.shadow, out.fields, tuple(out.conflicts),
                          tuple(out.errors), tuple(out.warnings), tuple(out.recheck))


def _apply_value(spec: FieldSpec, decision: FieldDecision, old: ShadowInput, sf_value: FieldValue, truncated: bool,
                 context: _RecordContext, out: _Builder) -> None:
    key = spec.key
    blocked = decision.blocked
    if blocked is not None:
        out.error(key, blocked.error)
        out.keep_shadow(key, decision.shadow)
        return
    value = decision.value
    if isinstance(value, Unconvertible):  # only with Action.NONE, which writes nothing
        value = None
    read_only = key in context.salesforce_read_only
    cleared_required = spec.required and value is None and context.salesforce.exists
    if decision.action is Action.TO_SALESFORCE and (read_only or cleared_required):
        # Salesforce would ignore or refuse the write (and fail the whole patch): keep HubSpot in step instead.
        why = "cannot be written" if read_only else "cannot be blank"
        out.warnings.append(FieldWarning(key, f"{key} {why} in Salesforce; HubSpot reset to it"))
        if isinstance(sf_value, Unconvertible):
            out.error(key, sf_value.error)
            out.keep_shadow(key, old)
            return
        value = sf_value
        decision = FieldDecision(Action.TO_HUBSPOT, value, value, decision.conflict, Side.SALESFORCE)
    if decision.action is Action.TO_HUBSPOT:
        try:
            out.hubspot[spec.hubspot_property] = to_hubspot(spec.kind, value, spec.value_map, key)
        except ConversionError as exc:
            out.error(key, exc)
            out.keep_shadow(key, old)  # unchanged, so that the next run tries again
            return
    elif decision.action is Action.TO_SALESFORCE:
        out.salesforce[spec.salesforce_field] = to_salesforce(spec.kind, value, salesforce_type=spec.salesforce_type)
        if truncated:
            out.warnings.append(FieldWarning(
                key, f"HubSpot {spec.hubspot_property} is longer than {spec.length} characters; "
                f"truncated in Salesforce {key}"))
    out.keep_shadow(key, decision.shadow)


def _apply_stage(spec: FieldSpec, decision: FieldDecision, sf_value: FieldValue, context: _RecordContext,
                 out: _Builder) -> None:
    key = spec.key
    blocked = decision.blocked
    if blocked is not None:
        out.error(key, blocked.error)
        out.keep_shadow(key, decision.shadow)
        return
    if decision.action is Action.TO_SALESFORCE and decision.value is None and isinstance(sf_value, str):
        # A deal without a stage: StageName is required, so HubSpot gets Salesforce's stage back.
        out.warnings.append(FieldWarning(key, f"{key} cannot be blank in Salesforce; HubSpot reset to it"))
        decision = FieldDecision(Action.TO_HUBSPOT, sf_value, sf_value, decision.conflict, Side.SALESFORCE)
    value = decision.value
    if decision.action is not Action.NONE and isinstance(value, str):
        record_type_key, _, stage_name = value.partition(":")
        # Written as a pair whenever either part changes: a person's racing change of the other part (after
        # the read) must not leave a pipeline with another pipeline's stage, or a record type with a stage name
        # that neither side chose.
        if decision.action is Action.TO_HUBSPOT:
            pipeline_id, stage_id = context.stages.to_hubspot(record_type_key, stage_name)  # checked when read
            hs_values = context.hubspot.values
            if (_raw_text(hs_values.get("pipeline")) != pipeline_id or _raw_text(hs_values.get("dealstage")) != stage_id
                    or not context.hubspot.exists):
                out.hubspot["pipeline"] = pipeline_id
                out.hubspot["dealstage"] = stage_id
        else:
            sf_values = context.salesforce.values
            current_type = canonical_reference(sf_values.get(RECORD_TYPE_FIELD))
            typed = record_type_key != DEFAULT_RECORD_TYPE_KEY
            if (_raw_text(sf_values.get(spec.salesforce_field)) != stage_name or not context.salesforce.exists
                    or (typed and (current_type is None or sf_id_18(current_type) != record_type_key))):
                out.salesforce[spec.salesforce_field] = stage_name
                if typed:
                    out.salesforce[RECORD_TYPE_FIELD] = record_type_key
    out.keep_shadow(key, decision.shadow)


def _apply_owner(spec: FieldSpec, decision: FieldDecision, sf_value: FieldValue, context: _RecordContext,
                 out: _Builder) -> None:
    key = spec.key
    owners = context.owners
    hs_raw = _raw_text(context.hubspot.values.get(spec.hubspot_property)) or None
    current_owner = sf_value if isinstance(sf_value, str) and context.salesforce.exists else None

    def set_hubspot_owner(owner_id: str | None) -> None:
        if _raw_text(owner_id) != _raw_text(hs_raw) or not context.hubspot.exists:
            out.hubspot[spec.hubspot_property] = _raw_text(owner_id)

    if decision.action is Action.TO_HUBSPOT:
        target = decision.value if isinstance(decision.value, str) else None
        match = hubspot_owner_for(target, owners)
        set_hubspot_owner(match.hubspot_owner_id)
        if match.error is not None:
            out.error(key, match.error)
        out.keep_shadow(key, decision.shadow)
        return

    wants_salesforce = decision.action is Action.TO_SALESFORCE or not context.salesforce.exists
    if not wants_salesforce:
        out.keep_shadow(key, decision.shadow)
        return
    chosen = decision.value if isinstance(decision.value, str) else None
    user = owners.salesforce_user(chosen)
    if decision.action is Action.TO_SALESFORCE and user is not None and user.active:
        out.salesforce[spec.salesforce_field] = user.id
        out.keep_shadow(key, user.id)
        return
    # No active Salesforce user for the HubSpot owner: DESIGN 1.5's fallbacks.
    fallback = salesforce_owner_for(hs_raw, owners, current_salesforce_owner_id=current_owner)
    if fallback.error is not None:
        out.error(key, fallback.error)
    if fallback.salesforce_owner_id is not None:
        out.salesforce[spec.salesforce_field] = fallback.salesforce_owner_id
    if fallback.reset_hubspot is not None:
        set_hubspot_owner(fallback.reset_hubspot.hubspot_owner_id)
        if fallback.reset_hubspot.error is not None:
            out.error(key, fallback.reset_hubspot.error)
    in_force = fallback.salesforce_owner_id or current_owner
    out.keep_shadow(key, in_force if in_force is not None else decision.shadow)


__all__ = [
    "NO_SHADOW",
    "OWNER_FIELD",
    "Action",
    "FieldDecision",
    "FieldError",
    "FieldWarning",
    "NoShadow",
    "RecordDecision",
    "ShadowInput",
    "SideSnapshot",
    "decide_field",
    "decide_record",
    "later_side",
]
