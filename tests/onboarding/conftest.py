"""The onboarding session: a world of its own with the demo org (100 opportunities, three record types)
and every toggle off, so the seed's order — company sync, account import, deal sync, opportunity
import — can be walked as an operator walks it."""

from __future__ import annotations

from typing import Any

import pytest

from dealsync_local.log_privacy import log_privacy  # noqa: F401 - the session's logs hold no personal data
from dealsync_local.pytest_fixtures import local_world  # noqa: F401 - the session world


@pytest.fixture(scope="session")
def local_world_options() -> dict[str, Any]:
    return {"seed": "demo", "size": 100}
