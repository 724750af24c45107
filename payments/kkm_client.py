"""KKM Server card-terminal transport: ``POST /Execute`` JSON with HTTP Basic auth (PROTOCOLS §2.1).

Every command carries ``IdCommand`` = our op id (saved by the caller before the call). When the HTTP
answer is lost, times out, is unreadable, or says Status 1 (running) / 4 (not started), the client asks
``GetRezult`` with the same IdCommand, every ``poll_interval`` seconds for at most ``poll_for`` seconds,
until the answer is final (0 done, 2 error, 3 not found). It never re-sends the command itself.

Status 3 from GetRezult ("no such command") is UNKNOWN/NOT_FOUND, never a decline: KKM Server may lose its
results when it or the kiosk's PC restarts (PROTOCOLS §2.1), so for a command we sent it proves nothing.
Only the workflow knows whether a command was ever sent (``CardOperation.sent_at``); it alone may read
"not found" as "never received" (payments.terminal).

Status 4 ("not started": queued behind another command on the device) is pending, like Status 1: the
command goes on to run, so its outcome is asked with GetRezult. A command KKM Server refuses because the
terminal is busy (Status 2 with an error saying so) did not run: DECLINED/BUSY.

Rubles: KKM Server takes ``Amount`` in rubles with two decimals; the conversion is
``acquiring.kopecks_to_rubles`` / ``rubles_to_kopecks`` and the JSON is written by ``encode_json`` so the
amount goes out as the exact literal ``189.00`` (Python's json would need a float).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, replace
from typing import Any

from core import wirejson
from payments.acquiring import (
    AcquiringClient,
    CardResult,
    CheckResult,
    HttpExchange,
    InvalidRequest,
    LostOperation,
    Operation,
    Original,
    Outcome,
    Reason,
    ReportResult,
    SettlementResult,
    kopecks_to_rubles,
    post_once,
    reference_of,
    rubles_to_kopecks,
    validate_amount,
)

# Response ``Status`` values.
DONE, RUNNING, ERROR, NOT_FOUND, NOT_STARTED = 0, 1, 2, 3, 4
FINAL_STATUSES = {DONE, ERROR, NOT_FOUND}
PENDING_STATUSES = {RUNNING, NOT_STARTED}

MAX_ID_COMMAND = 40
_ID_COMMAND_RE = re.compile(r"^[\x21-\x7e]{1,40}$")  # printable ASCII, no spaces: survives any logging

COMMAND_OPERATIONS = {
    "PayByPaymentCard": Operation.SALE,
    "CancelPaymentByPaymentCard": Operation.CANCEL,
    "ReturnPaymentByPaymentCard": Operation.REFUND,
    "EmergencyReversal": Operation.REVERSAL,
    "Settlement": Operation.SETTLEMENT,
    "TerminalReport": Operation.REPORT,
}


def validate_id_command(op_id: str) -> str:
    if not isinstance(op_id, str) or not _ID_COMMAND_RE.match(op_id):
        raise InvalidRequest(
            f"IdCommand must be 1..{MAX_ID_COMMAND} printable ASCII characters without spaces, got {op_id!r}"
        )
    return op_id


# Decimal amounts go out as their exact literal (189.00) and come back as Decimal: never float.
encode_json = wirejson.dumps
decode_json = wirejson.loads


_CODE_IN_TEXT = re.compile(r"(?<![\d.,])(\d{2,4})(?![\d.,])")
_BUSY_TEXT = re.compile(r"занят|busy", re.IGNORECASE)  # "Терминал занят другой операцией", "Device busy"


def bank_code_of(data: dict[str, Any]) -> str:
    """Sber's decline/error code: a dedicated field if KKM Server sends one, else the first 2-4 digit number
    in the Error text (e.g. "Недостаточно средств (код 51)" -> "51"). Best effort: the text stays in message.
    """
    for name in ("ResponseCode", "ErrorCode", "CodeResponse"):  # unconfirmed names, accepted defensively
        if data.get(name) not in (None, ""):
            return str(data[name])
    found = _CODE_IN_TEXT.search(str(data.get("Error") or ""))
    return found.group(1) if found else ""


def _slip_text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(line) for line in value)
    return "" if value is None else str(value)


@dataclass(frozen=True)
class _Answer:
    """One KKM Server answer about our command, or why there is none."""

    reason: Reason  # OK when ``status`` was read
    status: int | None = None
    data: dict[str, Any] | None = None  # the command's own response fields
    raw: str = ""
    detail: str = ""

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def pending(self) -> bool:
        return self.status in PENDING_STATUSES


class KkmServerClient(AcquiringClient):
    """One terminal behind KKM Server (``device_number`` = NumDevice; 0 = the first of that kind)."""

    supports_status = True

    def __init__(
        self,
        base_url: str,
        device_number: int = 0,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        guest_timeout: float = 180.0,
        poll_interval: float = 1.0,
        poll_for: float = 60.0,
        connect_timeout: float = 5.0,
    ):
        self.url = base_url.rstrip("/") + "/Execute"
        self.device_number = device_number
        self._auth = (username, password or "") if username else None
        self.timeout = timeout
        self.guest_timeout = guest_timeout  # a card payment waits for the guest at the PIN pad
        self.poll_interval = poll_interval
        self.poll_for = poll_for
        self.connect_timeout = connect_timeout

    # --- AcquiringClient ------------------------------------------------------------------------------
    def sale(self, op_id: str, amount_kopecks: int, order_number: str) -> CardResult:
        fields = {"Amount": kopecks_to_rubles(validate_amount(amount_kopecks)), "ReceiptNumber": str(order_number),
                  "CardNumber": ""}
        return self._card(Operation.SALE, "PayByPaymentCard", op_id, fields, amount_kopecks, self.guest_timeout)

    def cancel(self, op_id: str, amount_kopecks: int, original: Original) -> CardResult:
        fields = {"Amount": kopecks_to_rubles(validate_amount(amount_kopecks)), "UniversalID": reference_of(original)}
        return self._card(Operation.CANCEL, "CancelPaymentByPaymentCard", op_id, fields, amount_kopecks, self.timeout)

    def refund(self, op_id: str, amount_kopecks: int, original: Original) -> CardResult:
        # Sber may ask for the card on a refund, hence the guest timeout.
        fields = {"Amount": kopecks_to_rubles(validate_amount(amount_kopecks)), "UniversalID": reference_of(original)}
        return self._card(
            Operation.REFUND, "ReturnPaymentByPaymentCard", op_id, fields, amount_kopecks, self.guest_timeout
        )

    def emergency_reversal(self, op_id: str, original: Original | None = None,
                           lost: LostOperation | None = None) -> CardResult:
        # Without UniversalID (after a lost answer we have none) it acts on the terminal's last transaction.
        # ``lost`` has no field here: KKM Server's GetRezult answers for a lost operation before this runs.
        fields = {} if original is None else {"UniversalID": reference_of(original)}
        return self._card(Operation.REVERSAL, "EmergencyReversal", op_id, fields, 0, self.timeout)

    def settlement(self, op_id: str) -> SettlementResult:
        raw_request, answer = self._run("Settlement", op_id, {}, self.timeout)
        return SettlementResult(**self._slip_fields(Operation.SETTLEMENT, op_id, raw_request, answer))

    def report(self, op_id: str, detailed: bool = False) -> ReportResult:
        raw_request, answer = self._run("TerminalReport", op_id, {"Detailed": detailed}, self.timeout)
        return ReportResult(**self._slip_fields(Operation.REPORT, op_id, raw_request, answer))

    def check(self, op_id: str) -> CheckResult:
        """KKM Server has no bare ping for terminals: a short TerminalReport proves the whole chain."""
        raw_request, answer = self._run("TerminalReport", op_id, {"Detailed": False}, self.timeout)
        data = answer.data or {}
        return CheckResult(
            ok=answer.status == DONE,
            reachable=answer.reason not in (Reason.NOT_REACHABLE, Reason.TIMEOUT, Reason.LOST_ANSWER),
            reason=Reason.OK if answer.status == DONE else self._classify(answer)[1],
            op_id=op_id,
            bank_code=bank_code_of(data) if answer.status == ERROR else "",
            message=str(data.get("Error") or data.get("Warning") or answer.detail),
            raw_request=raw_request,
            raw_response=answer.raw,
        )

    def status(self, op_id: str) -> CardResult:
        """One GetRezult: the final result of an earlier command.

        Still running = UNKNOWN/IN_PROGRESS; Status 3 = UNKNOWN/NOT_FOUND (no record: never received, or lost
        by a restart; the caller knows which); KKM Server not reachable or refusing the query = UNKNOWN (reason
        NOT_REACHABLE/REJECTED is about the query here).
        """
        validate_id_command(op_id)
        raw_request, answer = self._get_rezult(op_id, expected_command=None)
        command = str((answer.data or {}).get("Command") or "")
        result = self._card_result(COMMAND_OPERATIONS.get(command, Operation.STATUS), op_id, 0, raw_request, answer)
        if answer.reason in (Reason.NOT_REACHABLE, Reason.REJECTED):
            # the query did not get through: that says nothing about the earlier command
            result = replace(result, outcome=Outcome.UNKNOWN)
        return result

    # --- the exchange -----------------------------------------------------------------------------------
    def _card(
        self, operation: Operation, command: str, op_id: str, fields: dict[str, Any], amount: int, timeout: float
    ) -> CardResult:
        raw_request, answer = self._run(command, op_id, fields, timeout)
        return self._card_result(operation, op_id, amount, raw_request, answer)

    def _run(self, command: str, op_id: str, fields: dict[str, Any], timeout: float) -> tuple[str, _Answer]:
        """Send the command once; if the answer is not final, resolve it through GetRezult."""
        request = {
            "Command": command,
            "NumDevice": self.device_number,
            "IdCommand": validate_id_command(op_id),
            "Timeout": max(1, math.ceil(timeout)),
            **fields,
        }
        raw_request = encode_json(request)
        answer = self._read(self._post(raw_request, timeout), op_id, command, via_get_rezult=False)
        if answer.final or answer.reason in (Reason.NOT_REACHABLE, Reason.REJECTED):
            return raw_request, answer
        return raw_request, self._resolve(op_id, command, answer)

    def _resolve(self, op_id: str, command: str, first: _Answer) -> _Answer:
        """Poll GetRezult (bounded) until the command's outcome is final; else the last unclear answer.

        A GetRezult that itself fails (refused, timed out, 401) tells nothing about the command: it never
        replaces what we know, so the result stays UNKNOWN, never "not reachable". Nor does "not found": we
        sent this command, so KKM Server either has not registered it yet or lost it (a restart).
        """
        unclear = first
        deadline = time.monotonic() + self.poll_for
        while time.monotonic() < deadline:
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))
            _, polled = self._get_rezult(op_id, expected_command=command)
            if polled.status == NOT_FOUND:
                unclear = polled  # UNKNOWN/NOT_FOUND, unless a later poll finds it
                continue
            if polled.final:
                return polled
            if polled.pending:
                unclear = polled
        if unclear.pending:
            return _Answer(Reason.IN_PROGRESS, unclear.status, unclear.data, unclear.raw, "still running")
        return unclear

    def _get_rezult(self, op_id: str, expected_command: str | None) -> tuple[str, _Answer]:
        raw_request = encode_json({"Command": "GetRezult", "IdCommand": op_id})
        answer = self._read(self._post(raw_request, self.timeout), op_id, expected_command, via_get_rezult=True)
        return raw_request, answer

    def _post(self, raw_request: str, timeout: float) -> HttpExchange:
        return post_once(
            self.url,
            raw_request.encode("utf-8"),
            {"Content-Type": "application/json; charset=utf-8", "Accept": "application/json"},
            timeout=timeout,
            connect_timeout=self.connect_timeout,
            auth=self._auth,
        )

    def _read(self, exchange: HttpExchange, op_id: str, command: str | None, via_get_rezult: bool) -> _Answer:
        """Turn one HTTP exchange into an _Answer; anything odd is an unclear (non-final) answer."""
        if not exchange.answered:
            return _Answer(exchange.failure or Reason.LOST_ANSWER, detail=exchange.detail)
        raw = exchange.body.decode("utf-8", errors="replace")
        if exchange.status_code in (401, 403):  # refused at the door: the command never ran
            return _Answer(Reason.REJECTED, raw=raw, detail=f"HTTP {exchange.status_code}: check KKM Server login")
        if exchange.status_code != 200:
            return _Answer(Reason.HTTP_ERROR, raw=raw, detail=f"HTTP {exchange.status_code}")
        try:
            envelope = decode_json(exchange.body)
        except ValueError:
            return _Answer(Reason.MALFORMED, raw=raw, detail="answer is not JSON")
        if not isinstance(envelope, dict):
            return _Answer(Reason.MALFORMED, raw=raw, detail="answer is not a JSON object")
        data = envelope
        if via_get_rezult and isinstance(envelope.get("Rezult"), dict):
            data = envelope["Rezult"]  # GetRezult wraps the command's own answer
        status = data.get("Status", envelope.get("Status"))
        if isinstance(status, bool) or not isinstance(status, int) or status not in FINAL_STATUSES | PENDING_STATUSES:
            return _Answer(Reason.MALFORMED, raw=raw, detail=f"no usable Status: {status!r}")
        if status == NOT_FOUND and not via_get_rezult:
            # "not found" only means something as an answer to GetRezult
            return _Answer(Reason.MALFORMED, raw=raw, detail="Status 3 in answer to the command itself")
        echoed_id = data.get("IdCommand")
        if echoed_id not in (None, "") and str(echoed_id) != op_id:
            return _Answer(Reason.MALFORMED, raw=raw, detail=f"answer is about IdCommand {echoed_id!r}")
        echoed_command = data.get("Command")
        if (status != NOT_FOUND and command and echoed_command not in (None, "", "GetRezult")
                and echoed_command != command):
            return _Answer(Reason.MALFORMED, raw=raw, detail=f"answer is about command {echoed_command!r}")
        return _Answer(Reason.OK, status, data, raw)

    # --- results ------------------------------------------------------------------------------------------
    @staticmethod
    def _classify(answer: _Answer) -> tuple[Outcome, Reason]:
        if answer.status == DONE:
            return Outcome.APPROVED, Reason.OK
        if answer.status == ERROR:
            busy = _BUSY_TEXT.search(str((answer.data or {}).get("Error") or ""))
            return Outcome.DECLINED, Reason.BUSY if busy else Reason.DECLINED
        if answer.status == NOT_FOUND:
            return Outcome.UNKNOWN, Reason.NOT_FOUND
        if answer.reason in (Reason.NOT_REACHABLE, Reason.REJECTED):
            return Outcome.DECLINED, answer.reason
        if answer.pending:
            return Outcome.UNKNOWN, Reason.IN_PROGRESS
        return Outcome.UNKNOWN, answer.reason if answer.reason is not Reason.OK else Reason.MALFORMED

    def _card_result(
        self, operation: Operation, op_id: str, amount: int, raw_request: str, answer: _Answer
    ) -> CardResult:
        outcome, reason = self._classify(answer)
        data = answer.data or {}
        return CardResult(
            outcome=outcome,
            reason=reason,
            operation=operation,
            op_id=op_id,
            amount_kopecks=self._amount(data, amount),
            rrn=str(data.get("RRNCode") or ""),
            auth_code=str(data.get("AuthorizationCode") or ""),
            masked_pan=str(data.get("CardNumber") or ""),
            reference=str(data.get("UniversalID") or ""),
            bank_code=bank_code_of(data) if answer.status == ERROR else "",
            message=str(data.get("Error") or data.get("Warning") or answer.detail),
            slip=_slip_text(data.get("Slip")),
            raw_request=raw_request,
            raw_response=answer.raw,
        )

    def _slip_fields(self, operation: Operation, op_id: str, raw_request: str, answer: _Answer) -> dict[str, Any]:
        outcome, reason = self._classify(answer)
        data = answer.data or {}
        return {
            "outcome": outcome,
            "reason": reason,
            "operation": operation,
            "op_id": op_id,
            "slip": _slip_text(data.get("Slip")),
            "bank_code": bank_code_of(data) if answer.status == ERROR else "",
            "message": str(data.get("Error") or data.get("Warning") or answer.detail),
            "raw_request": raw_request,
            "raw_response": answer.raw,
        }

    @staticmethod
    def _amount(data: dict[str, Any], requested: int) -> int:
        """The amount the terminal reports, else the one we asked for."""
        value: Any = data.get("Amount")
        if value in (None, "") or isinstance(value, bool | float):
            return requested
        try:
            return rubles_to_kopecks(value)
        except InvalidRequest:
            return requested
