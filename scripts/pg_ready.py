"""Exit 0 when the PostgreSQL server of the given URL accepts connections (used by `make test`)."""

import sys

import psycopg

try:
    psycopg.connect(sys.argv[1], connect_timeout=3).close()
except psycopg.Error as exc:
    print(f"PostgreSQL: {exc}".strip(), file=sys.stderr)
    sys.exit(1)
