"""The device cluster's parent loads what the workers need and freezes it before django-q2 forks them
(issue 15: thirty kiosks must not cost three times the memory of ten; nekassir.preload says why).

A real ``manage.py devicecluster`` runs a job that reports, from inside its worker, what the worker got
from the parent: a namespace loaded before ``gc.freeze()`` sits in the permanent generation, which
``gc.get_objects()`` does not list, while one a worker loaded itself would be listed."""

from __future__ import annotations

import gc
import os
import signal
import sys

import pytest
from django_q.conf import Conf
from django_q.tasks import async_task, result

from tests.processes import start_manage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def worker_state() -> dict:
    """Run by a device worker (the cluster finds it by name): what it inherited from the cluster's parent."""
    from core.tls import ssl_context
    from nekassir.preload import TASK_MODULES

    listed = {id(obj) for obj in gc.get_objects()}  # every object gc tracks, the permanent generation aside
    return {
        "pid": os.getpid(),
        "grandparent": int(open(f"/proc/{os.getppid()}/stat").read().rsplit(")", 1)[1].split()[1]),
        "frozen": gc.get_freeze_count(),
        "missing": [name for name in TASK_MODULES if name not in sys.modules],
        "not_frozen": [name for name in TASK_MODULES
                       if name in sys.modules and id(vars(sys.modules[name])) in listed],
        "tls_contexts_built": ssl_context.cache_info().currsize,
    }


def test_workers_inherit_the_task_modules_frozen(monkeypatch):
    from nekassir.preload import TASK_MODULES

    monkeypatch.setattr(Conf, "SYNC", False)  # the job goes to the broker, for the real cluster
    cluster = start_manage("devicecluster", Q_DEVICE_WORKERS="2")
    try:
        task_id = async_task(f"{__name__}.worker_state", cluster="devices")
        state = result(task_id, wait=60_000)
    finally:
        os.killpg(cluster.pid, signal.SIGKILL)
        out, err = cluster.communicate(timeout=10)
    assert state is not None, f"the job did not run; the cluster said:\n{(out + err)[-3000:]}"
    # The lines the command always printed, then the preload's.
    assert "recovery queued: {" in out and "device cluster: 2 workers" in out, out
    assert "preloaded for the workers:" in out, out
    # It ran in a worker forked by the Sentinel, forked by the command's own process (execve keeps the pid).
    assert state["pid"] != cluster.pid and state["grandparent"] == cluster.pid
    assert state["frozen"] > 10_000
    assert state["missing"] == [] and state["not_frozen"] == [], state
    assert len(TASK_MODULES) > 10
    # core.tls's shared context (the CA bundle) was built by the parent: this job made no client.
    assert state["tls_contexts_built"] == 1
