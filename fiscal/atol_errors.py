"""Typed errors of the ATOL Web Server client.

The one distinction that matters most: ``AtolOutcomeUnknown`` means the task may or may not have
been done by the register. It is never a failure: the caller keeps the task uuid and resolves it by
polling that same uuid before anything else touches the register.
"""

from __future__ import annotations


class AtolError(Exception):
    """Base of every error of the ATOL client. ``code`` is the driver's code where there is one."""

    code: int | None = None
    kind = "atol_error"

    def __init__(self, message: str, *, uuid: str | None = None, code: int | None = None, raw: str = ""):
        super().__init__(message)
        self.uuid = uuid
        if code is not None:
            self.code = code
        self.raw = raw

    @property
    def message(self) -> str:
        return str(self)


# --- the task may have been done: resolve by polling the same uuid ------------------------------
class AtolOutcomeUnknown(AtolError):
    kind = "outcome_unknown"


class AtolTimeout(AtolOutcomeUnknown):
    """No answer in time (HTTP timeout, or the task did not finish within the polling bound)."""

    kind = "timeout"


class AtolConnectionLost(AtolOutcomeUnknown):
    """The connection broke after the request may have been sent (a lost answer)."""

    kind = "connection_lost"


class AtolBadAnswer(AtolOutcomeUnknown):
    """The server answered something we cannot read: malformed JSON, unknown status, HTTP 5xx."""

    kind = "bad_answer"


class AtolStillBlocked(AtolOutcomeUnknown):
    """The task is ``blocked``: the register has not told yet whether the document was made."""

    kind = "blocked"


# --- known: nothing was done ---------------------------------------------------------------------
class AtolUnreachable(AtolError):
    """Could not connect to ATOL Web Server at all: nothing was sent."""

    kind = "unreachable"


class AtolAuthError(AtolError):
    kind = "auth"


class AtolRejected(AtolError):
    """HTTP 400 at POST: the web server refused the request; it was not queued."""

    kind = "rejected"


class AtolNotFound(AtolError):
    kind = "not_found"


# --- the driver finished the task with an error ------------------------------------------------
class AtolDeviceError(AtolError):
    """A final ``error`` status from the driver; nothing was made by this sub-task."""

    kind = "device_error"


class AtolNotConnected(AtolDeviceError):
    kind = "not_connected"


class AtolNoPaper(AtolDeviceError):
    kind = "no_paper"


class AtolCoverOpen(AtolDeviceError):
    kind = "cover_open"


class AtolPrinterFault(AtolDeviceError):
    kind = "printer_fault"


class AtolShiftExpired(AtolDeviceError):
    kind = "shift_expired"


class AtolShiftClosed(AtolDeviceError):
    kind = "shift_closed"


class AtolShiftAlreadyOpen(AtolDeviceError):
    kind = "shift_already_open"


class AtolNotPaid(AtolDeviceError):
    kind = "not_paid"


class AtolFnFailure(AtolDeviceError):
    kind = "fn_failure"


class AtolValidationError(AtolDeviceError):
    kind = "validation"


class AtolInterrupted(AtolDeviceError):
    kind = "interrupted"


class AtolCanceled(AtolDeviceError):
    kind = "canceled"


_FN_CODES = {*range(115, 125), *range(133, 141), 159, 166, 235}
_BY_CODE: dict[int, type[AtolDeviceError]] = {
    **dict.fromkeys((1, 2, 3, 4, 241), AtolNotConnected),
    44: AtolNoPaper,
    45: AtolCoverOpen,
    **dict.fromkeys((46, 114, 150), AtolPrinterFault),
    68: AtolShiftExpired,
    141: AtolShiftExpired,
    73: AtolShiftClosed,
    83: AtolShiftAlreadyOpen,
    66: AtolNotPaid,
    **dict.fromkeys(_FN_CODES, AtolFnFailure),
    501: AtolValidationError,
    502: AtolInterrupted,
}


def device_error(code: int, description: str, *, uuid: str | None = None, raw: str = "") -> AtolDeviceError:
    """The typed error for a driver error code (PROTOCOLS.md §1, "Driver error codes")."""
    cls = _BY_CODE.get(code, AtolDeviceError)
    return cls(f"ККТ: ошибка {code}: {description}", uuid=uuid, code=code, raw=raw)
