"""Running operations on a kiosk's card terminal: one at a time, journaled, unknowns resolved first.

Every call is a ``CardOperation`` row saved with our op id *before* the terminal is called.
``terminal_session(kiosk)`` holds the terminal's device lock and, before anything new, resolves
what an earlier process left unresolved, exactly as PROTOCOLS.md §2.3 says:

1. ask the terminal for the result by our id (KKM Server GetRezult): a final approved answer means
   the operation happened; a final declined one (Status 2) means it did not. "Not found" (Status 3) means
   "never received" only for an operation never sent (no ``sent_at``): KKM Server may lose its results in a
   restart, so for one that was sent it stays unknown;
2. still unknown (or no status query: DualConnector) → emergency reversal of the terminal's last
   operation, which is ours if it reached the terminal at all, because nothing else touched the terminal
   since (we hold the lock);
3. if even that is unclear, the terminal stays blocked (``TerminalUnresolved``): no sale, no
   settlement (a settlement would close the batch and remove the reversal option); the operation is
   UNKNOWN, the kiosk takes no new order (``card_unavailable``), and recovery tries again with backoff
   (``resolve_attempts``, ``next_resolve_at``) until the terminal answers or a manager resolves it by hand.

"Not charged" (DECLINED) only on positive evidence about *that* operation (DESIGN.md): a final GetRezult
for its IdCommand, an approved reversal of it, or an operation never sent (PENDING; or its own request
never opened a connection / was refused with 401 before anything ran, recorded by ``perform``). Whatever
happens *while resolving* is no evidence: a reversal declined, refused, answered Status 2 or 34/53, an
``<errorcode>``, KKM Server unreachable or answering 401, a timeout, a busy terminal. The operation stays
unknown; before this rule a refused reversal (no bank link) annulled an order whose sale the terminal
kept approved.

Two refusals of a reversal *are* about the operation, because the DualConnector reversal names the lost
operation (ECR id 26 + amount 00) and the terminal answers with its own host code (payments.
dualconnector_client): "the terminal never had that ECR id" (NOT_RECEIVED: a request saved as sent that
never left, kill -9 in between — it used to be read from any refusal, now only from this one), and "that
operation is my last and was not approved" (NOT_APPROVED). Both are statements about that very operation:
one that reached the terminal would be in its journal, and under our lock nothing ran after it. A refusal
because the named operation is no longer the last one proves nothing (it did reach the terminal) and stays
unknown. Likewise an approved reversal whose answer shows it cancelled *another* operation of ours (a
terminal that ignores the naming, KKM Server's unnamed reversal) proves ours never became the last one.

A terminal answering "busy" under our own lock can only be running an operation of ours that a dead worker
left (a guest still at the PIN pad): a reversal answered busy leaves that operation unknown (resolved once
the guest is done), and a new sale answered busy did not run; the checkout waits and sends no new sale
until everything earlier is resolved — nothing is ever queued behind it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields as dc_fields
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.addresses import without_credentials
from core.events import record_event
from core.locks import device_lock
from core.models import Kiosk, TerminalTransport
from fiscal.models import Shift
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

# Refusals of a reversal naming a lost operation that are answers about that very operation (see above).
_NOT_CHARGED_BY_REVERSAL: dict[str, str] = {Reason.NOT_RECEIVED: "терминал не получал эту операцию",
                                             Reason.NOT_APPROVED: "операция на терминале не одобрена"}

_STATE_BY_OUTCOME = {
    Outcome.APPROVED: CardOperation.State.APPROVED,
    Outcome.DECLINED: CardOperation.State.DECLINED,
    Outcome.UNKNOWN: CardOperation.State.UNKNOWN,
}
# What ``TerminalSession.record`` writes on the operation's row from the terminal's answer.
_ANSWER_FIELDS = ["state", "reason", "rrn", "auth_code", "masked_pan", "terminal_reference", "bank_code", "message",
                  "slip", "raw_request", "raw_response", "finished_at"]


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
    # Without credentials: the key is stored and listed, and the same terminal is one lock either way.
    if kiosk.terminal_transport == TerminalTransport.DUALCONNECTOR:
        return f"terminal:dc:{without_credentials(kiosk.dc_url).rstrip('/')}"
    return f"terminal:kkm:{without_credentials(kiosk.kkm_url).rstrip('/')}#{kiosk.kkm_device_number}"


def make_acquirer(kiosk: Kiosk) -> AcquiringClient:
    common: dict[str, Any] = {"timeout": settings.TERMINAL_HTTP_TIMEOUT,
                              "guest_timeout": settings.TERMINAL_GUEST_TIMEOUT}
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


def unresolved_money_operation(kiosk: Kiosk) -> CardOperation | None:
    """The card operation whose outcome is still unknown after an attempt to resolve it (or whose answer was
    just lost): while there is one, the kiosk takes no new order (API 503 ``card_unavailable``)."""
    unknown = CardOperation.objects.filter(kiosk=kiosk, state=CardOperation.State.UNKNOWN,
                                           kind__in=CardOperation.MONEY_KINDS)
    return unknown.order_by("id").first()


def resolve_retry_delay(attempts: int) -> float:
    """Backoff between automatic attempts to resolve an unknown operation: 30 s, 60 s, … up to 15 min."""
    base, most = settings.TERMINAL_RESOLVE_RETRY_BASE, settings.TERMINAL_RESOLVE_RETRY_MAX
    return min(most, base * 2 ** min(max(attempts - 1, 0), 10))


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

    def report(self, *, reference: str = "report") -> CardOperation:
        """The terminal's detailed report (no closing): a manager's evidence that an unknown operation did not
        go through (``nekassir.card_resolution``)."""
        return self.perform(self.create(CardOperation.Kind.REPORT, 0, reference=reference))

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

    def perform(
        self, op: CardOperation, *, order_number: str = "", then: Callable[[CardOperation], None] | None = None
    ) -> CardOperation:
        """Mark ``op`` sent (its own commit: an operation still PENDING provably never reached the terminal),
        call the terminal, record its answer. ``then``: the caller's writes that follow the answer (an order's
        next step), made in the same commit as the answer."""
        op.state, op.sent_at = CardOperation.State.SENT, timezone.now()
        CardOperation.objects.filter(pk=op.pk).update(state=op.state, sent_at=op.sent_at)
        log.info("kiosk=%s terminal %s %s %s kopecks", self.kiosk.code, op.kind, op.op_id, op.amount_kopecks)
        result = self._call(op, order_number)
        return self.record(op, result, then=then)

    def _call(self, op: CardOperation, order_number: str) -> CardResult | SlipResult | CheckResult:
        kind = CardOperation.Kind
        if op.kind == kind.SALE:
            return self.client.sale(op.op_id, op.amount_kopecks, order_number or op.reference or op.op_id[:8])
        if op.kind == kind.CANCEL:
            assert op.original is not None  # a cancel is created with the sale it cancels
            return self.client.cancel(op.op_id, op.amount_kopecks, op.original.terminal_reference)
        if op.kind == kind.REFUND:
            assert op.original is not None  # a refund is created with the sale it refunds
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
        if op.kind == kind.REPORT:
            return self.client.report(op.op_id, detailed=True)
        raise ValueError(f"unknown card operation kind {op.kind!r}")

    def record(
        self, op: CardOperation, result: CardResult | SlipResult | CheckResult,
        then: Callable[[CardOperation], None] | None = None,
    ) -> CardOperation:
        """Write what the terminal said into the journal row (and ``then``'s writes, in the same commit)."""
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
        with transaction.atomic():
            op.save(update_fields=_ANSWER_FIELDS)  # what the answer says; the rest was saved before the call
            if then is not None:
                then(op)
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
            op.refresh_from_db()  # resolving an earlier operation may have settled this one (its reversal)
            if op.unresolved:
                resolved.append(self.resolve(op))
        return resolved

    def resolve(self, op: CardOperation) -> CardOperation:
        if op.state == CardOperation.State.PENDING:
            # Saved but never sent (the process died before the call): nothing reached the terminal.
            return self._finish(op, CardOperation.State.DECLINED, "не отправлялась: процесс остановился до вызова")
        if op.next_resolve_at is not None and op.next_resolve_at > timezone.now():
            # Backoff: the last attempt failed a moment ago. Asking again at every order retry would only add
            # a refused reversal to the journal each time; the terminal stays blocked meanwhile.
            raise TerminalUnresolved(f"{self.kiosk.code}: исход операции {op.op_id} неизвестен; следующая попытка "
                                     f"выяснить в {timezone.localtime(op.next_resolve_at):%H:%M:%S}", op)
        try:
            return self._resolve_sent(op)
        except TerminalUnresolved as exc:
            self._still_unknown(op, exc)
            raise

    def _resolve_sent(self, op: CardOperation) -> CardOperation:
        if self.client.supports_status:
            reversed_by = self._earlier_reversal_done(op)
            if reversed_by is not None:
                return self._finish(op, CardOperation.State.REVERSED, f"аварийно отменена ({reversed_by.op_id})")
            answer = self._status_when_done(op)
            if answer.reason is Reason.NOT_FOUND and op.sent_at is None:
                # An old row never marked as sent: KKM Server has no record because it never got it.
                return self._finish(op, CardOperation.State.DECLINED, "GetRezult: не найдена, не отправлялась")
            if not answer.unknown:
                self.record(op, answer)
                op.resolution = "результат получен запросом статуса (GetRezult)"
                op.save(update_fields=["resolution"])
                self._close_earlier_reversals(op, op.resolution)
                return op
        if op.kind not in CardOperation.MONEY_KINDS:
            # A settlement or check moves no money and is safe to repeat: record it as not confirmed.
            return self._finish(op, CardOperation.State.DECLINED, "результат не подтверждён; операция повторяема")
        if op.kind == CardOperation.Kind.REVERSAL:
            raise TerminalUnresolved(f"{self.kiosk.code}: аварийная отмена {op.op_id} с неизвестным исходом", op)
        earlier = None if self.client.names_lost_operation else self._reversible_before(op)
        if earlier is not None:
            # KKM Server's EmergencyReversal names no operation: it cancels the terminal's last transaction. If
            # ours never reached the terminal, that is this earlier payment of another guest (a soak finding).
            raise TerminalUnresolved(
                f"{self.kiosk.code}: исход операции {op.op_id} неизвестен, а аварийная отмена не называет операцию "
                f"и могла бы отменить предыдущую оплату ({earlier.reference}, RRN {earlier.rrn}): нужен отчёт "
                f"терминала — разрешите вручную на странице заказа", op)
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

    def _reversible_before(self, op: CardOperation) -> CardOperation | None:
        """The approved payment, cancel or refund of ours that may still be the terminal's last transaction if
        ``op`` never reached it: the last approved operation before ``op``, unless it is a settlement (the
        batch is closed then, and an emergency reversal has nothing of it left to cancel)."""
        last = (CardOperation.objects.filter(kiosk=self.kiosk, pk__lt=op.pk, state=CardOperation.State.APPROVED,
                                             kind__in=[CardOperation.Kind.SALE, CardOperation.Kind.CANCEL,
                                                       CardOperation.Kind.REFUND, CardOperation.Kind.SETTLEMENT])
                .order_by("-pk").first())
        return last if last is not None and last.kind != CardOperation.Kind.SETTLEMENT else None

    def _reverse(self, op: CardOperation) -> CardOperation:
        """Emergency reversal of the terminal's last operation, which is ``op`` (nothing ran since)."""
        reversal = self.create(CardOperation.Kind.REVERSAL, op.amount_kopecks, original=op)
        reversal = self.perform(reversal)
        if reversal.state == CardOperation.State.APPROVED:
            self._close_earlier_reversals(op, f"не выполнена: операцию отменила аварийная отмена {reversal.op_id}")
            other = self._other_operation_reversed(op, reversal)
            if other is not None:
                # The terminal cancelled an operation it had answered: ours never reached it.
                self._finish(other, CardOperation.State.REVERSED, f"аварийно отменена терминалом ({reversal.op_id}) "
                             f"при разрешении {op.op_id}: деньги вернулись гостю")
                return self._finish(op, CardOperation.State.DECLINED, "не дошла до терминала")
            return self._finish(op, CardOperation.State.REVERSED, f"аварийно отменена ({reversal.op_id})")
        evidence = _NOT_CHARGED_BY_REVERSAL.get(reversal.reason)  # StrEnum keys: the stored string finds them
        if reversal.state == CardOperation.State.DECLINED and evidence:
            # The terminal's answer about this very operation (the reversal named it): nothing was charged.
            self._close_earlier_reversals(op, f"не выполнена: {evidence}")
            return self._finish(op, CardOperation.State.DECLINED, f"{evidence} (аварийная отмена {reversal.op_id})")
        if reversal.reason == Reason.BUSY:
            raise TerminalUnresolved(f"{self.kiosk.code}: терминал занят операцией {op.op_id}: она ещё выполняется "
                                     f"(гость у терминала); разрешим, когда терминал освободится", op)
        why = reversal.message or reversal.get_state_display()
        raise TerminalUnresolved(f"{self.kiosk.code}: исход операции {op.op_id} неизвестен, аварийная отмена не "
                                 f"выполнена ({why}); терминал заблокирован до выяснения", op)

    def _earlier_reversal_done(self, op: CardOperation) -> CardOperation | None:
        """Before trusting GetRezult about ``op``, settle the reversals of it whose outcome is unknown: one
        that went through means ``op`` is reversed, whatever GetRezult says about the sale itself."""
        pending = op.follow_ups.filter(kind=CardOperation.Kind.REVERSAL, state__in=CardOperation.UNRESOLVED)
        for reversal in pending.order_by("id"):
            answer = self._status_when_done(reversal)
            if answer.unknown:
                raise TerminalUnresolved(f"{self.kiosk.code}: аварийная отмена {reversal.op_id} с неизвестным "
                                         f"исходом", op)
            self.record(reversal, answer)
            CardOperation.objects.filter(pk=reversal.pk).update(resolution="результат получен запросом статуса")
            if reversal.state == CardOperation.State.APPROVED:
                return reversal
        return None

    def _close_earlier_reversals(self, op: CardOperation, resolution: str) -> None:
        """Reversals of ``op`` whose outcome was unknown, now that ``op`` itself is known: a later approved
        reversal or a final answer about ``op`` shows that they did not reverse it."""
        op.follow_ups.filter(kind=CardOperation.Kind.REVERSAL, state__in=CardOperation.UNRESOLVED).update(
            state=CardOperation.State.DECLINED, resolution=resolution[:255], finished_at=timezone.now())

    def _still_unknown(self, op: CardOperation, exc: TerminalUnresolved) -> None:
        """Resolution failed: the operation is UNKNOWN (the kiosk takes no new order), recovery tries again
        after a backoff, and the first failure is journaled for the venue page and the alerts."""
        attempts = op.resolve_attempts + 1
        retry_at = timezone.now() + timedelta(seconds=resolve_retry_delay(attempts))
        CardOperation.objects.filter(pk=op.pk).update(state=CardOperation.State.UNKNOWN, resolve_attempts=attempts,
                                                      next_resolve_at=retry_at)
        op.state, op.resolve_attempts, op.next_resolve_at = CardOperation.State.UNKNOWN, attempts, retry_at
        log.warning("kiosk=%s terminal %s %s still unknown (attempt %s): %s", self.kiosk.code, op.kind, op.op_id,
                    attempts, exc)
        if attempts == 1:
            record_event("terminal.unresolved", kiosk=self.kiosk, object_ref=op.reference or f"card:{op.op_id}",
                         message=f"Исход операции «{op.get_kind_display()}» на {op.amount} руб. неизвестен: "
                                 f"терминал не принимает новых оплат до выяснения. {exc}",
                         data={"op_id": op.op_id, "kind": op.kind})

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
    kiosk: Kiosk, *, purpose: str = "", wait: float = 30.0, resolve: bool = True, release_later: bool = False
) -> Iterator[TerminalSession]:
    """Hold the terminal's lock and resolve what was left unresolved, then yield a session. ``release_later``:
    the lock's row is freed with the caller's next lock statement (``core.locks.release``)."""
    client = make_acquirer(kiosk)
    with device_lock(terminal_lock_key(kiosk), purpose=purpose or f"{kiosk.code} терминал", wait=wait,
                     release_later=release_later):
        session = TerminalSession(kiosk, client)
        if resolve:
            session.resolve_unresolved()
        yield session


def check_terminal(kiosk: Kiosk) -> CardOperation:
    """Is the terminal on line (``terminal <kiosk> check``, the admin's «Проверить связь»)? A journaled
    CHECK operation under the terminal's lock: a payment in progress is waited for, never interrupted."""
    with terminal_session(kiosk, purpose=f"{kiosk.code}: проверка связи", resolve=False) as session:
        return session.check()
