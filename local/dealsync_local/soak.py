"""The reliability soak (issue 9): people change records in both CRMs at once while everything that can
go wrong does, then, once the world is quiet, the result is checked and printed as a table.

    python -m dealsync_local.soak --seed 7 --operations 2000

What happens:

* A local world (the real handlers, template.yaml as it is) with two opportunity record types, three
  owners known to both CRMs, two linked accounts, four linked contacts, company and deal sync on.
* ``users`` people act concurrently, each with its own random stream derived from the seed, through the
  emulators' person-facing interfaces (Salesforce's Python API, HubSpot's REST API with the person's
  token), so every change fires the change events, Outbound Messages and webhooks the real CRMs would:
  create, update every mapped field, change stage and record type (pipeline), owner, account (primary
  company), add and remove contact roles (contact associations), delete and undelete (restore).
* Meanwhile the integration's calls meet injected 5xx, 429 and dropped connections plus latency (the
  status changes every phase), HubSpot's own rate limits, webhooks and Salesforce notifications are
  duplicated and delivered out of order, and workers die between a CRM write and the link write
  (:mod:`dealsync.faultpoints`) every ``crash_every``-th time they get there.
* When the people are done, the sync catches up with the faults still on; then the faults stop, the
  scheduled poll runs once (the safety net runs every five minutes in production), the world settles
  again, and the invariants are checked. Each worker runs one invocation at a time (``--workers`` raises
  it, but moto's SQS is not thread-safe under concurrent receives: see ``WORKERS``).

Invariants (a failure of any makes the exit status 1):

* duplicates: no opportunity with two deals, no deal with two opportunities;
* unpaired records: every live opportunity has a live deal and every live deal in a Salesforce pipeline
  has an opportunity — except an opportunity whose deal a person deleted in HubSpot and that nobody
  changed in Salesforce since (DESIGN 1.6: it syncs again as a new deal on its next change);
* orphan links: every active link names a live opportunity and a live deal that point at each other,
  and both items of the link agree;
* mismatched fields: both sides agree on every two-way field of every pair (name, amount, close date,
  type, description, stage with record type/pipeline, owner, account/company, contact roles);
* lost updates: every field holds the value of the last person write to it (DESIGN 1.2, two_way: the
  most recent change wins). The oracle is exact where it can be: when the last write was made by a
  person who could already see the other side's last write to that field (the value they saw before
  writing equals it), it must win. When the two writes raced (the other side's write had not reached
  the writer yet), either may win — DESIGN decides by modification time, and Salesforce's is the
  record's SystemModstamp, which the sync's own writes move too — so both are accepted, but no older
  value, and no invented one. So are both when a Salesforce write came less than a second after
  HubSpot's: Salesforce keeps change times to the second, so by DESIGN's times it may be the earlier one.
  A delete, undelete or restore starts the pair afresh: only writes after
  the last of them are checked (writes to a deal that was then deleted are legitimately lost) — except a
  Salesforce delete and undelete that the deal outlived (the opportunity ends paired with the deal it had
  when deleted: the sync never archived it), which leaves the pair's writes as they were;
* no echoes: dealsync never wrote a value back to the side it came from. The emulators count every
  update that changed nothing, by caller, and call the integration's an echo when a field it rewrote was
  last set by a person on that side (the value came from there and bounced back). The integration's
  other unchanged writes — a field it set itself written again with the same value: an idempotent replay
  after a crash or a refused batch, or both directions' workers writing the same value at the same
  moment — are counted and listed, not failed on;
* dead-letter queues are empty (each message left there is printed with the record ids it names).

Reproducible by seed: the people's operations (kinds, targets among their own records, values), the
injected faults and the duplicate/shuffle decisions come from the seed. The exact interleaving with the
sync's threads is, as in any concurrent soak, up to the scheduler.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from dealsync import faultpoints
from dealsync.clients.credentials import HubSpotCredentials
from dealsync.clients.errors import CrmError
from dealsync.clients.hubspot import HubSpotClient
from dealsync.models.domain import LinkKind, LinkStatus, Side, StageMapping
from dealsync.services.contacts import link_contacts
from dealsync.services.context import SyncContext, build_context
from dealsync.services.deal_sync import DELETED_IN_HUBSPOT
from dealsync.services.records import DEAL_ID_FIELD, DEAL_TO_CONTACT, DEAL_TO_PRIMARY_COMPANY, UNIQUE_PROPERTY
from dealsync.services.toggles import set_company_sync, set_deal_sync
from dealsync_local.emulator import Faults
from dealsync_local.hubspot import HubSpotEmulator
from dealsync_local.hubspot.common import COMPANIES, CONTACTS, DEALS, HubSpotError
from dealsync_local.pytest_fixtures import WorldView, start_world
from dealsync_local.salesforce import SalesforceEmulator
from dealsync_local.salesforce.errors import RecordError
from dealsync_local.world import LocalWorld

RECORD_TYPES = {
    "Enterprise": ["Prospecting", "Qualification", "Proposal/Price Quote", "Negotiation/Review", "Closed Won",
                   "Closed Lost"],
    "Renewal": ["Qualification", "Negotiation/Review", "Closed Won", "Closed Lost"],
}
OWNERS = [("Pat", "Rivera", "pat.rivera@soak.example"), ("Lee", "Chen", "lee.chen@soak.example")]
ACCOUNTS = {"Acme Corp": [("Ada", "Lovelace"), ("Alan", "Turing")],
            "Globex": [("Grace", "Hopper"), ("Edsger", "Dijkstra")]}
SALESFORCE_TYPES = {"New Business": "newbusiness", "Existing Business": "existingbusiness"}
FAULT_STATUSES = (503, 429, 500, 502)
FIELDS = ("name", "amount", "closedate", "type", "description", "stage", "owner", "company")
POLL_SCHEDULE = "SalesforcePollSchedule"
REDELIVERY_CAP_SECONDS = 4.0
# Concurrent invocations per function and pollers per queue in the command's world. One, as in the test
# sessions: with more, moto's SQS backend (not thread-safe) loses track of messages under concurrent
# ReceiveMessage calls, which the soak would then blame on dealsync.
WORKERS = 1

# Operation kinds and their weights: every mapped field, stage and record type, owner, associations,
# deletion and its undoing, on both sides.
OPERATION_WEIGHTS: dict[str, int] = {
    "sf_create": 7, "hs_create": 5,
    "sf_update_fields": 14, "hs_update_fields": 14,
    "sf_change_stage": 6, "hs_change_stage": 6,
    "sf_change_record_type": 3, "hs_change_pipeline": 3,
    "sf_change_owner": 3, "hs_change_owner": 3,
    "sf_change_account": 2, "hs_change_company": 2,
    "sf_add_contact_role": 4, "sf_remove_contact_role": 3,
    "hs_add_contact": 4, "hs_remove_contact": 3,
    "sf_delete": 2, "sf_undelete": 2, "hs_delete": 2, "hs_restore": 1,
}

logger = logging.getLogger("localworld.soak")


@dataclass(frozen=True)
class SoakOptions:
    seed: int = 1
    operations: int = 2000
    users: int = 4
    error_rate: float = 0.05  # share of the integration's calls answered with the phase's status
    timeout_rate: float = 0.01  # share of the integration's calls whose connection is dropped
    timeout_hold_seconds: float = 0.5
    latency_ms: float = 10.0
    duplicate_rate: float = 0.2  # share of webhooks and Salesforce notifications delivered twice
    crash_every: int = 10  # a worker dies at every N-th crash point it reaches
    phases: int = 8  # the injected status changes this many times over the run
    think_seconds: float = 0.01  # the most a person pauses between two operations
    settle_timeout: float = 1800.0


# --- the people's records and what they wrote ---------------------------------------------------


@dataclass
class Pair:
    """One record a person created, known by the ids seen so far on each side."""

    opportunity_id: str | None = None
    deal_id: str | None = None
    deleted_in_salesforce: bool = False
    deleted_in_hubspot: bool = False  # a deal the person archived (restorable)


@dataclass(frozen=True)
class Write:
    at: float  # time.monotonic()
    side: Side
    opportunity_id: str | None
    deal_id: str | None
    field: str  # one of FIELDS, or "contact:<Salesforce contact id>"
    value: str | None  # canonical
    seen_before: str | None  # canonical value the person saw on their side just before writing


@dataclass(frozen=True)
class Lifecycle:
    at: float
    kind: str  # sf_delete | sf_undelete | hs_delete | hs_restore
    opportunity_id: str | None
    deal_id: str | None


@dataclass
class Journal:
    """Everything the people did, appended from their threads."""

    writes: list[Write] = field(default_factory=list)
    lifecycle: list[Lifecycle] = field(default_factory=list)
    operations: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # chosen but impossible now (e.g. not synced yet)
    refused: Counter[str] = field(default_factory=Counter)  # the CRM refused the person's write
    deal_to_opportunity: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wrote(self, write: Write) -> None:
        with self.lock:
            self.writes.append(write)
            if write.deal_id and write.opportunity_id:
                self.deal_to_opportunity[write.deal_id] = write.opportunity_id

    def happened(self, event: Lifecycle) -> None:
        with self.lock:
            self.lifecycle.append(event)
            if event.deal_id and event.opportunity_id:
                self.deal_to_opportunity[event.deal_id] = event.opportunity_id


# --- canonical values ------------------------------------------------------------------------------


def canonical_amount(value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        return format(Decimal(str(value)).normalize(), "f")
    except InvalidOperation:
        return f"invalid:{value}"


def canonical_date(value: Any) -> str | None:
    """``YYYY-MM-DD`` from a Salesforce date, an ISO-8601 datetime or epoch milliseconds."""
    if value is None or value == "":
        return None
    text = str(value)
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC).date().isoformat()
    return text[:10]


def canonical_text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


@dataclass
class Directory:
    """The world's fixed cast, both sides' ids of it, and the stage maps."""

    record_types: dict[str, str]  # name -> Salesforce record type id (18)
    stage_maps: dict[str, StageMapping]  # record type id -> mapping
    user_emails: dict[str, str]  # Salesforce user id -> e-mail
    owner_emails: dict[str, str]  # HubSpot owner id -> e-mail
    accounts: dict[str, str]  # Salesforce account id -> HubSpot company id
    contacts: dict[str, str]  # Salesforce contact id -> HubSpot contact id

    @property
    def sf_users(self) -> list[str]:
        return sorted(self.user_emails)

    @property
    def hs_owners(self) -> list[str]:
        return sorted(self.owner_emails)

    def account_of_company(self, company_id: str | None) -> str | None:
        if company_id is None:
            return None
        return next((account for account, company in self.accounts.items() if company == company_id),
                    f"unlinked-company:{company_id}")

    def contact_of(self, hubspot_contact_id: str) -> str:
        return next((contact for contact, hs in self.contacts.items() if hs == hubspot_contact_id),
                    f"unlinked-contact:{hubspot_contact_id}")

    def stage_of_deal(self, pipeline: str | None, stage_id: str | None) -> str | None:
        for record_type_id, mapping in self.stage_maps.items():
            if mapping.pipeline_id == pipeline:
                name = next((n for n, sid in mapping.stages.items() if sid == stage_id), f"unknown-stage:{stage_id}")
                return f"{record_type_id}|{name}"
        return None if pipeline is None else f"unsynced-pipeline:{pipeline}"

    def synced_pipelines(self) -> set[str]:
        return {mapping.pipeline_id for mapping in self.stage_maps.values()}


def salesforce_fields(record: Mapping[str, Any], directory: Directory) -> dict[str, str | None]:
    """An opportunity's two-way fields, canonical."""
    record_type = record.get("RecordTypeId")
    return {
        "name": canonical_text(record.get("Name")),
        "amount": canonical_amount(record.get("Amount")),
        "closedate": canonical_date(record.get("CloseDate")),
        "type": SALESFORCE_TYPES.get(str(record.get("Type")), canonical_text(record.get("Type"))),
        "description": canonical_text(record.get("Description")),
        "stage": f"{record_type}|{record.get('StageName')}",
        "owner": directory.user_emails.get(str(record.get("OwnerId")), f"unknown-user:{record.get('OwnerId')}"),
        "company": canonical_text(record.get("AccountId")),
    }


def hubspot_fields(values: Mapping[str, Any], company: str | None, directory: Directory) -> dict[str, str | None]:
    """A deal's two-way properties, canonical (``company``: its primary company id)."""
    owner = canonical_text(values.get("hubspot_owner_id"))
    return {
        "name": canonical_text(values.get("dealname")),
        "amount": canonical_amount(values.get("amount")),
        "closedate": canonical_date(values.get("closedate")),
        "type": canonical_text(values.get("dealtype")),
        "description": canonical_text(values.get("description")),
        "stage": directory.stage_of_deal(values.get("pipeline"), values.get("dealstage")),
        "owner": None if owner is None else directory.owner_emails.get(owner, f"unknown-owner:{owner}"),
        "company": directory.account_of_company(company),
    }


# --- the world and the cast ------------------------------------------------------------------------


@dataclass
class SoakWorld(WorldView):
    context: SyncContext
    person_hubspot: HubSpotClient
    directory: Directory


def prepare(world: LocalWorld) -> SoakWorld:
    """Record types, owners, linked accounts and contacts; company sync on, accounts imported, deal
    sync on (which provisions one pipeline per record type), as an operator would."""
    assert world.crms is not None and world.endpoints is not None
    salesforce = world.crms.salesforce.app
    hubspot = world.crms.hubspot.app
    loaded = salesforce.load({
        "RecordType": [{"Name": name, "DeveloperName": name, "SobjectType": "Opportunity", "IsActive": True,
                        "Stages": stages} for name, stages in RECORD_TYPES.items()],
        "User": [{"FirstName": first, "LastName": last, "Email": email, "Username": f"{email}.soak",
                  "IsActive": True, "Alias": (first[0] + last)[:8].lower(), "TimeZoneSidKey": "America/New_York",
                  "LocaleSidKey": "en_US", "EmailEncodingKey": "UTF-8", "LanguageLocaleKey": "en_US"}
                 for first, last, email in OWNERS],
    })
    person = salesforce.get("User", salesforce.person_user_id)
    assert person is not None
    user_emails = {str(salesforce.person_user_id): str(person["Email"]).lower()}
    user_emails.update({user_id: email for user_id, (_, _, email) in zip(loaded["User"], OWNERS, strict=True)})
    names = {email: (first, last) for first, last, email in OWNERS}
    owner_emails = {str(hubspot.add_owner(email, *names.get(email, ("Sam", "Seller")))["id"]): email
                    for email in user_emails.values()}
    context = build_context()
    set_company_sync(context, True)
    accounts: dict[str, str] = {}
    contact_ids: list[str] = []
    for name, people in ACCOUNTS.items():
        account_id = salesforce.create("Account", {"Name": name})
        company_id = hubspot.load({"companies": [{"name": name, "salesforce_account_id": account_id}]})["companies"][0]
        context.store.links.create(LinkKind.ACCOUNT, account_id, str(company_id))
        accounts[account_id] = str(company_id)
        contact_ids += [salesforce.create("Contact", {
            "FirstName": first, "LastName": last, "Email": f"{first}.{last}@soak.example".lower(),
            "AccountId": account_id}) for first, last in people]
    context.store.settings.mark_account_import_completed()
    set_deal_sync(context, True)
    contacts = link_contacts(context, contact_ids)
    stage_maps = dict(context.store.config.load().stage_maps)
    record_types = {name: salesforce.soql(
        f"SELECT Id FROM RecordType WHERE DeveloperName = '{name}'")[0]["Id"]  # noqa: S608 - our own constants
                    for name in RECORD_TYPES}
    missing = [name for name, record_type_id in record_types.items() if record_type_id not in stage_maps]
    if missing:
        raise RuntimeError(f"deal sync provisioned no pipeline for record types {missing}: {sorted(stage_maps)}")
    hs = world.endpoints.hubspot
    person_hubspot = HubSpotClient(HubSpotCredentials(
        access_token=hs.user_access_token, base_url=hs.base_url, app_id=str(hs.app_id),
        client_secret=hs.client_secret, portal_id=str(hs.portal_id), ca_file=str(hs.ca_file)))
    directory = Directory(record_types, stage_maps, user_emails, owner_emails, accounts, contacts)
    soak_world = SoakWorld(world, context, person_hubspot, directory)
    soak_world.settle()
    return soak_world


# --- chaos -------------------------------------------------------------------------------------------


class CrashInjector:
    """Installed as the :mod:`dealsync.faultpoints` handler: the first arrival at a crash point dies, then every
    N-th after it (1st, N+1th, 2N+1th...), so each point that is reached at all is crashed at least once."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.reached: Counter[str] = Counter()
        self.crashed: Counter[str] = Counter()
        self.enabled = True
        self._lock = threading.Lock()

    def __call__(self, point: str) -> None:
        with self._lock:
            self.reached[point] += 1
            crash = self.enabled and self.every > 0 and self.reached[point] % self.every == 1 % self.every
            if crash:
                self.crashed[point] += 1
        if crash:
            raise faultpoints.SimulatedCrash(f"soak: worker killed at {point}")


class Chaos:
    """Faults on the integration's calls, duplicated and reordered notifications, crashing workers."""

    def __init__(self, world: SoakWorld, options: SoakOptions) -> None:
        self.world = world
        self.options = options
        self.crashes = CrashInjector(options.crash_every)

    def start(self) -> None:
        options = self.options
        # Redeliveries keep their exponential backoff but are capped at a few seconds (HubSpot's and
        # Salesforce's caps are minutes): the soak tests dealsync, not the CRMs' patience.
        self.world.hubspot.apply_config({"webhook_shuffle": True, "webhook_duplicate_rate": options.duplicate_rate,
                                         "webhook_seed": options.seed,
                                         "webhook_backoff_max_seconds": REDELIVERY_CAP_SECONDS})
        self.world.salesforce.apply_config({"notification_shuffle": True,
                                            "notification_duplicate_rate": options.duplicate_rate,
                                            "notification_seed": options.seed,
                                            "retry_max_seconds": REDELIVERY_CAP_SECONDS})
        self.phase(0)
        faultpoints.install(self.crashes)

    def phase(self, number: int) -> None:
        """Each phase answers the injected errors with another status (503, 429, 500, 502...)."""
        options = self.options
        status = FAULT_STATUSES[number % len(FAULT_STATUSES)]
        for offset, app in enumerate((self.world.salesforce, self.world.hubspot)):
            faults = Faults.from_json({
                "error_rate": options.error_rate, "error_status": status, "timeout_rate": options.timeout_rate,
                "timeout_hold_seconds": options.timeout_hold_seconds, "latency_ms": options.latency_ms,
                "seed": options.seed * 1000 + number * 10 + offset})
            with app.lock:
                app.faults = faults

    def stop(self) -> None:
        """Faults off; duplicates and reordering stay (harmless, and realistic) while the world settles."""
        self.crashes.enabled = False
        faultpoints.install(None)
        for app in (self.world.salesforce, self.world.hubspot):
            with app.lock:
                app.faults = Faults()

    def injected(self) -> Counter[str]:
        totals: Counter[str] = Counter()
        for name, app in (("salesforce", self.world.salesforce), ("hubspot", self.world.hubspot)):
            for kind, count in app.stats_snapshot()["faults_injected"].items():
                totals[f"{name} {kind}"] += count
        totals["hubspot webhooks duplicated"] = int(self.world.hubspot.webhooks.stats()["duplicates_added"])
        totals["salesforce notifications duplicated"] = self.world.salesforce.notifier.duplicates_added
        for point, count in self.crashes.crashed.items():
            totals[f"worker crash at {point}"] += count
        return totals


# --- the people ----------------------------------------------------------------------------------------


class Person:
    """One CRM user working on the records they created, on either side."""

    def __init__(self, number: int, world: SoakWorld, journal: Journal, options: SoakOptions) -> None:
        self.number = number
        self.world = world
        self.journal = journal
        self.options = options
        self.rng = random.Random(f"{options.seed}:{number}")
        self.pairs: list[Pair] = []
        self.made = 0
        self.kinds = list(OPERATION_WEIGHTS)
        self.weights = [OPERATION_WEIGHTS[kind] for kind in self.kinds]

    @property
    def salesforce(self) -> SalesforceEmulator:
        return self.world.salesforce

    @property
    def hubspot(self) -> HubSpotEmulator:
        return self.world.hubspot

    @property
    def directory(self) -> Directory:
        return self.world.directory

    # --- the loop --------------------------------------------------------------------------------------
    def run(self, operations: int, on_operation: Callable[[], None]) -> None:
        done = 0
        while done < operations:
            kind = self.rng.choices(self.kinds, self.weights)[0] if self.pairs else self.rng.choice(
                ["sf_create", "hs_create"])
            try:
                acted = getattr(self, kind)()
            except (CrmError, HubSpotError, RecordError, ValueError, LookupError) as error:
                # The CRM refused the person (e.g. the record was deleted a moment ago): as in the UI.
                logger.debug("person %s: %s refused: %s", self.number, kind, error)
                with self.journal.lock:
                    self.journal.refused[kind] += 1
                acted = True
            if not acted:
                with self.journal.lock:
                    self.journal.skipped[kind] += 1
                continue
            with self.journal.lock:
                self.journal.operations[kind] += 1
            done += 1
            on_operation()
            if self.options.think_seconds:
                time.sleep(self.rng.random() * self.options.think_seconds)

    # --- helpers -----------------------------------------------------------------------------------
    def _name(self) -> str:
        self.made += 1
        return f"Soak {self.number}-{self.made} {self.rng.choice(['Platform', 'Analytics', 'Renewal', 'Pilot'])}"

    def _amount(self) -> float:
        return self.rng.randrange(1_000, 500_000, 250) + self.rng.choice([0, 0.5])

    def _date(self) -> str:
        return (datetime(2027, 1, 1, tzinfo=UTC) + timedelta(days=self.rng.randrange(0, 720))).date().isoformat()

    def _text(self) -> str:
        return f"note {self.rng.randrange(10**6)}"

    def _live_pair(self, side: Side) -> Pair | None:
        """A random one of my records that exists (live) on ``side`` now, with its ids refreshed."""
        candidates = list(self.pairs)
        self.rng.shuffle(candidates)
        for pair in candidates[:8]:
            self._refresh(pair)
            if side is Side.SALESFORCE and pair.opportunity_id and self._opportunity(pair) is not None:
                return pair
            if side is Side.HUBSPOT and pair.deal_id and self._deal_values(pair.deal_id) is not None:
                return pair
        return None

    def _target_opportunity(self) -> tuple[Pair, str, dict[str, Any]] | None:
        """One of my records that is a live opportunity now: (pair, opportunity id, its fields)."""
        pair = self._live_pair(Side.SALESFORCE)
        record = self._opportunity(pair) if pair is not None else None
        if pair is None or pair.opportunity_id is None or record is None:
            return None
        return pair, pair.opportunity_id, record

    def _target_deal(self) -> tuple[Pair, str, dict[str, Any]] | None:
        """One of my records that is a live deal now: (pair, deal id, its properties)."""
        pair = self._live_pair(Side.HUBSPOT)
        values = self._deal_values(pair.deal_id) if pair is not None and pair.deal_id else None
        if pair is None or pair.deal_id is None or values is None:
            return None
        return pair, pair.deal_id, values

    def _refresh(self, pair: Pair) -> None:
        """Learn the other side's id once the sync made the counterpart (or a new one)."""
        if pair.opportunity_id is None and pair.deal_id is not None:
            values = self._deal_values(pair.deal_id, archived=None)
            found = values.get(UNIQUE_PROPERTY) if values else None
            if found:
                pair.opportunity_id = str(found)
        if pair.opportunity_id is not None and not pair.deleted_in_hubspot:
            with self.hubspot.store.lock:
                deal = self.hubspot.store.find(DEALS, pair.opportunity_id, UNIQUE_PROPERTY)
                if deal is not None:
                    pair.deal_id = str(deal.id)

    def _opportunity(self, pair: Pair) -> dict[str, Any] | None:
        return self.salesforce.get("Opportunity", pair.opportunity_id) if pair.opportunity_id else None

    def _deal_values(self, deal_id: str, archived: bool | None = False) -> dict[str, Any] | None:
        with self.hubspot.store.lock:
            record = self.hubspot.store.find(DEALS, deal_id, archived=archived)
            return dict(record.values) if record is not None else None

    def _deal_company(self, deal_id: str) -> str | None:
        with self.hubspot.store.lock:
            for company, types in self.hubspot.store.associated(DEALS, int(deal_id), COMPANIES).items():
                if DEAL_TO_PRIMARY_COMPANY in types:
                    return str(company)
        return None

    def _deal_contacts(self, deal_id: str) -> set[str]:
        with self.hubspot.store.lock:
            return {str(c) for c in self.hubspot.store.associated(DEALS, int(deal_id), CONTACTS)}

    def _roles(self, opportunity_id: str) -> dict[str, str]:
        """Contact id -> role id of the opportunity's contact roles."""
        rows = self.salesforce.soql(
            f"SELECT Id, ContactId FROM OpportunityContactRole WHERE OpportunityId = '{opportunity_id}'")  # noqa: S608
        return {str(row["ContactId"]): str(row["Id"]) for row in rows}

    def _seen_hubspot(self, deal_id: str) -> dict[str, str | None]:
        values = self._deal_values(deal_id)
        return hubspot_fields(values, self._deal_company(deal_id), self.directory) if values else {}

    def _record(self, side: Side, pair: Pair, changes: Mapping[str, str | None],
                seen: Mapping[str, str | None], at: float) -> None:
        for name, value in changes.items():
            self.journal.wrote(Write(at, side, pair.opportunity_id, pair.deal_id, name, value, seen.get(name)))

    def _sf_update(self, pair: Pair, fields: Mapping[str, Any]) -> None:
        assert pair.opportunity_id is not None
        before = self._opportunity(pair)
        if before is None:
            raise LookupError(f"opportunity {pair.opportunity_id} is gone")
        seen = salesforce_fields(before, self.directory)
        at = time.monotonic()
        self.salesforce.update("Opportunity", pair.opportunity_id, fields)
        # What this person wrote (read back, the sync may already be writing other fields).
        wrote = salesforce_fields({**before, **fields}, self.directory)
        self._record(Side.SALESFORCE, pair, _changes(seen, wrote), seen, at)

    def _hs_update(self, pair: Pair, properties: Mapping[str, str]) -> None:
        assert pair.deal_id is not None
        before = self._deal_values(pair.deal_id)
        if before is None:
            raise LookupError(f"deal {pair.deal_id} is gone")
        company = self._deal_company(pair.deal_id)
        seen = hubspot_fields(before, company, self.directory)
        at = time.monotonic()
        started_ms = int(time.time() * 1000)
        results = self.world.person_hubspot.batch_update("deals", [{"id": pair.deal_id, "properties": properties}])
        if results and "error" in results[0]:
            raise ValueError(f"deal {pair.deal_id} not updated: {results[0]['error']}")
        wrote = hubspot_fields({**before, **properties}, company, self.directory)
        changes = _changes(seen, wrote)
        if "dealstage" in properties and "closedate" not in properties and self._closedate_set_since(
                pair.deal_id, started_ms):
            # Moving a deal into a closed stage, HubSpot sets its close date for the person: theirs too — even
            # to the date it held (a new version: the later change, whatever the other side did meanwhile).
            changes["closedate"] = self._seen_hubspot(pair.deal_id).get("closedate")
        self._record(Side.HUBSPOT, pair, changes, seen, at)

    def _closedate_set_since(self, deal_id: str, since_ms: int) -> bool:
        """Whether the person's HubSpot set this deal's close date since ``since_ms`` (its newest version)."""
        with self.hubspot.store.lock:
            record = self.hubspot.store.find(DEALS, deal_id)
            versions = record.history_of("closedate") if record is not None else []
        return bool(versions) and versions[0][1] >= since_ms and versions[0][2].change_source == "CRM_UI"

    # --- Salesforce operations ---------------------------------------------------------------------
    def sf_create(self) -> bool:
        record_type = self.rng.choice(sorted(self.directory.record_types.values()))
        stages = self.directory.stage_maps[record_type].stages
        fields = {"Name": self._name(), "RecordTypeId": record_type, "StageName": self.rng.choice(sorted(stages)),
                  "CloseDate": self._date(), "Amount": self._amount(),
                  "Type": self.rng.choice(sorted(SALESFORCE_TYPES)), "Description": self._text(),
                  "AccountId": self.rng.choice(sorted(self.directory.accounts)),
                  "OwnerId": self.rng.choice(self.directory.sf_users)}
        at = time.monotonic()
        opportunity_id = self.salesforce.create("Opportunity", fields)
        pair = Pair(opportunity_id=opportunity_id)
        self.pairs.append(pair)
        record = self._opportunity(pair)
        assert record is not None
        self._record(Side.SALESFORCE, pair, salesforce_fields(record, self.directory), {}, at)
        for contact in self.rng.sample(sorted(self.directory.contacts), self.rng.randint(0, 2)):
            self.salesforce.create("OpportunityContactRole", {"OpportunityId": opportunity_id, "ContactId": contact})
            self._record(Side.SALESFORCE, pair, {f"contact:{contact}": "in"}, {}, time.monotonic())
        return True

    def sf_update_fields(self) -> bool:
        target = self._target_opportunity()
        if target is None:
            return False
        pair = target[0]
        choices: dict[str, Callable[[], Any]] = {
            "Name": self._name, "Amount": lambda: None if self.rng.random() < 0.05 else self._amount(),
            "CloseDate": self._date, "Type": lambda: self.rng.choice([*sorted(SALESFORCE_TYPES), None]),
            "Description": lambda: None if self.rng.random() < 0.15 else self._text(),
        }
        names = self.rng.sample(sorted(choices), self.rng.randint(1, len(choices)))
        self._sf_update(pair, {name: choices[name]() for name in names})
        return True

    def sf_change_stage(self) -> bool:
        target = self._target_opportunity()
        if target is None:
            return False
        pair, _, record = target
        stages = sorted(set(self.directory.stage_maps[str(record["RecordTypeId"])].stages) - {record["StageName"]})
        self._sf_update(pair, {"StageName": self.rng.choice(stages)})
        return True

    def sf_change_record_type(self) -> bool:
        target = self._target_opportunity()
        if target is None:
            return False
        pair, _, record = target
        others = sorted(set(self.directory.stage_maps) - {str(record["RecordTypeId"])})
        record_type = self.rng.choice(others)
        stage = self.rng.choice(sorted(self.directory.stage_maps[record_type].stages))
        self._sf_update(pair, {"RecordTypeId": record_type, "StageName": stage})
        return True

    def sf_change_owner(self) -> bool:
        target = self._target_opportunity()
        if target is None:
            return False
        pair, _, record = target
        self._sf_update(pair, {"OwnerId": self.rng.choice(sorted(set(self.directory.sf_users) - {record["OwnerId"]}))})
        return True

    def sf_change_account(self) -> bool:
        target = self._target_opportunity()
        if target is None:
            return False
        pair, _, record = target
        self._sf_update(pair, {"AccountId": self.rng.choice(
            sorted(set(self.directory.accounts) - {record.get("AccountId")}))})
        return True

    def sf_add_contact_role(self) -> bool:
        target = self._target_opportunity()
        if target is None:
            return False
        pair, opportunity_id, _ = target
        free = sorted(set(self.directory.contacts) - set(self._roles(opportunity_id)))
        if not free:
            return False
        contact = self.rng.choice(free)
        at = time.monotonic()
        self.salesforce.create("OpportunityContactRole", {"OpportunityId": opportunity_id, "ContactId": contact})
        self._record(Side.SALESFORCE, pair, {f"contact:{contact}": "in"}, {f"contact:{contact}": "out"}, at)
        return True

    def sf_remove_contact_role(self) -> bool:
        target = self._target_opportunity()
        if target is None:
            return False
        pair, opportunity_id, _ = target
        roles = self._roles(opportunity_id)
        if not roles:
            return False
        contact = self.rng.choice(sorted(roles))
        at = time.monotonic()
        self.salesforce.delete("OpportunityContactRole", roles[contact])
        self._record(Side.SALESFORCE, pair, {f"contact:{contact}": "out"}, {f"contact:{contact}": "in"}, at)
        return True

    def sf_delete(self) -> bool:
        target = self._target_opportunity()
        if target is None:
            return False
        pair, opportunity_id, _ = target
        at = time.monotonic()
        self.salesforce.delete("Opportunity", opportunity_id)
        pair.deleted_in_salesforce = True
        self.journal.happened(Lifecycle(at, "sf_delete", opportunity_id, pair.deal_id))
        return True

    def sf_undelete(self) -> bool:
        deleted = [pair for pair in self.pairs if pair.deleted_in_salesforce]
        if not deleted:
            return False
        pair = self.rng.choice(deleted)
        assert pair.opportunity_id is not None
        at = time.monotonic()
        result = self.salesforce.undelete([pair.opportunity_id])
        if not result[0]["success"]:
            raise ValueError(f"undelete refused: {result[0]['errors']}")
        pair.deleted_in_salesforce = False
        pair.deleted_in_hubspot = False
        pair.deal_id = None  # the deal comes back as a new one
        self.journal.happened(Lifecycle(at, "sf_undelete", pair.opportunity_id, None))
        return True

    # --- HubSpot operations -------------------------------------------------------------------------
    def hs_create(self) -> bool:
        record_type = self.rng.choice(sorted(self.directory.stage_maps))
        mapping = self.directory.stage_maps[record_type]
        properties = {"dealname": self._name(), "pipeline": mapping.pipeline_id,
                      "dealstage": mapping.stages[self.rng.choice(sorted(mapping.stages))],
                      "amount": str(self._amount()), "closedate": f"{self._date()}T00:00:00Z",
                      "dealtype": self.rng.choice(sorted(SALESFORCE_TYPES.values())), "description": self._text(),
                      "hubspot_owner_id": self.rng.choice(self.directory.hs_owners)}
        company = self.rng.choice(sorted(self.directory.accounts.values()))
        contacts = self.rng.sample(sorted(self.directory.contacts), self.rng.randint(0, 2))
        associations = [_association(self.directory.contacts[c], DEAL_TO_CONTACT) for c in contacts]
        associations.append(_association(company, DEAL_TO_PRIMARY_COMPANY))
        at = time.monotonic()
        created = self.world.person_hubspot.batch_create("deals", [{"properties": properties,
                                                                    "associations": associations}])
        if not created or "error" in created[0]:
            raise ValueError(f"deal not created: {created}")
        deal_id = str(created[0]["id"])
        pair = Pair(deal_id=deal_id)
        self.pairs.append(pair)
        self._record(Side.HUBSPOT, pair, self._seen_hubspot(deal_id), {}, at)
        self._record(Side.HUBSPOT, pair, {f"contact:{c}": "in" for c in contacts}, {}, at)
        return True

    def hs_update_fields(self) -> bool:
        target = self._target_deal()
        if target is None:
            return False
        pair = target[0]
        choices: dict[str, Callable[[], str]] = {
            "dealname": self._name, "amount": lambda: "" if self.rng.random() < 0.05 else str(self._amount()),
            "closedate": lambda: f"{self._date()}T00:00:00Z",
            "dealtype": lambda: self.rng.choice([*sorted(SALESFORCE_TYPES.values()), ""]),
            "description": lambda: "" if self.rng.random() < 0.15 else self._text(),
        }
        names = self.rng.sample(sorted(choices), self.rng.randint(1, len(choices)))
        self._hs_update(pair, {name: choices[name]() for name in names})
        return True

    def hs_change_stage(self) -> bool:
        target = self._target_deal()
        if target is None:
            return False
        pair, _, values = target
        mapping = next((m for m in self.directory.stage_maps.values() if m.pipeline_id == values.get("pipeline")),
                       None)
        if mapping is None:
            return False
        stages = sorted(set(mapping.stages.values()) - {values.get("dealstage")})
        self._hs_update(pair, {"dealstage": self.rng.choice(stages)})
        return True

    def hs_change_pipeline(self) -> bool:
        target = self._target_deal()
        if target is None:
            return False
        pair, _, values = target
        others = [m for m in self.directory.stage_maps.values() if m.pipeline_id != values.get("pipeline")]
        mapping = self.rng.choice(sorted(others, key=lambda m: m.pipeline_id))
        self._hs_update(pair, {"pipeline": mapping.pipeline_id,
                               "dealstage": mapping.stages[self.rng.choice(sorted(mapping.stages))]})
        return True

    def hs_change_owner(self) -> bool:
        target = self._target_deal()
        if target is None:
            return False
        pair, _, values = target
        owner = self.rng.choice(sorted(set(self.directory.hs_owners) - {values.get("hubspot_owner_id")}))
        self._hs_update(pair, {"hubspot_owner_id": owner})
        return True

    def hs_change_company(self) -> bool:
        target = self._target_deal()
        if target is None:
            return False
        pair, deal_id, _ = target
        before = self._deal_company(deal_id)
        company = self.rng.choice(sorted(set(self.directory.accounts.values()) - {before}))
        seen = self._seen_hubspot(deal_id)
        at = time.monotonic()
        if before is not None:
            self.world.person_hubspot.associations_archive("deals", "companies", [(deal_id, before)])
        self.world.person_hubspot.associations_create("deals", "companies",
                                                      [(deal_id, company, DEAL_TO_PRIMARY_COMPANY)])
        self._record(Side.HUBSPOT, pair, {"company": self.directory.account_of_company(company)}, seen, at)
        return True

    def hs_add_contact(self) -> bool:
        target = self._target_deal()
        if target is None:
            return False
        pair, deal_id, _ = target
        present = self._deal_contacts(deal_id)
        free = sorted(c for c, hs in self.directory.contacts.items() if hs not in present)
        if not free:
            return False
        contact = self.rng.choice(free)
        at = time.monotonic()
        self.world.person_hubspot.associations_create(
            "deals", "contacts", [(deal_id, self.directory.contacts[contact], DEAL_TO_CONTACT)])
        self._record(Side.HUBSPOT, pair, {f"contact:{contact}": "in"}, {f"contact:{contact}": "out"}, at)
        return True

    def hs_remove_contact(self) -> bool:
        target = self._target_deal()
        if target is None:
            return False
        pair, deal_id, _ = target
        present = sorted(self._deal_contacts(deal_id))
        if not present:
            return False
        hubspot_contact = self.rng.choice(present)
        contact = self.directory.contact_of(hubspot_contact)
        at = time.monotonic()
        self.world.person_hubspot.associations_archive("deals", "contacts", [(deal_id, hubspot_contact)])
        self._record(Side.HUBSPOT, pair, {f"contact:{contact}": "out"}, {f"contact:{contact}": "in"}, at)
        return True

    def hs_delete(self) -> bool:
        target = self._target_deal()
        if target is None:
            return False
        pair, deal_id, _ = target
        at = time.monotonic()
        self.world.person_hubspot.batch_archive("deals", [deal_id])
        pair.deleted_in_hubspot = True
        self.journal.happened(Lifecycle(at, "hs_delete", pair.opportunity_id, deal_id))
        return True

    def hs_restore(self) -> bool:
        deleted = [pair for pair in self.pairs if pair.deleted_in_hubspot and pair.deal_id
                   and not pair.deleted_in_salesforce]
        if not deleted:
            return False
        pair = self.rng.choice(deleted)
        assert pair.deal_id is not None
        if self._deal_values(pair.deal_id, archived=True) is None:
            pair.deleted_in_hubspot = False
            return False
        if pair.opportunity_id is not None:
            with self.hubspot.store.lock:
                if self.hubspot.store.find(DEALS, pair.opportunity_id, UNIQUE_PROPERTY) is not None:
                    # The opportunity synced again as a new deal meanwhile (DESIGN 1.6); restoring the old
                    # one as well is a case DESIGN leaves open, so the people do not do it.
                    return False
        at = time.monotonic()
        self.hubspot.restore(pair.deal_id)
        pair.deleted_in_hubspot = False
        self.journal.happened(Lifecycle(at, "hs_restore", pair.opportunity_id, pair.deal_id))
        return True


def _changes(seen: Mapping[str, str | None], wrote: Mapping[str, str | None]) -> dict[str, str | None]:
    return {name: value for name, value in wrote.items() if value != seen.get(name)}


def _association(to_id: str, type_id: int) -> dict[str, Any]:
    return {"to": {"id": to_id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}


# --- checking ----------------------------------------------------------------------------------------


@dataclass
class Findings:
    """What the check found; ``problems`` lists each failure with its record ids."""

    opportunities: int = 0
    deals: int = 0
    pairs: int = 0
    duplicates: int = 0
    unpaired: int = 0
    unpaired_allowed: int = 0
    orphan_links: int = 0
    mismatched_fields: int = 0
    lost_updates: int = 0
    checked_fields: int = 0
    echoes: dict[str, int] = field(default_factory=dict)
    unchanged_writes: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    dead_letters_unexplained: int = 0
    settled: bool = True  # the world went quiet within the settle timeout
    sync_errors: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # not failures: unchanged writes, sync errors left

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.unpaired or self.orphan_links or self.mismatched_fields
                    or self.lost_updates or sum(self.echoes.values()) or self.dead_letters_unexplained
                    or not self.settled)


@dataclass
class _State:
    """Both CRMs as the people see them after quiescence."""

    opportunities: dict[str, dict[str, Any]]  # live, by id
    roles: dict[str, set[str]]  # opportunity id -> contact ids
    deals: dict[str, dict[str, Any]]  # live deals in a Salesforce pipeline, by id
    deal_companies: dict[str, str | None]
    deal_contacts: dict[str, set[str]]  # deal id -> Salesforce contact ids


def _read_state(world: SoakWorld) -> _State:
    directory = world.directory
    opportunities = {str(row["Id"]): row for row in world.salesforce.soql(
        "SELECT Id, Name, Amount, CloseDate, StageName, RecordTypeId, Type, Description, OwnerId, AccountId, "
        "HubSpot_Deal_Id__c FROM Opportunity")}
    roles: dict[str, set[str]] = {}
    for row in world.salesforce.soql("SELECT OpportunityId, ContactId FROM OpportunityContactRole"):
        roles.setdefault(str(row["OpportunityId"]), set()).add(str(row["ContactId"]))
    store = world.hubspot.store
    pipelines = directory.synced_pipelines()
    deals: dict[str, dict[str, Any]] = {}
    companies: dict[str, str | None] = {}
    contacts: dict[str, set[str]] = {}
    with store.lock:
        for record in store.active(DEALS):
            if record.values.get("pipeline") not in pipelines:
                continue
            deal_id = str(record.id)
            deals[deal_id] = dict(record.values)
            primary = [c for c, types in store.associated(DEALS, record.id, COMPANIES).items()
                       if DEAL_TO_PRIMARY_COMPANY in types]
            companies[deal_id] = str(primary[0]) if primary else None
            contacts[deal_id] = {directory.contact_of(str(c)) for c in store.associated(DEALS, record.id, CONTACTS)}
    return _State(opportunities, roles, deals, companies, contacts)


def _dead_letters(world: SoakWorld) -> list[tuple[str, str]]:
    """(dead-letter queue, body) of every message left in one."""
    assert world.world.aws is not None
    sqs = world.world.sqs()
    found: list[tuple[str, str]] = []
    for dead_letter in sorted(set(world.world.aws.resources.dead_letter_queues.values())):
        url = world.world.queue_url(dead_letter)
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600,
                                           WaitTimeSeconds=0).get("Messages", [])
            if not messages:
                break
            found += [(dead_letter, str(message.get("Body", ""))) for message in messages]
    return found


RECORD_ID_KEYS = frozenset({"objectId", "fromObjectId", "ids", "recordIds", "contact_ids"})


def records_that_ended_wrong(ids: Iterable[str], record_problems: Sequence[str]) -> list[str]:
    """The records a dead letter names that a record problem (a lost update, a mismatch...) names too."""
    return sorted(record_id for record_id in ids if any(record_id in problem for problem in record_problems))


def named_records(body: str) -> set[str]:
    """The record ids a queue message names (webhook events, change messages and events)."""
    found: set[str] = set()

    def walk(value: Any, key: str | None = None) -> None:
        if isinstance(value, dict):
            for name, item in value.items():
                walk(item, name)
        elif isinstance(value, list):
            for item in value:
                walk(item, key)
        elif key in RECORD_ID_KEYS and value is not None:
            found.add(str(value))

    try:
        walk(json.loads(body))
    except ValueError:
        return set()
    return found


SALESFORCE_TIME_RESOLUTION = 1.0  # seconds


def accepted_values(writes: Sequence[Write]) -> tuple[Write, set[str | None]] | None:
    """(the last write, every value the oracle accepts) for one field of one pair."""
    if not writes:
        return None
    ordered = sorted(writes, key=lambda w: w.at)
    last = ordered[-1]
    other = [w for w in ordered if w.side is not last.side]
    accepted = {last.value}
    if other and last.seen_before != other[-1].value:
        accepted.add(other[-1].value)  # the two writes raced: DESIGN's timestamps decide
    elif (other and last.side is Side.SALESFORCE and not last.field.startswith("contact:")
          and last.at - other[-1].at < SALESFORCE_TIME_RESOLUTION):
        # Salesforce keeps a field's change time to the second (SystemModstamp, field history): a
        # Salesforce write less than a second after HubSpot's can carry an earlier time than it, and
        # DESIGN's "later change" is decided on those times.
        accepted.add(other[-1].value)
    return last, accepted


def hubspot_deletes(lifecycle: Sequence[Lifecycle], deal_to_opportunity: Mapping[str, str],
                    linked_opportunity: Mapping[str, str]) -> dict[str, float]:
    """When a person last deleted each opportunity's deal in HubSpot. A deal deleted before the person saw its
    opportunity's id (dealsync had not told HubSpot yet) is known by the link that pair ended with."""
    deleted_at: dict[str, float] = {}
    for event in lifecycle:
        named = (event.opportunity_id or deal_to_opportunity.get(event.deal_id or "")
                 or linked_opportunity.get(event.deal_id or ""))
        if event.kind == "hs_delete" and named:
            deleted_at[named] = max(event.at, deleted_at.get(named, 0.0))
    return deleted_at


def pair_starts(lifecycle: Sequence[Lifecycle], pairs: Mapping[str, str],
                deal_to_opportunity: Mapping[str, str]) -> dict[str, float]:
    """When each opportunity's pair last started afresh (a delete, undelete or restore), for the lost-update
    check; a Salesforce delete and undelete the deal outlived (the opportunity ends paired with the deal it
    had when deleted) does not count."""
    fresh_since: dict[str, float] = {}
    survived_delete: set[str] = set()  # opportunities deleted and undeleted while their deal lived on
    for event in sorted(lifecycle, key=lambda e: e.at):
        named = event.opportunity_id or deal_to_opportunity.get(event.deal_id or "")
        if not named:
            continue
        if event.kind == "sf_delete" and event.deal_id and pairs.get(named) == event.deal_id:
            survived_delete.add(named)  # the deal the opportunity had then is its deal now: never archived
            continue
        if event.kind == "sf_undelete" and named in survived_delete:
            survived_delete.discard(named)
            continue
        fresh_since[named] = max(event.at, fresh_since.get(named, 0.0))
    return fresh_since


def check(world: SoakWorld, journal: Journal) -> Findings:
    directory = world.directory
    links_store = world.context.store.links
    state = _read_state(world)
    started = min((write.at for write in journal.writes), default=0.0)  # times are printed from here
    findings = Findings(opportunities=len(state.opportunities), deals=len(state.deals))

    # Links (every one, from its Salesforce-side item) and the HubSpot-side items they imply.
    links = []
    start: Mapping[str, Any] | None = None
    while True:
        page, start = links_store.page(LinkKind.OPPORTUNITY, start_key=start)
        links += page
        if start is None:
            break
    by_opportunity = {link.salesforce_id: link for link in links}
    hubspot_items = links_store.get_many(LinkKind.OPPORTUNITY, Side.HUBSPOT, [link.hubspot_id for link in links])

    # Duplicates: one opportunity, several deals; one deal, several opportunities.
    deals_of: dict[str, list[str]] = {}
    for deal_id, values in state.deals.items():
        if values.get(UNIQUE_PROPERTY):
            deals_of.setdefault(str(values[UNIQUE_PROPERTY]), []).append(deal_id)
    opportunities_of: dict[str, list[str]] = {}
    for opportunity_id, record in state.opportunities.items():
        if record.get(DEAL_ID_FIELD):
            opportunities_of.setdefault(str(record[DEAL_ID_FIELD]), []).append(opportunity_id)
    for opportunity_id, deal_ids in sorted(deals_of.items()):
        if len(deal_ids) > 1:
            findings.duplicates += len(deal_ids) - 1
            findings.problems.append(f"duplicate: opportunity {opportunity_id} has deals {sorted(deal_ids)}")
    for deal_id, opportunity_ids in sorted(opportunities_of.items()):
        if len(opportunity_ids) > 1 and deal_id in state.deals:
            findings.duplicates += len(opportunity_ids) - 1
            findings.problems.append(f"duplicate: deal {deal_id} is named by opportunities {sorted(opportunity_ids)}")

    # Pairs: a live opportunity with its live deal, pointing at each other, linked.
    last_hubspot_delete = hubspot_deletes(journal.lifecycle, journal.deal_to_opportunity,
                                          {link.hubspot_id: link.salesforce_id for link in links})
    salesforce_write_times: dict[str, float] = {}
    for write in journal.writes:
        if write.side is Side.SALESFORCE and write.opportunity_id:
            salesforce_write_times[write.opportunity_id] = max(write.at, salesforce_write_times.get(
                write.opportunity_id, 0.0))
    pairs: dict[str, str] = {}  # opportunity id -> deal id
    for opportunity_id in sorted(state.opportunities):
        candidates = deals_of.get(opportunity_id, [])
        if candidates:
            pairs[opportunity_id] = candidates[0]
            continue
        link = by_opportunity.get(opportunity_id)
        deleted_at = last_hubspot_delete.get(opportunity_id)
        untouched = deleted_at is not None and salesforce_write_times.get(opportunity_id, 0.0) < deleted_at
        if (link is not None and link.status is LinkStatus.TOMBSTONED and link.status_reason == DELETED_IN_HUBSPOT
                and untouched):
            findings.unpaired_allowed += 1
            continue
        findings.unpaired += 1
        status = f"link {link.status} ({link.status_reason})" if link else "no link"
        findings.problems.append(f"unpaired: opportunity {opportunity_id} has no deal ({status})")
    paired_deals = set(pairs.values())
    for deal_id, values in sorted(state.deals.items()):
        if deal_id in paired_deals:
            continue
        named = values.get(UNIQUE_PROPERTY)
        if named and named in pairs:
            continue  # a duplicate, counted above
        findings.unpaired += 1
        findings.problems.append(f"unpaired: deal {deal_id} has no live opportunity (names {named or 'none'})")
    findings.pairs = len(pairs)

    # Orphan links: active links must join a live pair that points both ways, and agree with their other item.
    for link in links:
        if link.status is not LinkStatus.ACTIVE:
            continue
        reasons = []
        opportunity = state.opportunities.get(link.salesforce_id)
        if opportunity is None:
            reasons.append("opportunity not live")
        elif str(opportunity.get(DEAL_ID_FIELD) or "") != link.hubspot_id:
            reasons.append(f"opportunity names deal {opportunity.get(DEAL_ID_FIELD)}")
        deal = state.deals.get(link.hubspot_id)
        if deal is None:
            reasons.append("deal not live")
        elif str(deal.get(UNIQUE_PROPERTY) or "") != link.salesforce_id:
            reasons.append(f"deal names opportunity {deal.get(UNIQUE_PROPERTY)}")
        other = hubspot_items.get(link.hubspot_id)
        if other is None or other.salesforce_id != link.salesforce_id or other.status is not LinkStatus.ACTIVE:
            reasons.append("the link's HubSpot-side item disagrees")
        if reasons:
            findings.orphan_links += 1
            findings.problems.append(f"orphan link: {link.salesforce_id} <-> {link.hubspot_id}: {'; '.join(reasons)}")
    for opportunity_id, deal_id in pairs.items():
        link = by_opportunity.get(opportunity_id)
        if link is None or not link.is_active or link.hubspot_id != deal_id:
            findings.orphan_links += 1
            findings.problems.append(f"unlinked pair: opportunity {opportunity_id} and deal {deal_id} "
                                     f"({'no link' if link is None else f'link to {link.hubspot_id}, {link.status}'})")

    # Fields: both sides agree, and hold what the last person write says.
    fresh_since = pair_starts(journal.lifecycle, pairs, journal.deal_to_opportunity)
    writes_of: dict[tuple[str, str], list[Write]] = {}
    for write in journal.writes:
        named = write.opportunity_id or journal.deal_to_opportunity.get(write.deal_id or "") or (
            str(state.deals[write.deal_id].get(UNIQUE_PROPERTY) or "") if write.deal_id in state.deals else "")
        if named and write.at > fresh_since.get(named, 0.0):
            writes_of.setdefault((named, write.field), []).append(write)
    for opportunity_id, deal_id in sorted(pairs.items()):
        opportunity = state.opportunities[opportunity_id]
        sf = salesforce_fields(opportunity, directory)
        hs = hubspot_fields(state.deals[deal_id], state.deal_companies.get(deal_id), directory)
        sf_contacts = state.roles.get(opportunity_id, set())
        hs_contacts = state.deal_contacts.get(deal_id, set())
        for name in FIELDS:
            if sf[name] != hs[name]:
                findings.mismatched_fields += 1
                findings.problems.append(f"mismatch: {opportunity_id}/{deal_id} {name}: Salesforce {sf[name]!r}, "
                                         f"HubSpot {hs[name]!r}")
        if sf_contacts != hs_contacts:
            findings.mismatched_fields += 1
            findings.problems.append(f"mismatch: {opportunity_id}/{deal_id} contacts: Salesforce "
                                     f"{sorted(sf_contacts)}, HubSpot {sorted(hs_contacts)}")
        final = {**sf, **{f"contact:{c}": ("in" if c in sf_contacts else "out") for c in directory.contacts}}
        for name, value in final.items():
            expected = accepted_values(writes_of.get((opportunity_id, name), []))
            if expected is None:
                continue
            findings.checked_fields += 1
            last, accepted = expected
            if value not in accepted:
                findings.lost_updates += 1
                history = "; ".join(f"{w.side} {w.value!r} (saw {w.seen_before!r}) at {w.at - started:.2f} s"
                                    for w in sorted(writes_of[(opportunity_id, name)], key=lambda w: w.at)[-4:])
                findings.problems.append(f"lost update: {opportunity_id}/{deal_id} {name} is {value!r}, not "
                                         f"{last.value!r}; writes: {history}")

    for name, app in (("salesforce", world.salesforce), ("hubspot", world.hubspot)):
        stats = app.stats_snapshot()
        findings.echoes[name] = int(stats["echo_writes"])
        findings.unchanged_writes[name] = int(stats["unchanged_writes"].get("integration", 0)) - findings.echoes[name]
        findings.problems += [f"echo: dealsync wrote {name} {object_name} {record_id} back with a person's values"
                              for object_name, record_id in list(app.echo_writes)]
        findings.notes += [f"unchanged write: dealsync wrote {name} {object_name} {record_id} with the values it held"
                           for kind, object_name, record_id in list(app.unchanged_recent) if kind == "integration"]
    # A message left in a dead-letter queue is explained when every record it names ended right (a later
    # delivery or the poll synced them): the change it carried was not lost. Otherwise it is a failure.
    record_problems = list(findings.problems)  # not the dead letters' own lines, which name every record
    for queue, body in _dead_letters(world):
        findings.dead_letters += 1
        ids = named_records(body)
        wrong = records_that_ended_wrong(ids, record_problems)
        if ids and not wrong:
            findings.notes.append(f"dead letter in {queue}, explained: records {sorted(ids)} all ended right")
        else:
            findings.dead_letters_unexplained += 1
            findings.problems.append(f"dead letter in {queue}: records {sorted(ids) or 'unknown'} "
                                     f"({'these failed: ' + ', '.join(wrong) if wrong else 'no record named'}): "
                                     f"{body[:300]}")
    for error in world.context.store.errors.iter_all():
        findings.sync_errors[str(error.category)] += 1
        findings.notes.append(f"sync error {error.category} on {error.record_type} {error.record_id}: {error.message}")
    return findings


# --- running -------------------------------------------------------------------------------------------


@dataclass
class SoakResult:
    options: SoakOptions
    journal: Journal
    faults: Counter[str]
    findings: Findings
    seconds: float
    operations_seconds: float
    settle_seconds: float

    @property
    def ok(self) -> bool:
        return self.findings.ok

    def table(self) -> str:
        f = self.findings
        rows: list[tuple[str, str]] = [("seed", str(self.options.seed)),
                                       ("operations", str(sum(self.journal.operations.values())))]
        rows += [(f"  {kind}", str(count)) for kind, count in sorted(self.journal.operations.items())]
        if self.journal.refused:
            rows.append(("  refused by the CRM (as in the UI)", str(sum(self.journal.refused.values()))))
        rows.append(("faults injected", str(sum(self.faults.values()))))
        rows += [(f"  {kind}", str(count)) for kind, count in sorted(self.faults.items())]
        rows += [
            ("records: live opportunities", str(f.opportunities)),
            ("records: live deals (Salesforce pipelines)", str(f.deals)),
            ("records: linked pairs", str(f.pairs)),
            ("  opportunities left without deal (deleted in HubSpot)", str(f.unpaired_allowed)),
            ("person writes checked (fields)", str(f.checked_fields)),
            ("duplicates", _mark(f.duplicates)),
            ("unpaired records", _mark(f.unpaired)),
            ("orphan links", _mark(f.orphan_links)),
            ("mismatched fields", _mark(f.mismatched_fields)),
            ("lost updates", _mark(f.lost_updates)),
            ("echoes (dealsync wrote a value back to its origin)", _mark(sum(f.echoes.values()))),
            ("  other unchanged writes by dealsync (replays, races)",
             ", ".join(f"{k} {v}" for k, v in f.unchanged_writes.items())),
            ("quiescent", "yes" if f.settled else "NO  <-- FAIL"),
            ("DLQ messages", str(f.dead_letters)),
            ("  unexplained (a record they name ended wrong)", _mark(f.dead_letters_unexplained)),
            ("sync errors recorded", ", ".join(f"{k} {v}" for k, v in sorted(f.sync_errors.items())) or "0"),
            ("wall time", f"{self.seconds:.1f} s (operations {self.operations_seconds:.1f} s, settling "
                          f"{self.settle_seconds:.1f} s)"),
            ("result", "PASS" if self.ok else "FAIL"),
        ]
        width = max(len(label) for label, _ in rows)
        lines = [f"{label.ljust(width)}  {value}" for label, value in rows]
        for title, items in (("problems", f.problems), ("notes (not failures)", f.notes)):
            if items:
                lines += ["", f"{title}:"]
                lines += [f"- {item}" for item in items[:100]]
                if len(items) > 100:
                    lines.append(f"- ... and {len(items) - 100} more")
        return "\n".join(lines)


def _mark(count: int) -> str:
    return "0" if not count else f"{count}  <-- FAIL"


def run_in(world: LocalWorld, options: SoakOptions, progress: Callable[[str], None] | None = None) -> SoakResult:
    """Run the soak in a started world (empty CRMs, no schedules firing by themselves)."""
    say = progress or (lambda message: None)
    started = time.monotonic()
    soak_world = prepare(world)
    journal = Journal()
    chaos = Chaos(soak_world, options)
    people = [Person(number, soak_world, journal, options) for number in range(options.users)]
    shares = [options.operations // options.users + (1 if n < options.operations % options.users else 0)
              for n in range(options.users)]
    done = [0]
    phase_every = max(1, options.operations // max(1, options.phases))
    lock = threading.Lock()

    def on_operation() -> None:
        with lock:
            done[0] += 1
            count = done[0]
        if count % phase_every == 0:
            chaos.phase(count // phase_every)
            say(f"{count}/{options.operations} operations")

    errors: list[BaseException] = []

    def act(person: Person, share: int) -> None:
        try:
            person.run(share, on_operation)
        except BaseException as error:  # reported after the others finish
            errors.append(error)

    chaos.start()
    try:
        threads = [threading.Thread(target=act, args=(person, share), name=f"soak-person-{person.number}")
                   for person, share in zip(people, shares, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        operations_done = time.monotonic()
        if errors:
            raise RuntimeError(f"a person's operation failed unexpectedly: {errors[0]!r}") from errors[0]
        say("operations done; the sync catches up, faults still on")
        unsettled = _settle(soak_world, options.settle_timeout, "with the faults on")
    finally:
        chaos.stop()
    say("faults off; the scheduled poll runs once; settling")
    world.run_schedule(POLL_SCHEDULE)
    unsettled += _settle(soak_world, options.settle_timeout, "after the faults")
    settled = time.monotonic()
    findings = check(soak_world, journal)
    findings.settled = not unsettled
    findings.problems[:0] = unsettled
    finished = time.monotonic()
    return SoakResult(options, journal, chaos.injected(), findings, finished - started,
                      operations_done - started, settled - operations_done)


def _settle(world: SoakWorld, timeout: float, when: str) -> list[str]:
    """Let the world go quiet; a world that does not is a finding (checked as it is), not a crash."""
    try:
        world.settle(timeout)
    except TimeoutError as error:
        return [f"not quiescent {when} within {timeout:.0f} s: {error}"]
    return []


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """The handlers log every batch (and every simulated crash): keep the table readable."""
    from dealsync.observability import logger as dealsync_logger

    names = ["localworld", "dealsync"]
    saved = {name: logging.getLogger(name).level for name in names}
    saved_dealsync = dealsync_logger.log_level
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    dealsync_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        dealsync_logger.setLevel(saved_dealsync)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dealsync_local.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--operations", type=int, default=2000)
    parser.add_argument("--users", type=int, default=SoakOptions.users)
    parser.add_argument("--crash-every", type=int, default=SoakOptions.crash_every)
    parser.add_argument("--error-rate", type=float, default=SoakOptions.error_rate)
    parser.add_argument("--duplicate-rate", type=float, default=SoakOptions.duplicate_rate)
    parser.add_argument("--workers", type=int, default=WORKERS,
                        help="concurrent invocations of each worker (Lambda runs several; 1 = no races between them)")
    parser.add_argument("--state-dir", type=Path, help="where the world keeps its files (default: a temporary "
                                                        "directory, removed afterwards)")
    args = parser.parse_args(argv)
    options = SoakOptions(seed=args.seed, operations=args.operations, users=args.users, crash_every=args.crash_every,
                          error_rate=args.error_rate, duplicate_rate=args.duplicate_rate)
    # The handlers' metrics go to stdout as EMF lines (CloudWatch reads them in Lambda); here they would
    # bury the table, so they are off and whatever is still printed during the run is dropped.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    table = sys.stdout
    with contextlib.ExitStack() as stack:
        state_dir = args.state_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dealsync-soak-")))
        stack.enter_context(quiet_logs())
        stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
        # Lambda runs several invocations of a worker at once; so does the soak's world (more races, too).
        world = start_world(state_dir, pollers_per_source=args.workers, function_concurrency=args.workers)
        stack.callback(world.stop)
        print(f"soak: seed {options.seed}, {options.operations} operations by {options.users} people, "
              f"{args.workers} invocations of each worker at once", file=table, flush=True)
        result = run_in(world, options, progress=lambda message: print(f"soak: {message}", file=table, flush=True))
    print(result.table(), file=table, flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
