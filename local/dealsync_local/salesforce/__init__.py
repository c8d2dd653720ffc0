"""The Salesforce emulator of the local world (DESIGN §4): an in-memory org behind the REST API that
simple-salesforce and dealsync use, with Outbound Messages and change events.

    from dealsync_local.salesforce import SalesforceEmulator
"""

from dealsync_local.salesforce.app import SalesforceEmulator

__all__ = ["SalesforceEmulator"]
