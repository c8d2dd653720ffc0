"""Named places where a test harness may make a worker die, to prove the sync survives it.

A Lambda can be killed anywhere (timeout, out of memory, a lost container). The dangerous spot is
between a CRM write and the link write in DynamoDB: the record exists in the other CRM but the crosswalk
does not know it yet. The engines call :func:`reach` at those spots; in production nothing is installed
and the call does nothing. The local world's reliability soak (``dealsync_local.soak``) installs a
handler that raises :class:`SimulatedCrash` every N-th time, and the queue redelivers the message as it
would after a real crash.

Points:
- ``opportunity_sync.after_hubspot_write``: deals upserted, Salesforce not yet told, links not written.
- ``deal_sync.after_salesforce_write``: opportunities upserted, HubSpot not yet told, links not written.
"""

from __future__ import annotations

from collections.abc import Callable

OPPORTUNITY_SYNC_AFTER_HUBSPOT_WRITE = "opportunity_sync.after_hubspot_write"
DEAL_SYNC_AFTER_SALESFORCE_WRITE = "deal_sync.after_salesforce_write"

_handler: Callable[[str], None] | None = None


class SimulatedCrash(RuntimeError):  # noqa: N818 - named for what it stands for
    """Raised by a test harness's handler: the worker dies here."""


def reach(point: str) -> None:
    """The engine passed ``point``; a no-op unless a harness installed a handler."""
    handler = _handler
    if handler is not None:
        handler(point)


def install(handler: Callable[[str], None] | None) -> None:
    """Install (or, with None, remove) the process-wide handler. For test harnesses only."""
    global _handler
    _handler = handler


__all__ = ["DEAL_SYNC_AFTER_SALESFORCE_WRITE", "OPPORTUNITY_SYNC_AFTER_HUBSPOT_WRITE", "SimulatedCrash", "install",
           "reach"]
