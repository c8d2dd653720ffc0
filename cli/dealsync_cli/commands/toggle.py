"""``dealsync toggle company-sync|deal-sync on|off``: the switches of DESIGN 1.1.

Deal sync goes on only when company sync is on and an account import has completed; a refusal
names the missing step and exits 3. Switching deal sync on also provisions the HubSpot set-up and one
pipeline per Salesforce opportunity record type (DESIGN 1.3), which is printed.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from dealsync_cli.errors import CommandError
from dealsync_cli.target import add_target_arguments, connect, refused


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "toggle", help="switch company sync or deal sync on or off", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("setting", choices=["company-sync", "deal-sync"])
    parser.add_argument("state", choices=["on", "off"])
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_target_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dealsync.clients.errors import CrmError
    from dealsync.services.toggles import set_company_sync, set_deal_sync
    from dealsync.store import ToggleRefusedError

    target = connect(args)
    on = args.state == "on"
    result: dict[str, Any] = {"setting": args.setting.replace("-", "_"), "on": on}
    lines: list[str] = []
    try:
        if args.setting == "company-sync":
            toggles = set_company_sync(target.context, on)
        else:
            report = set_deal_sync(target.context, on)
            toggles = report.toggles
            if report.pipelines is not None:
                pipelines = report.pipelines
                result["pipelines"] = [
                    {"record_type_id": mapping.record_type_id, "pipeline_id": mapping.pipeline_id,
                     "label": mapping.label, "stages": len(mapping.stages)} for mapping in pipelines.mappings]
                result["pipelines_created"] = list(pipelines.created)
                result["over_limit"] = list(pipelines.over_limit)
                result["pipeline_limit"] = pipelines.limit
                lines.append(f"pipelines: {len(pipelines.mappings)} synced ({len(pipelines.created)} created), "
                             f"limit {pipelines.limit if pipelines.limit is not None else 'unknown'}")
                lines += [f"  {mapping.record_type_id} -> {mapping.pipeline_id}  {mapping.label}"
                          for mapping in pipelines.mappings]
                if pipelines.over_limit:
                    lines.append(f"  over the limit (not synced, PIPELINE_LIMIT): {', '.join(pipelines.over_limit)}")
    except ToggleRefusedError as error:
        return refused(error, args.json, result)
    except CrmError as error:
        raise CommandError(f"{args.setting} {args.state} failed: {error}") from error
    result["toggles"] = toggles.model_dump(mode="json")
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.setting.replace('-', ' ')}: {args.state}  (company sync {'on' if toggles.company_sync else 'off'}, "
          f"account import {'completed' if toggles.account_import_completed else 'not completed'}, "
          f"deal sync {'on' if toggles.deal_sync else 'off'})")
    for line in lines:
        print(line)
    return 0
