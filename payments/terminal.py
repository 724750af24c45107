"""Running operations on a kiosk's card terminal: one at a time, journaled, unknowns resolved first.

Every call is a ``CardOperation`` row saved with our op id *before* the terminal is called.
``terminal_session(kiosk)`` holds the terminal's device lock and, before anything new, resolves
what an earlier process left unresolved, exactly as PROTOCOLS.md §2.3 says:

1. ask the terminal for the result by our id (KKM Server GetRezult): a final approved answer means
   the operation happened; a final declined one means it did not;
2. still unknown (or no status query: DualConnector) → emergency reversal of the terminal's last
   operation, which is ours if it reached the terminal at all, because nothing else touched the terminal
   since (we hold the lock). A request saved as sent may never have left (kill -9 in between): the
   reversal names the lost operation (DualConnector: its ECR id and amount), so the terminal refuses
   rather than cancel the payment before it; a refusal means ours did not happen;
3. if even that is unclear, the terminal stays blocked (``TerminalUnresolved``): no sale, no
   settlement (a settlement would close the batch and remove the reversal option).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields as dc_fields

from django.conf import settings
from django.utils import timezone

from fiscal.models import Shift
from nekassir.events import record_event
from nekassir.locks import device_lock
from nekassir.models import Kiosk, TerminalTransport
from payments.acquiring import (
    AcquiringClient,
    CardResult,
    CheckResult,
    LostOperation,
    Outcome,
    Reason,
    SlipResult,
)
from payments.dualconnector_client import DualConnectorClient
from payments.kkm_client import KkmServerClient
from payments.models import CardOperation

log = logging.getLogger(__name__)

_STATE_BY_OUTCOME = {
    Outcome.APPROVED: CardOperation.State.APPROVED,
    Outcome.DECLINED: CardOperation.State.DECLINED,
    Outcome.UNKNOWN: CardOperation.State.UNKNOWN,
}


class TerminalError(Exception):
    code = "terminal_error"

    def __init__(self, message: str, op: CardOperation | None = None):
        super().__init__(message)
        self.op = op


class TerminalNotConfigured(TerminalError):
    code = "terminal_not_configured"


class TerminalUnresolved(TerminalError):
    """An earlier operation's outcome is still unknown: the terminal takes nothing new."""

    code = "terminal_unresolved"


def new_op_id() -> str:
    return str(uuid.uuid4())  # 36 characters: within KKM Server's 40 for IdCommand


def terminal_lock_key(kiosk: Kiosk) -> str:
    if kiosk.terminal_transport == TerminalTransport.DUALCONNECTOR:
        return f"terminal:dc:{kiosk.dc_url.rstrip('/')}"
    return f"terminal:kkm:{kiosk.kkm_url.rstrip('/')}#{kiosk.kkm_device_number}"


def make_acquirer(kiosk: Kiosk) -> AcquiringClient:
    common = {"timeout": settings.TERMINAL_HTTP_TIMEOUT, "guest_timeout": settings.TERMINAL_GUEST_TIMEOUT}
    if kiosk.terminal_transport == TerminalTransport.KKM_SERVER and kiosk.kkm_url:
        return KkmServerClient(
            kiosk.kkm_url, device_number=kiosk.kkm_device_number, username=kiosk.kkm_username or None,
            password=kiosk.kkm_password or None, poll_interval=settings.TERMINAL_POLL_INTERVAL,
            poll_for=settings.TERMINAL_POLL_FOR, **common,
        )
    if kiosk.terminal_transport == TerminalTransport.DUALCONNECTOR and kiosk.dc_url:
        return DualConnectorClient(kiosk.dc_url, operation_codes=kiosk.dc_operation_codes or None, **common)
    raise TerminalNotConfigured(f"{kiosk.code}: банковский терминал не настроен")


current_shift = Shift.current  # card operations are reconciled with the shift open at their time


class TerminalSession:
    """Operations on one terminal while its lock is held. Use ``terminal_session(kiosk)``."""

    def __init__(self, kiosk: Kiosk, client: AcquiringClient):
        self.kiosk = kiosk
        self.client = client

    # --- money operations ----------------------------------------------------------------------
    def sale(self, amount_kopecks: int, order_number: str, *, reference: str = "") -> CardOperation:
        op = self.create(CardOperation.Kind.SALE, amount_kopecks, reference=reference)
        return self.perform(op, order_number=order_number)

    def cancel(self, original: CardOperation, amount_kopecks: int, *, reference: str = "") -> CardOperation:
        op = self.create(CardOperation.Kind.CANCEL, amount_kopecks, original=original, reference=reference)
        return self.perform(op)

    def refund(self, original: CardOperation, amount_kopecks: int, *, reference: str = "") -> CardOperation:
        op = self.create(CardOperation.Kind.REFUND, amount_kopecks, original=original, reference=reference)
        return self.perform(op)

    def settlement(self) -> CardOperation:
        return self.perform(self.create(CardOperation.Kind.SETTLEMENT, 0, reference="settlement"))

    def check(self) -> CardOperation:
        return self.perform(self.create(CardOperation.Kind.CHECK, 0, reference="check"))

    # --- journal ---------------------------------------------------------------------------------
    def create(
        self, kind: str, amount_kopecks: int, *, original: CardOperation | None = None, reference: str = "",
        shift: Shift | None = None,
    ) -> CardOperation:
        """Save the row, and so our op id, before the terminal is called.

        ``shift``: the shift it is reconciled in — that of its fiscal document when there is one (a sale
        whose receipt was printed just before a forced or expired close), else the one open now."""
        return CardOperation.objects.create(
            op_id=new_op_id(), kiosk=self.kiosk, kind=kind, amount_kopecks=amount_kopecks, original=original,
            transport=self.kiosk.terminal_transport, reference=reference or (original.reference if original else ""),
            shift=shift or current_shift(self.kiosk),
        )

    def perform(self, op: CardOperation, *, order_number: str = "") -> CardOperation:
        op.state, op.sent_at = CardOperation.State.SENT, timezone.now()
        CardOperation.objects.filter(pk=op.pk).update(state=op.state, sent_at=op.sent_at)
        log.info("kiosk=%s terminal %s %s %s kopecks", self.kiosk.code, op.kind, op.op_id, op.amount_kopecks)
        result = self._call(op, order_number)
        return self.record(op, result)

    def _call(self, op: CardOperation, order_number: str) -> CardResult | SlipResult | CheckResult:
        kind = CardOperation.Kind
        if op.kind == kind.SALE:
            return self.client.sale(op.op_id, op.amount_kopecks, order_number or op.reference or op.op_id[:8])
        if op.kind == kind.CANCEL:
            return self.client.cancel(op.op_id, op.amount_kopecks, op.original.terminal_reference)
        if op.kind == kind.REFUND:
            return self.client.refund(op.op_id, op.amount_kopecks, op.original.terminal_reference)
        if op.kind == kind.REVERSAL:
            if op.original and op.original.terminal_reference:
                return self.client.emergency_reversal(op.op_id, op.original.terminal_reference)
            lost = LostOperation(op.original.op_id, op.original.amount_kopecks) if op.original else None
            return self.client.emergency_reversal(op.op_id, lost=lost)
        if op.kind == kind.SETTLEMENT:
            return self.client.settlement(op.op_id)
        if op.kind == kind.CHECK:
            return self.client.check(op.op_id)
        raise ValueError(f"unknown card operation kind {op.kind!r}")

    def record(self, op: CardOperation, result: CardResult | SlipResult | CheckResult) -> CardOperation:
        """Write what the terminal said into the journal row."""
        values = {f.name: getattr(result, f.name) for f in dc_fields(result)}
        if isinstance(result, CheckResult):
            # A check moves no money: an unclear answer is simply "not ok".
            state = CardOperation.State.APPROVED if result.ok else CardOperation.State.DECLINED
        else:
            state = _STATE_BY_OUTCOME[result.outcome]
        op.state = state
        op.reason = str(values.get("reason", ""))
        op.rrn = values.get("rrn", "") or op.rrn
        op.auth_code = values.get("auth_code", "") or op.auth_code
        op.masked_pan = values.get("masked_pan", "") or op.masked_pan
        op.terminal_reference = values.get("reference", "") or op.terminal_reference
        op.bank_code = values.get("bank_code", "") or ""
        op.message = values.get("message", "") or ""
        op.slip = values.get("slip", "") or op.slip
        op.raw_request = values.get("raw_request", "") or op.raw_request
        op.raw_response = values.get("raw_response", "") or ""
        if state != CardOperation.State.UNKNOWN:
            op.finished_at = timezone.now()
        op.save()
        if state == CardOperation.State.UNKNOWN:
            log.warning("kiosk=%s terminal %s %s: outcome unknown (%s)", self.kiosk.code, op.kind, op.op_id, op.reason)
        self._note_readiness(op)
        return op

    def _note_readiness(self, op: CardOperation) -> None:
        """The panel's "terminal ready" flag follows what the terminal last showed of itself."""
        if op.state == CardOperation.State.APPROVED:
            ready, problem = True, ""
        elif op.reason in ("not_reachable", "timeout", "lost_answer", "rejected"):
            ready, problem = False, f"Терминал не отвечает или отказал в доступе ({op.reason})"
        else:
            return  # a declined card says nothing about the terminal itself
        if (self.kiosk.terminal_ready, self.kiosk.terminal_problem) != (ready, problem):
            Kiosk.objects.filter(pk=self.kiosk.pk).update(terminal_ready=ready, terminal_problem=problem)
            self.kiosk.terminal_ready, self.kiosk.terminal_problem = ready, problem

    # --- resolving unknowns --------------------------------------------------------------------
    def resolve_unresolved(self) -> list[CardOperation]:
        """Resolve every operation left pending/sent/unknown on this kiosk's terminal, oldest first."""
        resolved = []
        for op in CardOperation.objects.filter(kiosk=self.kiosk, state__in=CardOperation.UNRESOLVED).order_by("id"):
            resolved.append(self.resolve(op))
        return resolved

    def resolve(self, op: CardOperation) -> CardOperation:
        if op.state == CardOperation.State.PENDING:
            # Saved but never sent (the process died before the call): nothing reached the terminal.
            return self._finish(op, CardOperation.State.DECLINED, "не отправлялась: процесс остановился до вызова")
        if self.client.supports_status:
            answer = self._status_when_done(op)
            if not answer.unknown:
                self.record(op, answer)
                op.resolution = "результат получен запросом статуса (GetRezult)"
                op.save(update_fields=["resolution"])
                return op
        if op.kind not in CardOperation.MONEY_KINDS:
            # A settlement or check moves no money and is safe to repeat: record it as not confirmed.
            return self._finish(op, CardOperation.State.DECLINED, "результат не подтверждён; операция повторяема")
        if op.kind == CardOperation.Kind.REVERSAL:
            raise TerminalUnresolved(f"{self.kiosk.code}: аварийная отмена {op.op_id} с неизвестным исходом", op)
        return self._reverse(op)

    def _status_when_done(self, op: CardOperation) -> CardResult:
        """GetRezult until the operation is no longer running (a guest may still be at the PIN pad after
        our worker died). Reversing a sale still running would find nothing to reverse, call it declined,
        and the guest's card would then be charged for an annulled receipt: stay blocked instead."""
        deadline = time.monotonic() + settings.TERMINAL_GUEST_TIMEOUT + settings.TERMINAL_POLL_FOR
        answer = self.client.status(op.op_id)
        while answer.unknown and answer.reason == Reason.IN_PROGRESS:
            if time.monotonic() >= deadline:
                raise TerminalUnresolved(f"{self.kiosk.code}: операция {op.op_id} ещё выполняется на терминале", op)
            time.sleep(settings.TERMINAL_POLL_INTERVAL)
            answer = self.client.status(op.op_id)
        return answer

    def _reverse(self, op: CardOperation) -> CardOperation:
        """Emergency reversal of the terminal's last operation, which is ``op`` (nothing ran since)."""
        reversal = self.create(CardOperation.Kind.REVERSAL, op.amount_kopecks, original=op)
        reversal = self.perform(reversal)
        if reversal.state == CardOperation.State.APPROVED:
            other = self._other_operation_reversed(op, reversal)
            if other is not None:
                # The terminal cancelled an operation it had answered: ours never reached it.
                self._finish(other, CardOperation.State.REVERSED, f"аварийно отменена терминалом ({reversal.op_id}) "
                             f"при разрешении {op.op_id}: деньги вернулись гостю")
                return self._finish(op, CardOperation.State.DECLINED, "не дошла до терминала")
            return self._finish(op, CardOperation.State.REVERSED, f"аварийно отменена ({reversal.op_id})")
        if reversal.state == CardOperation.State.DECLINED:
            # The terminal has nothing approved to reverse: our operation did not go through.
            note = f"аварийная отмена не нашла операции ({reversal.op_id})"
            return self._finish(op, CardOperation.State.DECLINED, note)
        raise TerminalUnresolved(f"{self.kiosk.code}: операция {op.op_id} не разрешена, терминал заблокирован", op)

    def _other_operation_reversed(self, op: CardOperation, reversal: CardOperation) -> CardOperation | None:
        """A terminal that ignores what the reversal names may still cancel another operation of ours: its
        answer carries the cancelled operation's RRN. Record it where the panel and reconciliation see it."""
        if not reversal.rrn:
            return None
        other = (CardOperation.objects.filter(kiosk=self.kiosk, rrn=reversal.rrn, state=CardOperation.State.APPROVED)
                 .exclude(pk__in=[op.pk, reversal.pk]).exclude(kind=CardOperation.Kind.REVERSAL).first())
        if other is not None:
            log.error("kiosk=%s emergency reversal %s cancelled %s %s (RRN %s), not %s", self.kiosk.code,
                      reversal.op_id, other.kind, other.op_id, other.rrn, op.op_id)
            record_event("terminal.reversal.other", kiosk=self.kiosk, object_ref=other.reference,
                         message=f"Аварийная отмена вернула деньги за другую операцию ({other.reference}, "
                                 f"RRN {other.rrn})", data={"reversal": reversal.op_id, "lost": op.op_id})
        return other

    def _finish(self, op: CardOperation, state: str, resolution: str) -> CardOperation:
        CardOperation.objects.filter(pk=op.pk).update(state=state, resolution=resolution, finished_at=timezone.now())
        op.refresh_from_db()
        log.info("kiosk=%s terminal %s %s resolved: %s (%s)", self.kiosk.code, op.kind, op.op_id, state, resolution)
        return op


@contextmanager
def terminal_session(
    kiosk: Kiosk, *, purpose: str = "", wait: float = 30.0, resolve: bool = True
) -> Iterator[TerminalSession]:
    """Hold the terminal's lock and resolve what was left unresolved, then yield a session."""
    client = make_acquirer(kiosk)
    with device_lock(terminal_lock_key(kiosk), purpose=purpose or f"{kiosk.code} терминал", wait=wait):
        session = TerminalSession(kiosk, client)
        if resolve:
            session.resolve_unresolved()
        yield session


def check_terminal(kiosk: Kiosk) -> CardOperation:
    """Is the terminal on line (``terminal <kiosk> check``, the admin's «Проверить связь»)? A journaled
    CHECK operation under the terminal's lock: a payment in progress is waited for, never interrupted."""
    with terminal_session(kiosk, purpose=f"{kiosk.code}: проверка связи", resolve=False) as session:
        return session.check()
