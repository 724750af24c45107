"""Running tasks on a kiosk's fiscal register: one at a time, journaled, resumable.

Every task is a ``FiscalOperation`` row saved *before* it is sent, with the ATOL task uuid.
``RegisterSession`` holds the register's device lock for a sequence of tasks (e.g. "close the
expired shift, then open a new one") and, before sending anything new, resolves whatever an
earlier process left unresolved on that register (crash, kill -9, lost answer, ``blocked``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core import wirejson
from core.addresses import without_credentials
from core.events import record_event
from core.locks import device_lock
from core.models import Kiosk
from fiscal import shift_records
from fiscal.atol_client import AtolClient, FiscalParams, TaskOutcome
from fiscal.atol_errors import AtolDeviceError, AtolError, AtolOutcomeUnknown
from fiscal.models import FiscalDocument, FiscalOperation, Shift

log = logging.getLogger(__name__)

# Driver errors that mean the register cannot take receipts until staff fixes something.
_NOT_READY_KINDS = {"no_paper", "cover_open", "printer_fault", "fn_failure", "not_connected", "unreachable", "auth"}
_FISCAL_DOCUMENT_TYPES = set(FiscalDocument.Type.values)
# Documents that land in the shift open now (an openShift makes a new one; a closeShift ends ours).
_RECEIPT_TYPES = _FISCAL_DOCUMENT_TYPES - {FiscalDocument.Type.OPEN_SHIFT, FiscalDocument.Type.CLOSE_SHIFT}
NEVER_SENT = "never_sent"  # error_kind of a task saved but never sent: nothing was made
# What ``_record_outcome`` writes on the operation's row (the rest of it was saved before the call).
_OUTCOME_FIELDS = ["result", "raw_answer", "finished_at", "state", "error_code", "error_kind", "error_message",
                   "fn_number", "fd_number", "fpd", "receipt_number", "shift_number", "not_printed"]



class FiscalError(Exception):
    """A register operation did not succeed. ``op`` is its journal row (if one was made)."""

    code = "fiscal_error"

    def __init__(self, message: str, op: FiscalOperation | None = None, cause: AtolError | None = None):
        super().__init__(message)
        self.op = op
        self.cause = cause

    @property
    def kind(self) -> str:
        return self.cause.kind if self.cause is not None else self.code


class FiscalFailed(FiscalError):
    """The register (or its web server) refused or failed the task: nothing was made."""

    code = "fiscal_failed"


class FiscalOutcomeUnknown(FiscalError):
    """We do not know yet whether the document was made; it stays to be resolved by its uuid."""

    code = "fiscal_outcome_unknown"


class RegisterUnresolved(FiscalError):
    """An earlier task on this register is still unresolved: nothing new may be sent."""

    code = "register_unresolved"


def register_lock_key(kiosk: Kiosk) -> str:
    # Without credentials: the key is stored and listed, and the same register is one lock either way.
    return f"atol:{without_credentials(kiosk.atol_url).rstrip('/')}#{kiosk.atol_device_id}"


def make_client(kiosk: Kiosk, **overrides: Any) -> AtolClient:
    options = {
        "base_url": kiosk.atol_url,
        "device_id": kiosk.atol_device_id,
        "username": kiosk.atol_username,
        "password": kiosk.atol_password,
        "timeout": settings.ATOL_HTTP_TIMEOUT,
        "poll_interval": settings.ATOL_POLL_INTERVAL,
        "max_wait": settings.ATOL_MAX_WAIT,
        **overrides,
    }
    return AtolClient(**options)


class RegisterSession:
    """Tasks on one register while its lock is held. Use ``register_session(kiosk)``."""

    def __init__(self, kiosk: Kiosk, client: AtolClient):
        self.kiosk = kiosk
        self.client = client
        # The kiosk's one open Shift row, as ``fiscal.shifts.ensure_open(trust=True)`` found it under this lock:
        # a receipt whose answer names it is recorded in it without reading the rows again.
        self.trusted_shift: Shift | None = None

    # --- public ----------------------------------------------------------------------------------
    def run(self, task: dict[str, Any], *, reference: str = "") -> FiscalOperation:
        """Send one task and wait for it. Returns the done row; raises a FiscalError otherwise."""
        op = self.create(task, reference=reference, sent=True)
        return self.perform(op)

    def create(self, task: dict[str, Any], *, reference: str = "", sent: bool = False) -> FiscalOperation:
        """Save the journal row (and so the uuid) before anything is sent.

        ``sent``: saved already marked sent, for a ``perform`` that follows at once (one commit, not two; each
        waits for the disk). A process that dies between this commit and the POST leaves a SENT row, resumed
        by its uuid like one whose POST was lost (the server does not know it: the same uuid is POSTed again),
        never sent again under a new uuid. Without it the row is PENDING until ``perform``: one that never
        left is then known as such (``NEVER_SENT``) and its workflow decides again.
        """
        values: dict[str, Any] = {}
        if sent:
            values = {"state": FiscalOperation.State.SENT, "sent_at": timezone.now(), "attempts": 1}
        return FiscalOperation.objects.create(
            kiosk=self.kiosk, task_type=str(task.get("type", "")), request=[task], reference=reference, **values
        )

    def perform(
        self, op: FiscalOperation, *, resume: bool = False, then: Callable[[FiscalOperation], None] | None = None
    ) -> FiscalOperation:
        """Send (or resume) ``op`` and record the outcome in the journal.

        ``then``: the caller's own writes that follow a done task (an order's next step), made in the same
        commit as its result; not called when the task failed. A ``then`` that raises takes the result's
        commit with it: the row stays SENT and is resumed by its uuid, so keep it to plain writes."""
        if resume or op.state != FiscalOperation.State.SENT or op.sent_at is None:
            FiscalOperation.objects.filter(pk=op.pk).update(
                state=FiscalOperation.State.SENT, sent_at=timezone.now(), attempts=op.attempts + 1
            )
            op.refresh_from_db()
        try:
            outcome = self.client.execute(str(op.uuid), op.request, resume=resume)
        except AtolOutcomeUnknown as exc:
            self._record_error(op, exc, FiscalOperation.State.UNKNOWN)
            raise FiscalOutcomeUnknown(f"{self.kiosk.code}: результат операции неизвестен: {exc}", op, exc) from exc
        except AtolError as exc:
            # Not queued at all (unreachable, refused, bad credentials): known, nothing was made.
            self._record_error(op, exc, FiscalOperation.State.FAILED)
            raise FiscalFailed(f"{self.kiosk.code}: {exc}", op, exc) from exc
        return self._record_outcome(op, outcome, then)

    def resolve_unresolved(self) -> list[FiscalOperation]:
        """Resume every operation an earlier process left open on this register, oldest first.

        Raises RegisterUnresolved if one still cannot be resolved: nothing new may be sent then.
        """
        resolved = []
        for op in FiscalOperation.objects.filter(
            kiosk=self.kiosk, state__in=FiscalOperation.UNRESOLVED
        ).order_by("id"):
            if op.state == FiscalOperation.State.PENDING:
                # Saved but never sent (``perform`` marks "sent" before the POST): the process died in
                # between. Sending it now could print a receipt nobody is waiting for; the workflow that
                # saved it decides again (the checkout makes a new task for its order).
                FiscalOperation.objects.filter(pk=op.pk).update(
                    state=FiscalOperation.State.FAILED, error_kind=NEVER_SENT, finished_at=timezone.now(),
                    error_message="не отправлялась: процесс остановился до отправки",
                )
                continue
            log.info("kiosk=%s resuming fiscal operation %s (%s, %s)", self.kiosk.code, op.uuid, op.task_type, op.state)
            try:
                done = self.perform(op, resume=True)
                resolved.append(done)
                # The workflow that sent it died before it could record what followed: a closeShift's shift.
                shift_records.after_resumed(self.kiosk, done)
            except FiscalOutcomeUnknown as exc:
                raise RegisterUnresolved(
                    f"{self.kiosk.code}: операция {op.task_type} {op.uuid} ещё не завершена, новые операции отложены",
                    op, exc.cause,
                ) from exc
            except FiscalFailed as exc:
                resolved.append(exc.op or op)
        return resolved

    # --- recording ------------------------------------------------------------------------------
    def _record_error(self, op: FiscalOperation, exc: AtolError, state: str) -> None:
        FiscalOperation.objects.filter(pk=op.pk).update(
            state=state,
            error_code=exc.code,
            error_kind=exc.kind,
            error_message=str(exc)[:2000],
            raw_answer=exc.raw[:20000],
            finished_at=timezone.now() if state == FiscalOperation.State.FAILED else None,
        )
        op.refresh_from_db()
        log.warning("kiosk=%s fiscal %s %s: %s (%s)", self.kiosk.code, op.task_type, op.uuid, state, exc.kind)
        if exc.kind in _NOT_READY_KINDS:
            self._set_ready(False, str(exc))

    def _record_outcome(
        self, op: FiscalOperation, outcome: TaskOutcome, then: Callable[[FiscalOperation], None] | None = None
    ) -> FiscalOperation:
        sub = outcome.first
        error = outcome.error()
        params = sub.fiscal_params
        mismatch = None
        with transaction.atomic():
            op.result = wirejson.plain(sub.result)
            op.raw_answer = outcome.raw[:20000]
            op.finished_at = timezone.now()
            op.state = FiscalOperation.State.FAILED if error else FiscalOperation.State.DONE
            if error:
                op.error_code, op.error_kind, op.error_message = error.code, error.kind, str(error)[:2000]
            if params:
                self._copy_params(op, params)
                op.not_printed = sub.not_printed
            op.save(update_fields=_OUTCOME_FIELDS)
            if params and op.task_type in _FISCAL_DOCUMENT_TYPES and not error:
                mismatch = self._record_document(op, params)
            if then is not None and not error:
                then(op)
        if mismatch is not None:
            self._shift_mismatch(op, *mismatch)
        if error:
            log.warning("kiosk=%s fiscal %s %s failed: %s", self.kiosk.code, op.task_type, op.uuid, error)
            if error.kind in _NOT_READY_KINDS:
                self._set_ready(False, str(error))
            raise FiscalFailed(f"{self.kiosk.code}: {error}", op, error)
        if op.not_printed:
            self._set_ready(False, "Нет бумаги: документ записан в ФН, но не напечатан")
        elif not self.kiosk.register_ready and params:
            self._set_ready(True, "")
        return op

    def _copy_params(self, op: FiscalOperation, params: FiscalParams) -> None:
        op.fn_number = params.fn_number
        op.fd_number = params.fiscal_document_number
        op.fpd = params.fiscal_document_sign
        op.receipt_number = params.fiscal_receipt_number
        op.shift_number = params.shift_number
        if params.fn_number and params.fn_number != self.kiosk.fn_number:
            Kiosk.objects.filter(pk=self.kiosk.pk).update(fn_number=params.fn_number)
            self.kiosk.fn_number = params.fn_number

    def _record_document(self, op: FiscalOperation, params: FiscalParams) -> tuple[Shift, Shift | None] | None:
        """The document, in the shift the register says it is in. Returns ``(that shift, the one we had open)``
        when a receipt's fnNumber and shiftNumber are not our one open Shift row (see ``_shift_mismatch``)."""
        shift = None
        mismatch = None
        trusted = self.trusted_shift
        if (trusted is not None and op.task_type in _RECEIPT_TYPES and trusted.state == Shift.State.OPEN
                and (trusted.fn_number, trusted.number) == (params.fn_number, params.shift_number)):
            # The receipt is in the kiosk's one open row, as ensure_open found it under this lock: no other open
            # row can have appeared since (every shift change holds this lock), so nothing to read again.
            shift = trusted
        elif params.shift_number is not None:
            shift, created = Shift.objects.get_or_create(
                kiosk=self.kiosk, fn_number=params.fn_number, number=params.shift_number,
                defaults={"state": Shift.State.OPEN},
            )
            if op.task_type in _RECEIPT_TYPES:
                others = list(Shift.objects.filter(kiosk=self.kiosk, state=Shift.State.OPEN).exclude(pk=shift.pk)[:1])
                if created or shift.state != Shift.State.OPEN or others:
                    mismatch = (shift, others[0] if others else None)
        # Read, then created when new: only here, under the register's lock and inside the outcome's transaction,
        # so without get_or_create's savepoint (a duplicate would roll the whole outcome back, the task resumed).
        document = FiscalDocument.objects.filter(fn_number=params.fn_number,
                                                 fd_number=params.fiscal_document_number).first()
        if document is None:
            document = FiscalDocument.objects.create(
                fn_number=params.fn_number,
                fd_number=params.fiscal_document_number,
                kiosk=self.kiosk,
                shift=shift,
                operation=op,
                doc_type=op.task_type,
                fpd=params.fiscal_document_sign,
                receipt_number=params.fiscal_receipt_number,
                shift_number=params.shift_number,
                total=params.total,
                registered_at=parse_datetime(params.date_time) if params.date_time else None,
                printed=not op.not_printed,
                registration_number=params.registration_number,
                fns_url=params.fns_url,
            )
        if document.operation_id == op.pk:
            op.document = document  # what the caller's ``then`` reads next, without asking the database again
        return mismatch

    def _shift_mismatch(self, op: FiscalOperation, theirs: Shift, ours: Shift | None) -> None:
        """A receipt landed in another shift than our open Shift row: the shift was closed and another opened
        outside our journal (by hand on the device, the register opening one by itself on the receipt), or the
        FN was replaced. Acted on at once, before anything else is sent: journaled for the manager (such a
        close had no terminal settlement of ours and its closing report is not in our books), and the register
        asked for its shift, which brings our rows in line (the register's shift open with its expiredTime, ours
        closed). The receipt itself stands: it is in the FN, recorded in the shift the register named."""
        said = {"fn": theirs.fn_number, "shift": theirs.number}
        believed = {"fn": ours.fn_number, "shift": ours.number} if ours else None
        log.warning("kiosk=%s %s FD %s is in shift %s, ours was %s", self.kiosk.code, op.task_type, op.fd_number,
                    said, believed)
        ours_text = f"смена №{ours.number} (ФН {ours.fn_number})" if ours else "ни одной открытой смены"
        record_event(
            "fiscal.shift.mismatch", kiosk=self.kiosk, object_ref=f"shift:{theirs.pk}",
            message=(f"Чек ФД {op.fd_number} пробит в смене №{theirs.number} (ФН {theirs.fn_number}), а у нас была "
                     f"открыта {ours_text}: смену закрыли или открыли не через Nekassir (на самой ККТ?) или "
                     "заменили ФН. Состояние смены запрошено у ККТ; закрытие без Nekassir прошло без сверки итогов "
                     "терминала"),
            data={"register": said, "ours": believed, "fd": op.fd_number, "operation": str(op.uuid)},
        )
        from fiscal.shifts import read_status  # shifts builds on this module; only this late step needs it

        try:
            read_status(self)
        except FiscalError as exc:
            # The row of the register's shift has no expiredTime yet: the next receipt asks again before it.
            log.warning("kiosk=%s shift status after a mismatch failed: %s", self.kiosk.code, exc)

    def _set_ready(self, ready: bool, problem: str) -> None:
        Kiosk.objects.filter(pk=self.kiosk.pk).update(register_ready=ready, register_problem=problem[:255])
        self.kiosk.register_ready, self.kiosk.register_problem = ready, problem[:255]


@contextmanager
def register_session(
    kiosk: Kiosk, *, purpose: str = "", wait: float = 30.0, client: AtolClient | None = None
) -> Iterator[RegisterSession]:
    """Hold the register's lock, resolve what was left unresolved, then yield a session."""
    if not kiosk.has_register or not kiosk.atol_url:
        raise FiscalFailed(f"{kiosk.code}: у киоска нет настроенной ККТ АТОЛ")
    with device_lock(register_lock_key(kiosk), purpose=purpose or f"{kiosk.code} ККТ", wait=wait):
        own_client = client is None
        session = RegisterSession(kiosk, client or make_client(kiosk))
        try:
            session.resolve_unresolved()
            yield session
        finally:
            if own_client:
                session.client.close()


# Exposed for callers that need to tell a device failure apart from other fiscal errors.
__all__ = [
    "AtolDeviceError",
    "FiscalError",
    "FiscalFailed",
    "FiscalOutcomeUnknown",
    "RegisterSession",
    "RegisterUnresolved",
    "make_client",
    "register_lock_key",
    "register_session",
]
