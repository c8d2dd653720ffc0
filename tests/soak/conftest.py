"""The soak session: a world of its own (empty CRMs, no self-firing schedules), set up by the soak
itself as an operator would (company sync on, accounts linked, deal sync on)."""

from __future__ import annotations

from dealsync_local.log_privacy import log_privacy  # noqa: F401 - the session's logs hold no personal data
from dealsync_local.pytest_fixtures import local_world, local_world_options  # noqa: F401 - the session world
