"""python manage.py devicecluster: the q2 cluster for device work, sized to the kiosk count.

A card payment keeps its worker busy while the guest handles the card (seconds to minutes), so
one worker per active kiosk (plus one for settlements and recoveries) means no kiosk ever waits
for another. Q_DEVICE_WORKERS overrides the count.
"""

from __future__ import annotations

import os
import sys

from django.core.management.base import BaseCommand

from core.models import Kiosk
from nekassir.recovery import recover


def device_workers() -> int:
    if os.environ.get("Q_DEVICE_WORKERS"):
        return int(os.environ["Q_DEVICE_WORKERS"])
    return max(2, Kiosk.objects.filter(active=True).count() + 1)


class Command(BaseCommand):
    help = "Запускает кластер django-q2 для работы с устройствами (по рабочему процессу на киоск)."

    def handle(self, *args, **options):
        # Whatever a previous cluster was doing when it stopped (kill -9, power loss) is resumed first.
        self.stdout.write(f"recovery queued: {recover(at_start=True)}")
        env = {**os.environ, "Q_CLUSTER_NAME": "devices", "Q_DEVICE_WORKERS": str(device_workers())}
        self.stdout.write(f"device cluster: {env['Q_DEVICE_WORKERS']} workers")
        self.stdout.flush()
        manage = os.path.join(os.path.dirname(os.path.abspath(sys.modules["__main__"].__file__)), "manage.py")
        os.execve(sys.executable, [sys.executable, manage, "qcluster"], env)  # noqa: S606 - our own manage.py
