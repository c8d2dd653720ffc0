"""The per-field sync decision: all four rules, both directions, blanking, echoes, conflicts, new links."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dealsync.mapping.rules import NO_SHADOW, Action, FieldDecision, ShadowInput, decide_field, later_side
from dealsync.mapping.values import ConversionError, FieldValue, Unconvertible
from dealsync.models.domain import ErrorCategory, Side, SyncRule

EARLY = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
LATE = datetime(2026, 3, 1, 11, 0, tzinfo=UTC)

NONE, TO_HS, TO_SF = Action.NONE, Action.TO_HUBSPOT, Action.TO_SALESFORCE
TWO_WAY = SyncRule.TWO_WAY
PREFER = SyncRule.PREFER_SALESFORCE_UNLESS_BLANK
ALWAYS = SyncRule.ALWAYS_SALESFORCE
DONT = SyncRule.DONT_SYNC

# (case, rule, salesforce, hubspot, shadow, sf changed at, hs changed at) -> (action, value, new shadow, conflict)
Case = tuple[str, SyncRule, str | None, str | None, ShadowInput, datetime | None, datetime | None]
Outcome = tuple[Action, str | None, ShadowInput, bool]

TABLE: list[tuple[Case, Outcome]] = [
    # two_way
    (("echo: both equal the shadow", TWO_WAY, "A", "A", "A", LATE, LATE), (NONE, "A", "A", False)),
    (("salesforce changed", TWO_WAY, "B", "A", "A", LATE, EARLY), (TO_HS, "B", "B", False)),
    (("hubspot changed", TWO_WAY, "A", "B", "A", LATE, EARLY), (TO_SF, "B", "B", False)),
    (("salesforce cleared clears hubspot", TWO_WAY, None, "A", "A", LATE, EARLY), (TO_HS, None, None, False)),
    (("hubspot cleared clears salesforce", TWO_WAY, "A", None, "A", EARLY, LATE), (TO_SF, None, None, False)),
    (("hubspot filled an empty field", TWO_WAY, None, "B", None, LATE, EARLY), (TO_SF, "B", "B", False)),
    (("both changed, hubspot later", TWO_WAY, "B", "C", "A", EARLY, LATE), (TO_SF, "C", "C", True)),
    (("both changed, salesforce later", TWO_WAY, "B", "C", "A", LATE, EARLY), (TO_HS, "B", "B", True)),
    (("both changed, salesforce cleared later", TWO_WAY, None, "C", "A", LATE, EARLY), (TO_HS, None, None, True)),
    (("both changed, hubspot cleared later", TWO_WAY, "B", None, "A", EARLY, LATE), (TO_SF, None, None, True)),
    (("both changed to the same value", TWO_WAY, "B", "B", "A", EARLY, LATE), (NONE, "B", "B", False)),
    (("both cleared", TWO_WAY, None, None, "A", EARLY, LATE), (NONE, None, None, False)),
    (("both changed, same time: salesforce", TWO_WAY, "B", "C", "A", LATE, LATE), (TO_HS, "B", "B", True)),
    (("both changed, no times: salesforce", TWO_WAY, "B", "C", "A", None, None), (TO_HS, "B", "B", True)),
    (("both changed, only hubspot time", TWO_WAY, "B", "C", "A", None, EARLY), (TO_SF, "C", "C", True)),
    (("new link: salesforce only", TWO_WAY, "A", None, NO_SHADOW, EARLY, None), (TO_HS, "A", "A", False)),
    (("new link: hubspot only", TWO_WAY, None, "A", NO_SHADOW, None, EARLY), (TO_SF, "A", "A", False)),
    (("new link: equal", TWO_WAY, "A", "A", NO_SHADOW, EARLY, LATE), (NONE, "A", "A", False)),
    (("new link: both blank", TWO_WAY, None, None, NO_SHADOW, EARLY, LATE), (NONE, None, None, False)),
    (("new link: differ, hubspot later", TWO_WAY, "A", "B", NO_SHADOW, EARLY, LATE), (TO_SF, "B", "B", False)),
    (("new link: differ, salesforce later", TWO_WAY, "A", "B", NO_SHADOW, LATE, EARLY), (TO_HS, "A", "A", False)),
    # prefer_salesforce_unless_blank
    (("prefer: echo", PREFER, "A", "A", "A", LATE, LATE), (NONE, "A", "A", False)),
    (("prefer: salesforce changed", PREFER, "B", "A", "A", LATE, EARLY), (TO_HS, "B", "B", False)),
    (("prefer: hubspot edit is reset", PREFER, "A", "B", "A", EARLY, LATE), (TO_HS, "A", "A", False)),
    (("prefer: hubspot fills empty salesforce", PREFER, None, "B", None, LATE, EARLY), (TO_SF, "B", "B", False)),
    (("prefer: salesforce cleared a value hubspot gave it", PREFER, None, "B", "B", LATE, EARLY),
     (TO_HS, None, None, False)),
    (("prefer: salesforce cleared clears hubspot", PREFER, None, "A", "A", LATE, EARLY), (TO_HS, None, None, False)),
    (("prefer: hubspot cleared does not clear salesforce", PREFER, "A", None, "A", EARLY, LATE),
     (TO_HS, "A", "A", False)),
    (("prefer: both changed, salesforce value wins", PREFER, "B", "C", "A", EARLY, LATE), (TO_HS, "B", "B", True)),
    (("prefer: salesforce cleared, hubspot changed later", PREFER, None, "C", "A", EARLY, LATE),
     (TO_SF, "C", "C", True)),
    (("prefer: hubspot changed, salesforce cleared later", PREFER, None, "C", "A", LATE, EARLY),
     (TO_HS, None, None, True)),
    (("prefer: both cleared", PREFER, None, None, "A", EARLY, LATE), (NONE, None, None, False)),
    (("prefer: new link, salesforce wins", PREFER, "A", "B", NO_SHADOW, EARLY, LATE), (TO_HS, "A", "A", False)),
    (("prefer: new link, salesforce empty", PREFER, None, "B", NO_SHADOW, LATE, EARLY), (TO_SF, "B", "B", False)),
    (("prefer: new link, both blank", PREFER, None, None, NO_SHADOW, LATE, EARLY), (NONE, None, None, False)),
    # always_salesforce
    (("always: echo", ALWAYS, "A", "A", "A", LATE, LATE), (NONE, "A", "A", False)),
    (("always: salesforce changed", ALWAYS, "B", "A", "A", LATE, EARLY), (TO_HS, "B", "B", False)),
    (("always: hubspot edit is reset", ALWAYS, "A", "B", "A", EARLY, LATE), (TO_HS, "A", "A", False)),
    (("always: never to an empty salesforce", ALWAYS, None, "B", None, EARLY, LATE), (NONE, None, None, False)),
    (("always: salesforce cleared clears hubspot", ALWAYS, None, "A", "A", LATE, EARLY), (TO_HS, None, None, False)),
    (("always: salesforce cleared wins even later hubspot", ALWAYS, None, "C", "A", EARLY, LATE),
     (TO_HS, None, None, True)),
    (("always: both changed", ALWAYS, "B", "C", "A", EARLY, LATE), (TO_HS, "B", "B", True)),
    (("always: new link", ALWAYS, "A", "B", NO_SHADOW, EARLY, LATE), (TO_HS, "A", "A", False)),
    (("always: new link, salesforce empty", ALWAYS, None, "B", NO_SHADOW, EARLY, LATE),
     (NONE, None, NO_SHADOW, False)),
    # dont_sync
    (("dont: salesforce changed", DONT, "B", "A", "A", LATE, EARLY), (NONE, "B", "A", False)),
    (("dont: hubspot changed", DONT, "A", "B", "A", EARLY, LATE), (NONE, "A", "A", False)),
    (("dont: cleared", DONT, None, "A", "A", LATE, EARLY), (NONE, None, "A", False)),
    (("dont: new link", DONT, "A", "B", NO_SHADOW, LATE, EARLY), (NONE, "A", NO_SHADOW, False)),
]


@pytest.mark.parametrize(("case", "outcome"), TABLE, ids=[case[0] for case, _ in TABLE])
def test_rule_table(case: Case, outcome: Outcome) -> None:
    _, rule, salesforce, hubspot, shadow, sf_at, hs_at = case
    decision = decide_field(rule, salesforce, hubspot, shadow, salesforce_changed_at=sf_at, hubspot_changed_at=hs_at)
    assert (decision.action, decision.value, decision.shadow, decision.conflict) == outcome
    assert decision.blocked is None


def test_winner_is_reported() -> None:
    decision = decide_field(TWO_WAY, "B", "C", "A", salesforce_changed_at=EARLY, hubspot_changed_at=LATE)
    assert decision.winner is Side.HUBSPOT


@pytest.mark.parametrize(("origin", "action"), [(Side.HUBSPOT, TO_SF), (Side.SALESFORCE, TO_HS), (None, TO_HS)])
def test_origin_breaks_ties(origin: Side | None, action: Action) -> None:
    decision = decide_field(TWO_WAY, "B", "C", "A", salesforce_changed_at=LATE, hubspot_changed_at=LATE, origin=origin)
    assert decision.action is action


def test_echo_after_our_own_write_is_a_no_op() -> None:
    # HubSpot changed B -> we wrote B to Salesforce -> the Salesforce change event comes back.
    first = decide_field(TWO_WAY, "A", "B", "A", salesforce_changed_at=EARLY, hubspot_changed_at=LATE)
    assert (first.action, first.shadow) == (TO_SF, "B")
    echo = decide_field(TWO_WAY, "B", "B", first.shadow, salesforce_changed_at=LATE, hubspot_changed_at=LATE)
    assert echo.action is NONE
    assert echo.conflict is False


def _unconvertible() -> Unconvertible:
    return Unconvertible(ConversionError("HubSpot value 'renewal' unmapped", category=ErrorCategory.UNMAPPED_VALUE))


def test_unconvertible_winner_is_blocked_and_keeps_the_shadow() -> None:
    odd = _unconvertible()
    decision = decide_field(TWO_WAY, "A", odd, "A", salesforce_changed_at=EARLY, hubspot_changed_at=LATE)
    assert decision.action is TO_SF
    assert decision.blocked is odd
    assert decision.shadow == "A"


def test_unconvertible_value_is_overwritten_by_the_winner() -> None:
    odd = _unconvertible()
    decision = decide_field(TWO_WAY, "B", odd, "A", salesforce_changed_at=LATE, hubspot_changed_at=EARLY)
    assert (decision.action, decision.value, decision.shadow, decision.conflict) == (TO_HS, "B", "B", True)
    always = decide_field(ALWAYS, "A", odd, "A")
    assert (always.action, always.value, always.blocked) == (TO_HS, "A", None)


def test_unconvertible_never_equals_itself_as_a_change() -> None:
    odd: FieldValue = _unconvertible()
    decision = decide_field(TWO_WAY, odd, odd, "A")
    assert decision.action is not NONE  # both "changed"; nothing agrees with a value that cannot be read


def test_later_side_handles_naive_times_as_utc() -> None:
    naive_late = datetime(2026, 3, 1, 11, 0)
    assert later_side(EARLY, naive_late) is Side.HUBSPOT
    assert later_side(naive_late, EARLY) is Side.SALESFORCE
    assert later_side(None, None, Side.HUBSPOT) is Side.HUBSPOT


def test_decision_is_immutable() -> None:
    decision = FieldDecision(NONE, "A", "A")
    with pytest.raises(AttributeError):
        decision.action = TO_HS  # type: ignore[misc]


# HubSpot's value is one dealsync copied there from Salesforce: not a HubSpot change, whatever its timestamp.
@pytest.mark.parametrize(("rule", "salesforce", "hubspot", "shadow", "action", "new_shadow"), [
    # a worker died between the HubSpot write and the link write: the shadow lags, Salesforce changed since
    (TWO_WAY, "C", "B", "A", TO_HS, "C"),
    # a new pair (no shadow): the deal holds an older Salesforce value dealsync copied
    (TWO_WAY, "C", "B", NO_SHADOW, TO_HS, "C"),
    # Salesforce changed back to the lagging shadow's value: still Salesforce's
    (TWO_WAY, "A", "B", "A", TO_HS, "A"),
    # cleared in Salesforce after the copy
    (TWO_WAY, None, "B", "A", TO_HS, None),
    (PREFER, None, "B", "A", TO_HS, None),
    (ALWAYS, None, "B", "A", TO_HS, None),
    # the copy is current: nothing to write, and the shadow catches up
    (TWO_WAY, "B", "B", "A", NONE, "B"),
])
def test_a_value_dealsync_copied_to_hubspot_loses_to_salesforce(
        rule: SyncRule, salesforce: FieldValue, hubspot: FieldValue, shadow: ShadowInput, action: Action,
        new_shadow: FieldValue) -> None:
    # the copy's timestamp is later than Salesforce's change: without the flag HubSpot would win the conflict
    decision = decide_field(rule, salesforce, hubspot, shadow, salesforce_changed_at=EARLY, hubspot_changed_at=LATE,
                            hubspot_copied=True)
    assert (decision.action, decision.shadow, decision.conflict) == (action, new_shadow, False)


def test_an_unmarked_hubspot_value_with_the_later_timestamp_wins() -> None:
    decision = decide_field(TWO_WAY, "C", "B", "A", salesforce_changed_at=EARLY, hubspot_changed_at=LATE)
    assert (decision.action, decision.conflict) == (TO_SF, True)


def test_without_a_shadow_a_blank_hubspot_set_by_a_person_is_a_change() -> None:
    # a person cleared the field in HubSpot (late) after dealsync created the opportunity from an older read
    decision = decide_field(TWO_WAY, "A", None, NO_SHADOW, salesforce_changed_at=None, hubspot_changed_at=LATE,
                            hubspot_cleared=True)
    assert (decision.action, decision.value) == (TO_SF, None)
    never_set = decide_field(TWO_WAY, "A", None, NO_SHADOW, salesforce_changed_at=None, hubspot_changed_at=LATE)
    assert (never_set.action, never_set.value) == (TO_HS, "A")


def test_a_value_dealsync_copied_to_salesforce_loses_to_hubspot() -> None:
    # Salesforce's field history says dealsync made its last change (a copy of an older HubSpot value)
    decision = decide_field(TWO_WAY, "B", "C", "A", salesforce_changed_at=LATE, hubspot_changed_at=EARLY,
                            salesforce_copied=True)
    assert (decision.action, decision.value, decision.conflict) == (TO_SF, "C", False)
    both = decide_field(TWO_WAY, "B", "C", "A", salesforce_copied=True, hubspot_copied=True)
    assert both.action is TO_HS  # both copies: Salesforce, the system of record
