"""``dealsync invoke FUNCTION -e events/FILE.json [--state-dir DIR]``: run one handler once, in this
process, against a running local world: the docker-free stand-in for ``sam local invoke``.

The handler gets the environment the world gives its handlers (from ``DIR/endpoints.json``), the
event from the file and a fresh Lambda context; the result is printed as JSON on stdout (the handler's
own logs go to stderr). A handler error is printed as Lambda reports it (``errorMessage``,
``errorType``, ``stackTrace``) with exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from dealsync_cli.endpoints import WorldNotRunningError, load_endpoints
from dealsync_cli.errors import CommandError
from dealsync_local.invoke import FunctionLoadError, FunctionRegistry, UnknownFunctionError
from dealsync_local.template import STACK_NAME, function_definitions, load_template

DEFAULT_STATE_DIR = ".state"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "invoke",
        help="run one handler on an event file against the running local world",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("function", metavar="FUNCTION",
                        help="logical id in template.yaml (e.g. SfChangeFunction) or functions/ folder name")
    parser.add_argument("-e", "--event", required=True, metavar="FILE", help="event JSON file ('-' for stdin)")
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR, type=Path,
                        help=f"state directory of the running world (default: {DEFAULT_STATE_DIR})")
    parser.set_defaults(func=run)


def _read_event(name: str) -> Any:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read the event file {name}: {exc.strerror or exc}", 2) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{name} is not JSON: {exc}", 2) from exc


def run(args: argparse.Namespace) -> int:
    event = _read_event(args.event)
    try:
        endpoints = load_endpoints(args.state_dir)
    except WorldNotRunningError as exc:
        raise CommandError(str(exc)) from exc

    # Handler modules may read their environment when imported: set it before importing them.
    endpoints.apply_environment()
    template = load_template(Path(endpoints.template)) if endpoints.template else load_template()
    definitions = function_definitions(template, module_overrides=endpoints.resources.functions)
    registry = FunctionRegistry.from_definitions(definitions, stack_name=endpoints.resources.stack_name or STACK_NAME)
    try:
        function = registry.get(args.function)
        # The handler's own output (Powertools logs, prints) goes to stderr: stdout is the result alone.
        with contextlib.redirect_stdout(sys.stderr):
            outcome = function.invoke(event)
    except UnknownFunctionError as exc:
        raise CommandError(str(exc), 2) from exc
    except FunctionLoadError as exc:
        raise CommandError(str(exc)) from exc
    if not outcome.ok:
        print(json.dumps(outcome.error_payload(), indent=2, default=str))
        return 1
    print(json.dumps(outcome.result, indent=2, default=str))
    return 0
