"""The bottom floor: what every room shares (exact JSON, TLS, env parsing, addresses, the emulators' HTTP base).

It imports nothing of the rooms above it (``fiscal``, ``payments``, ``iiko``) nor of ``nekassir``; the
import-linter contracts in pyproject.toml check that in ``make lint``.
"""
