"""HubSpot-defined association types (v4 ids, direction, primary/unlabeled pairs, v3 names) and a
bidirectional in-memory association index."""

from __future__ import annotations

from dataclasses import dataclass

from dealsync_local.hubspot.common import COMPANIES, CONTACTS, DEALS, ObjectType


@dataclass(frozen=True)
class AssociationType:
    type_id: int
    from_type: ObjectType
    to_type: ObjectType
    inverse_id: int
    primary: bool = False
    unlabeled_id: int | None = None  # for a primary type: its unlabeled companion
    v3_name: str = ""

    @property
    def label(self) -> str | None:
        return "Primary" if self.primary else None

    @property
    def webhook_name(self) -> str:
        """The association type as webhook events spell it: ``DEAL_TO_CONTACT``."""
        return f"{self.from_type.label}_TO_{self.to_type.label}"


# From the associations guide (reference §3.4): direction matters.
ASSOCIATION_TYPES: dict[int, AssociationType] = {
    t.type_id: t
    for t in (
        AssociationType(3, DEALS, CONTACTS, 4, v3_name="deal_to_contact"),
        AssociationType(4, CONTACTS, DEALS, 3, v3_name="contact_to_deal"),
        AssociationType(5, DEALS, COMPANIES, 6, primary=True, unlabeled_id=341, v3_name="deal_to_company"),
        AssociationType(341, DEALS, COMPANIES, 342, v3_name="deal_to_company_unlabeled"),
        AssociationType(6, COMPANIES, DEALS, 5, primary=True, unlabeled_id=342, v3_name="company_to_deal"),
        AssociationType(342, COMPANIES, DEALS, 341, v3_name="company_to_deal_unlabeled"),
        AssociationType(1, CONTACTS, COMPANIES, 2, primary=True, unlabeled_id=279,
                        v3_name="contact_to_company"),
        AssociationType(279, CONTACTS, COMPANIES, 280, v3_name="contact_to_company_unlabeled"),
        AssociationType(2, COMPANIES, CONTACTS, 1, primary=True, unlabeled_id=280,
                        v3_name="company_to_contact"),
        AssociationType(280, COMPANIES, CONTACTS, 279, v3_name="company_to_contact_unlabeled"),
        AssociationType(451, DEALS, DEALS, 451, v3_name="deal_to_deal"),
    )
}
DEFAULT_TYPE: dict[tuple[str, str], int] = {
    (DEALS.name, CONTACTS.name): 3,
    (CONTACTS.name, DEALS.name): 4,
    (DEALS.name, COMPANIES.name): 341,
    (COMPANIES.name, DEALS.name): 342,
    (CONTACTS.name, COMPANIES.name): 279,
    (COMPANIES.name, CONTACTS.name): 280,
    (DEALS.name, DEALS.name): 451,
}


def types_between(from_type: ObjectType, to_type: ObjectType) -> list[AssociationType]:
    return [t for t in ASSOCIATION_TYPES.values() if t.from_type is from_type and t.to_type is to_type]


Key = tuple[str, int]


class AssociationIndex:
    """Both directions of every association: ``(type, id) -> to type -> to id -> {type ids}``,
    each type id seen from the key's side."""

    def __init__(self) -> None:
        self._edges: dict[Key, dict[str, dict[int, set[int]]]] = {}

    def clear(self) -> None:
        self._edges.clear()

    def targets(self, from_type: ObjectType, from_id: int, to_type: ObjectType) -> dict[int, set[int]]:
        return self._edges.get((from_type.name, from_id), {}).get(to_type.name, {})

    def types(self, from_type: ObjectType, from_id: int, to_type: ObjectType, to_id: int) -> set[int]:
        return self.targets(from_type, from_id, to_type).get(to_id, set())

    def add(self, type_id: int, from_id: int, to_id: int) -> bool:
        """Add one type id (and its inverse); True when it was not there before."""
        kind = ASSOCIATION_TYPES[type_id]
        forward = self._edges.setdefault((kind.from_type.name, from_id), {}).setdefault(
            kind.to_type.name, {}).setdefault(to_id, set())
        if type_id in forward:
            return False
        forward.add(type_id)
        self._edges.setdefault((kind.to_type.name, to_id), {}).setdefault(
            kind.from_type.name, {}).setdefault(from_id, set()).add(kind.inverse_id)
        return True

    def remove(self, type_id: int, from_id: int, to_id: int) -> bool:
        kind = ASSOCIATION_TYPES[type_id]
        removed = self._discard(kind.from_type.name, from_id, kind.to_type.name, to_id, type_id)
        self._discard(kind.to_type.name, to_id, kind.from_type.name, from_id, kind.inverse_id)
        return removed

    def _discard(self, a_type: str, a_id: int, b_type: str, b_id: int, type_id: int) -> bool:
        by_type = self._edges.get((a_type, a_id), {}).get(b_type)
        if not by_type or b_id not in by_type or type_id not in by_type[b_id]:
            return False
        by_type[b_id].discard(type_id)
        if not by_type[b_id]:
            del by_type[b_id]
        return True

    def all_from(self, from_type: ObjectType, from_id: int) -> dict[str, dict[int, set[int]]]:
        return self._edges.get((from_type.name, from_id), {})
