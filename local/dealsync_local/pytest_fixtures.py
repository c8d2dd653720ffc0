"""pytest fixtures for tests that run against the local world.

Use them from a ``conftest.py``::

    from dealsync_local.pytest_fixtures import local_world, local_world_options  # noqa: F401

``local_world`` is session-scoped: one world (real ``template.yaml``, real handlers, no demo data, no
self-firing schedules, 1 s retries) for the whole session, in a temporary state directory, stopped at
the end. To change how it starts, import ``local_world`` alone and define ``local_world_options``
yourself (session-scoped, returning keyword arguments of :class:`LocalWorld`)::

    from dealsync_local.pytest_fixtures import local_world  # noqa: F401

    @pytest.fixture(scope="session")
    def local_world_options() -> dict[str, Any]:
        return {"seed": "demo", "size": 200}

Then ``local_world.drain()`` waits until the polled queues are empty and no handler runs;
``local_world.endpoints`` has every URL and token; ``local_world.crms.salesforce.app`` /
``.hubspot.app`` are the emulators' Python APIs (act as the person using the CRM).

Notes:
* moto's state is per process. ``mock_aws()`` resets it: do not use it in a session that also uses
  the world, or give those tests their own process.
* Define the fixture in one conftest per session (the top-level one is best): two conftests that
  both import it start two worlds, which then share queue and table names.
* Every session with a world also imports the log privacy check beside ``local_world`` (see
  :mod:`dealsync_local.log_privacy`): at the end of the session it fails if a log record of the
  handlers holds an e-mail address, a person's name or a description from the emulators::

      from dealsync_local.log_privacy import log_privacy  # noqa: F401 - the session's logs hold no personal data
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dealsync_local.hubspot import HubSpotEmulator
from dealsync_local.salesforce import SalesforceEmulator
from dealsync_local.world import LocalWorld

# Fast local retries and short polls: tests wait seconds, not minutes.
TEST_DEFAULTS: dict[str, Any] = {
    "seed": "none",
    "retry_backoff_seconds": 1,
    "poll_wait_seconds": 1,
    "run_schedules": False,
}


def start_world(state_dir: Path, **options: Any) -> LocalWorld:
    """Start a world with the test defaults (overridden by ``options``)."""
    return LocalWorld(state_dir, **{**TEST_DEFAULTS, **options}).start()


@pytest.fixture(scope="session")
def local_world_options() -> dict[str, Any]:
    """Keyword arguments for the session's :class:`LocalWorld`; override to change them."""
    return {}


@pytest.fixture(scope="session")
def local_world(tmp_path_factory: pytest.TempPathFactory, local_world_options: dict[str, Any]) -> Iterator[LocalWorld]:
    """The session's local world (see the module docstring)."""
    world = start_world(tmp_path_factory.mktemp("local-world"), **local_world_options)
    try:
        yield world
    finally:
        world.stop()


@dataclass
class WorldView:
    """A test's handle on a running world: the two emulators as the person uses them, and ``settle()``."""

    world: LocalWorld

    @property
    def salesforce(self) -> SalesforceEmulator:
        assert self.world.crms is not None
        return self.world.crms.salesforce.app

    @property
    def hubspot(self) -> HubSpotEmulator:
        assert self.world.crms is not None
        return self.world.crms.hubspot.app

    def settle(self, timeout: float = 30.0) -> None:
        """Let every notification reach dealsync and every polled queue drain (twice: a sync's own
        writes notify again)."""
        for _ in range(2):
            self.salesforce.flush_notifications(timeout)
            self.hubspot.flush_webhooks(timeout)
            self.world.drain(timeout)
