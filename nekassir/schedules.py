"""The django-q2 schedules of the product, created (idempotently) after every ``migrate``."""

from __future__ import annotations

from django_q.models import Schedule

SCHEDULES = [
    # name, function, every N minutes
    ("nekassir.recovery", "nekassir.recovery.recover", 1),
    ("nekassir.autoclose", "nekassir.autoclose.scan", 1),
    ("nekassir.alerts", "nekassir.alerts.scan_and_send", 1),
]


def ensure_schedules(**kwargs) -> None:
    for name, func, minutes in SCHEDULES:
        # update_or_create: schedule() raises on a duplicate name (STACK_NOTES.md).
        Schedule.objects.update_or_create(
            name=name,
            defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1,
                      "cluster": "default"},
        )
