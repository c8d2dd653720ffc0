"""The ``dealsync`` operator command line."""
