"""The HTTP entry points against the hostile corpus, over real sockets: each case is sent to the local
world's webhook API and must get its status, enqueue nothing (or, for the legitimate ones, be handled
without a trace of harm), change no DynamoDB item, leave every DLQ empty, crash no handler and log no
PII or secret from its payload."""

from __future__ import annotations

import pytest
import requests

from tests.hostile.conftest import SECRET_MARKERS, HostileWorld, sync_state, table_changes
from tests.hostile.corpus import HTTP_CASES, HttpCase, soap

pytestmark = pytest.mark.e2e

QUEUE_OF_ROUTE = {"hubspot": "HubSpotChangesQueue", "outbound": "SalesforceChangesQueue"}


def _send(world: HostileWorld, case: HttpCase) -> requests.Response:
    keys = world.keys()
    request = case.build(keys)
    url = (keys.hubspot_url if case.route == "hubspot" else keys.outbound_url) + request.url_suffix
    return requests.request(request.method, url, data=request.body, headers=request.headers, timeout=60)


def test_the_corpus_is_large_enough() -> None:
    for route in QUEUE_OF_ROUTE:
        cases = [case for case in HTTP_CASES if case.route == route]
        assert len(cases) >= 50, f"{route}: {len(cases)} cases"
        assert len({case.id for case in cases}) == len(cases), "case ids repeat"


@pytest.mark.parametrize("case", HTTP_CASES, ids=lambda case: f"{case.route}:{case.id}")
def test_hostile_request(hostile_world: HostileWorld, case: HttpCase) -> None:
    world = hostile_world
    before, first_log = world.begin()

    response = _send(world, case)
    world.quiet()
    after = world.probe()

    assert response.status_code == case.status, response.text[:500]
    assert case.says.lower() in response.text.lower(), response.text[:500]
    assert after.handler_errors == before.handler_errors, "a handler crashed"
    assert not any(after.dead_letters.values()), f"dead letters: {after.dead_letters}"
    queue = QUEUE_OF_ROUTE[case.route]
    if case.outcome == "refused":
        assert after.received == before.received, "a refused request enqueued a message"
        assert not table_changes(before.tables, after.tables), "a refused request changed DynamoDB"
    else:
        assert world.received_on(after, queue) > world.received_on(before, queue), "nothing reached the worker"
        changed = table_changes(sync_state(before.tables), sync_state(after.tables))
        assert not changed, f"a message about records that do not exist changed the sync state: {changed}"
    logged = world.logs.text_since(first_log)
    for marker in SECRET_MARKERS:
        assert marker not in logged, f"the logs carry {marker!r}"
        assert marker not in response.text, f"the answer echoes {marker!r}"


def test_a_replayed_outbound_message_is_acknowledged_and_not_enqueued_again(hostile_world: HostileWorld) -> None:
    world = hostile_world
    body = soap(world.keys()).encode()
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    first = requests.post(world.outbound_url, data=body, headers=headers, timeout=30)
    world.quiet()
    before = world.probe()
    replay = requests.post(world.outbound_url, data=body, headers=headers, timeout=30)
    world.quiet()
    after = world.probe()
    assert (first.status_code, replay.status_code) == (200, 200)
    assert "<Ack>true</Ack>" in replay.text
    assert after.received == before.received, "the replay was enqueued again"
    assert not table_changes(before.tables, after.tables)
    assert after.handler_errors == before.handler_errors
