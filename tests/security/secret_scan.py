"""`make secrets`: scan the repository for secrets with detect-secrets against the audited baseline.

Run from the repository root as ``python -m tests.security.secret_scan [--root DIR] [--baseline FILE]``.

* Files scanned: git's own view of the repository, tracked files plus new files git does not ignore
  (``git ls-files --cached --others --exclude-standard``), so ``.venv``, ``.state`` and build output
  never are, and a secret in a file not yet committed is caught before it is.
* ``.secrets.baseline`` lists the findings audited as not secret (``"is_secret": false``): fake test
  tokens, the HubSpot documentation's example secret and the signatures made with it, the emulators'
  fixed local credentials, names of secrets (not values). A finding is matched by file, type and the
  hash of its value, never by line number, so edits elsewhere in a file do not break the check and the
  baseline is never rewritten here. Any finding not in it fails, and so does a baseline entry that is
  unaudited or audited as a real secret. The baseline also keeps one line filter: the envelope fields
  of sample SQS events (``receiptHandle``, ``md5OfBody``, ``md5OfMessageAttributes``,
  ``eventSourceARN``), opaque handles, digests and ARNs that only look random.
* A new false positive (a fake token in a test): add it, audit it, commit both::

      detect-secrets scan --baseline .secrets.baseline $(git ls-files --cached --others --exclude-standard)
      detect-secrets audit .secrets.baseline

  or, for one line, an inline ``# pragma: allowlist secret - why`` comment.
* Output names file, line and detector only: the value of a finding is never printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from detect_secrets.core import baseline as detect_baseline
from detect_secrets.core.scan import scan_file

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BASELINE_NAME = ".secrets.baseline"


@dataclass(frozen=True, order=True)
class Finding:
    filename: str
    line_number: int
    type: str
    hashed_secret: str

    def __str__(self) -> str:
        return f"{self.filename}:{self.line_number}: {self.type}"


@dataclass(frozen=True)
class Baseline:
    accepted: frozenset[tuple[str, str, str]]  # (filename, type, hashed_secret) audited as not secret
    problems: tuple[str, ...]  # entries that are unaudited or audited as real


def repository_files(root: Path) -> list[str]:
    """Paths (relative to root) of the files git tracks or would track, that exist on disk."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607 - git from PATH
        cwd=root, check=True, capture_output=True,
    ).stdout.decode()
    return sorted({name for name in listed.split("\0") if name and (root / name).is_file()})


def load_baseline(path: Path) -> Baseline:
    """Read the baseline and configure detect-secrets with its plugins and filters."""
    loaded = detect_baseline.load_from_file(str(path))
    detect_baseline.load(loaded, str(path.name))
    accepted: set[tuple[str, str, str]] = set()
    problems: list[str] = []
    for filename, entries in loaded["results"].items():
        for entry in entries:
            where = f"{filename}:{entry.get('line_number', '?')}: {entry['type']}"
            if "is_secret" not in entry:
                problems.append(f"{where} is in the baseline but not audited (detect-secrets audit)")
            elif entry["is_secret"]:
                problems.append(f"{where} is audited as a real secret: remove it from the repository and rotate it")
            else:
                accepted.add((filename, entry["type"], entry["hashed_secret"]))
    return Baseline(frozenset(accepted), tuple(problems))


def scan(files: Iterable[str]) -> list[Finding]:
    """Every finding of the configured plugins in these files (paths relative to the working directory)."""
    findings = [
        Finding(secret.filename, secret.line_number or 0, secret.type, secret.secret_hash)
        for filename in files
        for secret in scan_file(filename)
    ]
    return sorted(findings)


def unaccepted(findings: Iterable[Finding], accepted: frozenset[tuple[str, str, str]]) -> list[Finding]:
    return [finding for finding in findings
            if (finding.filename, finding.type, finding.hashed_secret) not in accepted]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT, help="repository to scan")
    parser.add_argument("--baseline", type=Path, default=None, help=f"audited baseline (default ROOT/{BASELINE_NAME})")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    baseline_path: Path = (args.baseline or root / BASELINE_NAME).resolve()
    if not baseline_path.is_file():
        print(f"secrets: no baseline at {baseline_path}", file=sys.stderr)
        return 2
    # detect-secrets records findings by the path it was given: scan relative to the root, as the baseline does.
    os.chdir(root)
    baseline = load_baseline(baseline_path)
    files = [name for name in repository_files(root) if (root / name).resolve() != baseline_path]
    new = unaccepted(scan(files), baseline.accepted)
    for finding in new:
        print(f"secrets: possible secret not in {BASELINE_NAME}: {finding}", file=sys.stderr)
    for problem in baseline.problems:
        print(f"secrets: {problem}", file=sys.stderr)
    if new or baseline.problems:
        print("secrets: FAILED (a false positive: scan into the baseline, audit it, commit it; "
              "a real secret: remove it and rotate it)", file=sys.stderr)
        return 1
    print(f"secrets: {len(files)} file(s) scanned, no secret outside the audited baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
