"""The log privacy check of the end-to-end sessions (dealsync_local.log_privacy), on its own: what it
collects, and what it counts as personal data. The sessions themselves run it against their worlds."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from dealsync.observability import logger as dealsync_logger
from dealsync_local.log_privacy import LogCapture, LogLine, PersonalData, leaks, log_line

DATA = PersonalData.of(names=["Ada", "Lovelace", "Jo", "María José"],
                       descriptions=["Renewal for Acme; sourced via Web.", "  "])


@pytest.fixture
def capture() -> Iterator[LogCapture]:
    started = LogCapture().start()
    try:
        yield started
    finally:
        started.stop()


def _line(text: str, logger: str = "dealsync") -> LogLine:
    return log_line(logger, text)


def test_personal_data_keeps_name_words_of_three_letters_or_more_and_real_descriptions() -> None:
    assert DATA.names == {"Ada", "Lovelace", "María", "José"}
    assert DATA.descriptions == {"Renewal for Acme; sourced via Web."}


def test_ids_counts_and_categories_are_not_personal_data() -> None:
    line = _line(json.dumps({"message": "opportunities synced", "updated_ids": ["0068d0000000002AAA"],
                             "created": 3, "category": "WAITING_FOR_ACCOUNT", "service": "dealsync"}))
    assert leaks([line], DATA) == []


@pytest.mark.parametrize(("text", "reason"), [
    ('{"message": "contact not found", "email": "ada@acme.example"}', "e-mail ada@acme.example"),
    ("owner pat.rivera@example.com.local has no HubSpot user", "e-mail pat.rivera@example.com.local"),
    ('{"message": "skipped", "contact": "Ada Lovelace"}', "name 'Ada'"),
    ('{"message": "skipped", "contact": "Lovelace"}', "name 'Lovelace'"),
    (json.dumps({"message": "bad name", "value": "María"}), "name 'María'"),  # JSON-escaped as Mar\\u00eda
    ('{"error": "value too long: Renewal for Acme; sourced via Web."}', "description 'Renewal for Acme"),
])
def test_e_mails_name_words_and_descriptions_are_found(text: str, reason: str) -> None:
    (found,) = leaks([_line(text)], DATA)
    assert reason in found
    assert found.startswith("dealsync: ")


@pytest.mark.parametrize("text", [
    '{"message": "Adam and adalovelace and ADA are other words"}',  # whole words, case-sensitive
    '{"message": "Renewal for Acme"}',  # part of a description is not the description
    '{"message": "Jo"}',  # too short to tell from an ordinary word
    '{"arn": "arn:aws:sqs:us-east-1:123456789012:queue", "at": "@timestamp"}',
])
def test_what_is_not_taken_for_personal_data(text: str) -> None:
    assert leaks([_line(text)], DATA) == []


def test_the_product_logger_is_collected_as_the_json_it_prints(capture: LogCapture) -> None:
    dealsync_logger.warning("contact skipped", extra={"contact_email": "ada@acme.example"})
    (line,) = [line for line in capture.lines if "contact skipped" in line.text]
    assert line.logger == "dealsync"
    assert json.loads(line.text.splitlines()[0])["contact_email"] == "ada@acme.example"
    assert "e-mail ada@acme.example" in leaks([line], DATA)[0]


def test_the_runtime_and_library_loggers_are_collected_but_not_the_world_machinery(capture: LogCapture) -> None:
    logging.getLogger("localworld.invoke").warning("HsChangeFunction failed: ValueError: Ada Lovelace")
    logging.getLogger("botocore.retries").warning("retrying for ada@acme.example")
    logging.getLogger("dealsync_local.hubspot.app").warning("emulator: contact Ada Lovelace created")
    logging.getLogger("localworld.pollers").warning("poller: Ada Lovelace")
    loggers = sorted(line.logger for line in capture.lines)
    assert loggers == ["botocore.retries", "localworld.invoke"]


def test_stop_detaches_and_the_marker_proves_attachment(capture: LogCapture) -> None:
    capture.prove_attached()
    assert not any("log privacy check" in line.text for line in capture.lines)  # the marker is not kept
    capture.stop()
    dealsync_logger.info("after the session")
    assert not any("after the session" in line.text for line in capture.lines)
    with pytest.raises(AssertionError, match="does not see"):
        capture.prove_attached()


def test_the_product_logger_level_quieted_by_the_cli_is_restored(capture: LogCapture) -> None:
    product = logging.getLogger("dealsync")
    product.setLevel(logging.WARNING)  # what dealsync_cli.target.quiet_product_logs does
    dealsync_logger.info("unseen while quiet")
    capture.restore_level()
    dealsync_logger.info("seen once restored")
    texts = [line.text for line in capture.lines]
    assert not any("unseen while quiet" in text for text in texts)
    assert any("seen once restored" in text for text in texts)


def test_a_capture_started_after_the_cli_quieted_the_product_still_holds_info() -> None:
    product = logging.getLogger("dealsync")
    before = product.level
    product.setLevel(logging.WARNING)
    capture = LogCapture().start()
    try:
        capture.restore_level()
        assert product.getEffectiveLevel() == logging.INFO
    finally:
        capture.stop()
        product.setLevel(before)
