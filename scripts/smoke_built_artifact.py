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
FOREIGN_ARCH = "aarch64" if platform.machine() not in ("aarch64", "arm64") else None

CHECK = r"""
import importlib.util, json, sys
from pathlib import Path
build, events_dir, functions = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
import dealsync
from dealsync.models import events as models
assert Path(dealsync.__file__).resolve().is_relative_to(build.resolve()), dealsync.__file__
for name, handler_file in functions.items():
    spec = importlib.util.spec_from_file_location(f"built_{name}", handler_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.lambda_handler), name
    print(f"  imported built handler {name}")
parsed = models.parse_event_file_sample
for path in sorted(events_dir.glob("*.json")):
    kind = parsed(json.loads(path.read_text()))
    print(f"  parsed {path.name}: {kind}")
"""


def _layer_view(target: Path) -> list[str]:
    """Link the built layer's top-level entries into ``target``, leaving out foreign compiled ones."""
    substituted = []
    for entry in sorted(LAYER.iterdir()):
        if FOREIGN_ARCH and (
            (entry.is_dir() and any(entry.rglob(f"*{FOREIGN_ARCH}*.so")))
            or (entry.is_file() and FOREIGN_ARCH in entry.name)
        ):
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
            print(f"host is {platform.machine()}: arm64-compiled packages taken from the venv: {taken}")
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
