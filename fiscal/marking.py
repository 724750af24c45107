"""The register's validation of marking codes (FFD 1.2, PROTOCOLS.md §4), one code at a time.

The FN holds one code under validation at a time, so ``validate_codes`` runs inside a ``RegisterSession`` (the
register's lock) and, per code: ``beginMarkingCodeValidation`` → ``getMarkingCodeValidationStatus`` (repeated
until ready, bounded by ``settings.MARKING_VALIDATION_WAIT``) → ``acceptMarkingCode`` or ``declineMarkingCode``.
Every call is a journaled task (``session.run``). A validation left half done by a killed process is cleared
first (``cancelMarkingCodeValidation``, harmless when nothing is held).

What counts: a code is good when the FN's and the marking operator's four flags (``imcCheckFlag``,
``imcCheckResult``, ``imcStatusInfo``, ``imcEstimatedStatusCorrect``) are all true. When the operator did not
answer (``ecrStandAloneFlag``, or the driver's "no exchange with the server" errors) the code is offline: the FN
keeps it accepted when its own check passed, and the caller decides (``MARKING_OFFLINE_SALE``) whether to sell.
An answer this module cannot read is never taken for an acceptance. For a return (``itemPieceReturn``) the FN
accepts every code it can, since a refund is never blocked by the operator's view; the result is only recorded.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from core.gs1 import imc_base64
from fiscal.atol_errors import AtolDeviceError
from fiscal.register import FiscalFailed, RegisterSession

log = logging.getLogger(__name__)

GOOD_FLAGS = ("imcCheckFlag", "imcCheckResult", "imcStatusInfo", "imcEstimatedStatusCorrect")
CHECK_FLAGS = (*GOOD_FLAGS, "ecrStandAloneFlag")
RETURN_STATUSES = frozenset({"itemPieceReturn", "itemDryReturn"})
# Driver errors of a ready validation meaning the marking operator was not reached (libfptr 402 "Ошибка соединения
# с сервером", 411 "Ошибка обмена с сервером ОФД или ИСМ", 421 "Истёк таймаут проверки КМ").
NO_OPERATOR_ERRORS = frozenset({402, 411, 421})
OPERATOR_REASONS = {
    "itemEstimatedStatusIncorrect": "оператор маркировки отказал: код нельзя продать (выбыл из оборота, "
                                    "не найден или просрочен)",
    "itemSaleStopped": "оператор маркировки отказал: оборот товара приостановлен (код заблокирован)",
}


@dataclass
class CodeValidation:
    """One code's validation by the register.

    ``accepted``: the four flags are all true (the code may be sold). ``offline``: the marking operator did not
    answer (``ecrStandAloneFlag`` or no answer at all). ``item_info_check_result``: the five flags as the receipt's
    ``imcParams.itemInfoCheckResult`` carries them. ``operator_status``: the operator's ``markOperatorItemStatus``
    ("" when it did not answer). ``reason``: Russian, "" when the code is fine. ``shift_number``: the open shift
    of the validation (None when no shift was open: the FN keeps the code for the shift its next receipt opens).
    ``fn_accepted``: the FN keeps the code accepted for a receipt of this shift (``acceptMarkingCode`` succeeded),
    true for a good code and for an offline one whose FN check passed.
    """

    code: str
    accepted: bool
    offline: bool
    item_info_check_result: dict[str, bool] = field(default_factory=dict)
    operator_status: str = ""
    reason: str = ""
    shift_number: int | None = None
    fn_number: str = ""
    fn_accepted: bool = False


class _Refused(Exception):
    """One code's validation ended without an acceptance; the message is the Russian reason."""

    def __init__(self, reason: str, *, offline: bool = False, flags: dict[str, bool] | None = None,
                 operator_status: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.offline = offline
        self.flags = flags or {}
        self.operator_status = operator_status


def validate_codes(
    session: RegisterSession, codes: list[str], *, status: str = "itemPieceSold", reference: str = ""
) -> list[CodeValidation]:
    """Validate ``codes`` (as scanned) on the session's register, one at a time, in order; one result per code.

    Raises a ``FiscalError`` only when the register cannot be worked with at all (unreachable, no connection to
    it, FN failure, outcome of a task unknown); a refusal of one code, a marking error of one step or an
    unreadable answer is that code's result.
    """
    session.run({"type": "cancelMarkingCodeValidation"}, reference=reference)
    shift_number = _open_shift_number(session, reference)
    results = []
    for code in codes:
        result = _validate_one(session, code, status, reference)
        result.shift_number = shift_number
        result.fn_number = session.kiosk.fn_number
        results.append(result)
        log.info("kiosk=%s marking code validated: accepted=%s offline=%s fn_accepted=%s %s",
                 session.kiosk.code, result.accepted, result.offline, result.fn_accepted, result.reason)
    return results


def _open_shift_number(session: RegisterSession, reference: str) -> int | None:
    shift = (session.run({"type": "getShiftStatus"}, reference=reference).result or {}).get("shiftStatus") or {}
    number = shift.get("number")
    if shift.get("state") != "opened" or isinstance(number, bool) or not isinstance(number, int):
        return None
    return number


def _validate_one(session: RegisterSession, code: str, status: str, reference: str) -> CodeValidation:
    params = {
        "imcType": "auto", "imc": imc_base64(code), "itemEstimatedStatus": status, "imcModeProcessing": 0,
        "itemUnits": "piece", "itemQuantity": 1,
    }
    try:
        begun = _step(session, {"type": "beginMarkingCodeValidation", "params": params}, reference)
        offline_check = begun.get("offlineValidation")
        if isinstance(offline_check, dict) and offline_check.get("fmCheck") is True \
                and offline_check.get("fmCheckResult") is False:
            raise _Refused(f"код маркировки не прошёл проверку ФН ({offline_check.get('fmCheckErrorReason') or '?'})")
        answer = _wait_until_ready(session, reference)
        accept, verdict = _decide(answer, returning=status in RETURN_STATUSES)
        verdict.code = code
    except _Refused as refused:
        _forget(session, reference)
        return CodeValidation(code, accepted=False, offline=refused.offline, item_info_check_result=refused.flags,
                              operator_status=refused.operator_status, reason=refused.reason)
    if not accept:
        _step_quietly(session, {"type": "declineMarkingCode"}, reference)
        return verdict
    try:
        accepted = _step(session, {"type": "acceptMarkingCode"}, reference)
    except _Refused as refused:
        _forget(session, reference)
        verdict.accepted = False
        verdict.reason = refused.reason
        return verdict
    flags = _flags(accepted.get("itemInfoCheckResult"))
    if flags is not None:
        verdict.item_info_check_result = flags
        verdict.accepted = verdict.accepted and all(flags[flag] for flag in GOOD_FLAGS)
    verdict.fn_accepted = True
    return verdict


def _code_refusal(exc: FiscalFailed) -> bool:
    """A marking error of the driver (4xx) or a task it found invalid (501) concerns this code; anything else
    (not queued, no connection to the register, FN failure...) is the register's and goes to the caller."""
    cause = exc.cause
    return isinstance(cause, AtolDeviceError) and cause.code is not None and (
        400 <= cause.code < 500 or cause.code == 501
    )


def _step(session: RegisterSession, task: dict[str, Any], reference: str) -> dict[str, Any]:
    """Run one marking task; a marking error of the step refuses the code (the register itself is fine)."""
    try:
        op = session.run(task, reference=reference)
    except FiscalFailed as exc:
        if not _code_refusal(exc):
            raise
        raise _Refused(f"ККТ отказала в {task['type']}: {exc.cause}") from exc
    if not isinstance(op.result, dict):
        raise _Refused(f"непонятный ответ ККТ на {task['type']}: {op.result!r:.200}")
    return op.result


def _step_quietly(session: RegisterSession, task: dict[str, Any], reference: str) -> None:
    try:
        _step(session, task, reference)
    except _Refused as refused:
        log.warning("kiosk=%s %s: %s", session.kiosk.code, task["type"], refused.reason)
        _forget(session, reference)


def _forget(session: RegisterSession, reference: str) -> None:
    """Let the FN drop the code under validation (harmless when it holds none)."""
    try:
        session.run({"type": "cancelMarkingCodeValidation"}, reference=reference)
    except FiscalFailed as exc:
        if not _code_refusal(exc):
            raise
        log.warning("kiosk=%s cancelMarkingCodeValidation: %s", session.kiosk.code, exc)


def _wait_until_ready(session: RegisterSession, reference: str) -> dict[str, Any]:
    wait = float(settings.MARKING_VALIDATION_WAIT)
    deadline = time.monotonic() + wait
    while True:
        answer = _step(session, {"type": "getMarkingCodeValidationStatus"}, reference)
        ready = answer.get("ready")
        if ready is True:
            return answer
        if ready is not False:  # the status call itself failed (driverError inside the result) or odd
            error = answer.get("driverError")
            if isinstance(error, dict) and error.get("code"):
                raise _Refused(f"ККТ: ошибка {error.get('code')}: {error.get('description') or ''}".strip())
            raise _Refused(f"непонятный ответ ККТ на проверку кода: {answer!r:.200}")
        if time.monotonic() >= deadline:
            raise _Refused(f"ККТ не дала результат проверки кода маркировки за {wait:g} с")
        time.sleep(float(settings.MARKING_VALIDATION_POLL))


def _flags(value: Any) -> dict[str, bool] | None:
    """The five flags, or None when the answer does not carry them all as booleans."""
    if not isinstance(value, dict) or any(not isinstance(value.get(flag), bool) for flag in CHECK_FLAGS):
        return None
    return {flag: value[flag] for flag in CHECK_FLAGS}


def _decide(answer: dict[str, Any], *, returning: bool) -> tuple[bool, CodeValidation]:
    """From a ready status: accept the code in the FN or not, and what to report (code filled in by the caller)."""
    error = answer.get("driverError")
    error_code = error.get("code") if isinstance(error, dict) else None
    online = answer.get("onlineValidation")
    if error_code in NO_OPERATOR_ERRORS:
        # The operator was not reached: the FN's own check decides, the flags come with the acceptance.
        description = (error or {}).get("description") or ""
        verdict = CodeValidation("", accepted=False, offline=True,
                                 reason=f"оператор маркировки не ответил ({description}): код проверен только ФН")
        return True, verdict
    if error_code not in (0, None) or not isinstance(online, dict):
        reason = f"ККТ: ошибка {error_code}: {(error or {}).get('description') or ''}" if error_code else \
            f"непонятный ответ ККТ на проверку кода: {answer!r:.200}"
        raise _Refused(reason.strip())
    flags = _flags(online.get("itemInfoCheckResult"))
    if flags is None:
        raise _Refused(f"непонятный результат проверки кода: {online!r:.200}")
    operator_status = online.get("markOperatorItemStatus")
    operator_status = operator_status if isinstance(operator_status, str) else ""
    good = all(flags[flag] for flag in GOOD_FLAGS)
    offline = flags["ecrStandAloneFlag"] or not flags["imcStatusInfo"]
    fn_ok = flags["imcCheckFlag"] and flags["imcCheckResult"]
    if good:
        reason = ""
    elif not fn_ok:
        reason = "код маркировки не прошёл проверку ФН"
    elif offline:
        reason = "оператор маркировки не ответил: код проверен только ФН"
    else:
        reason = OPERATOR_REASONS.get(operator_status, f"оператор маркировки отказал ({operator_status or '?'})")
    verdict = CodeValidation("", accepted=good, offline=offline, item_info_check_result=flags,
                             operator_status=operator_status, reason=reason)
    accept = returning or good or (offline and fn_ok)
    return accept, verdict
