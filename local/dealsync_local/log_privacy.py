"""No personal data in the logs: a pytest session fixture for the end-to-end sessions.

Import it in the conftest of a session that runs the handlers against a local world::

    from dealsync_local.log_privacy import log_privacy  # noqa: F401 - the session's logs hold no PII

For the whole session it keeps every log record the handlers emit — the layer's Powertools logger
(``dealsync``, formatted as the JSON it prints), what the local Lambda runtime logs of a failed
invocation (``localworld.invoke``, as the Lambda runtime would in CloudWatch) and the warnings of the
libraries the handlers use (stdlib logging) — and at the end, before the world stops, fails if any of
them holds an e-mail address, a word of a person's name (Salesforce contacts and users, HubSpot contacts
and owners) or a description (opportunities, accounts, contacts, deals, companies; every value a HubSpot
record ever had) found in the emulators. The emulators' own logs are not the product's and are not read.

The check is one pass over the collected text: names as whole words (case-sensitive, three letters or
more: shorter ones cannot be told from ordinary words), descriptions as whole values.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from dealsync.observability import logger as dealsync_logger

if TYPE_CHECKING:
    from dealsync_local.hubspot import HubSpotEmulator
    from dealsync_local.salesforce import SalesforceEmulator
    from dealsync_local.world import LocalWorld

PRODUCT_LOGGER = "dealsync"
# The local Lambda runtime's log of a failed invocation (exception and traceback): CloudWatch has it too.
RUNTIME_LOGGERS = ("localworld.invoke",)
# The local world's own machinery (emulators, moto, pollers, HTTP API): not the product's logs.
WORLD_LOGGERS = ("localworld", "dealsync_local", "werkzeug", "moto")
EMAIL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}")
WORD = re.compile(r"\w+")
MIN_NAME_LENGTH = 3
# Salesforce objects and fields holding a person's name or free text (e-mails are found by their shape).
SALESFORCE_NAMES = {"Contact": ("FirstName", "LastName"), "User": ("FirstName", "LastName")}
SALESFORCE_DESCRIPTIONS = {"Contact": "Description", "Opportunity": "Description", "Account": "Description"}
HUBSPOT_NAMES = {"contacts": ("firstname", "lastname")}
HUBSPOT_DESCRIPTIONS = {"deals": "description", "companies": "description", "contacts": "description"}


def _is_logger(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == prefix or name.startswith(f"{prefix}.") for prefix in prefixes)


@dataclass(frozen=True)
class LogLine:
    logger: str
    text: str  # as written, plus the decoded strings of a JSON line (so "Garc\\u00eda" reads "García")


class LogCollector(logging.Handler):
    """Keeps the formatted text of every record it handles (thread-safe: handlers log from worker threads)."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(formatter)
        self.lines: list[LogLine] = []
        self._lines_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # a record that cannot be formatted is still checked by its raw parts
            text = f"{record.msg} {record.args} {record.__dict__}"
        line = log_line(record.name, text)
        with self._lines_lock:
            self.lines.append(line)

    def discard(self, marker: str) -> int:
        """Forget the lines holding ``marker``; returns how many there were."""
        with self._lines_lock:
            kept = [line for line in self.lines if marker not in line.text]
            discarded = len(self.lines) - len(kept)
            self.lines = kept
        return discarded


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def log_line(logger: str, text: str) -> LogLine:
    """A formatted record as checked: a JSON line also reads as its decoded strings."""
    try:
        decoded = json.loads(text)
    except ValueError:
        return LogLine(logger, text)
    return LogLine(logger, "\n".join([text, *_strings(decoded)]))


class _OtherLoggers(logging.Filter):
    """Records reaching the root logger that are neither the product's (collected on its own logger)
    nor the local world's machinery."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _is_logger(record.name, RUNTIME_LOGGERS):
            return True
        return not _is_logger(record.name, (PRODUCT_LOGGER, *WORLD_LOGGERS))


@dataclass(eq=False)  # compared by identity: it is registered as a pytest plugin
class LogCapture:
    """Collects the product's log records from ``start()`` to ``stop()``."""

    product: LogCollector = field(init=False)
    others: LogCollector = field(init=False)
    level: int = field(init=False)  # the product logger's level to hold: INFO (the deployed default) or lower

    def __post_init__(self) -> None:
        # The product's records formatted by the Powertools formatter, exactly as they are printed.
        self.product = LogCollector(dealsync_logger.registered_formatter)
        self.others = LogCollector(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.others.addFilter(_OtherLoggers())

    def start(self) -> LogCapture:
        self.level = min(logging.getLogger(PRODUCT_LOGGER).getEffectiveLevel(), logging.INFO)
        logging.getLogger(PRODUCT_LOGGER).addHandler(self.product)
        logging.getLogger().addHandler(self.others)
        return self

    def restore_level(self) -> None:
        """Put the product logger back to its level: the CLI, which some tests run in-process, quiets it
        to WARNING (right for a CLI process, but the handlers of the world keep logging here)."""
        logging.getLogger(PRODUCT_LOGGER).setLevel(self.level)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.restore_level()

    def stop(self) -> None:
        logging.getLogger(PRODUCT_LOGGER).removeHandler(self.product)
        logging.getLogger().removeHandler(self.others)

    @property
    def lines(self) -> list[LogLine]:
        return [*self.product.lines, *self.others.lines]

    def prove_attached(self) -> None:
        """Log a marker through the product's logger and find it: the check is not vacuous."""
        marker = f"log-privacy-{uuid.uuid4().hex}"
        dealsync_logger.warning("log privacy check", extra={"marker": marker})
        if not self.product.discard(marker):
            raise AssertionError("the log privacy check does not see the dealsync logger's records")


@dataclass(frozen=True)
class PersonalData:
    names: frozenset[str]  # single words of people's names
    descriptions: frozenset[str]

    @classmethod
    def of(cls, names: Iterable[str], descriptions: Iterable[str]) -> PersonalData:
        words = {word for name in names for word in WORD.findall(name) if len(word) >= MIN_NAME_LENGTH}
        return cls(frozenset(words), frozenset(text.strip() for text in descriptions if text and text.strip()))


def personal_data(salesforce: SalesforceEmulator, hubspot: HubSpotEmulator) -> PersonalData:
    """Every name and description the session put into the two CRMs (deleted records too)."""
    names: list[str] = []
    descriptions: list[str] = []
    for sobject, fields in SALESFORCE_NAMES.items():
        query = f"SELECT Id, {', '.join(fields)} FROM {sobject}"  # noqa: S608 - constant names
        for row in salesforce.soql(query, include_deleted=True):
            if row["Id"] != salesforce.integration_user_id:  # dealsync's own API user is not a person
                names.extend(str(row[name]) for name in fields if row.get(name))
    for sobject, description in SALESFORCE_DESCRIPTIONS.items():
        for row in salesforce.soql(f"SELECT {description} FROM {sobject}", include_deleted=True):  # noqa: S608
            if row.get(description):
                descriptions.append(str(row[description]))
    store = hubspot.store
    with store.lock:
        for kind, properties in HUBSPOT_NAMES.items():
            for record in store.records[kind].values():
                names.extend(value for name in properties for value, _, _ in record.history_of(name))
                names.extend(str(record.values[name]) for name in properties if record.values.get(name))
        for kind, description in HUBSPOT_DESCRIPTIONS.items():
            for record in store.records[kind].values():
                descriptions.extend(value for value, _, _ in record.history_of(description))
                if record.values.get(description):
                    descriptions.append(str(record.values[description]))
        for owner in store.owners.values():
            names.extend([owner.first_name, owner.last_name])
    return PersonalData.of(names, descriptions)


def leaks(lines: Iterable[LogLine], data: PersonalData) -> list[str]:
    """One message per log line holding an e-mail address, a name or a description."""
    found: list[str] = []
    for line in lines:
        reasons = [f"e-mail {match}" for match in sorted(set(EMAIL.findall(line.text)))]
        reasons += [f"name {word!r}" for word in sorted(data.names.intersection(WORD.findall(line.text)))]
        reasons += [f"description {text[:40]!r}" for text in sorted(data.descriptions) if text in line.text]
        if reasons:
            found.append(f"{line.logger}: {', '.join(reasons)} in: {line.text.splitlines()[0][:400]}")
    return found


@pytest.fixture(scope="session", autouse=True)
def log_privacy(local_world: LocalWorld, request: pytest.FixtureRequest) -> Iterator[LogCapture]:
    """The session's log capture; at the end (before the world stops) fails on any personal data."""
    capture = LogCapture().start()
    request.config.pluginmanager.register(capture, f"log-privacy-{id(capture)}")  # restores the level per test
    try:
        yield capture
        capture.restore_level()
        capture.prove_attached()
        assert local_world.crms is not None
        data = personal_data(local_world.crms.salesforce.app, local_world.crms.hubspot.app)
        found = leaks(capture.lines, data)
        assert not found, (f"{len(found)} log line(s) hold personal data "
                           f"({len(capture.lines)} lines checked):\n" + "\n".join(found[:30]))
    finally:
        request.config.pluginmanager.unregister(capture)
        capture.stop()
