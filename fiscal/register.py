"""Running tasks on a kiosk's fiscal register: one at a time, journaled, resumable.

Every task is a ``FiscalOperation`` row saved *before* it is sent, with the ATOL task uuid.
``RegisterSession`` holds the register's device lock for a sequence of tasks (e.g. "close the
expired shift, then open a new one") and, before sending anything new, resolves whatever an
earlier process left unresolved on that register (crash, kill -9, lost answer, ``blocked``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core import wirejson
from core.addresses import without_credentials
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
NEVER_SENT = "never_sent"  # error_kind of a task saved but never sent: nothing was made



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

    # --- public ----------------------------------------------------------------------------------
    def run(self, task: dict[str, Any], *, reference: str = "") -> FiscalOperation:
        """Send one task and wait for it. Returns the done row; raises a FiscalError otherwise."""
        op = self.create(task, reference=reference)
        return self.perform(op)

    def create(self, task: dict[str, Any], *, reference: str = "") -> FiscalOperation:
        """Save the journal row (and so the uuid) before anything is sent."""
        return FiscalOperation.objects.create(
            kiosk=self.kiosk, task_type=str(task.get("type", "")), request=[task], reference=reference
        )

    def perform(self, op: FiscalOperation, *, resume: bool = False) -> FiscalOperation:
        """Send (or resume) ``op`` and record the outcome in the journal."""
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
        return self._record_outcome(op, outcome)

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

    def _record_outcome(self, op: FiscalOperation, outcome: TaskOutcome) -> FiscalOperation:
        sub = outcome.first
        error = outcome.error()
        params = sub.fiscal_params
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
            op.save()
            if params and op.task_type in _FISCAL_DOCUMENT_TYPES and not error:
                self._record_document(op, params)
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

    def _record_document(self, op: FiscalOperation, params: FiscalParams) -> FiscalDocument:
        shift = None
        if params.shift_number is not None:
            shift, _ = Shift.objects.get_or_create(
                kiosk=self.kiosk, fn_number=params.fn_number, number=params.shift_number,
                defaults={"state": Shift.State.OPEN},
            )
        document, _ = FiscalDocument.objects.get_or_create(
            fn_number=params.fn_number,
            fd_number=params.fiscal_document_number,
            defaults={
                "kiosk": self.kiosk,
                "shift": shift,
                "operation": op,
                "doc_type": op.task_type,
                "fpd": params.fiscal_document_sign,
                "receipt_number": params.fiscal_receipt_number,
                "shift_number": params.shift_number,
                "total": params.total,
                "registered_at": parse_datetime(params.date_time) if params.date_time else None,
                "printed": not op.not_printed,
                "registration_number": params.registration_number,
                "fns_url": params.fns_url,
            },
        )
        return document

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
