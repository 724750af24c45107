"""INPAS DualConnector transport: its own HTTP/XML service, ``POST /`` text/xml (PROTOCOLS §2.2).

Request ``<request><field id="25">1</field><field id="00">15000</field>…</request>``; answer
``<response><field id="39">1</field>…</response>`` (often windows-1251) or, for a request the service
could not take, ``<response><errorcode>4</errorcode><errordescription>…</errordescription></response>``.

Outcome rules:
- APPROVED only when the exchange succeeded and field 39 is 1;
- DECLINED for 39 = 16 (declined), 34 (no connection to the host), 53 (interrupted), and for an
  ``<errorcode>`` answer (the request was refused before running); reason BUSY when that refusal says the
  terminal is busy with another operation (``<errorcode>5</errorcode>``, or a description saying "занят").
  Modelling choice: the public clients do not document the busy answer; we take the service's own refusal
  form with code 5 (the emulator's), and also recognise the word in the description;
- UNKNOWN for anything else: 0 (undefined), 17 (done offline: money may move later), an unknown status,
  a missing status, an answer about another operation, a timeout or a lost answer.

There is no status query by our id: ``status()`` raises NotSupported. After an UNKNOWN the caller
resolves it with ``emergency_reversal`` (cancels the terminal's last operation), then annuls the order;
nothing else may use the terminal in between.

An emergency cancel that names a lost operation (ECR id 26 + amount 00) and is refused says why in the host
code (field 15), so the caller can tell a refusal *about that operation* from any other refusal (no bank
link, declined by the host, busy), which proves nothing about it. Modelling choice, after ISO 8583's
response codes, as the emulator answers: "25" (unable to locate the record) = the terminal has no operation
with that ECR id: ours never reached it → reason NOT_RECEIVED; "21" (no action taken) = that operation is the
terminal's last and was not approved: nothing to cancel → reason NOT_APPROVED. Any other refusal (16 without
those codes, 34, 53, ``<errorcode>``) keeps reason DECLINED/REJECTED/BUSY.

Field 26 (ECR transaction id) carries ``ecr_transaction_id(op_id)``: the op id itself when it is a short
number, else a 12-digit number derived from it (stable, so a resumed operation sends the same one).
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from payments.acquiring import (
    AcquiringClient,
    CardResult,
    CheckResult,
    HttpExchange,
    InvalidRequest,
    LostOperation,
    NotSupported,
    Operation,
    Original,
    Outcome,
    Reason,
    ReportResult,
    SettlementResult,
    post_once,
    reference_of,
    validate_amount,
)

DEFAULT_OPERATION_CODES: dict[str, int] = {
    "sale": 1,
    "cancel": 4,  # same operating day, before settlement
    "refund": 29,  # one public client uses 3
    "settlement": 59,
    "test": 26,  # host connection test
    "emergency_cancel": 53,  # 56 in another implementation
    "report": 63,
}

# Field ids.
AMOUNT, CURRENCY, PAN, AUTH_CODE, RRN, HOST_CODE, TEXT = 0, 4, 10, 13, 14, 15, 19
DATETIME, TRANSACTION_ID, OPERATION, ECR_ID, TERMINAL_ID, STATUS, SLIP = 21, 23, 25, 26, 27, 39, 90

APPROVED_STATUS = 1
DECLINED_STATUSES = {16: "declined", 34: "no connection to the host", 53: "interrupted"}
RUBLE = "643"
BUSY_ERROR_CODE = "5"  # <errorcode> of a request refused because the terminal runs another operation
# Host codes (15) of a refused emergency cancel that named a lost operation (see the module docstring).
NAMED_REVERSAL_REFUSALS = {"25": Reason.NOT_RECEIVED, "21": Reason.NOT_APPROVED}
REFERENCE_PREFIX = "DC"
_OP_ID_RE = re.compile(r"^[\x21-\x7e]{1,64}$")
_CHARSET_RE = re.compile(r"charset=\"?([\w.:-]+)", re.IGNORECASE)
_PROLOG_ENCODING_RE = re.compile(rb"^\s*<\?xml[^>]*encoding=[\"']([\w.:-]+)[\"']")


def ecr_transaction_id(op_id: str) -> str:
    """Field 26 for our op id: short numbers go as they are, anything else as a stable 12-digit number."""
    if not isinstance(op_id, str) or not _OP_ID_RE.match(op_id):
        raise InvalidRequest(f"op id must be 1..64 printable ASCII characters without spaces, got {op_id!r}")
    if op_id.isdigit() and len(op_id) <= 12:
        return op_id
    return str(int.from_bytes(hashlib.sha256(op_id.encode()).digest()[:8], "big") % 10**12)


def make_reference(rrn: str, transaction_id: str) -> str:
    """The opaque reference later cancels/refunds need: RRN (field 14) + transaction id (field 23)."""
    return f"{REFERENCE_PREFIX}:{rrn}:{transaction_id}"


def parse_reference(reference: str) -> tuple[str, str]:
    prefix, _, rest = reference.partition(":")
    rrn, _, transaction_id = rest.partition(":")
    if prefix != REFERENCE_PREFIX or not (rrn or transaction_id):
        raise InvalidRequest(f"not a DualConnector reference: {reference!r}")
    return rrn, transaction_id


def build_request(fields: dict[int, Any]) -> bytes:
    """``<request>`` with two-digit field ids, windows-1251 like the service's own answers."""
    root = ET.Element("request")
    for field_id, value in fields.items():
        ET.SubElement(root, "field", id=f"{field_id:02d}").text = str(value)
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="windows-1251"?>' + body).encode("cp1251", errors="replace")


def decode_xml(body: bytes, content_type: str = "") -> str:
    """The answer as text, in whatever encoding it declares: XML prolog, then HTTP charset, then a guess."""
    prolog = _PROLOG_ENCODING_RE.match(body)
    declared = _CHARSET_RE.search(content_type)
    if prolog:
        candidates = [prolog.group(1).decode("ascii")]
    elif declared:
        candidates = [declared.group(1)]
    else:
        candidates = ["utf-8", "cp1251"]  # cp1251 decodes any byte string: the last resort
    for encoding in candidates:
        try:
            return body.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
    return body.decode("cp1251", errors="replace")


def parse_xml(text: str) -> ET.Element:
    """Parse decoded text (its prolog is dropped: decode_xml applied the encoding already).

    xml.etree on purpose: the service is the kiosk's own device bridge, and expat >= 2.4 refuses
    entity-expansion bombs; ElementTree never fetches external entities.
    """
    return ET.fromstring(re.sub(r"^\s*<\?xml[^>]*\?>", "", text))  # noqa: S314 - see docstring


def slip_to_text(slip: str) -> str:
    """Field 90 uses ``^`` and ``~`` as markup separators: both become line breaks, nothing else changes."""
    lines = re.split(r"\r\n|[\n\r^~]", slip)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(line.rstrip() for line in lines)


@dataclass(frozen=True)
class _Answer:
    """One DualConnector answer, or why there is none."""

    outcome: Outcome
    reason: Reason
    fields: dict[int, str]
    raw: str = ""
    message: str = ""
    bank_code: str = ""


class DualConnectorClient(AcquiringClient):
    supports_status = False
    names_lost_operation = True

    def __init__(
        self,
        base_url: str,
        operation_codes: dict[str, int] | None = None,
        timeout: float = 30.0,
        guest_timeout: float = 180.0,
        terminal_id: str | None = None,
        currency: str = RUBLE,
        connect_timeout: float = 5.0,
    ):
        self.url = base_url.rstrip("/") + "/"
        unknown = set(operation_codes or {}) - set(DEFAULT_OPERATION_CODES)
        if unknown:
            raise InvalidRequest(f"unknown operation names {sorted(unknown)}; known: {sorted(DEFAULT_OPERATION_CODES)}")
        self.codes = {**DEFAULT_OPERATION_CODES, **(operation_codes or {})}
        self.timeout = timeout
        self.guest_timeout = guest_timeout  # a card payment waits for the guest at the PIN pad
        self.terminal_id = terminal_id
        self.currency = currency
        self.connect_timeout = connect_timeout

    # --- AcquiringClient ------------------------------------------------------------------------------
    def sale(self, op_id: str, amount_kopecks: int, order_number: str) -> CardResult:
        # The protocol has no field for our order number: op id (field 26) ties the payment to it.
        fields = {AMOUNT: validate_amount(amount_kopecks), CURRENCY: self.currency}
        return self._card(Operation.SALE, "sale", op_id, fields, amount_kopecks, self.guest_timeout)

    def cancel(self, op_id: str, amount_kopecks: int, original: Original) -> CardResult:
        rrn, transaction_id = parse_reference(reference_of(original))
        fields = {AMOUNT: validate_amount(amount_kopecks), CURRENCY: self.currency, RRN: rrn,
                  TRANSACTION_ID: transaction_id}
        return self._card(Operation.CANCEL, "cancel", op_id, fields, amount_kopecks, self.timeout)

    def refund(self, op_id: str, amount_kopecks: int, original: Original) -> CardResult:
        rrn, transaction_id = parse_reference(reference_of(original))
        fields = {AMOUNT: validate_amount(amount_kopecks), CURRENCY: self.currency, RRN: rrn,
                  TRANSACTION_ID: transaction_id}
        return self._card(Operation.REFUND, "refund", op_id, fields, amount_kopecks, self.guest_timeout)

    def emergency_reversal(self, op_id: str, original: Original | None = None,
                           lost: LostOperation | None = None) -> CardResult:
        """Cancels the terminal's last operation; with ``original`` the terminal checks it is that one.

        With ``lost`` (no RRN: the answer never came) the request names the lost operation by its ECR
        transaction id (field 26, as it was sent) and amount (00): the terminal cancels its last operation
        only if it is that one. Without that, a request that never reached the terminal would have the
        terminal cancel the operation before it: another guest's payment.
        """
        fields: dict[int, Any] = {}
        if original is not None:
            rrn, transaction_id = parse_reference(reference_of(original))
            fields = {RRN: rrn, TRANSACTION_ID: transaction_id}
        elif lost is not None:
            fields = {AMOUNT: validate_amount(lost.amount_kopecks), CURRENCY: self.currency}
            return self._card(Operation.REVERSAL, "emergency_cancel", op_id, fields, 0, self.timeout,
                              ecr_op_id=lost.op_id)
        return self._card(Operation.REVERSAL, "emergency_cancel", op_id, fields, 0, self.timeout)

    def settlement(self, op_id: str) -> SettlementResult:
        raw_request, answer = self._exchange("settlement", op_id, {}, self.timeout)
        return SettlementResult(**self._slip_fields(Operation.SETTLEMENT, op_id, raw_request, answer))

    def report(self, op_id: str, detailed: bool = False) -> ReportResult:
        raw_request, answer = self._exchange("report", op_id, {}, self.timeout)
        return ReportResult(**self._slip_fields(Operation.REPORT, op_id, raw_request, answer))

    def check(self, op_id: str) -> CheckResult:
        raw_request, answer = self._exchange("test", op_id, {}, self.timeout)
        return CheckResult(
            ok=answer.outcome is Outcome.APPROVED,
            reachable=answer.reason not in (Reason.NOT_REACHABLE, Reason.TIMEOUT, Reason.LOST_ANSWER),
            reason=answer.reason,
            op_id=op_id,
            bank_code=answer.bank_code,
            message=answer.message,
            raw_request=raw_request,
            raw_response=answer.raw,
        )

    def status(self, op_id: str) -> CardResult:
        raise NotSupported(
            "DualConnector has no status query by our id: resolve an unknown outcome with emergency_reversal"
        )

    # --- the exchange -----------------------------------------------------------------------------------
    def _card(self, operation: Operation, name: str, op_id: str, fields: dict[int, Any], amount: int,
              timeout: float, *, ecr_op_id: str = "") -> CardResult:
        raw_request, answer = self._exchange(name, ecr_op_id or op_id, fields, timeout)
        got = answer.fields
        rrn, transaction_id = got.get(RRN, ""), got.get(TRANSACTION_ID, "")
        approved = answer.outcome is Outcome.APPROVED
        reason = answer.reason
        if ecr_op_id and reason is Reason.DECLINED and got.get(STATUS) == "16":
            # a refused emergency cancel naming a lost operation: is the refusal about that operation?
            reason = NAMED_REVERSAL_REFUSALS.get(answer.bank_code, reason)
        return CardResult(
            outcome=answer.outcome,
            reason=reason,
            operation=operation,
            op_id=op_id,
            amount_kopecks=int(got[AMOUNT]) if got.get(AMOUNT, "").isdigit() else amount,
            rrn=rrn,
            auth_code=got.get(AUTH_CODE, ""),
            masked_pan=got.get(PAN, ""),  # field 10 is not in the documented list: read when present
            reference=make_reference(rrn, transaction_id) if approved and (rrn or transaction_id) else "",
            bank_code=answer.bank_code,
            message=answer.message,
            slip=slip_to_text(got.get(SLIP, "")),
            raw_request=raw_request,
            raw_response=answer.raw,
        )

    def _exchange(self, name: str, op_id: str, fields: dict[int, Any], timeout: float) -> tuple[str, _Answer]:
        ecr_id = ecr_transaction_id(op_id)
        request = {OPERATION: self.codes[name], **fields, ECR_ID: ecr_id}
        if self.terminal_id:
            request[TERMINAL_ID] = self.terminal_id
        body = build_request(request)
        exchange = post_once(
            self.url, body, {"Content-Type": "text/xml; charset=windows-1251", "Accept": "text/xml"},
            timeout=timeout, connect_timeout=self.connect_timeout,
        )
        return body.decode("cp1251"), self._read(exchange, self.codes[name], ecr_id)

    def _read(self, exchange: HttpExchange, op_code: int, ecr_id: str) -> _Answer:
        if not exchange.answered:
            failure = exchange.failure or Reason.LOST_ANSWER
            outcome = Outcome.DECLINED if failure is Reason.NOT_REACHABLE else Outcome.UNKNOWN
            return _Answer(outcome, failure, {}, message=exchange.detail)
        raw = decode_xml(exchange.body, exchange.content_type)
        try:
            root = parse_xml(raw)
        except ET.ParseError:
            return _Answer(Outcome.UNKNOWN, Reason.MALFORMED, {}, raw, f"HTTP {exchange.status_code}: not XML")
        if root.tag != "response":
            return _Answer(Outcome.UNKNOWN, Reason.MALFORMED, {}, raw, f"unexpected root <{root.tag}>")
        error_code = root.findtext("errorcode")
        if error_code is not None:  # the service did not take the request: nothing ran
            description = root.findtext("errordescription") or ""
            busy = error_code.strip() == BUSY_ERROR_CODE or "занят" in description.lower()
            return _Answer(Outcome.DECLINED, Reason.BUSY if busy else Reason.REJECTED, {}, raw, description,
                           error_code.strip())
        fields = self._fields(root)
        if exchange.status_code != 200:
            return _Answer(Outcome.UNKNOWN, Reason.HTTP_ERROR, fields, raw, f"HTTP {exchange.status_code}")
        return self._judge(fields, raw, op_code, ecr_id)

    @staticmethod
    def _fields(root: ET.Element) -> dict[int, str]:
        fields: dict[int, str] = {}
        for element in root.iter("field"):
            field_id = (element.get("id") or "").strip()
            if field_id.isdigit():
                fields[int(field_id)] = (element.text or "").strip()
        return fields

    @staticmethod
    def _judge(fields: dict[int, str], raw: str, op_code: int, ecr_id: str) -> _Answer:
        """Field 39 decides, but only for an answer about our own operation."""
        message, host_code = fields.get(TEXT, ""), fields.get(HOST_CODE, "")
        if fields.get(ECR_ID) not in (None, "", ecr_id) or fields.get(OPERATION) not in (None, "", str(op_code)):
            return _Answer(Outcome.UNKNOWN, Reason.MALFORMED, fields, raw,
                           f"answer is about operation {fields.get(OPERATION)} / ECR id {fields.get(ECR_ID)}")
        status = fields.get(STATUS, "")
        if not status.isdigit():
            return _Answer(Outcome.UNKNOWN, Reason.MALFORMED, fields, raw, message or "no status (field 39)")
        code = int(status)
        if code == APPROVED_STATUS:
            return _Answer(Outcome.APPROVED, Reason.OK, fields, raw, message, host_code)
        if code in DECLINED_STATUSES:
            return _Answer(Outcome.DECLINED, Reason.DECLINED, fields, raw, message or DECLINED_STATUSES[code],
                           host_code)
        return _Answer(Outcome.UNKNOWN, Reason.UNCLEAR_STATUS, fields, raw, message or f"status {code}", host_code)

    def _slip_fields(self, operation: Operation, op_id: str, raw_request: str, answer: _Answer) -> dict[str, Any]:
        return {
            "outcome": answer.outcome,
            "reason": answer.reason,
            "operation": operation,
            "op_id": op_id,
            "slip": slip_to_text(answer.fields.get(SLIP, "")),
            "bank_code": answer.bank_code,
            "message": answer.message,
            "raw_request": raw_request,
            "raw_response": answer.raw,
        }
