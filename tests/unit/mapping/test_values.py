"""Canonical values and the converters to and from each CRM."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from dealsync.mapping.values import (
    ConversionError,
    UnmappedValueError,
    ValueKind,
    canonical_boolean,
    canonical_date,
    canonical_datetime,
    canonical_from_hubspot,
    canonical_from_salesforce,
    canonical_number,
    canonical_text,
    date_to_epoch_ms,
    date_to_hubspot,
    fit_for_salesforce,
    kind_for_types,
    reverse_value_map,
    round_to_scale,
    sf_id_18,
    to_hubspot,
    to_salesforce,
    truncate_text,
)
from dealsync.models.domain import ErrorCategory

TYPE_MAP = {"New Business": "newbusiness", "Existing Business": "existingbusiness"}


@pytest.mark.parametrize(("raw", "expected"), [
    (None, None),
    ("", None),
    ("   ", None),
    ("Acme", "Acme"),
    (" Acme ", " Acme "),
    ("a\r\nb\rc\nd", "a\nb\nc\nd"),
])
def test_text_blank_and_newlines(raw: object, expected: str | None) -> None:
    assert canonical_text(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("2026-03-01", "2026-03-01"),
    ("2026-03-01T00:00:00Z", "2026-03-01"),
    ("2026-03-01T00:00:00.000Z", "2026-03-01"),
    ("2026-03-01T00:00:00.000+0000", "2026-03-01"),
    ("2026-03-01T23:30:00-02:00", "2026-03-02"),  # its UTC date
    ("2019-12-07T16:50:06.678Z", "2019-12-07"),
    ("1430438400000", "2015-05-01"),  # the reference's midnight-UTC epoch example
    (1430438400000, "2015-05-01"),
    (date(2026, 3, 1), "2026-03-01"),
    (None, None),
    ("", None),
])
def test_dates_accept_every_form(raw: object, expected: str | None) -> None:
    assert canonical_date(raw) == expected


def test_date_round_trips_through_hubspot() -> None:
    for day in ("2026-03-01", "2024-02-29", "1999-12-31", "1970-01-01"):
        out = date_to_hubspot(day)
        assert out == f"{day}T00:00:00Z"
        assert canonical_date(out) == day
        assert canonical_date(str(date_to_epoch_ms(day))) == day
    assert date_to_epoch_ms("2015-05-01") == 1430438400000


def test_date_conversions_by_kind() -> None:
    assert to_hubspot(ValueKind.DATE, "2026-03-01") == "2026-03-01T00:00:00Z"
    assert to_salesforce(ValueKind.DATE, "2026-03-01") == "2026-03-01"
    assert to_salesforce(ValueKind.DATE, "2026-03-01", salesforce_type="datetime") == "2026-03-01T00:00:00.000Z"
    assert canonical_from_hubspot(ValueKind.DATE, "2026-03-01T00:00:00Z") == canonical_from_salesforce(
        ValueKind.DATE, "2026-03-01")


def test_bad_date_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="Invalid isoformat"):
        canonical_date("next tuesday")


@pytest.mark.parametrize(("raw", "expected"), [
    ("2013-05-20T20:49:32.000+0000", "2013-05-20T20:49:32.000Z"),
    ("2013-05-20T20:49:32Z", "2013-05-20T20:49:32.000Z"),
    ("2013-05-20T22:49:32.123+02:00", "2013-05-20T20:49:32.123Z"),
    ("2013-05-20T20:49:32", "2013-05-20T20:49:32.000Z"),  # naive: UTC
    ("1369082972000", "2013-05-20T20:49:32.000Z"),
    (datetime(2013, 5, 20, 22, 49, 32, tzinfo=timezone(timedelta(hours=2))), "2013-05-20T20:49:32.000Z"),
    ("", None),
])
def test_datetimes_are_utc_with_milliseconds(raw: object, expected: str | None) -> None:
    assert canonical_datetime(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("100", "100"),
    ("100.0", "100"),
    ("100.00", "100"),
    ("1E+2", "100"),
    (100, "100"),
    (100.0, "100"),
    (1234.57, "1234.57"),
    ("0.250", "0.25"),
    ("-0", "0"),
    ("-12.5", "-12.5"),
    ("1e-7", "0.0000001"),
    ("12345678901234567.89", "12345678901234567.89"),
    (None, None),
    ("", None),
])
def test_numbers_are_normalised(raw: object, expected: str | None) -> None:
    assert canonical_number(raw) == expected


@pytest.mark.parametrize("raw", ["abc", "NaN", "Infinity", True])
def test_bad_numbers_are_value_errors(raw: object) -> None:
    with pytest.raises(ValueError, match="number"):
        canonical_number(raw)


def test_number_conversions() -> None:
    assert to_salesforce(ValueKind.NUMBER, "1500") == 1500
    assert isinstance(to_salesforce(ValueKind.NUMBER, "1500"), int)
    assert to_salesforce(ValueKind.NUMBER, "1234.57") == 1234.57
    assert to_hubspot(ValueKind.NUMBER, "1500") == "1500"
    # Salesforce JSON float back to the same canonical text: a round trip is stable
    assert canonical_number(to_salesforce(ValueKind.NUMBER, "1234.57")) == "1234.57"


@pytest.mark.parametrize(("value", "scale", "expected"), [
    ("1234.565", 2, "1234.57"),  # ROUND_HALF_UP
    ("1234.564", 2, "1234.56"),
    ("2.5", 0, "3"),
    ("100", 2, "100"),
    ("-2.5", 0, "-3"),
])
def test_rounding_to_salesforce_scale(value: str, scale: int, expected: str) -> None:
    assert round_to_scale(value, scale) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    (True, "true"), (False, "false"), ("true", "true"), ("FALSE", "false"), (None, "false"), ("", "false"),
])
def test_booleans_are_never_blank(raw: object, expected: str) -> None:
    assert canonical_boolean(raw) == expected


def test_boolean_round_trip_and_bad_value() -> None:
    assert to_salesforce(ValueKind.BOOLEAN, "true") is True
    assert to_salesforce(ValueKind.BOOLEAN, "false") is False
    assert to_hubspot(ValueKind.BOOLEAN, "true") == "true"
    assert canonical_from_hubspot(ValueKind.BOOLEAN, None) == canonical_from_salesforce(ValueKind.BOOLEAN, False)
    with pytest.raises(ValueError, match="boolean"):
        canonical_boolean("maybe")


def test_picklist_value_map_both_ways() -> None:
    assert canonical_from_salesforce(ValueKind.PICKLIST, "New Business") == "New Business"
    assert canonical_from_hubspot(ValueKind.PICKLIST, "newbusiness", TYPE_MAP) == "New Business"
    assert to_hubspot(ValueKind.PICKLIST, "Existing Business", TYPE_MAP) == "existingbusiness"
    assert to_salesforce(ValueKind.PICKLIST, "Existing Business") == "Existing Business"


def test_unmapped_picklist_values_name_the_value() -> None:
    with pytest.raises(UnmappedValueError, match="'Partner Referral' of Type") as info:
        to_hubspot(ValueKind.PICKLIST, "Partner Referral", TYPE_MAP, "Type")
    assert info.value.category is ErrorCategory.UNMAPPED_VALUE
    with pytest.raises(UnmappedValueError, match="HubSpot value 'renewal'"):
        canonical_from_hubspot(ValueKind.PICKLIST, "renewal", TYPE_MAP, "Type")


def test_picklist_without_value_map_passes_values() -> None:
    assert canonical_from_hubspot(ValueKind.PICKLIST, "EUR") == "EUR"
    assert to_hubspot(ValueKind.PICKLIST, "EUR") == "EUR"


def test_reverse_value_map_first_salesforce_value_wins() -> None:
    assert reverse_value_map({"A": "x", "B": "x", "C": "y"}) == {"x": "A", "y": "C"}


@pytest.mark.parametrize(("raw", "expected"), [
    ("b;a", "a;b"),
    ("a;b", "a;b"),
    ("a; b ;a;;", "a;b"),
    (";", None),
    ("", None),
    (None, None),
])
def test_multipicklist_is_order_insensitive(raw: object, expected: str | None) -> None:
    assert canonical_from_salesforce(ValueKind.MULTIPICKLIST, raw) == expected
    assert canonical_from_hubspot(ValueKind.MULTIPICKLIST, raw) == expected


def test_multipicklist_value_map_per_item() -> None:
    value_map = {"Red": "red", "Blue": "blue"}
    assert canonical_from_hubspot(ValueKind.MULTIPICKLIST, "red;blue", value_map) == "Blue;Red"
    assert to_hubspot(ValueKind.MULTIPICKLIST, "Blue;Red", value_map) == "blue;red"
    assert to_salesforce(ValueKind.MULTIPICKLIST, "Blue;Red") == "Blue;Red"
    with pytest.raises(UnmappedValueError):
        canonical_from_hubspot(ValueKind.MULTIPICKLIST, "red;green", value_map)


@pytest.mark.parametrize(("id15", "id18"), [
    ("70130000001tcyI", "70130000001tcyIAAQ"),
    ("003G000001SUbc4", "003G000001SUbc4IAD"),
    ("0036000000QKv5T", "0036000000QKv5TAAT"),
    ("00558000001N0Ke", "00558000001N0KeAAK"),
    ("a0D30000001n7Pi", "a0D30000001n7PiEAI"),
])
def test_salesforce_ids_extend_to_18(id15: str, id18: str) -> None:
    assert sf_id_18(id15) == id18
    assert sf_id_18(id18) == id18
    assert canonical_from_salesforce(ValueKind.REFERENCE, id15) == id18


def test_blank_goes_out_as_clear() -> None:
    for kind in ValueKind:
        assert to_hubspot(kind, None) == ""
        assert to_salesforce(kind, None) is None


def test_truncation_to_salesforce_length() -> None:
    assert truncate_text("x" * 150, 120) == ("x" * 120, True)
    assert truncate_text("x" * 120, 120) == ("x" * 120, False)
    assert truncate_text(None, 120) == (None, False)
    assert fit_for_salesforce(ValueKind.TEXT, "y" * 121, length=120) == ("y" * 120, True)
    assert fit_for_salesforce(ValueKind.NUMBER, "10.005", scale=2) == ("10.01", False)
    assert fit_for_salesforce(ValueKind.PICKLIST, "z" * 300, length=255) == ("z" * 300, False)


@pytest.mark.parametrize(("salesforce_type", "hubspot_type", "kind"), [
    ("picklist", "enumeration", ValueKind.PICKLIST),
    ("reference", "enumeration", ValueKind.REFERENCE),
    ("multipicklist", "enumeration", ValueKind.MULTIPICKLIST),
    ("boolean", "bool", ValueKind.BOOLEAN),
    ("currency", "number", ValueKind.NUMBER),
    ("percent", "number", ValueKind.NUMBER),
    ("int", "number", ValueKind.NUMBER),
    ("double", "number", ValueKind.NUMBER),
    ("email", "string", ValueKind.TEXT),
    ("textarea", "string", ValueKind.TEXT),
    ("date", "date", ValueKind.DATE),
    ("datetime", "datetime", ValueKind.DATETIME),
    ("datetime", "date", ValueKind.DATE),
])
def test_kind_for_types(salesforce_type: str, hubspot_type: str, kind: ValueKind) -> None:
    assert kind_for_types(salesforce_type, hubspot_type) is kind


def test_kind_for_unsyncable_type() -> None:
    with pytest.raises(ValueError, match="'base64' cannot be synced"):
        kind_for_types("base64")


def test_conversion_error_carries_category() -> None:
    error = ConversionError("bad", category=ErrorCategory.HUBSPOT_VALIDATION)
    assert isinstance(error, ValueError)
    assert (error.message, error.category) == ("bad", ErrorCategory.HUBSPOT_VALIDATION)


def test_datetime_round_trip() -> None:
    moment = datetime(2026, 3, 1, 10, 20, 30, 456000, tzinfo=UTC)
    text = canonical_datetime(moment)
    assert text == "2026-03-01T10:20:30.456Z"
    assert to_hubspot(ValueKind.DATETIME, text) == text
    assert canonical_from_hubspot(ValueKind.DATETIME, to_salesforce(ValueKind.DATETIME, text)) == text
