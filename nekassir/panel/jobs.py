"""Manual device operations started from the panel, run as django-q2 jobs, followed by polling.

A job needs no table of its own: it *is* its audit entry. ``start_job`` journals the manual action
(``panel.<kind>``, with who, which kiosk and what it concerns) and queues ``run_job(<that event's id>)``
on the device cluster. The job calls the workflow (which takes the device locks and journals every
device call) and ends by journaling its outcome as ``panel.job.done`` / ``panel.job.failed`` with
``object_ref = "job:<id>"``. The progress fragment reads only the database: the outcome event if
there is one, else the device calls the workflow journaled since the job started (FiscalOperation,
CardOperation) and who holds the device locks. It works the same whether django-q runs the job
inline (tests: already done when the POST returns) or in a worker minutes later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from django_q.tasks import async_task

from fiscal.models import FiscalDocument, FiscalOperation
from fiscal.register import FiscalError, register_lock_key, register_session
from nekassir.events import record_event
from nekassir.locks import DeviceBusy, sale_lock_key
from nekassir.models import DeviceLock, Event, Kiosk, Order
from nekassir.panel.access import CHANGE_KIOSK, MANAGE_SHIFT, PRINT_COPY, REFUND, RESEND, XREPORT, Scope
from payments.models import CardOperation

log = logging.getLogger(__name__)

DONE = "panel.job.done"
FAILED = "panel.job.failed"
CHECKED = "fiscal.register.checked"


@dataclass(frozen=True)
class JobKind:
    label: str
    permission: str | None
    handler: Callable[[Event], tuple[bool, str, dict[str, Any]]]


# --- handlers: each returns (ok, message for the manager, data kept in the journal) -------------
def _open(start: Event) -> tuple[bool, str, dict[str, Any]]:
    from fiscal.shifts import open_shift

    shift = open_shift(start.kiosk, user=start.user)
    return True, f"Смена №{shift.number} открыта", {"shift_id": shift.pk}


def _close(start: Event) -> tuple[bool, str, dict[str, Any]]:
    from fiscal.shifts import close_shift

    try:
        shift = close_shift(start.kiosk, user=start.user, reason="вручную")
    except DeviceBusy:
        return False, "На киоске идёт оплата заказа: смена не закрыта. Повторите через минуту.", {}
    if shift is None:
        return True, "Смена уже была закрыта", {}
    return True, f"Смена №{shift.number} закрыта", {"shift_id": shift.pk}


def _xreport(start: Event) -> tuple[bool, str, dict[str, Any]]:
    from fiscal.models import Shift
    from fiscal.shifts import x_report

    if not Shift.objects.filter(kiosk=start.kiosk, state=Shift.State.OPEN).exists():
        return False, "Смена закрыта: X-отчёт печатается только при открытой смене", {}
    op = x_report(start.kiosk, user=start.user)
    return True, "X-отчёт напечатан", {"operation": str(op.uuid)}


def _settle(start: Event) -> tuple[bool, str, dict[str, Any]]:
    from payments.settlement import settle
    from payments.terminal import current_shift

    settlement = settle(start.kiosk, current_shift(start.kiosk), user=start.user)
    if settlement is None:
        return False, "У киоска нет банковского терминала", {}
    ok = settlement.state == settlement.State.OK
    return ok, settlement.message or "Сверка итогов выполнена", {"settlement_id": settlement.pk}


def _check(start: Event) -> tuple[bool, str, dict[str, Any]]:
    """The register's full state (web server, paper, cover, FN, queue, OFD) stored for the KKT block."""
    from fiscal.checks import check_register

    kiosk = start.kiosk
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
    from nekassir.connection_check import BAD, check_connection

    lines = check_connection(start.kiosk)
    failed = [line.device for line in lines if line.state == BAD]
    message = f"Есть проблемы: {', '.join(failed)}" if failed else "Связь в порядке"
    return not failed, message, {"devices": [line.as_dict() for line in lines]}


def _order_of(start: Event) -> Order:
    return Order.objects.select_related("kiosk").get(pk=start.object_ref.removeprefix("order:"))


def _resend(start: Event) -> tuple[bool, str, dict[str, Any]]:
    from nekassir.iiko_delivery import deliver

    order = _order_of(start)
    status = deliver(order)
    ok = status == Order.Status.COMPLETED
    label = Order.Status(status).label if status in Order.Status.values else status
    return ok, f"Заказ {order.number}: {label}", {"status": status}


def _print_receipt(start: Event) -> tuple[bool, str, dict[str, Any]]:
    document = FiscalDocument.objects.get(pk=start.data["document_id"])
    kiosk = start.kiosk
    if kiosk.fn_number and document.fn_number != kiosk.fn_number:
        return False, f"ФД {document.fd_number} хранится в прежнем ФН {document.fn_number}: копию не напечатать", {}
    with register_session(kiosk, purpose=f"{kiosk.code}: копия ФД {document.fd_number}") as session:
        session.run({"type": "printFnDocument", "fiscalDocumentNumber": document.fd_number},
                    reference=f"copy:{document.pk}")
    return True, f"Копия документа ФД {document.fd_number} напечатана", {"fd": document.fd_number}


def _print_slip(start: Event) -> tuple[bool, str, dict[str, Any]]:
    from payments.settlement import slip_items

    op = CardOperation.objects.get(pk=start.data["card_operation_id"])
    if not op.slip:
        return False, "У операции нет слипа", {}
    kiosk = start.kiosk
    with register_session(kiosk, purpose=f"{kiosk.code}: копия слипа") as session:
        session.run({"type": "nonFiscal", "items": slip_items(op.slip)}, reference=f"slip-copy:{op.pk}")
    return True, "Копия слипа напечатана", {"card_operation": op.op_id}


def _card_not_charged(start: Event) -> tuple[bool, str, dict[str, Any]]:
    from nekassir.card_resolution import not_charged_job

    return not_charged_job(start)


def _correction(start: Event) -> tuple[bool, str, dict[str, Any]]:
    """A correction receipt for a shift's reconciliation gap; the form was checked before the job started."""
    from fiscal.corrections import CorrectionRequest, make_correction
    from fiscal.models import Shift

    shift = Shift.objects.select_related("kiosk").get(pk=start.data["shift_id"])
    correction = make_correction(shift, CorrectionRequest.from_data(start.data["correction"]), user=start.user,
                                 job=start)
    document = correction.operation.document
    message = (f"{correction.get_kind_display().capitalize()} на {correction.total} ₽ пробит: "
               f"ФД {document.fd_number}, ФПД {document.fpd}")
    return True, message, {"shift_id": shift.pk, "correction_id": correction.pk, "fd": document.fd_number}


KINDS: dict[str, JobKind] = {
    "shift_open": JobKind("Открытие смены", MANAGE_SHIFT, _open),
    "shift_close": JobKind("Закрытие смены", MANAGE_SHIFT, _close),
    "xreport": JobKind("X-отчёт", XREPORT, _xreport),
    "settle": JobKind("Сверка итогов", MANAGE_SHIFT, _settle),
    "check": JobKind("Проверка ККТ", None, _check),
    "connection": JobKind("Проверка связи", CHANGE_KIOSK, _connection),
    "resend": JobKind("Повторная передача в iiko", RESEND, _resend),
    "print_receipt": JobKind("Копия чека", PRINT_COPY, _print_receipt),
    "print_slip": JobKind("Копия слипа", PRINT_COPY, _print_slip),
    "correction": JobKind("Чек коррекции", MANAGE_SHIFT, _correction),
    "card_not_charged": JobKind("Ручное разрешение: деньги не списаны", REFUND, _card_not_charged),
}


# --- starting and running -----------------------------------------------------------------------
def start_job(scope: Scope, kind: str, kiosk: Kiosk, *, object_ref: str, message: str,
              data: dict[str, Any] | None = None) -> Event:
    """Journal the manual action (who, what) and queue its job on the device cluster."""
    spec = KINDS[kind]
    if spec.permission:
        scope.require(spec.permission)
    start = record_event(f"panel.{kind}", kiosk=kiosk, user=scope.audit_user, object_ref=object_ref,
                         message=message, data={"job": kind, **(data or {}), **scope.audit_data})
    async_task("nekassir.panel.jobs.run_job", start.pk, cluster="devices", task_name=task_name(start.pk))
    return start


def task_name(job_id: int) -> str:
    return f"panel job {job_id}"


def run_job(job_id: int) -> str:
    """The q2 task: do the operation, journal its outcome. Never raises (the outcome is the journal)."""
    start = Event.objects.select_related("kiosk", "user").get(pk=job_id)
    if Event.objects.filter(object_ref=f"job:{job_id}").exists():
        return "already done"  # a broker re-delivery: the outcome is already journaled
    spec = KINDS[start.data["job"]]
    try:
        ok, message, data = spec.handler(start)
    except DeviceBusy as exc:
        ok, message, data = False, f"Устройство занято: {exc}", {}
    except FiscalError as exc:
        ok, message, data = False, f"ККТ: {exc}", {"error": exc.kind}
    except Exception as exc:  # the manager must see an outcome whatever happened
        log.exception("panel job %s (%s) failed", job_id, start.data.get("job"))
        ok, message, data = False, f"Ошибка: {exc}", {"error": type(exc).__name__}
    record_event(DONE if ok else FAILED, kiosk=start.kiosk, user=start.user, object_ref=f"job:{job_id}",
                 message=message, data=data)
    return "ok" if ok else "failed"


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
    from django_q.models import Task

    kind = start.data.get("job", "")
    state = JobState(start=start, kind=kind, label=KINDS[kind].label if kind in KINDS else kind)
    state.outcome = Event.objects.filter(object_ref=f"job:{start.pk}").order_by("-id").first()
    if state.outcome is None:
        task = Task.objects.filter(name=task_name(start.pk)).order_by("-started").first()
        if task is not None and not task.success:
            state.lost = f"Задание завершилось с ошибкой: {str(task.result or '')[:300]}"
        elif timezone.now() - start.created_at > timedelta(seconds=settings.DEVICE_JOB_TIMEOUT + 60):
            state.lost = "Задание не ответило вовремя. Проверьте состояние киоска и журнал."
    kiosk = start.kiosk
    if kiosk is None:
        return state
    until = state.outcome.created_at if state.outcome is not None else timezone.now()
    window = {"kiosk": kiosk, "created_at__gte": start.created_at, "created_at__lte": until}
    for op in FiscalOperation.objects.filter(**window).order_by("id")[:20]:
        label = f"ККТ: {TASK_LABELS.get(op.task_type, op.task_type)}"
        state.steps.append(Step(op.created_at, label, op.get_state_display(), _OP_CSS.get(op.state, "")))
    for op in CardOperation.objects.filter(**window).order_by("id")[:20]:
        state.steps.append(Step(op.created_at, f"Терминал: {op.get_kind_display()}", op.get_state_display(),
                                _OP_CSS.get(op.state, "")))
    state.steps.sort(key=lambda step: step.at)
    if not state.finished:
        keys = [register_lock_key(kiosk), sale_lock_key(kiosk)]
        holder = DeviceLock.objects.filter(key__in=keys).exclude(holder="").values_list("purpose", flat=True).first()
        state.waiting_for = holder or ""
    return state


KIOSK_KINDS = ("shift_open", "shift_close", "xreport", "settle", "check")
ORDER_KINDS = ("resend", "print_receipt", "print_slip", "card_not_charged")


def running_jobs(kinds: tuple[str, ...], **where: Any) -> dict[int, list[Event]]:
    """Jobs of these kinds started recently with no outcome yet, by kiosk id (to keep following them)."""
    since = timezone.now() - timedelta(seconds=settings.DEVICE_JOB_TIMEOUT + 60)
    # action__startswith repeats what action__in says, so that the partial index event_panel_recent serves it.
    starts = list(Event.objects.filter(created_at__gte=since, action__startswith="panel.",
                                       action__in=[f"panel.{k}" for k in kinds], **where).order_by("id"))
    finished = set(Event.objects.filter(object_ref__in=[f"job:{e.pk}" for e in starts])
                   .values_list("object_ref", flat=True))
    running: dict[int, list[Event]] = {}
    for start in starts:
        if f"job:{start.pk}" not in finished:
            running.setdefault(start.kiosk_id, []).append(start)
    return running
