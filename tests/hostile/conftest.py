"""The hostile-input session: a world of its own with deal sync on and one opportunity already synced
(so there is state to keep intact), and the probes every case is checked with: what was enqueued,
the tables, the dead-letter queues, handler crashes and the product's log lines."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from dealsync.models.domain import LinkKind
from dealsync.observability import logger as product_logger
from dealsync.services.context import SyncContext, build_context
from dealsync.services.imports import start_import
from dealsync.services.toggles import set_company_sync, set_deal_sync
from dealsync_local.pytest_fixtures import WorldView, local_world, local_world_options  # noqa: F401 - the session world
from dealsync_local.world import LocalWorld
from tests.hostile.corpus import PII_DESCRIPTION, PII_EMAIL, PII_NAME, Keys

# Bookkeeping a handled message may move: receipts of notifications, API calls counted and rate-limited.
BOOKKEEPING_PREFIXES = ("SEEN#", "USAGE#", "RATELIMIT")

# Planted in hostile payloads: none of it may reach a log line (nor the session id of an Outbound Message).
SECRET_MARKERS = (PII_EMAIL, PII_NAME, PII_DESCRIPTION, "SESSION-SECRET")


def sync_state(tables: dict[str, list[str]]) -> dict[str, list[str]]:
    """The tables without bookkeeping items."""
    def bookkeeping(item: str) -> bool:
        return str(json.loads(item).get("pk", {}).get("S", "")).startswith(BOOKKEEPING_PREFIXES)

    return {name: [item for item in items if not bookkeeping(item)] for name, items in tables.items()}


def table_changes(before: dict[str, list[str]], after: dict[str, list[str]]) -> dict[str, dict[str, list[str]]]:
    """Per table, the items that appeared and disappeared (a changed item is both)."""
    changes = {}
    for name in sorted({*before, *after}):
        old, new = set(before.get(name, [])), set(after.get(name, []))
        if old != new:
            changes[name] = {"added": sorted(new - old), "removed": sorted(old - new)}
    return changes


class LogCapture(logging.Handler):
    """The product's log lines, formatted exactly as its stdout handler writes them (Powertools JSON)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        stream = next((h for h in product_logger._logger.handlers if h.formatter is not None), None)
        self.setFormatter(stream.formatter if stream else logging.Formatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def text_since(self, first: int) -> str:
        return "\n".join(self.lines[first:])


@dataclass(frozen=True)
class Probe:
    """Everything a case must leave as it found it, read at one moment."""

    tables: dict[str, list[str]]
    received: dict[str, int]  # messages the pollers took off each queue (anything enqueued shows here)
    dead_letters: dict[str, int]
    handler_errors: int


@dataclass
class HostileWorld(WorldView):
    context: SyncContext
    org_id: str
    app_id: int
    portal_id: int
    client_secret: str
    hubspot_url: str
    outbound_url: str
    relay_url: str
    opportunity_id: str  # synced: its link, shadow and deal are the state hostile input must not touch
    deal_id: str
    account_id: str
    contact_id: str
    logs: LogCapture = field(default_factory=LogCapture)

    def quiet(self, timeout: float = 30.0) -> None:
        """Wait until no queue holds a message and no handler runs (checked every 50 ms)."""
        self.world.drain(timeout, settle=0.05)

    def begin(self) -> tuple[Probe, int]:
        """A case starts from a quiet world: the probe to compare with, and where its log lines begin."""
        self.quiet()
        return self.probe(), len(self.logs.lines)

    def keys(self) -> Keys:
        return Keys(client_secret=self.client_secret, app_id=self.app_id, portal_id=self.portal_id,
                    org_id=self.org_id, hubspot_url=self.hubspot_url, outbound_url=self.outbound_url,
                    opportunity_id=self.opportunity_id, deal_id=self.deal_id)

    def table_items(self) -> dict[str, list[str]]:
        assert self.world.aws is not None
        dynamodb = self.world.client("dynamodb")
        tables: dict[str, list[str]] = {}
        for logical_id, name in self.world.aws.resources.tables.items():
            items: list[str] = []
            for page in dynamodb.get_paginator("scan").paginate(TableName=name):
                items += [json.dumps(item, sort_keys=True) for item in page["Items"]]
            tables[logical_id] = sorted(items)
        return tables

    def probe(self) -> Probe:
        received: dict[str, int] = {}
        for poller in self.world.pollers.pollers:
            received[poller.queue_url] = received.get(poller.queue_url, 0) + poller.stats.received
        assert self.world.aws is not None
        dead_letter_ids = set(self.world.aws.resources.dead_letter_queues.values())
        dead_letters = {logical_id: depth["visible"] + depth["in_flight"]
                        for logical_id, depth in self.world.queue_depths().items() if logical_id in dead_letter_ids}
        return Probe(tables=self.table_items(), received=received, dead_letters=dead_letters,
                     handler_errors=sum(function.errors for function in self.world.functions))

    def received_on(self, probe: Probe, logical_id: str) -> int:
        return probe.received.get(self.world.queue_url(logical_id), 0)

    def retried(self, logical_id: str) -> int:
        """Messages of the queue its pollers left for another receive."""
        url = self.world.queue_url(logical_id)
        return sum(poller.stats.failed for poller in self.world.pollers.pollers if poller.queue_url == url)

    def max_receives(self, logical_id: str) -> int:
        attributes = self.world.sqs().get_queue_attributes(QueueUrl=self.world.queue_url(logical_id),
                                                           AttributeNames=["RedrivePolicy"])["Attributes"]
        return int(json.loads(attributes["RedrivePolicy"])["maxReceiveCount"])


@pytest.fixture(scope="session")
def hostile_world(local_world: LocalWorld) -> Iterator[HostileWorld]:  # noqa: F811 - the imported fixture
    context = build_context()
    assert local_world.crms is not None and local_world.endpoints is not None
    salesforce = local_world.crms.salesforce.app
    endpoints = local_world.endpoints
    # As an operator starts: company sync, the account import, then deal sync.
    set_company_sync(context, True)
    account_id = salesforce.create("Account", {"Name": "Hostile Test Account"})
    view = WorldView(local_world)
    view.settle()
    start_import(context, "accounts")
    view.settle()
    assert context.store.settings.toggles().account_import_completed, "the account import did not finish"
    set_deal_sync(context, True)
    contact_id = salesforce.create("Contact", {"FirstName": "Test", "LastName": "Contact",
                                               "Email": "contact.hostile@example.com", "AccountId": account_id})
    # What the worker keeps about it (link, shadow, sync errors with their attempt counts) changes whenever
    # the worker touches it again: a hostile message that reaches it shows in the table.
    opportunity_id = salesforce.create("Opportunity", {
        "Name": "Hostile baseline", "StageName": "Prospecting", "CloseDate": "2027-03-31", "Amount": 1000,
        "AccountId": account_id})
    view.settle()
    link = context.store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
    assert link is not None, "the baseline opportunity did not sync"
    world = HostileWorld(
        world=local_world, context=context, org_id=endpoints.salesforce.org_id,
        app_id=int(endpoints.hubspot.app_id), portal_id=int(endpoints.hubspot.portal_id),
        client_secret=endpoints.hubspot.client_secret, hubspot_url=endpoints.api.webhooks["hubspot"],
        outbound_url=endpoints.api.webhooks["salesforce_outbound_message"],
        relay_url=endpoints.api.event_relay_url, opportunity_id=opportunity_id, deal_id=link.hubspot_id,
        account_id=account_id, contact_id=contact_id)
    product_logger._logger.addHandler(world.logs)
    try:
        yield world
    finally:
        product_logger._logger.removeHandler(world.logs)
