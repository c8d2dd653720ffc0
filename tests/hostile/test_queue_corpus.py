"""The queue entry points against the hostile corpus: Event Relay envelopes through the local partner bus,
and every worker's queue bodies, both in a batch with a legitimate neighbour (the real handler, invoked as
the SQS event source invokes it) and through the real queues (finite receives, then the DLQ)."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from dealsync_local.pollers import sqs_record
from tests.hostile.conftest import SECRET_MARKERS, HostileWorld, sync_state, table_changes
from tests.hostile.corpus import Keys
from tests.hostile.queue_corpus import QUEUE_CASES, RELAY_CASES, SF, QueueCase, RelayCase

pytestmark = pytest.mark.e2e

WORKER_OF_QUEUE = {"SalesforceChangesQueue": "sf_change", "HubSpotChangesQueue": "hs_change",
                   "ImportQueue": "import_batch", "RollupQueue": "rollup_recompute"}
MALFORMED_LOG = "malformed message on the"

# Relay envelopes that reach the queue, as the bodies the Salesforce changes worker finds there.
def _as_queue_body(case: RelayCase) -> QueueCase:
    def body(keys: Keys) -> str:
        return json.dumps(case.envelope(keys))
    return QueueCase(f"relay-{case.id}", SF, body, case.outcome)


ROUTED_RELAY_BODIES = [_as_queue_body(case) for case in RELAY_CASES if case.outcome != "unrouted"]
ALL_BODIES = [*QUEUE_CASES, *ROUTED_RELAY_BODIES]


def test_every_queue_has_a_solid_set() -> None:
    for queue in WORKER_OF_QUEUE:
        cases = [case for case in ALL_BODIES if case.queue == queue]
        assert sum(case.outcome == "malformed" for case in cases) >= 10, queue
        assert any(case.outcome == "handled" for case in cases), queue
        assert len({case.id for case in cases}) == len(cases), f"{queue}: case ids repeat"
    assert len(RELAY_CASES) >= 25


def _neighbour(world: HostileWorld, queue: str) -> str:
    """A legitimate body for ``queue``: handling it must not depend on the hostile one beside it."""
    case = next(case for case in QUEUE_CASES if case.queue == queue and case.outcome == "handled")
    return case.body(world.keys())


def _sqs_event(world: HostileWorld, queue: str, bodies: dict[str, str]) -> dict[str, Any]:
    arn = world.world.queue_arn(queue)
    return {"Records": [sqs_record({"MessageId": message_id, "ReceiptHandle": f"handle-{message_id}", "Body": body,
                                    "Attributes": {"ApproximateReceiveCount": "1"}}, arn)
                        for message_id, body in bodies.items()]}


@pytest.mark.parametrize("case", ALL_BODIES, ids=lambda case: f"{case.queue}:{case.id}")
def test_hostile_body_in_a_batch(hostile_world: HostileWorld, case: QueueCase) -> None:
    world = hostile_world
    before, first_log = world.begin()
    hostile_id, neighbour_id = f"hostile-{uuid.uuid4()}", f"neighbour-{uuid.uuid4()}"
    event = _sqs_event(world, case.queue, {hostile_id: case.body(world.keys()),
                                           neighbour_id: _neighbour(world, case.queue)})

    outcome = world.world.function(WORKER_OF_QUEUE[case.queue]).invoke(event)
    world.quiet()
    after = world.probe()

    assert outcome.ok, f"the batch crashed: {outcome.error_type}: {outcome.error_message}"
    failures = [item["itemIdentifier"] for item in (outcome.result or {}).get("batchItemFailures", [])]
    logged = world.logs.text_since(first_log)
    if case.outcome == "malformed":
        assert failures == [hostile_id], "the malformed message alone must be reported"
        cause = next((line for line in world.logs.lines[first_log:] if hostile_id in line), "")
        assert MALFORMED_LOG in cause, f"no log line names the malformed message: {logged[-2000:]}"
    else:
        assert failures == [], "a legitimate message was left for retry"
    changed = table_changes(sync_state(before.tables), sync_state(after.tables))
    assert not changed, f"the sync state changed: {changed}"
    for marker in SECRET_MARKERS:
        assert marker not in logged, f"the logs carry {marker!r}"


@pytest.mark.parametrize("case", [case for case in RELAY_CASES if case.outcome != "malformed"],
                         ids=lambda case: case.id)
def test_relay_routes_change_events_only(hostile_world: HostileWorld, case: RelayCase) -> None:
    world = hostile_world
    before, _ = world.begin()
    retried_before = world.retried(SF)
    response = requests.post(world.relay_url, json=case.envelope(world.keys()), timeout=30)
    assert response.status_code == 200, response.text
    deliveries = response.json()["deliveries"]
    if case.outcome == "unrouted":
        assert deliveries == []
        world.quiet()
        assert world.probe().received == before.received
    else:  # malformed ones are routed too: test_malformed_bodies_rest_in_the_dlq_after_finite_receives
        assert [delivery.get("error") for delivery in deliveries] == [None], deliveries
        world.quiet()
        after = world.probe()
        assert world.retried(SF) == retried_before, "a legitimate event was retried"
        assert after.handler_errors == before.handler_errors, "a worker crashed"
        assert not any(after.dead_letters.values()), f"dead letters: {after.dead_letters}"
        changed = table_changes(sync_state(before.tables), sync_state(after.tables))
        assert not changed, f"the sync state changed: {changed}"


def _queue_messages(world: HostileWorld, queue: str) -> Iterator[dict[str, Any]]:
    sqs = world.world.sqs()
    url = world.world.queue_url(queue)
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                       MessageSystemAttributeNames=["All"]).get("Messages", [])
        if not messages:
            return
        for message in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            yield dict(message)


def _dead_letter_queue(world: HostileWorld, queue: str) -> str:
    assert world.world.aws is not None
    return world.world.aws.resources.dead_letter_queues[queue]


@pytest.mark.parametrize("queue", sorted(WORKER_OF_QUEUE))
def test_malformed_bodies_rest_in_the_dlq_after_finite_receives(hostile_world: HostileWorld, queue: str) -> None:
    world, keys = hostile_world, hostile_world.keys()
    before, _ = world.begin()
    sqs = world.world.sqs()
    # SQS takes no empty body: that case exists only in a hand-made event.
    bodies = [case.body(keys) for case in QUEUE_CASES if case.queue == queue and case.outcome == "malformed"
              and case.body(keys)]
    for body in bodies:
        sqs.send_message(QueueUrl=world.world.queue_url(queue), MessageBody=body)
    if queue == SF:
        for case in RELAY_CASES:
            if case.outcome == "malformed":
                envelope = case.envelope(keys)
                requests.post(world.relay_url, json=envelope, timeout=30).raise_for_status()
                bodies.append(json.dumps(envelope))
    world.quiet(timeout=120)
    after = world.probe()

    dead = list(_queue_messages(world, _dead_letter_queue(world, queue)))
    resting, sent = Counter(_canonical(message["Body"]) for message in dead), Counter(_canonical(b) for b in bodies)
    assert resting == sent, f"missing from the DLQ: {list(sent - resting)}; not sent: {list(resting - sent)}"
    limit = world.max_receives(queue)
    assert all(int(message["Attributes"]["ApproximateReceiveCount"]) <= limit + 1 for message in dead)
    assert after.handler_errors == before.handler_errors, "a worker crashed"
    changed = table_changes(sync_state(before.tables), sync_state(after.tables))
    assert not changed, f"the sync state changed: {changed}"


def _canonical(body: str) -> str:
    try:
        return json.dumps(json.loads(body), sort_keys=True)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the json module reads
        return body


@pytest.mark.parametrize("queue", sorted(WORKER_OF_QUEUE))
def test_legitimate_hostile_bodies_are_acknowledged_at_once(hostile_world: HostileWorld, queue: str) -> None:
    world, keys = hostile_world, hostile_world.keys()
    before, _ = world.begin()
    retried_before = world.retried(queue)
    sqs = world.world.sqs()
    for case in QUEUE_CASES:
        if case.queue == queue and case.outcome == "handled":
            sqs.send_message(QueueUrl=world.world.queue_url(queue), MessageBody=case.body(keys))
    if queue == SF:
        for relay in RELAY_CASES:
            if relay.outcome == "handled":
                requests.post(world.relay_url, json=relay.envelope(keys), timeout=30).raise_for_status()
    world.quiet(timeout=60)
    after = world.probe()

    assert world.retried(queue) == retried_before, "a legitimate message was retried"
    assert not any(after.dead_letters.values()), f"dead letters: {after.dead_letters}"
    assert after.handler_errors == before.handler_errors, "a worker crashed"
    changed = table_changes(sync_state(before.tables), sync_state(after.tables))
    assert not changed, f"the sync state changed: {changed}"
