"""The crosswalk: one link per linked pair, stored under both ids so either side finds it in one read.

Both items of a link are always written together in one transaction, so they never disagree. The
field shadows (DESIGN 1.2) live on the link with a version for optimistic updates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from dealsync.models.domain import Link, LinkKind, LinkResult, LinkStatus, ShadowValue, Side
from dealsync.store.dynamo import DynamoTable, Item, Key, iso, now_utc, parse_iso, serialize, serialize_value


class StaleShadowError(Exception):
    """The shadow changed since it was read: re-read the link and compute again."""

    def __init__(self, link: Link, expected_version: int) -> None:
        super().__init__(
            f"{link.kind} link {link.salesforce_id}⇄{link.hubspot_id}: shadow version {expected_version} is stale"
        )
        self.link = link
        self.expected_version = expected_version


class LinkNotFoundError(LookupError):
    pass


def _key(kind: LinkKind, side: Side, record_id: str) -> Key:
    marker = "SF" if side is Side.SALESFORCE else "HS"
    return {"pk": f"LINK#{kind}#{marker}#{record_id}", "sk": "LINK"}


def _to_link(item: Item) -> Link:
    return Link(
        kind=LinkKind(item["kind"]),
        salesforce_id=item["salesforce_id"],
        hubspot_id=item["hubspot_id"],
        status=LinkStatus(item["status"]),
        status_reason=item.get("status_reason"),
        created_at=parse_iso(item["created_at"]) or now_utc(),
        updated_at=parse_iso(item["updated_at"]) or now_utc(),
        last_synced_at=parse_iso(item.get("last_synced_at")),
        shadow=dict(item.get("shadow") or {}),
        shadow_version=int(item.get("shadow_version", 0)),
        pending={side: dict(values) for side, values in item["pending"].items()} if item.get("pending") else None,
    )


def _items(link: Link) -> tuple[Item, Item]:
    body: dict[str, Any] = {
        "kind": str(link.kind),
        "salesforce_id": link.salesforce_id,
        "hubspot_id": link.hubspot_id,
        "status": str(link.status),
        "status_reason": link.status_reason,
        "created_at": iso(link.created_at),
        "updated_at": iso(link.updated_at),
        "last_synced_at": iso(link.last_synced_at) if link.last_synced_at else None,
        "shadow": dict(link.shadow),
        "shadow_version": link.shadow_version,
    }
    return (
        {**_key(link.kind, Side.SALESFORCE, link.salesforce_id), **body},
        {**_key(link.kind, Side.HUBSPOT, link.hubspot_id), **body},
    )


def _plain_pending(pending: Mapping[str, Mapping[str, ShadowValue]]) -> dict[str, dict[str, ShadowValue]]:
    return {side: dict(values) for side, values in pending.items()}


def _pending_updates(link: Link, pending: Mapping[str, Mapping[str, ShadowValue]],
                     *, claim: bool = True) -> list[dict[str, Any]]:
    """Set the link's pending values, on the version read; a claim moves the version too."""
    values = {":pending": _plain_pending(pending), ":expected": link.shadow_version,
              ":sf": link.salesforce_id, ":hs": link.hubspot_id}
    if claim:
        values[":next"] = link.shadow_version + 1
    return [
        {
            "Update": {
                "Key": serialize(_key(link.kind, side, record_id)),
                "UpdateExpression": "SET pending = :pending" + (", shadow_version = :next" if claim else ""),
                "ConditionExpression": "shadow_version = :expected AND salesforce_id = :sf AND hubspot_id = :hs",
                "ExpressionAttributeValues": serialize(values),
            }
        }
        for side, record_id in ((Side.SALESFORCE, link.salesforce_id), (Side.HUBSPOT, link.hubspot_id))
    ]


def _with_pending(link: Link, pending: Mapping[str, Mapping[str, ShadowValue]]) -> Link:
    return link.model_copy(update={"pending": _plain_pending(pending), "shadow_version": link.shadow_version + 1})


def _is_condition_failure(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = error.response.get("CancellationReasons", [])
        return any(reason.get("Code") == "ConditionalCheckFailed" for reason in reasons) or not reasons
    return False


class LinkStore:
    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    # --- reads ---------------------------------------------------------------------------------
    def get(self, kind: LinkKind, side: Side, record_id: str) -> Link | None:
        item = self.table.get(_key(kind, side, record_id))
        return _to_link(item) if item else None

    def get_by_salesforce_id(self, kind: LinkKind, salesforce_id: str) -> Link | None:
        return self.get(kind, Side.SALESFORCE, salesforce_id)

    def get_by_hubspot_id(self, kind: LinkKind, hubspot_id: str) -> Link | None:
        return self.get(kind, Side.HUBSPOT, hubspot_id)

    def get_many(self, kind: LinkKind, side: Side, record_ids: Iterable[str]) -> dict[str, Link]:
        """Links for many ids of one side, keyed by that side's id (100 ids per DynamoDB call)."""
        ids = list(dict.fromkeys(record_ids))
        items = self.table.batch_get([_key(kind, side, record_id) for record_id in ids])
        found: dict[str, Link] = {}
        for item in items:
            link = _to_link(item)
            found[link.salesforce_id if side is Side.SALESFORCE else link.hubspot_id] = link
        return found

    def page(self, kind: LinkKind, limit: int = 500,
             start_key: Mapping[str, Any] | None = None) -> tuple[list[Link], Item | None]:
        """One page of every link of a kind (each link once: its Salesforce-side item), and the key to
        continue from (None at the end). A Scan, so links written by any version are all found; the
        page may hold fewer than ``limit`` links (other items are read and left out), even none."""
        items, next_key = self.table.scan_page(limit, start_key, "begins_with(pk, :prefix)",
                                               {":prefix": f"LINK#{kind}#SF#"})
        return [_to_link(item) for item in items], next_key

    # --- writes --------------------------------------------------------------------------------
    def create(self, kind: LinkKind, salesforce_id: str, hubspot_id: str,
               shadow: Mapping[str, ShadowValue] | None = None, *, status: LinkStatus = LinkStatus.ACTIVE,
               status_reason: str | None = None) -> LinkResult:
        """Link two records, or return the link that already stands.

        A free or tombstoned id on both sides is taken in one transaction; when another creator won
        the race (or either id is linked already), the standing link comes back with created=False.
        ``status``: a pair known only once it has ended (its deal deleted before it was linked) is
        recorded ended, in one write.
        """
        moment = now_utc()
        link = Link(
            kind=kind, salesforce_id=salesforce_id, hubspot_id=hubspot_id, status=status,
            status_reason=status_reason, created_at=moment,
            updated_at=moment, last_synced_at=moment if shadow is not None else None,
            shadow=dict(shadow or {}), shadow_version=1 if shadow is not None else 0,
        )
        condition = "attribute_not_exists(pk) OR #status = :tombstoned"
        transaction = [
            {
                "Put": {
                    "Item": serialize(item),
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {":tombstoned": serialize_value(str(LinkStatus.TOMBSTONED))},
                }
            }
            for item in _items(link)
        ]
        try:
            self.table.transact(transaction)
        except ClientError as error:
            if not _is_condition_failure(error):
                raise
            standing = self.get(kind, Side.SALESFORCE, salesforce_id)
            if standing is None or standing.status is LinkStatus.TOMBSTONED:
                standing = self.get(kind, Side.HUBSPOT, hubspot_id)
            if standing is None:  # the winner tombstoned it again in between: try once more
                return self.create(kind, salesforce_id, hubspot_id, shadow, status=status,
                                   status_reason=status_reason)
            return LinkResult(link=standing, created=False)
        return LinkResult(link=link, created=True)

    def _set_status(self, link: Link, status: LinkStatus, reason: str | None,
                    allowed_from: tuple[LinkStatus, ...]) -> Link:
        moment = now_utc()
        updated = link.model_copy(update={"status": status, "status_reason": reason, "updated_at": moment})
        names = {"#status": "status"}
        values = {
            ":status": str(status), ":reason": reason, ":updated": iso(moment),
            ":sf": link.salesforce_id, ":hs": link.hubspot_id,
            **{f":from{index}": str(state) for index, state in enumerate(allowed_from)},
        }
        allowed = " OR ".join(f"#status = :from{index}" for index in range(len(allowed_from)))
        transaction = [
            {
                "Update": {
                    "Key": serialize(_key(link.kind, side, record_id)),
                    "UpdateExpression": "SET #status = :status, status_reason = :reason, updated_at = :updated",
                    "ConditionExpression": f"salesforce_id = :sf AND hubspot_id = :hs AND ({allowed})",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": serialize(values),
                }
            }
            for side, record_id in ((Side.SALESFORCE, link.salesforce_id), (Side.HUBSPOT, link.hubspot_id))
        ]
        try:
            self.table.transact(transaction)
        except ClientError as error:
            if not _is_condition_failure(error):
                raise
            current = self.get(link.kind, Side.SALESFORCE, link.salesforce_id)
            if current is not None and current.hubspot_id == link.hubspot_id and current.status is status:
                return current  # already there: pausing twice is not an error
            raise LinkNotFoundError(
                f"{link.kind} link {link.salesforce_id}⇄{link.hubspot_id} is not in a state that allows {status}"
            ) from error
        return updated

    def pause(self, link: Link, reason: str) -> Link:
        return self._set_status(link, LinkStatus.PAUSED, reason, (LinkStatus.ACTIVE,))

    def resume(self, link: Link) -> Link:
        return self._set_status(link, LinkStatus.ACTIVE, None, (LinkStatus.PAUSED,))

    def tombstone(self, link: Link, reason: str) -> Link:
        return self._set_status(link, LinkStatus.TOMBSTONED, reason, (LinkStatus.ACTIVE, LinkStatus.PAUSED))

    def set_pending(self, link: Link, pending: Mapping[str, Mapping[str, ShadowValue]]) -> Link | None:
        """Write ahead: the values a sync is about to write, by side, before it writes them to the CRMs
        (update_shadow removes them). It is also the sync's claim on the pair: it moves the shadow version,
        and it is refused (None) when the link moved since it was read — another sync saved or claimed the
        pair after this one read it, so what this one read may be stale: it must not write, but read again."""
        try:
            self.table.transact(_pending_updates(link, pending))
        except ClientError as error:
            if _is_condition_failure(error):
                return None
            raise
        return _with_pending(link, pending)

    def set_pending_many(self, pending: Sequence[tuple[Link, Mapping[str, Mapping[str, ShadowValue]]]]
                         ) -> list[Link | None]:
        """``set_pending`` for many links, 50 to a transaction (100 items); a transaction refused because
        one link moved is done again link by link."""
        done: list[Link | None] = []
        for start in range(0, len(pending), 50):
            chunk = pending[start:start + 50]
            transaction = [item for link, values in chunk for item in _pending_updates(link, values)]
            try:
                self.table.transact(transaction)
            except ClientError as error:
                if not _is_condition_failure(error):
                    raise
                done += [self.set_pending(link, values) for link, values in chunk]
                continue
            done += [_with_pending(link, values) for link, values in chunk]
        return done

    def keep_pending(self, claimed: Link, attempts: int = 3) -> Link | None:
        """After a sync's writes, when another sync saved the pair first (``update_shadow`` refused): its
        write-ahead (``claimed.pending``) goes back on the link that stands, under that link's own pending
        values, without moving the version. Each value it wrote was read from the other side: a side still
        holding it got it from dealsync, not from a person, and the other side's differing value is the later
        change (without this, the next sync would take dealsync's stale write for the person's change and send
        it on). Returns the link as kept; None when the pair is gone or kept moving."""
        if not claimed.pending:
            return None
        for _ in range(attempts):
            current = self.get(claimed.kind, Side.HUBSPOT, claimed.hubspot_id)
            if current is None or current.salesforce_id != claimed.salesforce_id:
                return None
            standing = current.pending or {}
            merged = {side: {**claimed.pending.get(side, {}), **standing.get(side, {})}
                      for side in (*claimed.pending, *(side for side in standing if side not in claimed.pending))}
            try:
                self.table.transact(_pending_updates(current, merged, claim=False))
            except ClientError as error:
                if _is_condition_failure(error):
                    continue
                raise
            return current.model_copy(update={"pending": _plain_pending(merged)})
        return None

    def update_shadow(self, link: Link, changes: Mapping[str, ShadowValue], expected_version: int | None = None,
                      synced_at: datetime | None = None) -> Link:
        """Record values both sides now agree on. Refused when the shadow moved since it was read."""
        expected = link.shadow_version if expected_version is None else expected_version
        moment = synced_at or now_utc()
        shadow = {**link.shadow, **changes}
        updated = link.model_copy(update={"shadow": shadow, "shadow_version": expected + 1, "last_synced_at": moment,
                                          "updated_at": moment, "pending": None})
        values = {
            ":shadow": shadow, ":next": expected + 1, ":expected": expected,
            ":synced": iso(moment), ":sf": link.salesforce_id, ":hs": link.hubspot_id,
        }
        transaction = [
            {
                "Update": {
                    "Key": serialize(_key(link.kind, side, record_id)),
                    "UpdateExpression": "SET shadow = :shadow, shadow_version = :next, "
                    "last_synced_at = :synced, updated_at = :synced REMOVE pending",
                    "ConditionExpression": "shadow_version = :expected AND salesforce_id = :sf AND hubspot_id = :hs",
                    "ExpressionAttributeValues": serialize(values),
                }
            }
            for side, record_id in ((Side.SALESFORCE, link.salesforce_id), (Side.HUBSPOT, link.hubspot_id))
        ]
        try:
            self.table.transact(transaction)
        except ClientError as error:
            if _is_condition_failure(error):
                raise StaleShadowError(link, expected) from error
            raise
        return updated
