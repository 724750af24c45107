"""The kiosk's status poll as one hand-written statement: the order, its sell receipt and card sale, checked against
the bearer token's digest and its kiosk, in one round trip.

Every kiosk polls its order every 250 ms: with 30 kiosks that is 120 GETs a second on a 2-core venue server, the
largest share of its CPU (issue 15). The same query through the ORM (select_related + only) cost 2.5 ms of CPU to
compile and turn into models, the statement itself 0.16 ms (measured in-process on the bench machine). So the SQL
is written once per database vendor from the models' own table and column names, and each value goes through the
converters the ORM would apply (Decimal, aware datetimes, UUID, booleans on SQLite). The result is the same model
instances ``order_status_json`` reads (unsaved, only these fields set); tests/api/test_api_orders.py compares the
poll's answer with the POST's and bounds the poll to one statement, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any, cast

from django.db import connection
from django.db.models import Field, Model

from core.models import Kiosk, KioskToken
from fiscal.models import FiscalDocument, FiscalOperation
from nekassir.models import Order
from payments.models import CardOperation

# (alias, model, fields): the columns order_status_json reads, in the order they are selected.
_TABLES: tuple[tuple[str, type[Model], tuple[str, ...]], ...] = (
    ("o", Order, ("id", "number", "status", "total", "created_at", "error_code", "error_message", "iiko_number",
                  "iiko_state")),
    ("op", FiscalOperation, ("id",)),
    ("d", FiscalDocument, ("id", "fd_number", "fpd", "receipt_number", "shift_number", "registered_at", "printed",
                           "doc_type", "total", "fn_number")),
    ("c", CardOperation, ("id", "state", "masked_pan", "rrn")),
)

_prepared: dict[str, tuple[str, list[list[Callable[[Any], Any]]]]] = {}  # by vendor: the SQL, each column's converters


def _field(model: type[Model], name: str) -> Field:
    return cast(Field, model._meta.get_field(name))


def _column(model: type[Model], name: str) -> str:
    return connection.ops.quote_name(str(_field(model, name).column))


def _pk(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.pk.column)


def _table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _converters(model: type[Model], name: str) -> list[Callable[[Any], Any]]:
    """What the ORM applies to this column's raw value on this backend."""
    col = _field(model, name).get_col(model._meta.db_table)
    found = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
    return [functools.partial(_apply, f, col) for f in found]


def _apply(converter: Callable[..., Any], col: Any, value: Any) -> Any:
    return converter(value, col, connection)


def _prepare() -> tuple[str, list[list[Callable[[Any], Any]]]]:
    prepared = _prepared.get(connection.vendor)
    if prepared is not None:
        return prepared
    select = ", ".join(f"{alias}.{_column(model, name)}" for alias, model, names in _TABLES for name in names)
    sql = (
        f"SELECT {select} FROM {_table(Order)} o "  # noqa: S608 - names from the models, values are parameters
        f"INNER JOIN {_table(Kiosk)} k ON k.{_pk(Kiosk)} = o.{_column(Order, 'kiosk')} "
        f"INNER JOIN {_table(KioskToken)} t ON t.{_column(KioskToken, 'kiosk')} = k.{_pk(Kiosk)} "
        f"LEFT OUTER JOIN {_table(FiscalOperation)} op "
        f"ON op.{_pk(FiscalOperation)} = o.{_column(Order, 'sell_operation')} "
        f"LEFT OUTER JOIN {_table(FiscalDocument)} d "
        f"ON d.{_column(FiscalDocument, 'operation')} = op.{_pk(FiscalOperation)} "
        f"LEFT OUTER JOIN {_table(CardOperation)} c ON c.{_pk(CardOperation)} = o.{_column(Order, 'card_sale')} "
        f"WHERE o.{_pk(Order)} = %s AND t.{_column(KioskToken, 'token_hash')} = %s "
        f"AND t.{_column(KioskToken, 'revoked_at')} IS NULL AND k.{_column(Kiosk, 'active')} = %s"
    )
    converters = [_converters(model, name) for _, model, names in _TABLES for name in names]
    prepared = _prepared[connection.vendor] = (sql, converters)
    return prepared


def polled_order(pk: uuid.UUID, digest: str) -> Order | None:
    """The order ``pk`` if its kiosk is active and holds a live token with this digest, else None; only the fields
    ``order_status_json`` reads are set, and its receipt and card sale are attached as select_related would."""
    sql, converters = _prepare()
    with _cursor() as cursor:
        cursor.execute(sql, [Order._meta.pk.get_db_prep_value(pk, connection), digest, True])
        row = cursor.fetchone()
    if row is None:
        return None
    values = iter(_convert(row, converters))
    order, operation, document, card = (
        {name: next(values) for name in names} for _, _, names in _TABLES)
    found = Order(**order)
    if operation["id"] is not None:
        op = FiscalOperation(**operation)
        if document["id"] is not None:
            op.document = FiscalDocument(operation=op, **document)
        found.sell_operation = op
    if card["id"] is not None:
        found.card_sale = CardOperation(**card)
    return found


def _cursor():
    """On PostgreSQL, a cursor that binds on the server and PREPARES the statement, once per connection: planning
    this six-table join took PostgreSQL 1.4 ms against 0.6 ms to run it (EXPLAIN ANALYZE on the 30-kiosk bench
    database), 120 times a second. Django's own cursors bind on the client and never prepare (the ORM's SQL is
    not written for it, Django #20516); this one statement is. It is wrapped as ``connection.cursor()`` wraps its
    own (the health check, the thread check, query logging and execute wrappers all still apply).
    Elsewhere (SQLite): Django's cursor."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        pg = connection.connection
        if pg.prepare_threshold is None:
            # Django opens connections with None, which makes psycopg refuse even prepare=True. A threshold no
            # query reaches keeps everything else as it was: Django's client-binding cursors never prepare.
            pg.prepare_threshold = 2**31
        raw = _preparing_cursor_class()(pg)
    return connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)


@functools.cache
def _preparing_cursor_class() -> type:
    # needs psycopg 3: only on PostgreSQL (defined there under "if is_psycopg3", which django-stubs does not see)
    from django.db.backends.postgresql.base import ServerBindingCursor  # type: ignore[attr-defined]

    class PreparingCursor(ServerBindingCursor):
        def execute(self, query, params=None, *, prepare=None, binary=None):
            return super().execute(query, params, prepare=True, binary=binary)

    return PreparingCursor


def _convert(row: tuple[Any, ...], converters: list[list[Callable[[Any], Any]]]) -> list[Any]:
    out = []
    for value, chain in zip(row, converters, strict=True):
        for convert in chain:
            value = convert(value)
        out.append(value)
    return out
