"""What the q2 workers need, loaded once in the cluster's parent before django-q2 forks them (issue 15).

django-q2 forks its Sentinel from the process that starts the cluster, and the Sentinel forks every worker:
memory the parent filled is shared by all of them (copy-on-write) for as long as nobody writes to it. Two
things would write to it, each costing every worker a private copy:

* whatever a worker loads on first use: modules imported late (httpx imports its transport, httpcore, h11,
  anyio and certifi only when the first client is made), the shared TLS context with its CA bundle
  (``core.tls``), Django's translation catalogs, model metadata, the database backend. Loaded here, once,
  it is shared instead of being built again by each worker. One read of a row of every table also runs
  the ORM's query code here, so that CPython 3.11 specialises its bytecode (written into the code objects)
  in the parent, not in each worker;
* the garbage collector, which writes into the header of every container object it examines: one full
  collection in a worker would touch (and so copy) every page holding an object of the parent.
  ``gc.freeze()`` moves everything the parent has into the permanent generation, which no collection of
  the parent's children ever examines.

Floor: top (``nekassir``): it may import every room.
"""

from __future__ import annotations

import gc
import importlib
import logging
import sys
from dataclasses import dataclass

log = logging.getLogger(__name__)

# The modules whose functions the clusters run (django-q2 finds a task's function by its dotted name, so
# without this each worker would import them on its first job), and the rooms' wire clients they drive.
TASK_MODULES = (
    # device cluster: checkouts (on the workers' threads), recoveries, refunds, shift closing, the panel's jobs
    "nekassir.checkout",
    "nekassir.device_threads",
    "concurrent.futures.thread",
    "nekassir.recovery",
    "nekassir.refunds",
    "nekassir.autoclose",
    "nekassir.panel.jobs",
    # default cluster's schedules (nekassir.schedules)
    "nekassir.alerts",
    # the rooms
    "fiscal.register",
    "fiscal.shifts",
    "fiscal.atol_client",
    "payments.terminal",
    "payments.settlement",
    "payments.kkm_client",
    "payments.dualconnector_client",
    "iiko.client",
    "iiko.connection",
    "marking.client",
    # django-q2's own process bodies and brokers
    "django_q.worker",
    "django_q.monitor",
    "django_q.pusher",
    "django_q.brokers.orm",
    "django_q.brokers.redis_broker",
)


@dataclass(frozen=True)
class Preloaded:
    modules: int  # modules loaded in the process when it was frozen
    frozen: int  # objects moved into the permanent generation


def preload_workers() -> Preloaded:
    """Import and build what the workers use, then freeze every object for the forks that follow.

    Called in the cluster's parent right before ``Cluster().start()``; it leaves no database connection
    open (a connection must never be shared with a forked child)."""
    for name in TASK_MODULES:
        importlib.import_module(name)
    _warm_http()
    _warm_django()
    return freeze()


def freeze() -> Preloaded:
    """Collect what is garbage now (no hole of it left for the children to fill), then freeze the rest."""
    gc.collect()
    gc.freeze()
    return Preloaded(modules=len(sys.modules), frozen=gc.get_freeze_count())


def _warm_http() -> None:
    import httpx

    from core.tls import ssl_context

    # One client built and closed: httpx imports its transport (httpcore, h11, anyio) on the first one.
    httpx.Client(verify=ssl_context()).close()


def _warm_django() -> None:
    from django.apps import apps
    from django.db import DatabaseError, connections
    from django.utils import timezone, translation

    # Model metadata: the field lists Django computes on a model's first query.
    for model in apps.get_models(include_auto_created=True):
        meta = model._meta
        meta.get_fields(include_hidden=True)
        meta.concrete_fields  # noqa: B018 - cached properties, computed here
        meta.local_concrete_fields  # noqa: B018
        meta.related_objects  # noqa: B018
        meta.fields_map  # noqa: B018
    # The active language's catalogs (django_q's own log lines are translated) and the time zone.
    translation.gettext("Q Cluster %(name)s starting.")
    timezone.localtime()
    # The database backend (psycopg or sqlite3 and Django's wrappers) is imported on the first connection;
    # one row of each table read (no ordering: LIMIT 1 costs nothing on a big table) runs the query code.
    # Only an optimisation: a table that cannot be read (a migration not applied yet) must not keep the
    # cluster, and the sales it serves, from starting. It is said in the log.
    try:
        for model in apps.get_models(include_auto_created=True):
            manager = model._base_manager.order_by()
            try:
                list(manager[:1])
                list(manager.select_related()[:1])
            except DatabaseError as exc:
                log.warning("preload: %s not read, its queries are not warmed: %s", model._meta.label, exc)
    finally:
        connections.close_all()
