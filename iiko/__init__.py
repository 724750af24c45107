"""The iiko room (middle floor): the iiko Cloud wire client, its emulator and the schema validation.

It imports only the bottom floor (``core``), never ``fiscal``, ``payments`` or ``nekassir``; the
import-linter contracts in pyproject.toml check that in ``make lint``.
"""
