"""INPAS DualConnector emulator: the HTTP/XML service (``POST /``, text/xml, windows-1251 answers).

One terminal (journal/fault device "1", field 27 = ``terminal_id``). Requests are
``<request><field id="25">1</field>…</request>``; answers ``<response><field id="39">1</field>…</response>``,
always windows-1251 with an XML prolog that says so. A request the service cannot take (not XML, unknown
operation code, bad amount, terminal busy) gets ``<response><errorcode>N</errorcode><errordescription>…``
and nothing runs.

Operation codes are configurable (``operation_codes``, same names as the client's
``DEFAULT_OPERATION_CODES``). Terminal rules are the KKM emulator's ``TerminalBook``: cancel (4) only in
the current batch, refund (29) any time up to what is left (partial allowed; the original is found by RRN
field 14 and/or transaction id 23), settlement (59) closes the batch unless it fails, emergency cancel (53)
reverses the terminal's last operation only while it is last and approved (with 14/23 given, or after a
lost answer with that operation's ECR id 26 and amount 00, only if they name that operation; refusing a
named one, host code 15 says 25 when the terminal never had that ECR id and 21 when that operation is its
last and was not approved, so the client can tell those answers about it from any other refusal), test (26)
checks the host, report (63) prints totals. Card operations are refused
after ``days_without_settlement_limit`` days without settlement (None = never).

There is no status query and no idempotency: the same ECR id sent twice is two operations, as on a real
terminal. Field 39: 1 approved, 16 declined, 34 no connection to the bank.

Control API: exactly the KKM emulator's (see ``payments.kkm_emulator``): ``/_emulator/faults`` with
``decline`` (16, host code 05), ``insufficient_funds`` (16, host code 51 'Недостаточно средств'),
``no_connection`` (34, state failed; emergency cancels too), ``memory_full``, ``settlement_fails``, ``timeout``
(performed — approved unless ``"approved": false`` — and the answer never comes), ``lost_response``
(performed, the connection is dropped), ``reversal_refused`` (the next emergency cancel: 16, nothing
reversed), ``busy`` (``{"seconds": N}``: the next sale or refund holds the terminal N seconds more; any other
request meanwhile gets ``<errorcode>5</errorcode>`` "Терминал занят другой операцией", the busy answer we
model, a modelling choice); ``"operation": "reversal"`` in a fault makes it wait for that operation (the
journal's words); ``GET /_emulator/faults/known`` lists them (``FAULTS``);
``/_emulator/config`` (``card_delay``, ``days_without_settlement_limit``),
``/_emulator/clock`` (``advance_seconds``), ``/_emulator/journal`` (``id`` = the ECR id, field 26),
``/_emulator/reset``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from core.emulator_http import Request, Response, sleep_unless_stopping
from payments.dualconnector_client import (
    AMOUNT,
    AUTH_CODE,
    CURRENCY,
    DATETIME,
    DEFAULT_OPERATION_CODES,
    ECR_ID,
    HOST_CODE,
    OPERATION,
    PAN,
    RRN,
    RUBLE,
    SLIP,
    STATUS,
    TERMINAL_ID,
    TEXT,
    TRANSACTION_ID,
    decode_xml,
    parse_xml,
)
from payments.kkm_emulator import (
    CARD_OPERATIONS,
    DEFAULT_TZ,
    FAULT_TARGETS,
    CardTerminalEmulator,
    Verdict,
    fault_problem,
    guest_seconds,
)

DEVICE = "1"
# Operation names of the client's code table -> the journal's words.
WORDS = {"sale": "sale", "cancel": "cancel", "refund": "refund", "settlement": "settlement", "test": "check",
         "emergency_cancel": "reversal", "report": "report"}

APPROVED = (1, "00", "Одобрено")
PROBLEMS: dict[str, tuple[int, str, str]] = {  # problem -> (field 39, host code 15, text 19)
    "decline": (16, "05", "Отказ: операция отклонена банком"),
    "insufficient_funds": (16, "51", "Недостаточно средств"),
    "no_connection": (34, "", "Нет связи с банком"),
    "memory_full": (16, "", "Память терминала заполнена, выполните сверку итогов"),
    "no_settlement": (16, "", "Слишком давно не было сверки итогов, выполните сверку итогов"),
    "not_found": (16, "", "Исходная операция не найдена"),
    "not_sale": (16, "", "Исходная операция не является одобренной оплатой"),
    "closed_batch": (16, "", "Отмена невозможна: операция уже прошла сверку итогов, выполните возврат"),
    "exceeds": (16, "", "Сумма больше остатка по исходной операции"),
    "not_last": (16, "", "Операция не является последней: аварийная отмена невозможна"),
    "nothing_to_reverse": (16, "", "Нет одобренной операции для аварийной отмены"),
    "settlement_fails": (16, "", "Сверка итогов не выполнена: ошибка обмена с банком"),
    "reversal_refused": (16, "", "Аварийная отмена отклонена терминалом"),
    # A refused emergency cancel that names a lost operation (26 + 00) says why with a host code the client
    # can tell apart (modelling choice after ISO 8583: 25 = no such record, 21 = no action taken).
    "not_received": (16, "25", "Операция с таким номером (поле 26) на терминал не поступала"),
    "not_approved": (16, "21", "Названная операция не одобрена: отменять нечего"),
}
FAULTS: dict[str, str] = {
    "decline": "следующая операция отклонена банком (39 = 16, код 05)",
    "insufficient_funds": "следующая оплата отклонена: недостаточно средств (39 = 16, код 51)",
    "no_connection": "у терминала нет связи с банком: следующая операция (в том числе аварийная отмена) "
                     "получает 39 = 34, ничего не списано",
    "memory_full": "память терминала заполнена: следующая оплата отклонена",
    "settlement_fails": "следующая сверка итогов не выполнена, пакет терминала сохранён",
    "timeout": "операция выполнена (одобрена; отклонена при \"approved\": false), но ответ не приходит",
    "lost_response": "операция выполнена, но соединение обрывается без ответа",
    "reversal_refused": "следующая аварийная отмена отклонена терминалом (39 = 16, ничего не отменено)",
    "busy": "гость держит терминал {\"seconds\": N} секунд на следующей оплате или возврате; другие запросы "
            "в это время получают <errorcode>5</errorcode> «Терминал занят другой операцией»",
}
# <errorcode> values: the request was not taken.
BAD_REQUEST, UNKNOWN_OPERATION, BUSY = 4, 3, 5


class _NotTaken(Exception):
    """The service refuses the request itself: answered with <errorcode>, nothing runs."""

    def __init__(self, code: int, description: str):
        super().__init__(description)
        self.code = code


class DualConnectorEmulator(CardTerminalEmulator):
    name = "dualconnector-emulator"
    faults_known = FAULTS

    def __init__(
        self,
        state_path: str | None = None,
        card_delay: float = 0.0,
        operation_codes: dict[str, int] | None = None,
        days_without_settlement_limit: int | None = 5,
        terminal_id: str = "00012345",
        tz: str = DEFAULT_TZ,
    ):
        self.codes = {**DEFAULT_OPERATION_CODES, **(operation_codes or {})}
        self.names = {code: name for name, code in self.codes.items()}
        self.terminal_id = terminal_id
        super().__init__(state_path, card_delay, days_without_settlement_limit, tz)

    # --- protocol -------------------------------------------------------------------------------------------
    def handle_protocol(self, request: Request) -> Response:
        if request.method != "POST" or request.path not in ("/", ""):
            return Response(404, b"Not Found", {"Content-Type": "text/plain"})
        try:
            fields = self._request_fields(request)
            return self._operate(fields)
        except _NotTaken as refused:
            return self._error_answer(refused.code, str(refused))

    def _request_fields(self, request: Request) -> dict[int, str]:
        try:
            root = parse_xml(decode_xml(request.body, request.headers.get("content-type", "")))
        except ET.ParseError as exc:
            raise _NotTaken(BAD_REQUEST, "Неверный формат запроса") from exc
        if root.tag != "request":
            raise _NotTaken(BAD_REQUEST, f"Ожидался <request>, получен <{root.tag}>")
        fields: dict[int, str] = {}
        for element in root.iter("field"):
            field_id = (element.get("id") or "").strip()
            if not field_id.isdigit():
                raise _NotTaken(BAD_REQUEST, f"Неверный номер поля: {field_id!r}")
            fields[int(field_id)] = (element.text or "").strip()
        return fields

    def _operate(self, fields: dict[int, str]) -> Response:
        name = self.names.get(int(fields[OPERATION])) if fields.get(OPERATION, "").isdigit() else None
        if name is None:
            raise _NotTaken(UNKNOWN_OPERATION, f"Неизвестная операция: {fields.get(OPERATION)!r}")
        operation = WORDS[name]
        amount = self._amount(fields) if operation in CARD_OPERATIONS else 0
        ecr_id = fields.get(ECR_ID, "")
        with self._lock:
            book = self.book
            dev = book.device(DEVICE, self.terminal_id, kind="inpas")
            if dev["busy"]:
                raise _NotTaken(BUSY, "Терминал занят другой операцией")
            fault = self.faults.take(DEVICE, FAULT_TARGETS[operation], operation)
            refusal = book.refusal(dev, operation)
            dev["busy"] = ecr_id or "?"
            self._save()
        if not refusal:
            # the guest at the PIN pad; the lock is free meanwhile
            sleep_unless_stopping(guest_seconds(operation, fault, self.card_delay))
        with self._lock:
            if self.book is not book:  # reset while the guest was at the PIN pad: that terminal is gone
                raise _NotTaken(BUSY, "Операция прервана: эмулятор сброшен")
            try:
                if refusal:
                    book.log_refusal(operation, dev, ecr_id, amount)
                    verdict = Verdict("failed", refusal)
                else:
                    verdict = self._run(operation, dev, ecr_id, fields, amount, fault_problem(operation, fault))
            finally:
                dev["busy"] = None
                self._save()
            answer = self._answer_fields(fields, dev, verdict, amount)
        return self.delivery(fault) or self._field_answer(answer)

    def _run(self, operation: str, dev: dict[str, Any], ecr_id: str, fields: dict[int, str], amount: int,
             problem: str) -> Verdict:
        book = self.book
        rrn, txn = fields.get(RRN, ""), fields.get(TRANSACTION_ID, "")
        original = book.find(dev, rrn=rrn, txn=txn) if (rrn or txn) else None
        if operation == "sale":
            return book.sale(dev, ecr_id, amount, problem)
        if operation in ("cancel", "refund"):
            return getattr(book, operation)(dev, ecr_id, amount, original, problem)
        if operation == "reversal":
            named = self._named_lost_operation(dev, ecr_id, fields) if not (rrn or txn) else None
            if named is not None:
                return self._reverse_named(dev, ecr_id, named, problem)
            return book.reversal(dev, ecr_id, original, bool(rrn or txn), problem)
        if operation == "settlement":
            return book.settlement(dev, ecr_id, problem)
        return book.check(dev, ecr_id, problem, word=operation)

    def _named_lost_operation(self, dev: dict[str, Any], ecr_id: str, fields: dict[int, str]) -> dict | None:
        """An emergency cancel with an amount (00) names its operation by ECR id (26) and that amount:
        returns the transaction with that ECR id ({} when the terminal never had one), or None for a cancel
        naming nothing. The amount is checked by ``_reverse_named``."""
        raw = fields.get(AMOUNT, "")
        if not raw.isdigit() or int(raw) <= 0:
            return None
        tx = next((tx for tx in reversed(dev["transactions"]) if tx["id"] == ecr_id), None)
        return {**tx, "named_amount": int(raw)} if tx is not None else {}

    def _reverse_named(self, dev: dict[str, Any], ecr_id: str, named: dict, problem: str) -> Verdict:
        """Reverse the named operation only while it is the terminal's last one. A refusal about that very
        operation says so with its own host code: never had it (25), it is last and not approved (21); any
        other refusal (not last any more, another amount, a fault) proves nothing about it."""
        book = self.book
        if not problem and not named:
            problem = "not_received"
        elif not problem and named["uid"] == dev["last"] and named["amount"] == named["named_amount"]:
            if named["state"] != "approved":
                problem = "not_approved"
        if problem in ("not_received", "not_approved"):
            book.log_refusal("reversal", dev, ecr_id, 0)
            return Verdict("failed", problem, None, [book.bank, "АВАРИЙНАЯ ОТМЕНА", "ОТКАЗ"])
        expected = book.find(dev, uid=named["uid"]) if named and named["amount"] == named["named_amount"] else None
        return book.reversal(dev, ecr_id, expected, True, problem)

    # --- answers --------------------------------------------------------------------------------------------
    def _answer_fields(self, request: dict[int, str], dev: dict[str, Any], verdict: Verdict,
                       amount: int) -> dict[int, str]:
        status, host_code, text = APPROVED if verdict.approved else PROBLEMS[verdict.problem]
        stamp = self.book.local_now().strftime("%Y%m%d%H%M%S")  # the terminal's local date and time
        answer = {OPERATION: request.get(OPERATION, ""), ECR_ID: request.get(ECR_ID, ""),
                  TERMINAL_ID: dev["terminal_id"], DATETIME: stamp, STATUS: str(status), HOST_CODE: host_code,
                  TEXT: text}
        tx = verdict.tx
        if tx is not None or amount:
            answer |= {AMOUNT: str(tx["amount"] if tx else amount), CURRENCY: RUBLE}
        if tx is not None:
            answer |= {PAN: tx["pan"], TRANSACTION_ID: tx["txn"], RRN: tx["rrn"], AUTH_CODE: tx["auth"]}
        if verdict.slip_lines:
            answer[SLIP] = "^".join(verdict.slip_lines) + "~"  # ^ between lines, ~ ends the slip
        return answer

    @staticmethod
    def _field_answer(fields: dict[int, str]) -> Response:
        root = ET.Element("response")
        for field_id, value in fields.items():
            ET.SubElement(root, "field", id=f"{field_id:02d}").text = value
        return _xml_response(root)

    @staticmethod
    def _error_answer(code: int, description: str) -> Response:
        root = ET.Element("response")
        ET.SubElement(root, "errorcode").text = str(code)
        ET.SubElement(root, "errordescription").text = description
        return _xml_response(root)

    @staticmethod
    def _amount(fields: dict[int, str]) -> int:
        raw = fields.get(AMOUNT, "")
        if not raw.isdigit() or int(raw) <= 0:
            raise _NotTaken(BAD_REQUEST, f"Неверная сумма (поле 00): {raw!r}")
        if fields.get(CURRENCY, RUBLE) != RUBLE:
            raise _NotTaken(BAD_REQUEST, f"Неподдерживаемая валюта: {fields.get(CURRENCY)!r}")
        return int(raw)


def _xml_response(root: ET.Element) -> Response:
    body = '<?xml version="1.0" encoding="windows-1251"?>' + ET.tostring(root, encoding="unicode")
    return Response(200, body.encode("cp1251", errors="replace"), {"Content-Type": "text/xml; charset=windows-1251"})
