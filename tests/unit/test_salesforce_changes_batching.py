"""Which messages of a Salesforce changes batch are carried to the next batch (whole HubSpot hundreds)."""

from __future__ import annotations

from dealsync.services.sf_change import CARRY_UNIT, messages_to_carry


def one_id_per_message(count: int, prefix: str = "m") -> tuple[dict[str, set[str]], list[str]]:
    order = [f"{prefix}{n}" for n in range(count)]
    return {f"006{prefix}{n}": {message} for n, message in enumerate(order)}, order


def synced_now(opportunities: dict[str, set[str]], carried: set[str]) -> set[str]:
    return {oid for oid, messages in opportunities.items() if not messages <= carried}


def test_without_a_backlog_nothing_waits() -> None:
    for count in (1, 99, 150, 237):
        opportunities, order = one_id_per_message(count)
        assert messages_to_carry(opportunities, order, set(), backlog=False, unit=100) == set()


def test_whole_hundreds_carry_nothing() -> None:
    opportunities, order = one_id_per_message(300)
    assert messages_to_carry(opportunities, order, set(), backlog=True, unit=100) == set()


def test_with_a_backlog_the_partial_hundred_is_carried_in_arrival_order() -> None:
    opportunities, order = one_id_per_message(237)
    carried = messages_to_carry(opportunities, order, set(), backlog=True, unit=100)
    assert carried == set(order[200:])
    assert len(synced_now(opportunities, carried)) == 200


def test_with_a_backlog_a_small_batch_waits_for_the_next_one() -> None:
    opportunities, order = one_id_per_message(70)
    assert messages_to_carry(opportunities, order, set(), backlog=True, unit=100) == set(order)


def test_messages_carried_once_are_synced_now_filling_a_whole_hundred() -> None:
    opportunities, order = one_id_per_message(150)
    must_now = set(order[:70])  # came back from an earlier carry: never carried again
    carried = messages_to_carry(opportunities, order, must_now, backlog=True, unit=100)
    assert not carried & must_now
    assert len(synced_now(opportunities, carried)) == 100
    assert carried == set(order[100:])


def test_carried_messages_alone_above_the_hundreds_are_all_synced() -> None:
    opportunities, order = one_id_per_message(130)
    must_now = set(order[:120])
    carried = messages_to_carry(opportunities, order, must_now, backlog=True, unit=100)
    assert not carried & must_now
    assert len(synced_now(opportunities, carried)) >= 120


def test_an_opportunity_named_by_two_messages_goes_now_when_either_is_synced_now() -> None:
    opportunities, order = one_id_per_message(120)
    opportunities["006m0"].add("m119")  # m119 also names an opportunity synced now
    carried = messages_to_carry(opportunities, order, set(), backlog=True, unit=100)
    now = synced_now(opportunities, carried)
    assert len(now) == 100
    assert "006m0" in now
    assert "m119" in carried  # its own opportunity still waits; 006m0 is synced now through m0


def test_a_message_naming_many_opportunities_is_kept_whole() -> None:
    opportunities = {f"006a{n}": {"bulk"} for n in range(50)} | {f"006b{n}": {f"m{n}"} for n in range(80)}
    order = ["bulk", *[f"m{n}" for n in range(80)]]
    carried = messages_to_carry(opportunities, order, set(), backlog=True, unit=100)
    assert "bulk" not in carried
    assert len(carried) == 30


def test_by_default_batches_are_carried_up_to_whole_salesforce_queries() -> None:
    assert CARRY_UNIT == 200  # one Salesforce query (200 ids), two HubSpot batches (100 deals)
    opportunities, order = one_id_per_message(350)
    carried = messages_to_carry(opportunities, order, set(), backlog=True)
    assert len(synced_now(opportunities, carried)) == 200
