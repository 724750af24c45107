"""Tasks queued from the web server's hot paths, through one django-q2 broker per process and cluster.

django-q2's ``async_task`` builds a new broker when it is given none: with Redis, a new client and connection
pool, so a TCP connect and handshake on every call (~3 ms of a kiosk's POST on the bench machine, issue 15).
redis-py's client is thread-safe (its pool lends each command a connection), so gunicorn's threads share one.
Keyed by the pid: a forked process (a gunicorn or q2 worker) makes its own and never uses its parent's sockets.

Floor: top (``nekassir``).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from django_q.brokers import Broker, get_broker
from django_q.tasks import async_task

_brokers: dict[tuple[int, str], Broker] = {}
_lock = threading.Lock()


def broker_for(cluster: str) -> Broker:
    key = (os.getpid(), cluster)
    broker = _brokers.get(key)
    if broker is None:
        with _lock:
            broker = _brokers.get(key) or _brokers.setdefault(key, get_broker(cluster))
    return broker


def queue_task(func: str, *args: Any, cluster: str, task_name: str | None = None) -> str:
    """``async_task(func, *args, cluster=cluster)`` on this process's broker for ``cluster``; the task's id."""
    options: dict[str, Any] = {"cluster": cluster, "broker": broker_for(cluster)}
    if task_name:
        options["task_name"] = task_name
    return async_task(func, *args, **options)
