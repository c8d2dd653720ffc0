"""``dealsync local up``: start the local world (moto, the Salesforce and HubSpot emulators, the HTTP API,
the SQS pollers, the scheduler and the Event Relay sink) and run until interrupted.

It writes ``DIR/endpoints.json`` (where everything is; read it with
``dealsync_cli.endpoints.load_endpoints``), ``DIR/env.json`` (``sam local invoke --env-vars``) and
``DIR/local.env`` (the handlers' environment as shell exports).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from dealsync_cli.errors import CommandError
from dealsync_local.demo import MAX_SIZE
from dealsync_local.world import LocalWorld, WorldStartError

DEFAULT_STATE_DIR = ".state"
DEFAULT_PORT_BASE = 8740


def register(subparsers: Any) -> None:
    local: argparse.ArgumentParser = subparsers.add_parser(
        "local", help="the local world (no Docker, no cloud)", description="The local world (DESIGN §4).")
    commands = local.add_subparsers(dest="local_command", metavar="COMMAND", required=True)
    up = commands.add_parser(
        "up", help="start the local world and run until interrupted", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    up.add_argument("--state-dir", type=Path, default=Path(DEFAULT_STATE_DIR),
                    help=f"where endpoints.json, env files and the local CA go (default: {DEFAULT_STATE_DIR})")
    up.add_argument("--seed", choices=["demo", "none"], default="demo",
                    help="load demo data into the emulators (default: demo)")
    up.add_argument("--size", type=_size, default=100, help="demo opportunities, 100 to 100000 (default: 100)")
    up.add_argument("--demo-seed", type=int, default=7, help="random seed of the demo data (default: 7)")
    up.add_argument("--port-base", type=int, default=DEFAULT_PORT_BASE,
                    help=f"moto on N, Salesforce N+1, HubSpot N+2, HTTP API N+3 (default: {DEFAULT_PORT_BASE}; "
                         "0 picks free ports)")
    up.add_argument("--poll-interval", type=float, default=None, metavar="SECONDS",
                    help="run every rate(...) schedule (e.g. the Salesforce poll) this often instead")
    up.add_argument("--no-schedules", action="store_true", help="do not fire schedules by themselves")
    up.add_argument("--aws-host", default="127.0.0.1",
                    help="address moto listens on (0.0.0.0 to reach it from containers; default: 127.0.0.1)")
    up.add_argument("--container-host", default="host.docker.internal",
                    help="how a container reaches this machine, for env.json (default: host.docker.internal)")
    up.set_defaults(func=run_up)


def _size(text: str) -> int:
    value = int(text)
    if not 100 <= value <= MAX_SIZE:
        raise argparse.ArgumentTypeError(f"--size must be between 100 and {MAX_SIZE}")
    return value


def run_up(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # The world's own messages (handler errors, retries, schedules firing) at INFO unless -v asks for more.
    world_logger = logging.getLogger("localworld")
    if world_logger.getEffectiveLevel() > logging.INFO:
        world_logger.setLevel(logging.INFO)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    world = LocalWorld(
        args.state_dir,
        seed=args.seed,
        size=args.size,
        demo_seed=args.demo_seed,
        port_base=args.port_base or None,
        poll_interval=args.poll_interval,
        run_schedules=not args.no_schedules,
        aws_host=args.aws_host,
        container_host=args.container_host,
    )
    try:
        started = time.monotonic()
        print(f"Starting the dealsync local world in {args.state_dir} ...", flush=True)
        try:
            world.start()
        except WorldStartError as exc:
            raise CommandError(str(exc)) from exc
        print(banner(world, time.monotonic() - started), flush=True)
        while not stop.wait(0.5):
            pass
        print("\nStopping the local world ...", flush=True)
    finally:
        world.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("Stopped.", flush=True)
    return 0


def invocation_examples(world: LocalWorld, events_dir: Path) -> list[tuple[str, Path]]:
    """(function, event file) pairs that fit: an API Gateway event whose routeKey is one of the function's
    routes, or an SQS event from a queue the function polls."""
    examples: list[tuple[str, Path]] = []
    files = sorted(events_dir.glob("*.json")) if events_dir.is_dir() else []
    for function in world.functions:
        definition = function.definition
        route_keys = {route.route_key for route in definition.http_routes}
        queues = {str(source.queue_logical_id) for source in definition.sqs_sources}
        for path in files:
            try:
                event = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(event, dict):
                continue
            records = event.get("Records") or [{}]
            source_arn = str(records[0].get("eventSourceARN", "")) if isinstance(records[0], dict) else ""
            if event.get("routeKey") in route_keys or any(source_arn.endswith(f"-{queue}") for queue in queues):
                examples.append((function.logical_id, path))
                break
    return examples


def banner(world: LocalWorld, seconds: float) -> str:
    """The endpoints and what to try, listing only what works with this template and state."""
    endpoints = world.endpoints
    assert endpoints is not None
    sf, hs, api = endpoints.salesforce, endpoints.hubspot, endpoints.api
    state = world.state_dir
    ca = shlex.quote(sf.ca_file)
    lines = [
        "",
        f"dealsync local world is up ({seconds:.1f} s). Ctrl-C stops it.",
        "",
        f"  Salesforce  {sf.instance_url}   org {sf.org_id}",
        f"              integration token {sf.access_token}",
        f"              person token      {sf.user_access_token}",
        f"  HubSpot     {hs.base_url}   portal {hs.portal_id}, app {hs.app_id}",
        f"              integration token {hs.access_token}",
        f"              person token      {hs.user_access_token}",
        f"  AWS (moto)  {endpoints.aws.endpoint_url}   region {endpoints.aws.region}",
        f"  HTTP API    {api.base_url}",
        f"  CA file     {sf.ca_file}",
        "",
        f"  Written: {state / 'endpoints.json'}, {state / 'env.json'}, {state / 'local.env'}",
    ]
    if world.demo.summary:
        counts = world.demo.summary
        lines.append(f"  Demo data: {counts.get('salesforce.Opportunity', 0)} opportunities, "
                     f"{counts.get('salesforce.Account', 0)} accounts, {counts.get('salesforce.Contact', 0)} contacts "
                     f"in Salesforce; {counts.get('hubspot.owners', 0)} owners in HubSpot.")
    functions = list(world.functions)
    routes = [route for function in functions for route in function.definition.http_routes]
    lines.append("")
    if functions:
        lines.append("  Functions: " + ", ".join(function.logical_id for function in functions))
        for route in routes:
            lines.append(f"    {route.method} {api.base_url}{route.path}")
    else:
        lines.append("  Functions: none yet (template.yaml declares no AWS::Serverless::Function).")
    lines += [
        "",
        "What to try:",
        "",
        "  # the world's status: functions, pollers, schedules, queue depths",
        f"  curl -s {api.control_url}/status",
        "",
        "  # Salesforce, as the person using the CRM (real REST API, local CA)",
        f"  curl -s --cacert {ca} -H 'Authorization: Bearer {sf.user_access_token}' \\",
        f"    '{sf.instance_url}/services/data/v{sf.api_version}/query?q=SELECT+Name,StageName,Amount+FROM+Opportunity"
        "+ORDER+BY+Amount+DESC+LIMIT+5'",
        "",
        "  # HubSpot owners (the same people as the Salesforce users)",
        f"  curl -s --cacert {ca} -H 'Authorization: Bearer {hs.user_access_token}' {hs.base_url}/crm/v3/owners",
        "",
        "  # set dealsync up as an operator would (DESIGN 1.1, 1.8), then watch it:",
        f"  .venv/bin/dealsync toggle company-sync on --state-dir {world.state_dir}",
        f"  .venv/bin/dealsync import accounts --wait --state-dir {world.state_dir}",
        f"  .venv/bin/dealsync import contacts --wait --state-dir {world.state_dir}",
        f"  .venv/bin/dealsync toggle deal-sync on --state-dir {world.state_dir}      # provisions the pipelines",
        f"  .venv/bin/dealsync import opportunities --wait --state-dir {world.state_dir}",
        f"  .venv/bin/dealsync status --state-dir {world.state_dir}",
        "  # from then on, the changes below sync within seconds",
    ]
    route_keys = {route.route_key for route in routes}
    opportunity_ids = world.demo.salesforce_ids.get("Opportunity") or []
    if opportunity_ids:
        lines += [
            "",
            "  # change an opportunity as the person: Salesforce sends a change event (Event Relay sink ->",
            "  # SalesforceChangesQueue)"
            + (" and an Outbound Message (POST /webhooks/salesforce/outbound-message)"
               if "POST /webhooks/salesforce/outbound-message" in route_keys else ""),
            f"  curl -s -X PATCH --cacert {ca} -H 'Authorization: Bearer {sf.user_access_token}' \\",
            "    -H 'Content-Type: application/json' -d '{\"NextStep\": \"Call back on Monday\"}' \\",
            f"    {sf.instance_url}/services/data/v{sf.api_version}/sobjects/Opportunity/{opportunity_ids[0]}",
        ]
    if "POST /webhooks/hubspot" in route_keys:
        lines += [
            "",
            "  # create a deal in HubSpot as the person: the app webhook (signed v3) reaches POST /webhooks/hubspot",
            "  # (in HubSpot's own pipeline it stays in HubSpot; with a 'Salesforce - ...' pipeline and stage id",
            "  # from `dealsync status` it becomes an opportunity)",
            f"  curl -s -X POST --cacert {ca} -H 'Authorization: Bearer {hs.user_access_token}' \\",
            "    -H 'Content-Type: application/json' \\",
            "    -d '{\"properties\": {\"dealname\": \"Tried locally\", \"pipeline\": \"default\", "
            "\"dealstage\": \"appointmentscheduled\"}}' \\",
            f"    {hs.base_url}/crm/v3/objects/deals",
        ]
    for name in sorted(world.scheduler.jobs):
        lines += ["", f"  # fire the {name} schedule now (its message lands on its queue)",
                  f"  curl -s -X POST {api.control_url}/schedules/{name}/run"]
    for function, path in invocation_examples(world, Path("events")):
        receiver = bool(world.functions.get(function).definition.http_routes)
        lines += ["", f"  # run {function} once on {path} (the docker-free `sam local invoke`);",
                  "  # it prints the handler's result (a sample webhook is signed for another org: expect a refusal)"
                  if receiver else "  # it prints the handler's result",
                  f"  .venv/bin/dealsync invoke {function} -e {path} --state-dir {state}"]
    lines += [
        "",
        "  # the handlers' environment in your shell (boto3 then talks to moto)",
        f"  set -a; . {shlex.quote(str(state / 'local.env'))}; set +a",
        "",
    ]
    return "\n".join(lines)

