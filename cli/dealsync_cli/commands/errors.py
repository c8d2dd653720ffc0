"""``dealsync errors [--category C] [--json]``, ``dealsync errors export FILE.csv``: the sync errors,
like HubSpot's Sync Health.

Without ``--category``: how many records each category holds (every category, zeros included).
With it: that category's records, a page at a time (``--limit``, default 50; the next page with
``--after CURSOR``, printed under the page), each with its id, record type, attempts, first and last
seen, and the message naming the cause. ``export FILE.csv`` writes every error (or one category's) to a
CSV file, one row per record and category. Records clear from here when they sync; ``dealsync resync``
puts them back on their queues.

Exit status: 0, 2 an unknown category (the message lists them), 1 an error (e.g. the world is not
running, the file cannot be written).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from dealsync_cli.errors import CommandError
from dealsync_cli.target import EXIT_USAGE, add_target_arguments, connect

DEFAULT_LIMIT = 50
CSV_COLUMNS = ("category", "record_type", "record_id", "message", "first_seen", "last_seen", "attempts",
               "related_ids")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "errors", help="sync errors by category (Sync Health); export them to CSV", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    # One parser (not a sub-command) so every option may come before or after `export FILE.csv`.
    parser.add_argument("action", nargs="?", choices=["export"], help="export: write the errors to FILE.csv")
    parser.add_argument("file", nargs="?", type=Path, metavar="FILE.csv", help="with export: the CSV file")
    parser.add_argument("--category", metavar="C", help="only this category (its records, a page at a time)")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, metavar="N",
                        help=f"with --category: records per page (default: {DEFAULT_LIMIT})")
    parser.add_argument("--after", metavar="CURSOR", help="with --category: the page after this cursor")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_target_arguments(parser)
    parser.set_defaults(func=run)


def category_argument(text: str, as_json: bool) -> Any:
    """The ErrorCategory named on the command line; an unknown one exits 2 with the list."""
    from dealsync.services.resync import parse_category

    try:
        return parse_category(text)
    except ValueError as error:
        if as_json:
            print(json.dumps({"refused": True, "message": str(error)}))
        raise CommandError(str(error), EXIT_USAGE) from error


def error_json(error: Any) -> dict[str, Any]:
    data: dict[str, Any] = error.model_dump(mode="json")
    return data


def render_counts(target: str, counts: dict[str, int]) -> list[str]:
    total = sum(counts.values())
    holding = sum(1 for count in counts.values() if count)
    lines = [f"sync errors ({target}): {total} in {holding} categor{'y' if holding == 1 else 'ies'}"]
    lines += [f"  {category:<28}{count:>7}" for category, count in counts.items()]
    if total:
        lines.append("records of one category: dealsync errors --category C; queue them again: dealsync resync")
    return lines


def render_page(category: str, count: int, errors: list[dict[str, Any]], following: str | None) -> list[str]:
    if not errors:
        return [f"{category}: no records"]
    shown = f"{len(errors)} shown" + (", more follow" if following else "")
    lines = [f"{category}: {count} record{'s' if count != 1 else ''} ({shown})",
             f"  {'RECORD':<20}{'TYPE':<13}{'ATTEMPTS':>8}  {'FIRST SEEN':<21}{'LAST SEEN':<21}MESSAGE"]
    for error in errors:
        lines.append(f"  {error['record_id']:<20}{error['record_type']:<13}{error['attempts']:>8}  "
                     f"{error['first_seen'][:19].replace('T', ' ') + 'Z':<21}"
                     f"{error['last_seen'][:19].replace('T', ' ') + 'Z':<21}{error['message']}")
    if following:
        lines.append(f"next page: dealsync errors --category {category} --after '{following}'")
    return lines


def run(args: argparse.Namespace) -> int:
    if args.action == "export":
        if args.file is None:
            raise CommandError("export needs the CSV file to write: dealsync errors export FILE.csv", EXIT_USAGE)
        return run_export(args)
    category = category_argument(args.category, args.json) if args.category else None
    if args.limit < 1:
        raise CommandError("--limit must be at least 1", EXIT_USAGE)
    if args.after and category is None:
        raise CommandError("--after needs --category", EXIT_USAGE)
    target = connect(args)
    store = target.context.store
    if category is None:
        counts = {str(name): count for name, count in store.errors.counts().items()}
        if args.json:
            print(json.dumps({"target": target.description, "total": sum(counts.values()), "counts": counts}))
        else:
            print("\n".join(render_counts(target.description, counts)))
        return 0
    errors, following = store.errors.page(category, args.limit, args.after)
    rows = [error_json(error) for error in errors]
    count = store.errors.count(category)
    if args.json:
        print(json.dumps({"category": str(category), "count": count, "errors": rows, "next": following}))
    else:
        print("\n".join(render_page(str(category), count, rows, following)))
    return 0


def csv_row(error: Any) -> dict[str, Any]:
    return {"category": str(error.category), "record_type": error.record_type, "record_id": error.record_id,
            "message": error.message, "first_seen": error.first_seen.isoformat(),
            "last_seen": error.last_seen.isoformat(), "attempts": error.attempts,
            "related_ids": json.dumps(error.related_ids, sort_keys=True) if error.related_ids else ""}


def run_export(args: argparse.Namespace) -> int:
    category = category_argument(args.category, args.json) if args.category else None
    if not args.file.parent.is_dir():
        raise CommandError(f"cannot write {args.file}: {args.file.parent} is not a directory")
    target = connect(args)
    store = target.context.store
    rows = 0
    try:
        with args.file.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for error in store.errors.iter_all([category] if category is not None else None):
                writer.writerow(csv_row(error))
                rows += 1
    except OSError as error:
        raise CommandError(f"cannot write {args.file}: {error.strerror or error}") from error
    if args.json:
        print(json.dumps({"file": str(args.file), "rows": rows, "category": str(category) if category else None}))
    else:
        print(f"{rows} sync error{'s' if rows != 1 else ''} written to {args.file}", file=sys.stdout)
    return 0
