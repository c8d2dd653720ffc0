"""Smoke test of the *built* artifact (``sam build`` output), not the source tree.

Imports the built layer's ``dealsync`` and each built function's handler module, then parses every
sample in ``events/`` with the built models. Lambda runs arm64; when this host is another
architecture, packages of the layer with compiled extensions for arm64 are taken from the project
venv instead (the same pinned versions), and the script says which.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / ".aws-sam" / "build"
LAYER = BUILD / "CommonLayer" / "python"

CHECK = r"""
import importlib.util, json, sys
from pathlib import Path
build, events_dir, functions = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
import dealsync
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model
from dealsync.models import events as models
assert Path(dealsync.__file__).resolve().is_relative_to(build.resolve()), dealsync.__file__
for name, handler_file in functions.items():
    spec = importlib.util.spec_from_file_location(f"built_{name}", handler_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.lambda_handler), name
    print(f"  imported built handler {name}")
queue_events = [models.SalesforceQueueEvent, models.HubSpotQueueEvent, models.ImportQueueEvent, models.RollupQueueEvent]


def parse(event):
    if "routeKey" in event:
        request = APIGatewayProxyEventV2Model.model_validate(event)
        body = models.request_body(request)
        if request.rawPath.endswith("/webhooks/hubspot"):
            return f"{len(models.parse_hubspot_batch(body))} HubSpot webhook events"
        return f"Outbound Message with {len(models.parse_outbound_message(body).notifications)} notifications"
    if "detail-type" in event:
        return models.SalesforceChangeEvent.model_validate(event).detail_type
    for model in queue_events:
        try:
            return f"{model.__name__} of {len(model.model_validate(event).Records)} records"
        except ValueError:
            continue
    raise SystemExit("no model parses this event")


for path in sorted(events_dir.glob("*.json")):
    print(f"  parsed {path.name}: {parse(json.loads(path.read_text()))}")
"""

_ELF_MACHINES = {"x86_64": 62, "amd64": 62, "aarch64": 183, "arm64": 183}


def _foreign_binary(path: Path) -> bool:
    """An ELF shared object built for another machine (read from its header, not guessed from its name)."""
    try:
        header = path.read_bytes()[:20]
    except OSError:
        return False
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return False
    machine = int.from_bytes(header[18:20], "little")
    return machine != _ELF_MACHINES.get(platform.machine().lower(), machine)


def _layer_view(target: Path) -> list[str]:
    """Link the built layer's top-level entries into ``target``, leaving out the ones with compiled
    extensions for another architecture (their venv copies, of the same pinned versions, are used)."""
    substituted = []
    for entry in sorted(LAYER.iterdir()):
        binaries = entry.rglob("*.so") if entry.is_dir() else [entry] if entry.suffix == ".so" else []
        if any(_foreign_binary(binary) for binary in binaries):
            substituted.append(entry.name)
            continue
        (target / entry.name).symlink_to(entry)
    return substituted


def main() -> int:
    if not (LAYER / "dealsync").is_dir():
        print(f"no built layer at {LAYER}: run `sam build` first", file=sys.stderr)
        return 1
    functions = {
        path.parent.name: str(path)
        for path in sorted(BUILD.glob("*/app.py"))
    }
    with tempfile.TemporaryDirectory() as tmp:
        substituted = _layer_view(Path(tmp))
        if substituted:
            taken = ", ".join(substituted)
            print(f"host is {platform.machine()}: arm64-compiled packages taken from the venv: {taken}", flush=True)
        env = {**os.environ, "PYTHONPATH": tmp, "POWERTOOLS_TRACE_DISABLED": "true",
               "SYNC_TABLE_NAME": "smoke", "AWS_DEFAULT_REGION": "us-east-1"}
        result = subprocess.run(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-c", CHECK, str(BUILD), str(ROOT / "events"), json.dumps(functions)],
            env=env, check=False, cwd=tmp,
        )
    if result.returncode == 0:
        print("smoke: built artifact imports and parses every event sample")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
