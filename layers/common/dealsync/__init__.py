"""dealsync: two-way sync between Salesforce Opportunities and HubSpot Deals (the shared Lambda layer)."""

__version__ = "0.1.0"
