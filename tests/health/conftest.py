"""The sync-health session: a world of its own, set up as the sync session sets it up (company sync on,
an account linked, deal sync on, two contacts), where records fail, are listed by ``dealsync errors``
and come back with ``dealsync resync``, and CRM faults are injected to watch the retries."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from typing import Any

import pytest

from dealsync_cli.main import main
from dealsync_local.pytest_fixtures import local_world, local_world_options  # noqa: F401 - the session world
from tests.sync.conftest import SyncWorld, sync_world  # noqa: F401 - the same set-up, in this session's world

EMF_PREFIX = '{"_aws"'  # the handlers run in this process and print their metrics on the same stdout


@dataclass
class Result:
    status: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.out.splitlines() if line.strip() and not line.startswith(EMF_PREFIX)]

    def json(self) -> Any:
        assert len(self.lines) == 1, f"expected one JSON document, got {self.lines} (stderr: {self.err})"
        return json.loads(self.lines[0])


@dataclass
class Health:
    world: SyncWorld

    def cli(self, *args: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main([*args, "--state-dir", str(self.world.world.state_dir)])
        return Result(status, out.getvalue(), err.getvalue())

    def new_opportunity(self, name: str, **fields: object) -> str:
        values = {"Name": name, "StageName": "Prospecting", "CloseDate": "2027-03-31", "Amount": 48000,
                  "Type": "New Business", "AccountId": self.world.account_id, **fields}
        opportunity_id: str = self.world.salesforce.create("Opportunity", values)
        return opportunity_id

    def salesforce_user(self, email: str, alias: str) -> str:
        loaded = self.world.salesforce.load({"User": [{
            "FirstName": "Test", "LastName": alias, "Email": email, "Username": f"{alias}@example.com.local",
            "IsActive": True, "Alias": alias, "TimeZoneSidKey": "America/New_York", "LocaleSidKey": "en_US",
            "EmailEncodingKey": "UTF-8", "LanguageLocaleKey": "en_US"}]})
        return str(loaded["User"][0])


@pytest.fixture(scope="session")
def health(sync_world: SyncWorld) -> Health:  # noqa: F811 - the imported fixture
    return Health(sync_world)
