"""Pickup numbers: the kiosk's code and a per-kiosk, per-day sequence, e.g. ``K1-042``.

One ``PickupCounter`` row per kiosk and business day, made or bumped by one statement (INSERT … ON CONFLICT
DO UPDATE … RETURNING, PostgreSQL and SQLite ≥ 3.35 alike; the ORM would need five: a savepoint, get_or_create,
the UPDATE, a re-read, the release, on every kiosk's POST). The write takes the row's lock until the caller's
transaction ends (PostgreSQL re-reads the row under the lock, SQLite takes the database write lock at BEGIN
IMMEDIATE), so two orders never get the same number and a rolled-back order gives its number back.
"""

from __future__ import annotations

from datetime import date, datetime

from django.db import connection
from django.utils import timezone

from core.models import Kiosk
from nekassir.models import PickupCounter


def format_number(kiosk_code: str, seq: int) -> str:
    return f"{kiosk_code}-{seq:03d}"


def business_date(now: datetime) -> date:
    """The venue's calendar day (settings.TIME_ZONE) of ``now``."""
    return timezone.localdate(now)


def next_pickup_number(kiosk: Kiosk, now: datetime | None = None) -> tuple[date, int, str]:
    """``(business_date, seq, number)`` of the kiosk's next order; call it in the order's transaction."""
    day = business_date(now or timezone.now())
    ops = connection.ops
    table = ops.quote_name(PickupCounter._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (kiosk_id, business_date, last_seq) VALUES (%s, %s, 1) "  # noqa: S608 - model's table
            f"ON CONFLICT (kiosk_id, business_date) DO UPDATE SET last_seq = {table}.last_seq + 1 "
            "RETURNING last_seq",
            [kiosk.pk, ops.adapt_datefield_value(day)],
        )
        seq = cursor.fetchone()[0]
    return day, seq, format_number(kiosk.code, seq)
