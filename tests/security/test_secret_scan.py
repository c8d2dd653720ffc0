"""`make secrets` (tests/security/secret_scan.py) on scratch repositories: it fails on a new real-looking
secret, accepts only audited false positives, and scans what git sees (ignored folders never)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BASELINE = PROJECT_ROOT / ".secrets.baseline"
# Built at run time so that this file holds no key itself: the shape of an AWS access key id.
FAKE_KEY = "AKIA" + "QW3RTY7UI0P4SDF6"
LINE = f'aws_access_key_id = "{FAKE_KEY}"\n'


def _baseline(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The project's baseline settings (plugins, filters) with these results."""
    settings: dict[str, Any] = json.loads(BASELINE.read_text(encoding="utf-8"))
    return {**settings, "results": results}


def _entry(filename: str, **audit: Any) -> dict[str, list[dict[str, Any]]]:
    hashed = hashlib.sha1(FAKE_KEY.encode(), usedforsecurity=False).hexdigest()
    return {filename: [{"type": "AWS Access Key", "filename": filename, "hashed_secret": hashed,
                        "is_verified": False, "line_number": 1, **audit}]}


def _repository(tmp_path: Path, files: dict[str, str], results: dict[str, list[dict[str, Any]]]) -> Path:
    subprocess.run(["git", "init", "--quiet", str(tmp_path)], check=True)  # noqa: S603, S607 - git on a temp folder
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / ".secrets.baseline").write_text(json.dumps(_baseline(results)), encoding="utf-8")
    return tmp_path


def _scan(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tests.security.secret_scan", "--root", str(root)],  # noqa: S603
                          cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)


def test_a_new_secret_fails_naming_file_line_and_kind_but_not_the_value(tmp_path: Path) -> None:
    root = _repository(tmp_path, {"src/config.py": "import os\n" + LINE}, {})
    result = _scan(root)
    assert result.returncode == 1
    assert "src/config.py:2: AWS Access Key" in result.stderr
    assert FAKE_KEY not in result.stdout + result.stderr


def test_an_audited_false_positive_passes_even_after_its_line_moves(tmp_path: Path) -> None:
    root = _repository(tmp_path, {"fixture.py": "\n\n" + LINE}, _entry("fixture.py", is_secret=False))
    result = _scan(root)
    assert result.returncode == 0, result.stderr
    assert "1 file(s) scanned" in result.stdout  # the fixture; the baseline itself is never scanned


def test_the_same_value_in_another_file_is_new(tmp_path: Path) -> None:
    root = _repository(tmp_path, {"fixture.py": LINE, "app.py": LINE}, _entry("fixture.py", is_secret=False))
    result = _scan(root)
    assert result.returncode == 1
    assert "app.py:1: AWS Access Key" in result.stderr
    assert "fixture.py" not in result.stderr


@pytest.mark.parametrize(("audit", "message"), [
    ({}, "not audited"),
    ({"is_secret": True}, "audited as a real secret"),
])
def test_a_baseline_entry_must_be_audited_as_not_secret(tmp_path: Path, audit: dict[str, Any], message: str) -> None:
    root = _repository(tmp_path, {"fixture.py": LINE}, _entry("fixture.py", **audit))
    result = _scan(root)
    assert result.returncode == 1
    assert message in result.stderr


def test_files_git_ignores_are_not_scanned(tmp_path: Path) -> None:
    root = _repository(tmp_path, {".gitignore": ".venv/\n", ".venv/lib/site.py": LINE, "ok.py": "x = 1\n"}, {})
    result = _scan(root)
    assert result.returncode == 0, result.stderr
    assert "2 file(s) scanned" in result.stdout  # .gitignore and ok.py


def test_the_committed_baseline_is_fully_audited() -> None:
    results: dict[str, list[dict[str, Any]]] = json.loads(BASELINE.read_text(encoding="utf-8"))["results"]
    unaudited = [f"{name}:{entry['line_number']}" for name, entries in results.items() for entry in entries
                 if entry.get("is_secret") is not False]
    assert unaudited == []
