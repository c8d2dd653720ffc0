"""Checks on inbound webhooks (pure: no I/O)."""
