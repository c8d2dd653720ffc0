"""The CRM clients: the only modules that import simple-salesforce and hubspot-api-client.

They add what the SDKs leave out: authentication from Secrets Manager, tagging of dealsync's own
writes, batching to each API's limits, retries with backoff, rate limiting and one error classifier
per CRM that turns any failure into "retry later" or a sync-error category.
"""
