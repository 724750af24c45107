"""``make test`` runs the whole suite twice: on SQLite (the embedded default of ``make run``), then on PostgreSQL
(production's path, where concurrency and locking are real). A few long tests whose subject does not depend on the
database run in one pass only, to keep CI under 30 minutes: the short soak and the fuzzing in the PostgreSQL pass
(in the SQLite pass when no PostgreSQL answers), the browser tests in the SQLite pass.
"""

from __future__ import annotations

import os

import pytest

PG_TEST_URL = os.environ.get("PG_TEST_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def postgres_pass() -> bool:
    """This run is on PostgreSQL (``DATABASE_URL``, as ``make test-postgres`` sets it)."""
    return (os.environ.get("DATABASE_URL") or "").startswith(("postgres://", "postgresql://"))


def pg_answers(url: str = PG_TEST_URL) -> bool:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


def once_in_postgres_pass(what: str) -> None:
    """Skip in the SQLite pass when the PostgreSQL pass will run ``what``."""
    if not postgres_pass() and pg_answers():
        pytest.skip(f"{what} runs once, in the PostgreSQL pass of make test")
