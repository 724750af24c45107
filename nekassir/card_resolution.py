"""A manager resolves an unknown card operation by hand (issue 11, item 1): the people's side of the rule
"not charged only on positive evidence".

An operation whose outcome is unknown blocks its terminal (``payments.terminal``) until the terminal says
what happened. When it cannot, a manager with ``nekassir.refund_order`` decides on the order page:

* **деньги списаны** — with the RRN and authorization code from the bank slip or the terminal's report.
  Stored on the operation, so the sale can be reconciled and refunded later (DualConnector refunds by
  RRN; KKM Server needs the UniversalID, which a lost answer never gave us: ``nekassir.refunds`` refuses a
  card refund of such a sale in plain words).
* **деньги не списаны** — only with a terminal report taken at that moment under the terminal's lock
  (KKM TerminalReport, DualConnector op 63): a device call, so it runs as a panel job.

Both need a reason, record who decided, are journaled (``card.resolved_by_hand``), close the lost
emergency reversals of that operation (they would keep the terminal blocked) and resume what waited
for it: the order's checkout (approved → iiko, declined → annulment) or the refund.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from core.events import record_event
from core.locks import DeviceBusy, device_lock
from core.models import TerminalTransport
from nekassir.checkout import start_checkout
from nekassir.models import Order
from nekassir.refunds import start_refund
from payments.acquiring import AcquiringError
from payments.dualconnector_client import make_reference
from payments.models import CardOperation
from payments.terminal import TerminalError, terminal_lock_key, terminal_session

log = logging.getLogger(__name__)

ACTION = "card.resolved_by_hand"
CHARGED = "charged"
NOT_CHARGED = "not_charged"
RESOLVABLE_KINDS = (CardOperation.Kind.SALE, CardOperation.Kind.CANCEL, CardOperation.Kind.REFUND)
LOCK_WAIT = 5.0  # a manager's click waits this long for the terminal (the automatic recovery may hold it)
RRN_FORMAT = re.compile(r"\d{12}")  # ISO 8583 field 37: 12 characters, digits on Russian acquiring slips
AUTH_CODE_FORMAT = re.compile(r"[0-9A-Z]{6}")  # field 38: 6 letters or digits
NOTE_LIMIT = 1000


class ResolutionError(Exception):
    """The manager's request is refused; the message says why, in Russian."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Evidence:
    """What the manager gives for «деньги списаны»: the slip's RRN and authorization code, cleaned."""

    rrn: str
    auth_code: str


# --- checks that need no device: the view runs them before anything is written or started ----------------
def clean_note(note: str) -> str:
    note = (note or "").strip()
    if not note:
        raise ResolutionError("Укажите причину: на основании чего вы так решили.", "note_required")
    if len(note) > NOTE_LIMIT:
        raise ResolutionError(f"Причина длиннее {NOTE_LIMIT} символов.", "note_too_long")
    return note


def clean_evidence(rrn: str, auth_code: str) -> Evidence:
    rrn, auth_code = (rrn or "").strip(), (auth_code or "").strip().upper()
    if not rrn:
        raise ResolutionError("Укажите RRN со слипа или из отчёта терминала.", "rrn_required")
    if not RRN_FORMAT.fullmatch(rrn):
        raise ResolutionError("RRN — это 12 цифр (строка RRN на слипе).", "rrn_malformed")
    if not auth_code:
        raise ResolutionError("Укажите код авторизации со слипа или из отчёта терминала.", "auth_code_required")
    if not AUTH_CODE_FORMAT.fullmatch(auth_code):
        raise ResolutionError("Код авторизации — 6 цифр или латинских букв (строка «код авторизации» на слипе).",
                              "auth_code_malformed")
    return Evidence(rrn, auth_code)


def unknown_operation(order: Order, operation_id) -> CardOperation:
    """The order's money operation ``operation_id`` (its sale, or a cancel/refund of it), still unknown."""
    op = None
    if order.card_sale_id and str(operation_id).isdigit():
        op = (CardOperation.objects.filter(pk=int(operation_id), kind__in=RESOLVABLE_KINDS)
              .filter(pk=order.card_sale_id).first()
              or CardOperation.objects.filter(pk=int(operation_id), kind__in=RESOLVABLE_KINDS,
                                              original_id=order.card_sale_id).first())
    if op is None:
        raise ResolutionError("Такой операции по карте у заказа нет.", "no_such_operation")
    if op.state != CardOperation.State.UNKNOWN:
        raise ResolutionError(f"Исход операции уже не неизвестен: «{op.get_state_display()}». Обновите страницу.",
                              "not_unknown")
    return op


def _check_rrn_unused(op: CardOperation, evidence: Evidence) -> None:
    """The same RRN on another approved operation of this terminal is a mistyped or reused slip."""
    taken = (CardOperation.objects.filter(kiosk_id=op.kiosk_id, rrn=evidence.rrn, state=CardOperation.State.APPROVED)
             .exclude(pk=op.pk).first())
    if taken is not None:
        raise ResolutionError(f"RRN {evidence.rrn} уже принадлежит другой операции ({taken.get_kind_display()} "
                              f"{taken.created_at:%d.%m %H:%M}). Проверьте слип.", "rrn_taken")


# --- «деньги списаны» --------------------------------------------------------------------------------------
def resolve_charged(order: Order, operation_id, *, rrn: str, auth_code: str, note: str, user) -> CardOperation:
    """Mark the unknown operation approved on the manager's evidence, then resume the order or refund.

    No device call; it still holds the terminal's lock, so the automatic recovery cannot reverse the
    operation at the same moment."""
    evidence, note = clean_evidence(rrn, auth_code), clean_note(note)
    op = unknown_operation(order, operation_id)
    try:
        with device_lock(terminal_lock_key(op.kiosk), purpose=f"{order.number}: вручную, деньги списаны",
                         wait=LOCK_WAIT):
            op = _charged(order, operation_id, evidence, note, user)
    except DeviceBusy as exc:  # nothing inside takes another device lock: this is the terminal's
        raise ResolutionError(f"Терминал занят: {exc}. Повторите через минуту.", "busy") from None
    _resume(order, op)  # once the terminal is free: the checkout takes it next
    return op


def _charged(order: Order, operation_id, evidence: Evidence, note: str, user) -> CardOperation:
    op = unknown_operation(order, operation_id)  # again under the lock: recovery may have resolved it
    _check_rrn_unused(op, evidence)
    with transaction.atomic():
        values = {"rrn": evidence.rrn, "auth_code": evidence.auth_code,
                  "terminal_reference": op.terminal_reference or _reference_from_rrn(op, evidence)}
        _resolve(op, CardOperation.State.APPROVED, user=user, note=note, values=values,
                 resolution=f"вручную: деньги списаны (RRN {evidence.rrn}, код {evidence.auth_code})")
        record_event(ACTION, kiosk=op.kiosk, user=user, object_ref=f"order:{order.pk}",
                     message=f"{order.number}: {op.get_kind_display()} — деньги списаны (RRN {evidence.rrn}); "
                             f"причина: {note}",
                     data={"choice": CHARGED, "operation": op.op_id, "rrn": evidence.rrn,
                           "auth_code": evidence.auth_code, "note": note})
    return op


def _reference_from_rrn(op: CardOperation, evidence: Evidence) -> str:
    """What a later cancel/refund of a sale needs. DualConnector finds the original by RRN (field 14);
    KKM Server needs the UniversalID of the lost answer, which nobody has: left empty (refused clearly)."""
    if op.kind != CardOperation.Kind.SALE or op.transport != TerminalTransport.DUALCONNECTOR:
        return ""
    return make_reference(evidence.rrn, "")


# --- «деньги не списаны» -----------------------------------------------------------------------------------
def resolve_not_charged(order: Order, operation_id, *, note: str, user) -> CardOperation:
    """Take a terminal report now, under the terminal's lock, store it, and mark the operation declined.

    A device call: run it from a job (``nekassir.panel.jobs``). A report the terminal does not give leaves
    the operation unknown (ResolutionError)."""
    note = clean_note(note)
    op = unknown_operation(order, operation_id)
    try:
        # resolve=False: the manager's evidence is this report, not another reversal attempt.
        with terminal_session(op.kiosk, purpose=f"{order.number}: отчёт терминала для ручного разрешения",
                              wait=60, resolve=False) as session:
            op = unknown_operation(order, operation_id)
            report = _take_report(session, order)
            if report.state != CardOperation.State.APPROVED:
                raise ResolutionError(f"Терминал не выдал отчёт ({report.message or report.reason}): "
                                      "операция осталась неизвестной. Проверьте терминал и повторите.",
                                      "no_report")
            with transaction.atomic():
                _resolve(op, CardOperation.State.DECLINED, user=user, note=note,
                         values={"manual_report": report.slip or report.raw_response},
                         resolution=f"вручную: деньги не списаны (отчёт терминала {report.op_id})")
                record_event(ACTION, kiosk=op.kiosk, user=user, object_ref=f"order:{order.pk}",
                             message=f"{order.number}: {op.get_kind_display()} — деньги не списаны (по отчёту "
                                     f"терминала); причина: {note}",
                             data={"choice": NOT_CHARGED, "operation": op.op_id, "report": report.op_id,
                                   "note": note})
    except DeviceBusy as exc:
        raise ResolutionError(f"Терминал занят: {exc}. Повторите через минуту.", "busy") from None
    except (TerminalError, AcquiringError) as exc:
        raise ResolutionError(f"Терминал: {exc}", "terminal_error") from None
    _resume(order, op)  # once the terminal is free: the checkout takes it next
    return op


def _take_report(session, order: Order) -> CardOperation:
    """The terminal's report, journaled like every terminal call: its row (our id) saved before the call."""
    return session.report(reference=f"order:{order.pk}")


# --- shared -------------------------------------------------------------------------------------------------
def _resolve(op: CardOperation, state: str, *, user, note: str, values: dict, resolution: str) -> None:
    """Write the decision on the operation, and close its lost emergency reversals: the manager's evidence
    covers them (else the terminal would stay blocked by a reversal nobody can ask about)."""
    now = timezone.now()
    CardOperation.objects.filter(pk=op.pk).update(state=state, resolution=resolution, resolved_by=user,
                                                  manual_note=note, finished_at=now, **values)
    lost = CardOperation.objects.filter(original=op, kind=CardOperation.Kind.REVERSAL,
                                        state__in=CardOperation.UNRESOLVED)
    lost.update(state=CardOperation.State.DECLINED, finished_at=now, resolved_by=user,
                resolution=f"закрыта вручную вместе с {op.op_id}: {resolution}")
    op.refresh_from_db()
    log.warning("kiosk=%s card %s %s resolved by hand by %s: %s", op.kiosk.code, op.kind, op.op_id,
                getattr(user, "username", "?"), state)


def _resume(order: Order, op: CardOperation) -> None:
    """What waited for this operation carries on: the order's checkout, or the refund it belongs to."""
    refund_id = getattr(getattr(op, "refund", None), "pk", None) if op.kind != CardOperation.Kind.SALE else None
    if refund_id is not None:
        transaction.on_commit(lambda: start_refund(refund_id))
    elif Order.objects.filter(pk=order.pk).exclude(step=Order.Step.DONE).exists():
        transaction.on_commit(lambda: start_checkout(order.pk))


# --- the panel job ------------------------------------------------------------------------------------------
def not_charged_job(start) -> tuple[bool, str, dict]:
    """``nekassir.panel.jobs`` handler of «деньги не списаны»: (ok, message for the manager, journal data)."""
    order = Order.objects.select_related("kiosk").get(pk=start.object_ref.removeprefix("order:"))
    try:
        op = resolve_not_charged(order, start.data["card_operation_id"], note=start.data.get("note", ""),
                                 user=start.user)
    except ResolutionError as exc:
        return False, str(exc), {"error": exc.code}
    return True, f"{order.number}: деньги не списаны, отчёт терминала сохранён", {"card_operation": op.op_id}
