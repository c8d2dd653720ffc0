"""``dealsync mappings``: field mappings, value maps and stage maps (DESIGN 1.2, 1.3).

  mappings list                                   every mapping in force, its rule, types and problems
  mappings add SF_FIELD HS_PROPERTY [--rule RULE] a custom mapping (rule default: two_way)
  mappings remove SF_FIELD                        a custom mapping and its value map
  mappings set-rule SF_FIELD RULE                 a mapping's sync rule (defaults included)
  mappings values list [SF_FIELD]                 picklist value maps, with the values left unmapped
  mappings values set SF_FIELD SF_VALUE HS_VALUE  map a Salesforce value to a HubSpot option (value or label);
                                                  records waiting with UNMAPPED_VALUE are resynced
  mappings values unset SF_FIELD SF_VALUE         remove a pair (the value then gives UNMAPPED_VALUE)
  mappings stages                                 record type ⇄ pipeline and stage ⇄ stage

Rules: prefer_salesforce_unless_blank, always_salesforce, two_way, dont_sync. A mapping is checked against
the Salesforce describe and the HubSpot deal properties with HubSpot's compatibility table; an incompatible,
read-only or already-mapped pair is refused with the reason (exit 3). New mappings are not retroactive:
an opportunity import applies them to every record, ``dealsync resync RECORD_ID`` to one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from dealsync_cli.errors import CommandError
from dealsync_cli.target import EXIT_REFUSED, add_target_arguments, connect

RULES = ("prefer_salesforce_unless_blank", "always_salesforce", "two_way", "dont_sync")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "mappings", help="field mappings, value maps and stage maps", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="mappings_command", metavar="WHAT", required=True)
    listing = commands.add_parser("list", help="every mapping in force")
    _common(listing, run_list)
    add = commands.add_parser("add", help="add a custom mapping")
    add.add_argument("salesforce_field", metavar="SF_FIELD")
    add.add_argument("hubspot_property", metavar="HS_PROPERTY")
    add.add_argument("--rule", choices=RULES, default="two_way", help="the sync rule (default: two_way)")
    _common(add, run_add)
    remove = commands.add_parser("remove", help="remove a custom mapping")
    remove.add_argument("salesforce_field", metavar="SF_FIELD")
    _common(remove, run_remove)
    rule = commands.add_parser("set-rule", help="change a mapping's sync rule")
    rule.add_argument("salesforce_field", metavar="SF_FIELD")
    rule.add_argument("rule", choices=RULES)
    _common(rule, run_set_rule)
    values = commands.add_parser("values", help="picklist value maps").add_subparsers(
        dest="values_command", metavar="ACTION", required=True)
    values_list = values.add_parser("list", help="value maps and the values they leave unmapped")
    values_list.add_argument("salesforce_field", metavar="SF_FIELD", nargs="?")
    _common(values_list, run_values_list)
    values_set = values.add_parser("set", help="map a Salesforce value to a HubSpot option")
    values_set.add_argument("salesforce_field", metavar="SF_FIELD")
    values_set.add_argument("salesforce_value", metavar="SF_VALUE")
    values_set.add_argument("hubspot_value", metavar="HS_VALUE")
    _common(values_set, run_values_set)
    values_unset = values.add_parser("unset", help="remove a Salesforce value's pair")
    values_unset.add_argument("salesforce_field", metavar="SF_FIELD")
    values_unset.add_argument("salesforce_value", metavar="SF_VALUE")
    _common(values_unset, run_values_unset)
    stages = commands.add_parser("stages", help="record type ⇄ pipeline and stage ⇄ stage")
    _common(stages, run_stages)


def _common(parser: argparse.ArgumentParser, func: Callable[[argparse.Namespace], int]) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_target_arguments(parser)
    parser.set_defaults(func=func)


def _edit(args: argparse.Namespace, action: str, change: Callable[[Any], Any]) -> tuple[Any, int]:
    """Run an edit on the target; a refusal is printed (and as JSON with --json) and gives exit 3."""
    from dealsync.clients.errors import CrmError
    from dealsync.mapping.compat import MappingRefused

    target = connect(args)
    try:
        return change(target.context), 0
    except MappingRefused as refusal:
        if args.json:
            print(json.dumps({"action": action, "refused": True, "message": refusal.reason}))
        print(f"dealsync: refused. {refusal.reason}", file=sys.stderr)
        return None, EXIT_REFUSED
    except CrmError as error:
        raise CommandError(f"mappings {action} failed: {error}") from error


def _print(args: argparse.Namespace, document: dict[str, Any], lines: list[str]) -> None:
    print(json.dumps(document) if args.json else "\n".join(lines))


# --- mappings -----------------------------------------------------------------------------------------

def _mapping_line(view: Any) -> str:
    origin = "default" if view.builtin else "custom"
    types = f"{view.salesforce_type or '?'} ⇄ {view.hubspot_field_type or '?'}"
    line = f"  {view.salesforce_field:<28} {view.hubspot_property:<28} {view.rule!s:<31} {origin:<8} {types}"
    return line + (f"  PROBLEM: {view.problem}" if view.problem else "")


def run_list(args: argparse.Namespace) -> int:
    from dealsync.services.mappings import list_mappings

    views, status = _edit(args, "list", list_mappings)
    if views is None:
        return status
    lines = [f"  {'SALESFORCE FIELD':<28} {'HUBSPOT PROPERTY':<28} {'RULE':<31} {'ORIGIN':<8} TYPES"]
    lines += [_mapping_line(view) for view in views]
    _print(args, {"mappings": [view.as_json() for view in views]}, lines)
    return 0


def _mapping_edit(args: argparse.Namespace, action: str, change: Callable[[Any], Any],
                  describe: Callable[[Any], list[str]]) -> int:
    done, status = _edit(args, action, change)
    if done is None:
        return status
    document: dict[str, Any] = {"action": action, "mapping": done.mapping.model_dump(mode="json")}
    lines = describe(done.mapping)
    if done.value_map is not None:
        document["value_map"] = done.value_map.as_json()
        lines += _value_map_lines(done.value_map)
    _print(args, document, lines)
    return 0


def run_add(args: argparse.Namespace) -> int:
    from dealsync.models.domain import SyncRule
    from dealsync.services.mappings import add_mapping

    return _mapping_edit(args, "add", lambda context: add_mapping(
        context, args.salesforce_field, args.hubspot_property, SyncRule(args.rule)), lambda mapping: [
        f"mapped {mapping.salesforce_field} ⇄ {mapping.hubspot_property} ({mapping.rule})",
        "  in force from the next change on either side; `dealsync import opportunities` applies it to every",
        "  record, `dealsync resync RECORD_ID` to one"])


def run_remove(args: argparse.Namespace) -> int:
    from dealsync.services.mappings import remove_mapping

    return _mapping_edit(args, "remove", lambda context: remove_mapping(context, args.salesforce_field),
                         lambda mapping: [f"removed {mapping.salesforce_field} ⇄ {mapping.hubspot_property} "
                                          "(and its value map)"])


def run_set_rule(args: argparse.Namespace) -> int:
    from dealsync.models.domain import SyncRule
    from dealsync.services.mappings import set_rule

    return _mapping_edit(args, "set-rule", lambda context: set_rule(context, args.salesforce_field,
                                                                    SyncRule(args.rule)),
                         lambda mapping: [f"{mapping.salesforce_field} ⇄ {mapping.hubspot_property}: "
                                          f"rule {mapping.rule}"])


# --- value maps ---------------------------------------------------------------------------------------

def _value_map_lines(view: Any) -> list[str]:
    lines = [f"value map {view.salesforce_field} ⇄ {view.hubspot_property}:"]
    lines += [f"  {sf_value!r} ⇄ {hs_value!r}{'  (default)' if view.defaults.get(sf_value) == hs_value else ''}"
              for sf_value, hs_value in view.pairs.items()]
    if not view.pairs:
        lines.append("  (no pairs)")
    if view.unmapped_salesforce:
        lines.append("  unmapped Salesforce values (UNMAPPED_VALUE when met): "
                     + ", ".join(repr(value) for value in view.unmapped_salesforce))
    if view.unmapped_hubspot:
        lines.append("  unmapped HubSpot options (UNMAPPED_VALUE when met): "
                     + ", ".join(repr(value) for value in view.unmapped_hubspot))
    return lines


def run_values_list(args: argparse.Namespace) -> int:
    from dealsync.services.mappings import list_value_maps

    views, status = _edit(args, "values list", lambda context: list_value_maps(context, args.salesforce_field))
    if views is None:
        return status
    lines = [line for view in views for line in _value_map_lines(view)] or ["no picklist mappings"]
    _print(args, {"value_maps": [view.as_json() for view in views]}, lines)
    return 0


def _value_map_edit(args: argparse.Namespace, action: str, change: Callable[[Any], Any]) -> int:
    done, status = _edit(args, action, change)
    if done is None:
        return status
    lines = _value_map_lines(done.value_map)
    if done.resynced:
        lines.append(f"resync: {done.resynced} record(s) waiting with UNMAPPED_VALUE queued again")
    elif done.resync_note:
        lines.append(f"resync: {done.resync_note}")
    _print(args, {"action": action, **done.as_json()}, lines)
    return 0


def run_values_set(args: argparse.Namespace) -> int:
    from dealsync.services.mappings import set_value

    return _value_map_edit(args, "values set", lambda context: set_value(
        context, args.salesforce_field, args.salesforce_value, args.hubspot_value))


def run_values_unset(args: argparse.Namespace) -> int:
    from dealsync.services.mappings import unset_value

    return _value_map_edit(args, "values unset", lambda context: unset_value(
        context, args.salesforce_field, args.salesforce_value))


# --- stages -------------------------------------------------------------------------------------------

def run_stages(args: argparse.Namespace) -> int:
    from dealsync.services.mappings import stage_maps

    view, status = _edit(args, "stages", stage_maps)
    if view is None:
        return status
    lines: list[str] = []
    for pipeline in view.pipelines:
        name = f" ({pipeline.record_type_name})" if pipeline.record_type_name else ""
        missing = "  NOT FOUND IN HUBSPOT" if pipeline.pipeline_found is False else ""
        lines.append(f"record type {pipeline.record_type_id}{name} ⇄ pipeline {pipeline.pipeline_id} "
                     f"{pipeline.label!r}{missing}")
        lines += [f"  {stage.salesforce_stage:<28} ⇄ {stage.hubspot_stage_id:<14} "
                  f"{stage.hubspot_label if stage.hubspot_label is not None else '(not in the HubSpot pipeline)'}"
                  for stage in pipeline.stages]
    if not view.pipelines:
        lines.append("no stage maps yet: they are made when deal sync is switched on")
    lines += [f"problem: {problem}" for problem in view.problems]
    _print(args, {"pipelines": [pipeline.as_json() for pipeline in view.pipelines], "problems": view.problems},
           lines)
    return 1 if view.problems else 0
