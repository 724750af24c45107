"""Manual device operations started from the panel, run as django-q2 jobs, followed by polling.

A job needs no table of its own: it *is* its audit entry. ``start_job`` journals the manual action
(``panel.<kind>``, with who, which kiosk and what it concerns) and queues ``run_job(<that event's id>)``
on the device cluster. The job calls the workflow (which takes the device locks and journals every
device call) and ends by journaling its outcome as ``panel.job.done`` / ``panel.job.failed`` with
``object_ref = "job:<id>"``. The progress fragment reads only the database: the outcome event if
there is one, else the device calls the workflow journaled since the job started (FiscalOperation,
CardOperation) and who holds the device locks. It works the same whether django-q runs the job
inline (tests: already done when the POST returns) or in a worker minutes later.

Limits (issue 16: one login could stall every kiosk's checkout with a burst of «Проверить ККТ»):

* every kind needs its permission (``JobKind.permission``; the kiosk's PIN screen holds those of
  ``Scope.can``);
* one job per kind and target (``JobKind.target``: the kiosk, or the order, document or shift it concerns):
  a request for a job already queued, waiting or running answers with that job. The check and the new
  journal row are one transaction serialised per kiosk and per account (PostgreSQL: their rows locked;
  SQLite: an IMMEDIATE transaction holds the write lock from BEGIN), so 50 requests at once start one;
* ``PANEL_JOB_RATE`` jobs per minute per account, or per kiosk for its PIN screen (counted in the journal,
  in the same transaction): more is refused with ``TooManyJobs`` (429, Russian);
* a job never waits for a device lock on a worker. Before its workflow runs it claims every device lock
  that workflow takes (``JobKind.locks``), each once and without waiting; the workflow's own waits are
  then re-entrant and immediate. If one is held (a guest's payment, another job), the job releases what
  it took, writes ``retry_at`` (``PANEL_JOB_RETRY`` doubling, at most a minute) and ``deferred`` into its
  own journal row and returns, giving the worker back. django-q2 has no delayed enqueue on every broker,
  so the recovery schedule (every minute, ``nekassir.recovery.recover``) queues again each waiting job
  whose ``retry_at`` has come (``resume_due_jobs``, a compare-and-set on ``retry_at``: queued once), and
  a job that ends wakes its kiosk's waiting jobs at once. After ``PANEL_JOB_DEVICE_WAIT`` seconds of
  waiting the job fails with a Russian message naming what held the device. A close or a correction receipt
  (``JobKind.during_sale``) is refused at once while a guest's payment holds the kiosk, as before: it never
  waits for a payment. A burst of jobs on one kiosk therefore occupies at most a worker per kind and
  target, and only while it really works.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_q.models import Task

from core.events import record_event
from core.locks import DeviceBusy, release, sale_lock_key, try_acquire
from core.models import DeviceLock, Event, Kiosk, TerminalTransport
from fiscal.checks import check_register
from fiscal.corrections import CorrectionRequest, make_correction
from fiscal.models import FiscalDocument, FiscalOperation, Shift
from fiscal.register import FiscalError, register_lock_key, register_session
from fiscal.shifts import open_shift, print_x_report
from nekassir.broker import queue_task
from nekassir.card_resolution import not_charged_job
from nekassir.connection_check import BAD, check_connection
from nekassir.iiko_delivery import deliver
from nekassir.models import Order
from nekassir.panel.access import (
    CHECK_DEVICE,
    MANAGE_SHIFT,
    PRINT_COPY,
    REFUND,
    RESEND,
    XREPORT,
    Scope,
    TooManyJobs,
)
from nekassir.shift_closing import close_shift
from payments.models import CardOperation
from payments.settlement import settle, settle_before_close, slip_items
from payments.terminal import current_shift, terminal_lock_key

log = logging.getLogger(__name__)

DONE = "panel.job.done"
FAILED = "panel.job.failed"
CHECKED = "fiscal.register.checked"


# --- what a job locks and what it is about ------------------------------------------------------
def _kiosk(start: Event) -> Kiosk:
    """The kiosk a job runs on (start_job always journals one; the journal's column is nullable)."""
    assert start.kiosk is not None
    return start.kiosk


def _register(kiosk: Kiosk) -> list[str]:
    """The register's lock key, when the kiosk has one to call (an empty address is no device: its key would
    be shared by every kiosk without one)."""
    return [register_lock_key(kiosk)] if kiosk.has_register and kiosk.atol_url else []


def _terminal(kiosk: Kiosk) -> list[str]:
    url = kiosk.dc_url if kiosk.terminal_transport == TerminalTransport.DUALCONNECTOR else kiosk.kkm_url
    return [terminal_lock_key(kiosk)] if kiosk.terminal_transport and url else []


def _register_locks(start: Event) -> list[str]:
    return _register(_kiosk(start))


def _close_locks(start: Event) -> list[str]:
    # close_shift: the sale lock (no payment in progress), the settlement handed down (terminal), the register.
    kiosk = _kiosk(start)
    return [sale_lock_key(kiosk), *_terminal(kiosk), *_register(kiosk)]


def _settle_locks(start: Event) -> list[str]:
    kiosk = _kiosk(start)
    return [*_terminal(kiosk), *(_register(kiosk) if kiosk.print_slips else [])]  # the slip is printed after


def _connection_locks(start: Event) -> list[str]:
    kiosk = _kiosk(start)
    return [*_register(kiosk), *_terminal(kiosk)]  # iiko needs no lock


def _terminal_locks(start: Event) -> list[str]:
    return _terminal(_kiosk(start))


def _correction_locks(start: Event) -> list[str]:
    kiosk = _kiosk(start)
    return [sale_lock_key(kiosk), *_register(kiosk)]


def _no_locks(start: Event) -> list[str]:
    return []  # resend: iiko delivery takes its own per-order lock without waiting


def _the_kiosk(object_ref: str, data: dict[str, Any]) -> str:
    return "kiosk"


def _the_order(object_ref: str, data: dict[str, Any]) -> str:
    return object_ref


def _the_document(object_ref: str, data: dict[str, Any]) -> str:
    return f"document:{data['document_id']}"


def _the_card_operation(object_ref: str, data: dict[str, Any]) -> str:
    return f"card:{data['card_operation_id']}"


def _the_shift(object_ref: str, data: dict[str, Any]) -> str:
    return f"shift:{data['shift_id']}"


@dataclass(frozen=True)
class JobKind:
    label: str
    permission: str
    handler: Callable[[Event], tuple[bool, str, dict[str, Any]]]
    # The device locks its workflow takes, claimed together before it runs (none may be waited for).
    locks: Callable[[Event], list[str]] = _register_locks
    # What one job of this kind is about on its kiosk: a second request for the same answers with the first.
    target: Callable[[str, dict[str, Any]], str] = _the_kiosk
    # Set: a guest's payment in progress (the kiosk's sale lock) refuses the job at once with this message
    # instead of making it wait (a manual close never waits for, nor interrupts, a payment).
    during_sale: str = ""


# --- handlers: each returns (ok, message for the manager, data kept in the journal) -------------
def _open(start: Event) -> tuple[bool, str, dict[str, Any]]:
    shift = open_shift(_kiosk(start), user=start.user)
    return True, f"Смена №{shift.number} открыта", {"shift_id": shift.pk}


def _close(start: Event) -> tuple[bool, str, dict[str, Any]]:
    try:
        shift = close_shift(_kiosk(start), user=start.user, reason="вручную")
    except DeviceBusy:
        return False, "На киоске идёт оплата заказа: смена не закрыта. Повторите через минуту.", {}
    if shift is None:
        return True, "Смена уже была закрыта", {}
    return True, f"Смена №{shift.number} закрыта", {"shift_id": shift.pk}


def _xreport(start: Event) -> tuple[bool, str, dict[str, Any]]:
    """The X report, and its figures kept with the outcome for the manager's screen (issue 14)."""
    shift = Shift.objects.filter(kiosk=_kiosk(start), state=Shift.State.OPEN).order_by("-id").first()
    if shift is None:
        return False, "Смена закрыта: X-отчёт печатается только при открытой смене", {}
    report = print_x_report(_kiosk(start), user=start.user)
    return True, "X-отчёт напечатан", {"operation": str(report.operation.uuid), "shift_id": shift.pk,
                                       "totals": report.totals}


def _settle(start: Event) -> tuple[bool, str, dict[str, Any]]:
    kiosk = _kiosk(start)
    settlement = settle(kiosk, current_shift(kiosk), user=start.user)
    if settlement is None:
        return False, "У киоска нет банковского терминала", {}
    ok = settlement.state == settlement.State.OK
    return ok, settlement.message or "Сверка итогов выполнена", {"settlement_id": settlement.pk}


def _check(start: Event) -> tuple[bool, str, dict[str, Any]]:
    """The register's full state (web server, paper, cover, FN, queue, OFD) stored for the KKT block."""
    kiosk = _kiosk(start)
    report = check_register(kiosk)
    summary: dict[str, Any] = {"problems": list(report.get("problems") or [])}
    fn = report.get("fn") or {}
    summary["fn_warnings"] = sorted(k for k, v in (fn.get("warnings") or {}).items() if v)
    summary["queue_blocked"] = bool((report.get("queue") or {}).get("is_blocked"))
    if report.get("ok"):
        try:
            with register_session(kiosk, purpose=f"{kiosk.code}: обмен с ОФД", wait=10) as session:
                status = ((session.run({"type": "ofdExchangeStatus"}).result or {}).get("status") or {})
            summary["ofd_not_sent"] = int(status.get("notSentCount") or 0)
            summary["ofd_first_not_sent"] = status.get("notSentFirstDocDateTime")
        except (FiscalError, DeviceBusy) as exc:
            summary["problems"].append(f"Статус обмена с ОФД не получен: {exc}")
    ok = not summary["problems"]
    record_event(CHECKED, kiosk=kiosk, user=start.user, object_ref=f"kiosk:{kiosk.code}",
                 message="ККТ в порядке" if ok else "; ".join(summary["problems"]), data=summary)
    return ok, "ККТ в порядке" if ok else "; ".join(summary["problems"]), summary


def _connection(start: Event) -> tuple[bool, str, dict[str, Any]]:
    """The admin's «Проверить связь»: register, terminal and iiko, one plain-Russian line each."""
    lines = check_connection(_kiosk(start))
    failed = [line.device for line in lines if line.state == BAD]
    message = f"Есть проблемы: {', '.join(failed)}" if failed else "Связь в порядке"
    return not failed, message, {"devices": [line.as_dict() for line in lines]}


def _order_of(start: Event) -> Order:
    return Order.objects.select_related("kiosk").get(pk=start.object_ref.removeprefix("order:"))


def _resend(start: Event) -> tuple[bool, str, dict[str, Any]]:
    order = _order_of(start)
    status = deliver(order)
    ok = status == Order.Status.COMPLETED
    label = Order.Status(status).label if status in Order.Status.values else status
    return ok, f"Заказ {order.number}: {label}", {"status": status}


def _print_receipt(start: Event) -> tuple[bool, str, dict[str, Any]]:
    document = FiscalDocument.objects.get(pk=start.data["document_id"])
    kiosk = _kiosk(start)
    if kiosk.fn_number and document.fn_number != kiosk.fn_number:
        return False, f"ФД {document.fd_number} хранится в прежнем ФН {document.fn_number}: копию не напечатать", {}
    with register_session(kiosk, purpose=f"{kiosk.code}: копия ФД {document.fd_number}") as session:
        session.run({"type": "printFnDocument", "fiscalDocumentNumber": document.fd_number},
                    reference=f"copy:{document.pk}")
    return True, f"Копия документа ФД {document.fd_number} напечатана", {"fd": document.fd_number}


def _print_slip(start: Event) -> tuple[bool, str, dict[str, Any]]:
    op = CardOperation.objects.get(pk=start.data["card_operation_id"])
    if not op.slip:
        return False, "У операции нет слипа", {}
    kiosk = _kiosk(start)
    with register_session(kiosk, purpose=f"{kiosk.code}: копия слипа") as session:
        session.run({"type": "nonFiscal", "items": slip_items(op.slip)}, reference=f"slip-copy:{op.pk}")
    return True, "Копия слипа напечатана", {"card_operation": op.op_id}


def _card_not_charged(start: Event) -> tuple[bool, str, dict[str, Any]]:
    return not_charged_job(start)


def _correction(start: Event) -> tuple[bool, str, dict[str, Any]]:
    """A correction receipt for a shift's reconciliation gap; the form was checked before the job started."""
    shift = Shift.objects.select_related("kiosk").get(pk=start.data["shift_id"])
    correction = make_correction(shift, CorrectionRequest.from_data(start.data["correction"]),
                                 before_close=settle_before_close, user=start.user, job=start)
    document = correction.operation.document
    message = (f"{correction.get_kind_display().capitalize()} на {correction.total} ₽ пробит: "
               f"ФД {document.fd_number}, ФПД {document.fpd}")
    return True, message, {"shift_id": shift.pk, "correction_id": correction.pk, "fd": document.fd_number}


KINDS: dict[str, JobKind] = {
    "shift_open": JobKind("Открытие смены", MANAGE_SHIFT, _open),
    "shift_close": JobKind("Закрытие смены", MANAGE_SHIFT, _close, _close_locks, during_sale=(
        "На киоске идёт оплата заказа: смена не закрыта. Повторите через минуту.")),
    "xreport": JobKind("X-отчёт", XREPORT, _xreport),
    "settle": JobKind("Сверка итогов", MANAGE_SHIFT, _settle, _settle_locks),
    "check": JobKind("Проверка ККТ", CHECK_DEVICE, _check),
    "connection": JobKind("Проверка связи", CHECK_DEVICE, _connection, _connection_locks),
    "resend": JobKind("Повторная передача в iiko", RESEND, _resend, _no_locks, _the_order),
    "print_receipt": JobKind("Копия чека", PRINT_COPY, _print_receipt, target=_the_document),
    "print_slip": JobKind("Копия слипа", PRINT_COPY, _print_slip, target=_the_card_operation),
    "correction": JobKind("Чек коррекции", MANAGE_SHIFT, _correction, _correction_locks, _the_shift, during_sale=(
        "На киоске идёт оплата заказа: чек коррекции не пробит. Повторите через минуту.")),
    "card_not_charged": JobKind("Ручное разрешение: деньги не списаны", REFUND, _card_not_charged,
                                _terminal_locks, _the_card_operation),
}
JOB_ACTIONS = [f"panel.{kind}" for kind in KINDS]


# --- starting -------------------------------------------------------------------------------------
def start_job(scope: Scope, kind: str, kiosk: Kiosk, *, object_ref: str, message: str,
              data: dict[str, Any] | None = None) -> Event:
    """Journal the manual action (who, what) and queue its job on the device cluster — or, when a job of
    this kind for the same target is already queued, waiting or running on the kiosk, return that one.
    Raises PermissionDenied, or TooManyJobs past the viewer's rate (nothing is started then)."""
    spec = KINDS[kind]
    scope.require(spec.permission)
    data = {"job": kind, **(data or {}), **scope.audit_data}
    target = spec.target(object_ref, data)
    with transaction.atomic():
        _serialise(scope, kiosk)
        running = running_job(kind, kiosk, target)
        if running is not None:
            return running
        check_rate(scope)
        start = record_event(f"panel.{kind}", kiosk=kiosk, user=scope.audit_user, object_ref=object_ref,
                             message=message, data={**data, "target": target})
    _enqueue(start.pk)  # after the commit: a worker (or the inline q2 of the tests) must see the row
    return start


def _serialise(scope: Scope, kiosk: Kiosk) -> None:
    """One start at a time per account and per kiosk, always locked in that order (PostgreSQL; SQLite's
    IMMEDIATE transaction already holds the database's write lock)."""
    if scope.audit_user is not None:
        list(get_user_model().objects.select_for_update().filter(pk=scope.audit_user.pk).values_list("pk"))
    list(Kiosk.objects.select_for_update().filter(pk=kiosk.pk).values_list("pk"))


def running_job(kind: str, kiosk: Kiosk, target: str) -> Event | None:
    """The job of this kind and target on the kiosk that is queued, waiting for its device or running."""
    since = timezone.now() - _window()
    starts = list(Event.objects.filter(created_at__gte=since, action__startswith="panel.", action=f"panel.{kind}",
                                       kiosk=kiosk).order_by("-id")[:50])
    live = _live([start for start in starts if start.data.get("target", "kiosk") == target])
    return live[0] if live else None


def already_running(kind: str, kiosk: Kiosk, *, object_ref: str, data: dict[str, Any] | None = None) -> Event | None:
    """``running_job`` for a view that must know before it changes anything (resend moves the order first)."""
    return running_job(kind, kiosk, KINDS[kind].target(object_ref, data or {}))


def check_rate(scope: Scope) -> None:
    """Raise TooManyJobs when this account (the PIN screen: this kiosk) started ``PANEL_JOB_RATE`` jobs within
    the last minute. ``start_job`` checks it again with the new row, serialised; a view may ask first."""
    now = timezone.now()
    recent = Event.objects.filter(created_at__gte=now - timedelta(minutes=1), action__startswith="panel.",
                                  action__in=JOB_ACTIONS)
    if scope.embed:
        recent = recent.filter(kiosk=scope.kiosk, user__isnull=True)
    else:
        recent = recent.filter(user=scope.audit_user)
    rate = settings.PANEL_JOB_RATE
    if recent.count() < rate:
        return
    oldest = recent.order_by("created_at").values_list("created_at", flat=True).first() or now
    raise TooManyJobs(rate, max(1, math.ceil((oldest + timedelta(minutes=1) - now).total_seconds())))


def _enqueue(job_id: int) -> None:
    queue_task("nekassir.panel.jobs.run_job", job_id, cluster="devices", task_name=task_name(job_id))


def task_name(job_id: int) -> str:
    return f"panel job {job_id}"


# --- running --------------------------------------------------------------------------------------
class JobRun(str):
    """What ``run_job`` returns (q2 keeps it as the task's result): "ok", "failed", "deferred" (its device was
    busy: queued again later) or "already done", with how long this run took and what held the device."""

    seconds: float = 0.0
    busy: str = ""

    @classmethod
    def of(cls, outcome: str, started: float, busy: str = "") -> JobRun:
        run = cls(outcome)
        run.seconds = time.monotonic() - started
        run.busy = busy
        return run


def run_job(job_id: int) -> JobRun:
    """The q2 task: do the operation, journal its outcome. Never raises (the outcome is the journal).

    Its device locks are claimed first, without waiting: a busy device defers the job (``_defer``) and the
    worker is free again at once."""
    started = time.monotonic()
    start = Event.objects.select_related("kiosk", "user").get(pk=job_id)
    if Event.objects.filter(object_ref=f"job:{job_id}").exists():
        return JobRun.of("already done", started)  # a broker re-delivery: the outcome is already journaled
    spec = KINDS[start.data["job"]]
    held, busy_key, busy = _claim(spec.locks(start), purpose=f"{_kiosk(start).code}: {spec.label} (панель)")
    if busy_key == sale_lock_key(_kiosk(start)) and spec.during_sale:
        record_event(FAILED, kiosk=_kiosk(start), user=start.user, object_ref=f"job:{job_id}",
                     message=spec.during_sale, data={"busy": busy})
        return JobRun.of("failed", started, busy)
    if busy_key:
        return _defer(start, busy, started)
    if start.data.get("retry_at"):  # it waited: running now, so the recovery must not queue it again
        Event.objects.filter(pk=start.pk).update(data={k: v for k, v in start.data.items()
                                                       if k not in ("retry_at", "queued_at")})
    try:
        ok, message, data = _handle(spec, start)
    finally:
        for key in reversed(held):
            release(key)
    record_event(DONE if ok else FAILED, kiosk=_kiosk(start), user=start.user, object_ref=f"job:{job_id}",
                 message=message, data=data)
    resume_due_jobs(kiosk=_kiosk(start), wake=True)  # jobs that waited for this one's devices: their turn
    return JobRun.of("ok" if ok else "failed", started)


def _handle(spec: JobKind, start: Event) -> tuple[bool, str, dict[str, Any]]:
    try:
        return spec.handler(start)
    except DeviceBusy as exc:
        return False, f"Устройство занято: {exc}", {}
    except FiscalError as exc:
        return False, f"ККТ: {exc}", {"error": exc.kind}
    except Exception as exc:  # the manager must see an outcome whatever happened
        log.exception("panel job %s (%s) failed", start.pk, start.data.get("job"))
        return False, f"Ошибка: {exc}", {"error": type(exc).__name__}


def _claim(keys: list[str], purpose: str) -> tuple[list[str], str, str]:
    """Claim every key once, without waiting: (the keys held, "", "") or ([], the first busy key, what holds it)."""
    held: list[str] = []
    for key in keys:
        if try_acquire(key, purpose):
            held.append(key)
            continue
        for taken in reversed(held):
            release(taken)
        row = DeviceLock.objects.filter(key=key).values("holder", "purpose").first() or {"holder": "", "purpose": ""}
        return [], key, row.get("purpose") or row.get("holder") or "другая операция"
    return held, "", ""


def _defer(start: Event, busy: str, started: float) -> JobRun:
    """The device is busy: try again later (the recovery schedule queues it), or give up after the wait."""
    now = timezone.now()
    if (now - start.created_at).total_seconds() >= settings.PANEL_JOB_DEVICE_WAIT:
        minutes = max(1, settings.PANEL_JOB_DEVICE_WAIT // 60)
        record_event(FAILED, kiosk=_kiosk(start), user=start.user, object_ref=f"job:{start.pk}",
                     message=(f"Устройство было занято дольше {minutes} мин ({busy}): задание не выполнено. "
                              "Повторите, когда киоск освободится."), data={"busy": busy})
        return JobRun.of("failed", started, busy)
    deferred = int(start.data.get("deferred", 0)) + 1
    delay = min(60.0, settings.PANEL_JOB_RETRY * 2 ** min(deferred - 1, 10))
    waiting = {k: v for k, v in start.data.items() if k != "queued_at"}
    Event.objects.filter(pk=start.pk).update(data={
        **waiting, "deferred": deferred, "busy": busy, "retry_at": (now + timedelta(seconds=delay)).isoformat(),
    })
    log.info("panel job %s (%s) kiosk=%s waits for its device (%s), again in %.0f s", start.pk,
             start.data.get("job"), _kiosk(start).code, busy, delay)
    return JobRun.of("deferred", started, busy)


# How long a queued job that waited may sit in the queue before the recovery queues it once more (a lost
# queue entry: a broker restart); a second delivery finds the outcome journaled, or the device held.
REQUEUE_AFTER = timedelta(minutes=5)


def resume_due_jobs(*, now: datetime | None = None, kiosk: Kiosk | None = None, wake: bool = False) -> int:
    """Queue again every job waiting for its device whose ``retry_at`` has come (``wake``: this kiosk's, now).
    Each is claimed by a compare-and-set on ``retry_at``, so two passes at once queue it once."""
    now = now or timezone.now()
    where = {"kiosk": kiosk} if kiosk is not None else {}
    waiting = [start for starts in running_jobs(tuple(KINDS), **where).values() for start in starts
               if start.data.get("retry_at")]
    queued = 0
    for start in waiting:
        retry_at = start.data["retry_at"]
        due = parse_datetime(retry_at)
        if wake and start.data.get("queued_at"):
            continue  # already in the queue
        if not wake and due is not None and due > now:
            continue
        claimed = Event.objects.filter(pk=start.pk, data__retry_at=retry_at).update(
            data={**start.data, "retry_at": (now + REQUEUE_AFTER).isoformat(), "queued_at": now.isoformat()})
        if claimed:
            _enqueue(start.pk)
            queued += 1
    return queued


# --- following a job --------------------------------------------------------------------------------
@dataclass
class Step:
    at: datetime
    label: str
    state: str
    css: str


@dataclass
class JobState:
    start: Event
    kind: str
    label: str
    outcome: Event | None = None
    lost: str = ""
    steps: list[Step] = field(default_factory=list)
    waiting_for: str = ""

    @property
    def finished(self) -> bool:
        return self.outcome is not None or bool(self.lost)

    @property
    def ok(self) -> bool:
        return self.outcome is not None and self.outcome.action == DONE

    @property
    def message(self) -> str:
        return self.outcome.message if self.outcome is not None else self.lost

    @property
    def data(self) -> dict[str, Any]:
        return self.outcome.data if self.outcome is not None else {}

    @property
    def elapsed(self) -> int:
        end = self.outcome.created_at if self.outcome is not None else timezone.now()
        return max(0, int((end - self.start.created_at).total_seconds()))


# What each register task is, in the manager's words (the journal keeps the ATOL names).
TASK_LABELS = {
    "openShift": "открытие смены", "closeShift": "закрытие смены", "reportX": "X-отчёт",
    "getShiftStatus": "состояние смены", "getShiftTotals": "счётчики смены", "getFnStatus": "состояние ФН",
    "getDeviceStatus": "состояние ККТ", "getRegistrationInfo": "регистрационные данные",
    "ofdExchangeStatus": "обмен с ОФД", "sell": "чек прихода", "sellReturn": "чек возврата прихода",
    "printFnDocument": "печать копии документа", "nonFiscal": "печать слипа", "continuePrint": "допечатка",
    "sellCorrection": "чек коррекции прихода", "sellReturnCorrection": "чек коррекции возврата прихода",
}
_OP_CSS = {"done": "ok", "approved": "ok", "failed": "bad", "declined": "bad", "unknown": "warn"}


def job_state(start: Event) -> JobState:
    """Where a job is, from the journal only (bounded: a handful of queries, no device calls)."""
    kind = start.data.get("job", "")
    state = JobState(start=start, kind=kind, label=KINDS[kind].label if kind in KINDS else kind)
    state.outcome = Event.objects.filter(object_ref=f"job:{start.pk}").order_by("-id").first()
    if state.outcome is None:
        task = Task.objects.filter(name=task_name(start.pk)).order_by("-started").first()
        if task is not None and not task.success:
            state.lost = f"Задание завершилось с ошибкой: {str(task.result or '')[:300]}"
        elif _overdue(start, timezone.now()):
            state.lost = "Задание не ответило вовремя. Проверьте состояние киоска и журнал."
    kiosk = start.kiosk
    if kiosk is None:
        return state
    until = state.outcome.created_at if state.outcome is not None else timezone.now()
    window = {"kiosk": kiosk, "created_at__gte": start.created_at, "created_at__lte": until}
    for op in FiscalOperation.objects.filter(**window).order_by("id")[:20]:
        label = f"ККТ: {TASK_LABELS.get(op.task_type, op.task_type)}"
        state.steps.append(Step(op.created_at, label, op.get_state_display(), _OP_CSS.get(op.state, "")))
    for card_op in CardOperation.objects.filter(**window).order_by("id")[:20]:
        state.steps.append(Step(card_op.created_at, f"Терминал: {card_op.get_kind_display()}",
                                card_op.get_state_display(), _OP_CSS.get(card_op.state, "")))
    state.steps.sort(key=lambda step: step.at)
    if not state.finished:
        keys = [register_lock_key(kiosk), sale_lock_key(kiosk)]
        holder = DeviceLock.objects.filter(key__in=keys).exclude(holder="").values_list("purpose", flat=True).first()
        state.waiting_for = holder or (start.data.get("busy", "") if start.data.get("retry_at") else "")
    return state


KIOSK_KINDS = ("shift_open", "shift_close", "xreport", "settle", "check")
ORDER_KINDS = ("resend", "print_receipt", "print_slip", "card_not_charged")


def running_jobs(kinds: tuple[str, ...], **where: Any) -> dict[int, list[Event]]:
    """Jobs of these kinds started recently with no outcome yet, by kiosk id (to keep following them)."""
    now = timezone.now()
    # action__startswith repeats what action__in says, so that the partial index event_panel_recent serves it.
    starts = list(Event.objects.filter(created_at__gte=now - _window(), action__startswith="panel.",
                                       action__in=[f"panel.{k}" for k in kinds], **where).order_by("id"))
    finished = set(Event.objects.filter(object_ref__in=[f"job:{e.pk}" for e in starts])
                   .values_list("object_ref", flat=True))
    running: dict[int, list[Event]] = {}
    for start in starts:
        if f"job:{start.pk}" not in finished and not _overdue(start, now):
            running.setdefault(cast(int, start.kiosk_id), []).append(start)  # a job always has a kiosk
    return running


def _window() -> timedelta:
    """The longest a job may live: waiting for its device, a minute for the recovery to queue it, its run."""
    return timedelta(seconds=settings.DEVICE_JOB_TIMEOUT + settings.PANEL_JOB_DEVICE_WAIT + 120)


def _overdue(start: Event, now: datetime) -> bool:
    """No outcome in time: a job that never waited had its run's timeout; one that waited, the whole window."""
    limit = _window() if start.data.get("deferred") else timedelta(seconds=settings.DEVICE_JOB_TIMEOUT + 60)
    return now - start.created_at > limit


def _live(starts: list[Event]) -> list[Event]:
    """Of these job starts, those still queued, waiting or running: no outcome, not crashed, not overdue."""
    if not starts:
        return []
    finished = set(Event.objects.filter(object_ref__in=[f"job:{e.pk}" for e in starts])
                   .values_list("object_ref", flat=True))
    crashed = set(Task.objects.filter(name__in=[task_name(e.pk) for e in starts], success=False)
                  .values_list("name", flat=True))
    now = timezone.now()
    return [e for e in starts
            if f"job:{e.pk}" not in finished and task_name(e.pk) not in crashed and not _overdue(e, now)]
