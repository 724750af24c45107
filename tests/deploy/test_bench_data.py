"""The bench's generated history (scripts/bench/panel_data.py) at any hour of generation: each day's shifts
stay inside one business day of the venue, so no two shifts of a kiosk share a date and its order numbers
(`make bench` at 00:47 Moscow failed: order_pickup_seq_per_kiosk_day), and nothing lies in the future."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from scripts.bench.panel_data import SHIFT_BEFORE_END, VENUE_TZ, history_end

LAST_ORDER_BEFORE_END = timedelta(minutes=11)  # 12 h of orders from SHIFT_BEFORE_END + up to 9 min before the end


@pytest.mark.parametrize("minute", range(0, 24 * 60, 7))
def test_every_days_shifts_stay_in_one_business_day(minute):
    now = datetime(2026, 12, 7, tzinfo=VENUE_TZ) + timedelta(minutes=minute, seconds=31)
    end = history_end(now)
    assert end <= now
    first_open, last_order = end - SHIFT_BEFORE_END, end - LAST_ORDER_BEFORE_END
    assert first_open.astimezone(VENUE_TZ).date() == last_order.astimezone(VENUE_TZ).date(), (now, end)
    assert now - end < timedelta(hours=13)  # the history ends near the generation time


def test_the_end_is_the_generation_minute_in_the_afternoon():
    now = datetime(2026, 12, 7, 15, 42, 31, tzinfo=VENUE_TZ)
    assert history_end(now) == datetime(2026, 12, 7, 15, 42, tzinfo=VENUE_TZ)
