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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from django.utils.translation import gettext as _
from django_q.conf import Conf, error_reporter, logger
from django_q.monitor import save_task

from core.models import Kiosk
from nekassir.autoclose import auto_close
from nekassir.checkout import run_checkout

log = logging.getLogger(__name__)

CLUSTER = "devices"

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0  # the process that made _pool (a fork does not inherit its threads)
_running: set[str] = set()  # runs queued or running in this process: an order's id, "close:<shift id>"


def checkout_threads() -> int:
    """Threads per device worker: ``DEVICE_CHECKOUT_THREADS``, or (0) two per active kiosk + 1: a kiosk has at
    most one checkout and one automatic close at a time, and a run must never queue behind another kiosk's."""
    if settings.DEVICE_CHECKOUT_THREADS:
        return int(settings.DEVICE_CHECKOUT_THREADS)
    return 2 * Kiosk.objects.filter(active=True).count() + 1


def dispatch_checkout(order_id: str) -> str:
    """The device cluster's task for a checkout: the order's run goes to this process's thread pool."""
    order_id = str(order_id)
    return _dispatch(order_id, f"checkout {order_id}", "nekassir.checkout.run_checkout", run_checkout, order_id)


def dispatch_auto_close(shift_id: int, reason: str) -> str:
    """The device cluster's task for an automatic shift close (``nekassir.autoclose``): it too may wait minutes
    (for an order in progress, for the terminal's settlement), and at the quiet hour every kiosk's close is due
    at once; on the q2 workers they would fill all of them and the next guest's checkout would wait behind
    them. On a thread, it waits beside the checkouts instead."""
    return _dispatch(f"close:{shift_id}", f"auto close {shift_id}", "nekassir.autoclose.auto_close", auto_close,
                     shift_id, reason)


def _dispatch(key: str, name: str, func: str, run: Callable[..., Any], *args: Any) -> str:
    if Conf.SYNC:  # no worker process to return to: the caller waits for the run, as before
        return run(*args)
    with _lock:
        if key in _running:
            return "already running"
        pool = _executor()
        _running.add(key)
    try:
        pool.submit(_run, key, name, func, run, args)
    except BaseException:
        with _lock:
            _running.discard(key)
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


def _run(key: str, name: str, func: str, run: Callable[..., Any], args: tuple[Any, ...]) -> None:
    started = timezone.now()
    close_old_connections()
    try:
        outcome = run(*args)
        log.info("%s: thread done: %s", name, outcome)
    except Exception as exc:
        _save_failure(name, func, args, started, f"{exc} : {traceback.format_exc()}")
    finally:
        close_old_connections()
        with _lock:
            _running.discard(key)


def _save_failure(name: str, func: str, args: tuple[Any, ...], started, result: str) -> None:
    """What django-q2 does with a task that raised: its error reporter, the log line of its monitor, and a
    failed Task row (the admin's "Failed tasks")."""
    if error_reporter:
        error_reporter.report()
    task = {"id": uuid.uuid4().hex, "name": name, "func": func, "args": args, "kwargs": {}, "cluster": CLUSTER,
            "started": started, "stopped": timezone.now(),
            "result": result, "success": False}
    logger.error(_("Failed '%(info_name)s' (%(task_name)s) - %(task_result)s")
                 % {"info_name": task["func"], "task_name": task["name"], "task_result": result})
    save_task(task, broker=None)  # it logs, itself, a row it could not save
