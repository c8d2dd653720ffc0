"""Subcommands of ``dealsync``: every module here with a ``register(subparsers)`` function is loaded by
:mod:`dealsync_cli.main`, so a new command is a new module and nothing else."""
