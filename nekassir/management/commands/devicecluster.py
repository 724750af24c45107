"""python manage.py devicecluster: the q2 cluster for device work.

A card payment keeps whatever runs it busy while the guest handles the card (seconds to minutes). The
checkouts and the automatic shift closes run on threads of the device workers (``nekassir.device_threads``: up
to two per active kiosk + 1 per worker, ``DEVICE_CHECKOUT_THREADS`` overrides), so no kiosk ever waits for
another, and a few worker processes (``Q_DEVICE_WORKERS``, 4) take the other device jobs (panel jobs, refunds,
recoveries, shift closing) and the checkouts' dispatches: with at most one panel job per kind and kiosk
running, a burst of them still leaves a worker for the next dispatch.

Two steps in one process: django-q2 reads its configuration (cluster name, worker count) once, at import,
so the command first resumes what a previous cluster left, counts the workers and replaces itself
(``execve``) with the same command under ``Q_CLUSTER_NAME=devices``; that second run loads everything
the workers need, freezes it for the forks (``nekassir.preload``) and starts the cluster in-process. The
workers are forked from it and share that memory instead of each building its own (issue 15).
"""

from __future__ import annotations

import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from nekassir.device_threads import checkout_threads
from nekassir.recovery import recover

CLUSTER = "devices"
# Set by the first step for the second: the recovery has run and the count is in Q_DEVICE_WORKERS.
STEP_ENV = "NEKASSIR_DEVICECLUSTER_STEP"


def device_workers() -> int:
    return int(settings.Q_DEVICE_WORKERS)


class Command(BaseCommand):
    help = "Запускает кластер django-q2 для работы с устройствами (оплаты — в потоках рабочих процессов)."

    def handle(self, *args, **options):
        if os.environ.get(STEP_ENV) == "cluster":
            self.run_cluster()
            return
        # Whatever a previous cluster was doing when it stopped (kill -9, power loss) is resumed first.
        self.stdout.write(f"recovery queued: {recover(at_start=True)}")
        env = {**os.environ, "Q_CLUSTER_NAME": CLUSTER, "Q_DEVICE_WORKERS": str(device_workers()),
               STEP_ENV: "cluster"}
        self.stdout.write(f"device cluster: {env['Q_DEVICE_WORKERS']} workers, "
                          f"up to {checkout_threads()} checkout threads each")
        self.stdout.flush()
        manage = os.path.join(os.path.dirname(os.path.abspath(sys.modules["__main__"].__file__)), "manage.py")
        os.execve(sys.executable, [sys.executable, manage, "devicecluster"], env)  # noqa: S606 - our own manage.py

    def run_cluster(self) -> None:
        from django_q.cluster import Cluster
        from django_q.conf import Conf

        from nekassir.preload import preload_workers

        expected = int(os.environ["Q_DEVICE_WORKERS"])
        if Conf.CLUSTER_NAME != CLUSTER or Conf.WORKERS != expected:  # the environment was not read as meant
            raise CommandError(f"django-q2 configured as cluster {Conf.CLUSTER_NAME!r} with {Conf.WORKERS} workers, "
                               f"expected {CLUSTER!r} with {expected}")
        settings.SECRET_KEY  # noqa: B018 - as qcluster does: signing needs it, fail before forking
        preloaded = preload_workers()
        self.stdout.write(f"preloaded for the workers: {preloaded.modules} modules, "
                          f"{preloaded.frozen} objects frozen")
        self.stdout.flush()
        Cluster().start()
