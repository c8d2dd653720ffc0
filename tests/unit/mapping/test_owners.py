"""Owner matching by e-mail (DESIGN 1.5): every branch both ways."""

from __future__ import annotations

from dealsync.mapping.owners import (
    HubSpotOwner,
    HubSpotOwnerMatch,
    OwnerDirectory,
    SalesforceUser,
    active_salesforce_user_for,
    hubspot_owner_for,
    owner_canonical_from_hubspot,
    salesforce_owner_for,
)
from dealsync.mapping.values import Unconvertible
from dealsync.models.domain import ErrorCategory

ALICE = "005000000000001AAA"
BOB = "005000000000002AAA"  # inactive
BOB_AGAIN = "005000000000005AAA"  # active, same e-mail as BOB
CAROL = "005000000000003AAA"  # no HubSpot owner
ERIN = "005000000000004AAA"  # inactive, alone with her e-mail
INTEGRATION = "005000000000009AAA"

USERS = [
    SalesforceUser(ALICE, "Alice@Example.com"),
    SalesforceUser(BOB, "bob@example.com", active=False),
    SalesforceUser(BOB_AGAIN, "BOB@example.com"),
    SalesforceUser(CAROL, "carol@example.com"),
    SalesforceUser(ERIN, "erin@example.com", active=False),
    SalesforceUser(INTEGRATION, "sync@example.com"),
]
OWNERS = [
    HubSpotOwner("101", " alice@example.COM "), HubSpotOwner("102", "bob@example.com"),
    HubSpotOwner("104", "dave@example.com"), HubSpotOwner("105", "erin@example.com"),
    HubSpotOwner("109", "sync@example.com"), HubSpotOwner("110", None),
]
DIRECTORY = OwnerDirectory(USERS, OWNERS, integration_user_id=INTEGRATION)


def test_salesforce_to_hubspot_matches_email_case_insensitively() -> None:
    assert hubspot_owner_for(ALICE, DIRECTORY) == HubSpotOwnerMatch("101")
    assert hubspot_owner_for(ALICE[:15], DIRECTORY) == HubSpotOwnerMatch("101")


def test_salesforce_to_hubspot_inactive_users_sync_too() -> None:
    assert hubspot_owner_for(ERIN, DIRECTORY).hubspot_owner_id == "105"


def test_salesforce_to_hubspot_without_match_leaves_owner_empty() -> None:
    match = hubspot_owner_for(CAROL, DIRECTORY)
    assert match.hubspot_owner_id is None
    assert match.error is not None
    assert match.error.category is ErrorCategory.OWNER_NOT_FOUND
    assert CAROL in match.error.message
    assert "@" not in match.error.message  # no e-mails in messages
    unknown_user = hubspot_owner_for("005000000000077AAA", DIRECTORY)
    assert unknown_user.error is not None


def test_salesforce_to_hubspot_blank_owner() -> None:
    assert hubspot_owner_for(None, DIRECTORY) == HubSpotOwnerMatch(None)


def test_hubspot_to_salesforce_match_must_be_active() -> None:
    assert active_salesforce_user_for("101", DIRECTORY) == SalesforceUser(ALICE, "Alice@Example.com")
    bob = active_salesforce_user_for("102", DIRECTORY)
    assert bob is not None
    assert bob.id == BOB_AGAIN  # the active one of the two with that e-mail
    assert active_salesforce_user_for("105", DIRECTORY) is None  # only an inactive user
    assert active_salesforce_user_for("104", DIRECTORY) is None  # no user
    assert active_salesforce_user_for("110", DIRECTORY) is None  # owner without e-mail
    assert active_salesforce_user_for("999", DIRECTORY) is None  # unknown owner


def test_hubspot_to_salesforce_with_match() -> None:
    match = salesforce_owner_for("101", DIRECTORY, current_salesforce_owner_id=CAROL)
    assert (match.salesforce_owner_id, match.reset_hubspot, match.error) == (ALICE, None, None)


def test_hubspot_to_salesforce_new_opportunity_without_match_goes_to_integration_user() -> None:
    match = salesforce_owner_for("104", DIRECTORY, current_salesforce_owner_id=None)
    assert match.salesforce_owner_id == INTEGRATION
    assert match.reset_hubspot == HubSpotOwnerMatch("109")
    assert match.error is not None
    assert match.error.category is ErrorCategory.OWNER_NOT_FOUND
    assert "integration user" in match.error.message


def test_hubspot_to_salesforce_new_opportunity_without_integration_user_lets_salesforce_default() -> None:
    directory = OwnerDirectory(USERS, OWNERS)
    match = salesforce_owner_for("104", directory, current_salesforce_owner_id=None)
    assert (match.salesforce_owner_id, match.reset_hubspot) == (None, None)


def test_hubspot_to_salesforce_update_without_match_keeps_owner_and_resets_hubspot() -> None:
    match = salesforce_owner_for("105", DIRECTORY, current_salesforce_owner_id=ALICE)
    assert match.salesforce_owner_id is None
    assert match.reset_hubspot == HubSpotOwnerMatch("101")
    assert match.error is not None
    assert "kept" in match.error.message


def test_hubspot_to_salesforce_update_reset_to_owner_missing_in_hubspot() -> None:
    match = salesforce_owner_for("104", DIRECTORY, current_salesforce_owner_id=CAROL)
    assert match.reset_hubspot is not None
    assert match.reset_hubspot.hubspot_owner_id is None
    assert match.reset_hubspot.error is not None


def test_hubspot_owner_cleared_is_not_an_error_but_is_reset() -> None:
    match = salesforce_owner_for(None, DIRECTORY, current_salesforce_owner_id=ALICE)
    assert (match.salesforce_owner_id, match.reset_hubspot, match.error) == (None, HubSpotOwnerMatch("101"), None)


def test_canonical_owner_for_comparison() -> None:
    assert owner_canonical_from_hubspot(None, DIRECTORY, current_salesforce_owner_id=ALICE) is None
    assert owner_canonical_from_hubspot("101", DIRECTORY, current_salesforce_owner_id=None) == ALICE
    # the current owner agrees with its counterpart even when inactive and not the preferred match
    assert owner_canonical_from_hubspot("102", DIRECTORY, current_salesforce_owner_id=BOB) == BOB
    assert owner_canonical_from_hubspot("102", DIRECTORY, current_salesforce_owner_id=ALICE) == BOB_AGAIN
    assert owner_canonical_from_hubspot("105", DIRECTORY, current_salesforce_owner_id=ALICE) == ERIN
    unmatched = owner_canonical_from_hubspot("104", DIRECTORY, current_salesforce_owner_id=ALICE)
    assert isinstance(unmatched, Unconvertible)
    assert unmatched.error.category is ErrorCategory.OWNER_NOT_FOUND


def test_directory_lookups() -> None:
    assert DIRECTORY.salesforce_user(ALICE[:15]) == SalesforceUser(ALICE, "Alice@Example.com")
    assert DIRECTORY.hubspot_owner("104") == HubSpotOwner("104", "dave@example.com")
    assert [user.id for user in DIRECTORY.salesforce_users_for_email("bob@EXAMPLE.com")] == [BOB_AGAIN, BOB]
    assert DIRECTORY.hubspot_owner_for_email(None) is None
    duplicates = OwnerDirectory([], [HubSpotOwner("20", "x@example.com"), HubSpotOwner("3", "x@example.com")])
    owner = duplicates.hubspot_owner_for_email("x@example.com")
    assert owner is not None
    assert owner.id == "3"
