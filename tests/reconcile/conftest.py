"""The reconcile session: a world of its own (reconcile looks at every record, so no other test may add
drift to it), set up as the sync session is: company sync on, an account imported, deal sync on."""

from __future__ import annotations

from dealsync_local.pytest_fixtures import local_world, local_world_options  # noqa: F401 - the session world
from tests.sync.conftest import sync_world  # noqa: F401 - the same set-up as the sync session
