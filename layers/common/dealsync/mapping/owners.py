"""Owners (DESIGN 1.5): Salesforce users and HubSpot owners are matched by e-mail, case-insensitively.

- SF→HS: the HubSpot owner with the Salesforce owner's e-mail; none → owner left empty, OWNER_NOT_FOUND.
  Any Salesforce user may sync to HubSpot, active or not.
- HS→SF: the match must be an active Salesforce user. Without one, a new opportunity goes to the
  integration user, and an update keeps its Salesforce owner; either way the HubSpot owner is reset
  to the Salesforce owner's counterpart (HubSpot: "resets to the last value from Salesforce").
- Several users with one e-mail: the active one, then the lowest id (deterministic).
Messages name ids only, never e-mails.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from dealsync.mapping.values import ConversionError, Unconvertible, sf_id_18
from dealsync.models.domain import ErrorCategory


def normalise_email(email: str | None) -> str | None:
    if email is None:
        return None
    email = email.strip().casefold()
    return email or None


@dataclass(frozen=True)
class SalesforceUser:
    id: str
    email: str | None
    active: bool = True


@dataclass(frozen=True)
class HubSpotOwner:
    id: str
    email: str | None


class OwnerDirectory:
    """The users and owners a worker loaded, indexed both ways. Pure data: no lookups happen here."""

    def __init__(
        self,
        salesforce_users: Iterable[SalesforceUser] = (),
        hubspot_owners: Iterable[HubSpotOwner] = (),
        *,
        integration_user_id: str | None = None,
    ) -> None:
        self.integration_user_id = sf_id_18(integration_user_id) if integration_user_id else None
        self._users: dict[str, SalesforceUser] = {}
        self._users_by_email: dict[str, list[SalesforceUser]] = {}
        for user in salesforce_users:
            user = SalesforceUser(sf_id_18(user.id), user.email, user.active)
            self._users[user.id] = user
            email = normalise_email(user.email)
            if email:
                self._users_by_email.setdefault(email, []).append(user)
        self._owners: dict[str, HubSpotOwner] = {}
        self._owners_by_email: dict[str, list[HubSpotOwner]] = {}
        for owner in hubspot_owners:
            self._owners[str(owner.id)] = owner
            email = normalise_email(owner.email)
            if email:
                self._owners_by_email.setdefault(email, []).append(owner)

    def salesforce_user(self, user_id: str | None) -> SalesforceUser | None:
        return self._users.get(sf_id_18(user_id)) if user_id else None

    def hubspot_owner(self, owner_id: str | None) -> HubSpotOwner | None:
        return self._owners.get(str(owner_id)) if owner_id else None

    def salesforce_users_for_email(self, email: str | None) -> list[SalesforceUser]:
        """Active users first, then by id."""
        users = self._users_by_email.get(normalise_email(email) or "", [])
        return sorted(users, key=lambda user: (not user.active, user.id))

    def hubspot_owner_for_email(self, email: str | None) -> HubSpotOwner | None:
        owners = self._owners_by_email.get(normalise_email(email) or "", [])
        return min(owners, key=lambda owner: (len(owner.id), owner.id)) if owners else None

    def fingerprint(self) -> str:
        """A digest of every match this directory can make (users' ids, e-mails and activity; owners' ids
        and e-mails): it changes when an owner or user appears, goes, or changes e-mail or activity."""
        users = sorted((user.id, normalise_email(user.email) or "", user.active) for user in self._users.values())
        owners = sorted((owner.id, normalise_email(owner.email) or "") for owner in self._owners.values())
        return hashlib.sha256(repr((users, owners)).encode()).hexdigest()


@dataclass(frozen=True)
class OwnerError:
    category: ErrorCategory
    message: str


@dataclass(frozen=True)
class HubSpotOwnerMatch:
    """SF→HS: the value for `hubspot_owner_id` (None = empty) and the error when there was no match."""

    hubspot_owner_id: str | None
    error: OwnerError | None = None


@dataclass(frozen=True)
class SalesforceOwnerMatch:
    """HS→SF: what to write to OwnerId (None = leave it) and, when HubSpot must follow Salesforce,
    the HubSpot owner to reset to."""

    salesforce_owner_id: str | None
    reset_hubspot: HubSpotOwnerMatch | None = None
    error: OwnerError | None = None


def hubspot_owner_for(salesforce_user_id: str | None, directory: OwnerDirectory) -> HubSpotOwnerMatch:
    if not salesforce_user_id:
        return HubSpotOwnerMatch(None)
    user = directory.salesforce_user(salesforce_user_id)
    owner = directory.hubspot_owner_for_email(user.email) if user else None
    if owner is None:
        return HubSpotOwnerMatch(None, OwnerError(
            ErrorCategory.OWNER_NOT_FOUND,
            f"Salesforce user {sf_id_18(salesforce_user_id)} has no HubSpot owner with the same e-mail; "
            "deal owner left empty",
        ))
    return HubSpotOwnerMatch(owner.id)


def active_salesforce_user_for(hubspot_owner_id: str | None, directory: OwnerDirectory) -> SalesforceUser | None:
    owner = directory.hubspot_owner(hubspot_owner_id)
    if owner is None:
        return None
    users = [user for user in directory.salesforce_users_for_email(owner.email) if user.active]
    return users[0] if users else None


def salesforce_owner_for(
    hubspot_owner_id: str | None, directory: OwnerDirectory, *, current_salesforce_owner_id: str | None
) -> SalesforceOwnerMatch:
    """HS→SF. `current_salesforce_owner_id` is None for a new opportunity."""
    user = active_salesforce_user_for(hubspot_owner_id, directory)
    if user is not None:
        return SalesforceOwnerMatch(user.id)
    what = f"HubSpot owner {hubspot_owner_id}" if hubspot_owner_id else "An empty HubSpot owner"
    if current_salesforce_owner_id is None:
        target = directory.integration_user_id
        message = (f"{what} has no active Salesforce user with the same e-mail; "
                   "opportunity assigned to the integration user")
    else:
        target = sf_id_18(current_salesforce_owner_id)
        message = f"{what} has no active Salesforce user with the same e-mail; Salesforce owner kept"
    error = OwnerError(ErrorCategory.OWNER_NOT_FOUND, message) if hubspot_owner_id else None
    # Without a configured integration user Salesforce assigns the running user, which we cannot name.
    reset = hubspot_owner_for(target, directory) if target else None
    return SalesforceOwnerMatch(target if current_salesforce_owner_id is None else None, reset, error)


def owner_canonical_from_hubspot(
    hubspot_owner_id: str | None, directory: OwnerDirectory, *, current_salesforce_owner_id: str | None
) -> str | Unconvertible | None:
    """The HubSpot owner in the sync's canonical owner form, a Salesforce user id, for comparison.

    The current Salesforce owner wins when its e-mail matches (so an inactive owner and its HubSpot
    counterpart agree); otherwise the active user first. No user with that e-mail → Unconvertible.
    """
    if not hubspot_owner_id:
        return None
    owner = directory.hubspot_owner(hubspot_owner_id)
    email = normalise_email(owner.email) if owner else None
    current = directory.salesforce_user(current_salesforce_owner_id)
    if email and current is not None and normalise_email(current.email) == email:
        return current.id
    users = directory.salesforce_users_for_email(email) if email else []
    if users:
        return users[0].id
    return Unconvertible(ConversionError(
        f"HubSpot owner {hubspot_owner_id} has no Salesforce user with the same e-mail",
        category=ErrorCategory.OWNER_NOT_FOUND,
    ))
