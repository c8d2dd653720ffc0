"""Tiny handlers the e2e tests wire into a generated template (see ``tests/e2e/conftest.py``)."""
