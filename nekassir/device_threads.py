"""Checkouts on threads of a device worker: one process serves several kiosks at once (issue 15, item 2).

A checkout waits for the guest at the PIN pad for seconds or minutes, almost all of it in a blocking HTTP
exchange with the terminal that holds no CPU and no GIL. Giving each kiosk a whole forked process for that
wait cost ~17 MiB per kiosk (README, "Memory at 30 kiosks"); a thread costs a stack and a database
connection. So the checkout's q2 task (``dispatch_checkout``, queued by ``nekassir.checkout.start_checkout``)
only hands the order to this process's thread pool and returns at once ("dispatched"): the worker is free
for the next job a moment later, and a guest slow on one kiosk holds one thread, never another kiosk's.

* One run per order at a time in a process: a second dispatch of an order whose run is in this pool (the
  recovery finding it stale while the guest is still at the PIN pad) is a no-op. Runs in different
  processes (or on different machines) are kept apart by the kiosk's sale lock, as before.
* Each thread has its own Django connections (they are per thread): ``close_old_connections()`` before and
  after a run, as django-q2 does around a job, so a connection is kept for reuse under ``CONN_MAX_AGE``.
* A run that raises is logged and saved as a failed django-q2 task, exactly as the q2 worker would have
  done had it run the checkout itself; the order stays where its last saved step left it, and the recovery
  resumes it (its ``retry_at``, or ``CHECKOUT_STALE_AFTER`` with no move).
* A process that dies with runs in flight (kill -9, the Sentinel's kill, power loss) is the same as a
  worker killed mid-checkout before: the sale lock's holder is a dead pid, the order's state is saved
  before and after every device call, and the recovery at the next cluster start resumes every
  unfinished order. A process that ends on its own (django-q2's ``recycle``, or the cluster's graceful
  stop) first waits for its runs: the pool's threads are not daemons, and multiprocessing joins them
  (``threading._shutdown``) before the process exits.
* In django-q2's sync mode (tests, ``manage.py`` tools) the checkout runs inline, as the task did.

Floor: top (``nekassir``).
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

log = logging.getLogger(__name__)

CLUSTER = "devices"

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0  # the process that made _pool (a fork does not inherit its threads)
_running: set[str] = set()  # orders whose run is queued or running in this process


def checkout_threads() -> int:
    """Threads per device worker: ``DEVICE_CHECKOUT_THREADS``, or (0) the active kiosks + 1."""
    if settings.DEVICE_CHECKOUT_THREADS:
        return int(settings.DEVICE_CHECKOUT_THREADS)
    from core.models import Kiosk

    return Kiosk.objects.filter(active=True).count() + 1


def dispatch_checkout(order_id: str) -> str:
    """The device cluster's task for a checkout: the order's run goes to this process's thread pool."""
    from django_q.conf import Conf

    from nekassir.checkout import run_checkout

    order_id = str(order_id)
    if Conf.SYNC:  # no worker process to return to: the caller waits for the checkout, as before
        return run_checkout(order_id)
    with _lock:
        if order_id in _running:
            return "already running"
        pool = _executor()
        _running.add(order_id)
    try:
        pool.submit(_run, order_id)
    except BaseException:
        with _lock:
            _running.discard(order_id)
        raise
    return "dispatched"


def running() -> set[str]:
    with _lock:
        return set(_running)


def _executor() -> ThreadPoolExecutor:
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        _pool = ThreadPoolExecutor(max_workers=checkout_threads(), thread_name_prefix="checkout")
        _pool_pid = os.getpid()
    return _pool


def _run(order_id: str) -> None:
    from nekassir.checkout import run_checkout

    started = timezone.now()
    close_old_connections()
    try:
        status = run_checkout(order_id)
        log.info("order=%s checkout thread done: %s", order_id, status)
    except Exception as exc:
        _save_failure(order_id, started, f"{exc} : {traceback.format_exc()}")
    finally:
        close_old_connections()
        with _lock:
            _running.discard(order_id)


def _save_failure(order_id: str, started, result: str) -> None:
    """What django-q2 does with a task that raised: its error reporter, the log line of its monitor, and a
    failed Task row (the admin's "Failed tasks")."""
    from django.utils.translation import gettext as _
    from django_q.conf import error_reporter, logger
    from django_q.monitor import save_task

    if error_reporter:
        error_reporter.report()
    task = {"id": uuid.uuid4().hex, "name": f"checkout {order_id}", "func": "nekassir.checkout.run_checkout",
            "args": (order_id,), "kwargs": {}, "cluster": CLUSTER, "started": started, "stopped": timezone.now(),
            "result": result, "success": False}
    logger.error(_("Failed '%(info_name)s' (%(task_name)s) - %(task_result)s")
                 % {"info_name": task["func"], "task_name": task["name"], "task_result": result})
    save_task(task, broker=None)  # it logs, itself, a row it could not save
