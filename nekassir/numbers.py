"""Pickup numbers: the kiosk's code and a per-kiosk, per-day sequence, e.g. ``K1-042``.

One ``PickupCounter`` row per kiosk and business day, bumped with ``F() + 1``. The UPDATE takes
the row's write lock until the caller's transaction ends (PostgreSQL re-reads the row after the
lock, SQLite takes the database write lock at BEGIN IMMEDIATE), so two orders never get the same
number and a rolled-back order gives its number back.
"""

from __future__ import annotations

from datetime import date, datetime

from django.db import transaction
from django.db.models import F
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
    with transaction.atomic():
        # get_or_create recovers from a concurrent create of the same day's row (unique constraint).
        counter, _ = PickupCounter.objects.get_or_create(kiosk=kiosk, business_date=day)
        PickupCounter.objects.filter(pk=counter.pk).update(last_seq=F("last_seq") + 1)
        seq = PickupCounter.objects.values_list("last_seq", flat=True).get(pk=counter.pk)
    return day, seq, format_number(kiosk.code, seq)
