"""KKM Server emulator: ``POST /Execute`` for several Sberbank-like card terminals, over real HTTP.

Protocol (PROTOCOLS §2.1): PayByPaymentCard, CancelPaymentByPaymentCard, ReturnPaymentByPaymentCard,
EmergencyReversal, Settlement, TerminalReport, GetRezult. Terminals are chosen by ``NumDevice``
(devices 1..n are created on first use; NumDevice 0 = device 1); each has a batch since its last
settlement. HTTP Basic auth is required when ``users`` is given.

Terminal rules (``TerminalBook``, shared with the DualConnector emulator):
- cancel only for an operation in the current batch (before settlement), up to what is left of it;
- refund any time, up to the original amount minus earlier cancels/refunds (partial allowed);
- card operations are refused (Sber error 4134) when the last settlement is more than
  ``days_without_settlement_limit`` days ago by the emulator clock;
- EmergencyReversal reverses the terminal's LAST card operation only while it is still the last one and
  approved (a declined attempt counts as the last operation: it protects earlier payments);
- settlement closes the batch (batch number + 1) unless it fails, then the batch is kept.

IdCommand: a repeated identical command returns the stored answer (nothing is done twice); the same
IdCommand for a different command, device or amount is an error. GetRezult returns the stored answer
(Status 1 while the guest is still at the PIN pad, Status 3 if the IdCommand was never seen).

Control API (besides ``/_emulator/journal`` and ``/_emulator/reset`` from EmulatorApp):
- ``POST /_emulator/faults {"fault": F, "count": 1, "device": "2"?, "approved": true?}``; each fault hits the
  next operation it applies to (``FAULT_TARGETS``):
  - ``decline``: declined by the bank (code 05); ``insufficient_funds``: declined, code 51 'Недостаточно
    средств'; ``no_connection``: the terminal can't reach the bank (state failed, nothing charged);
    ``memory_full``: Sber 4130; ``settlement_fails``: the next settlement fails, the batch is kept.
  - ``timeout``: the operation IS performed (approved; declined with ``"approved": false``) and stored, but
    the HTTP answer never comes (the client's own timeout fires); GetRezult later shows the outcome.
  - ``lost_response``: the same, but the connection is dropped at once instead of hanging.
  ``timeout``/``lost_response`` also hit GetRezult (count 2 = the command and the first GetRezult).
- ``POST /_emulator/config {"card_delay": s, "days_without_settlement_limit": n}`` (GET shows it):
  ``card_delay`` seconds stand in for the guest on sales and refunds.
- ``POST /_emulator/clock {"advance_seconds": N}`` moves the emulator clock forward (GET shows it).
- ``GET /_emulator/journal``: one entry per operation: ``operation`` (sale, cancel, refund, reversal,
  settlement, check, report), ``device``, ``amount`` (rubles "189.00"), ``rrn``, ``state`` (approved,
  declined, failed), ``batch``, ``id`` (IdCommand), ``time``. TerminalReport is "check", or "report" when
  Detailed.
  - ``reversal_refused``: the next EmergencyReversal is refused by the terminal (Status 2, nothing reversed).
  - ``busy`` (``{"seconds": N}``): the next sale or refund holds the terminal N seconds more (a guest slow at
    the PIN pad, or one whose worker died); every other command meanwhile is refused with Status 2 and
    "Терминал занят другой операцией", and is not stored under its IdCommand.
  ``GET /_emulator/faults/known`` lists every fault with what it does (``FAULTS``). A fault armed with
  ``"operation": "reversal"`` (sale, cancel, refund, reversal, settlement, check, report, status) waits for
  that operation and leaves every other one alone.
- ``POST /_emulator/restart {"keep_results": false}``: KKM Server restarts (PROTOCOLS §2.1: results may not
  survive): commands still running are forgotten and their HTTP answers dropped, stored results too unless
  ``keep_results`` (default true); GetRezult then answers Status 3 for them. The terminals keep their books:
  a payment the guest finishes after the restart is on the terminal, its result nowhere in KKM Server.
- ``POST /_emulator/reset``: a factory-fresh emulator (clock, terminals, journal, card_delay).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from core.emulator_http import (
    EmulatorApp,
    FaultQueue,
    JsonStateFile,
    Request,
    Response,
    json_response,
    lost_answer,
    never_answers,
    sleep_unless_stopping,
)
from payments.acquiring import InvalidRequest, format_rubles, rubles_to_kopecks
from payments.kkm_client import MAX_ID_COMMAND, decode_json, encode_json

FAULTS: dict[str, str] = {
    "decline": "следующая операция отклонена банком (код ответа 05)",
    "insufficient_funds": "следующая оплата отклонена: недостаточно средств (код 51)",
    "no_connection": "у терминала нет связи с банком: следующая операция (в том числе аварийная отмена) "
                     "не выполнена, ничего не списано",
    "memory_full": "память терминала заполнена (Sber 4130): следующая оплата отклонена",
    "settlement_fails": "следующая сверка итогов не выполнена, пакет терминала сохранён",
    "timeout": "операция выполнена (одобрена; отклонена при \"approved\": false), но HTTP-ответ не приходит; "
               "действует и на GetRezult",
    "lost_response": "операция выполнена, но соединение обрывается без ответа; действует и на GetRezult",
    "reversal_refused": "следующая аварийная отмена отклонена терминалом (ничего не отменено)",
    "busy": "гость держит терминал {\"seconds\": N} секунд на следующей оплате или возврате; другие команды "
            "в это время получают отказ «терминал занят»",
}
_DELIVERY = {"timeout", "lost_response"}  # faults about the answer, not the operation
_TIMING = {"busy"}  # faults about how long the operation runs, not its outcome
FAULT_TARGETS: dict[str, set[str]] = {
    "sale": {"decline", "insufficient_funds", "no_connection", "memory_full", "busy"} | _DELIVERY,
    "cancel": {"decline", "no_connection"} | _DELIVERY,
    "refund": {"decline", "no_connection", "busy"} | _DELIVERY,
    "reversal": {"no_connection", "reversal_refused"} | _DELIVERY,
    "settlement": {"settlement_fails", "no_connection"} | _DELIVERY,
    "check": {"no_connection"} | _DELIVERY,
    "report": {"no_connection"} | _DELIVERY,
    "status": set(_DELIVERY),
}
CARD_OPERATIONS = {"sale", "cancel", "refund"}  # refused after too long without settlement
GUEST_OPERATIONS = {"sale", "refund"}  # the guest presents the card: ``card_delay`` applies
DECLINES = {"decline", "insufficient_funds"}  # the bank said no; every other problem is "failed"
SECONDS_PER_DAY = 86400
# Checked by the terminal itself before any bank exchange: nothing becomes the terminal's last operation.
LOCAL_REFUSALS = {"not_found", "not_sale", "closed_batch", "exceeds"}
# A terminal prints its slips in the venue's local time; ``manage.py emulators`` and the tests hand the emulators
# settings.TIME_ZONE, this is the default for a bare emulator (the ATOL emulator's register is in Moscow too).
DEFAULT_TZ = "Europe/Moscow"


# --- the terminals' books (shared with the DualConnector emulator) ------------------------------------------


def guest_seconds(operation: str, fault: dict[str, Any] | None, card_delay: float) -> float:
    """How long the guest holds the terminal: ``card_delay`` on guest operations, longer under ``busy``."""
    seconds = card_delay if operation in GUEST_OPERATIONS else 0.0
    if fault and fault["fault"] == "busy":
        extra = fault.get("seconds", 0)
        if isinstance(extra, bool) or not isinstance(extra, int | float) or extra < 0:
            extra = 0  # an unusable value: the fault still hits, without a delay
        seconds += float(extra)
    return seconds


@dataclass
class Verdict:
    """What the terminal did: ``problem`` is "" when approved, else a key the protocol maps to its errors."""

    state: str  # approved / declined / failed
    problem: str = ""
    tx: dict[str, Any] | None = None
    slip_lines: list[str] = field(default_factory=list)

    @property
    def approved(self) -> bool:
        return self.state == "approved"


def fault_problem(operation: str, fault: dict[str, Any] | None) -> str:
    """The terminal-side problem a fault causes ("" = none; delivery faults only decline if asked)."""
    if not fault:
        return ""
    name = fault["fault"]
    if name in _TIMING:
        return ""
    if name in _DELIVERY:
        if fault.get("approved", True) is False:
            return "settlement_fails" if operation == "settlement" else "decline"
        return ""
    return name


class TerminalBook:
    """Batches, transactions, clock and journal of emulated terminals, kept in one JSON-able dict.

    Not locked by itself: the emulator holding it calls it under its own lock.
    """

    def __init__(self, data: dict[str, Any] | None, bank: str, days_limit: int | None, tz: str = DEFAULT_TZ):
        self.data = data or {"clock_offset": 0.0, "seq": 0, "devices": {}, "journal": []}
        self.bank = bank
        self.days_limit = days_limit
        self.zone = ZoneInfo(tz)  # the venue's: slips and the terminal's own date and time

    # clock -------------------------------------------------------------------------------------------------
    def now(self) -> float:
        return time.time() + float(self.data["clock_offset"])

    def now_iso(self) -> str:
        return datetime.fromtimestamp(self.now(), UTC).isoformat(timespec="seconds")

    def local_now(self) -> datetime:
        """The terminal's clock as it prints it: the venue's local time."""
        return datetime.fromtimestamp(self.now(), self.zone)

    def advance(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float | Decimal) or seconds < 0:
            raise ValueError("advance_seconds must be a non-negative number")
        self.data["clock_offset"] = float(self.data["clock_offset"]) + float(seconds)

    # terminals ---------------------------------------------------------------------------------------------
    def device(self, name: str, terminal_id: str = "", kind: str = "sberbank") -> dict[str, Any]:
        devices = self.data["devices"]
        if name not in devices:
            devices[name] = {
                "name": name,
                "kind": kind,
                "terminal_id": terminal_id or f"{10000000 + int(name) if name.isdigit() else 10000000}",
                "batch": 1,
                "last_settlement": self.now(),
                "transactions": [],
                "last": None,
                "busy": None,
            }
        return devices[name]

    def _next(self) -> int:
        self.data["seq"] += 1
        return self.data["seq"]

    def find(self, dev: dict[str, Any], uid: str = "", rrn: str = "", txn: str = "") -> dict[str, Any] | None:
        for tx in reversed(dev["transactions"]):
            if (uid and tx["uid"] == uid) or (not uid and (rrn or txn)
                                              and (not rrn or tx["rrn"] == rrn) and (not txn or tx["txn"] == txn)):
                return tx
        return None

    def refusal(self, dev: dict[str, Any], operation: str) -> str:
        """Sber refuses card operations after too long without settlement (4134)."""
        if operation in CARD_OPERATIONS and self.days_limit is not None:
            if self.now() - float(dev["last_settlement"]) > self.days_limit * SECONDS_PER_DAY:
                return "no_settlement"
        return ""

    # operations --------------------------------------------------------------------------------------------
    def sale(self, dev: dict[str, Any], op_id: str, amount: int, problem: str) -> Verdict:
        tx = self._transaction(dev, "sale", op_id, amount, problem)
        return self._verdict(tx, problem, "ОПЛАТА")

    def cancel(self, dev: dict[str, Any], op_id: str, amount: int, original: dict[str, Any] | None,
               problem: str) -> Verdict:
        local = self._return_problem(original, amount)
        if not local and original is not None and original["batch"] != dev["batch"]:
            local = "closed_batch"  # after the settlement only a refund can give the money back
        return self._return(dev, "cancel", op_id, amount, original, local or problem, "ОТМЕНА")

    def refund(self, dev: dict[str, Any], op_id: str, amount: int, original: dict[str, Any] | None,
               problem: str) -> Verdict:
        local = self._return_problem(original, amount)
        return self._return(dev, "refund", op_id, amount, original, local or problem, "ВОЗВРАТ")

    def reversal(self, dev: dict[str, Any], op_id: str, expected: dict[str, Any] | None, expected_given: bool,
                 problem: str) -> Verdict:
        last = self.find(dev, uid=dev["last"]) if dev["last"] else None
        if not problem:
            if expected_given and (expected is None or last is None or expected["uid"] != last["uid"]):
                problem = "not_last"
            elif last is None or last["state"] != "approved":
                problem = "nothing_to_reverse"
        amount = last["amount"] if last else 0
        state = "approved" if not problem else "failed"
        if not problem and last is not None:
            self._undo(dev, last)
        entry_tx = last or {"rrn": "", "amount": 0}
        self.log("reversal", dev, op_id, amount, entry_tx["rrn"], state)
        verdict = Verdict(state, problem, last)
        verdict.slip_lines = self._slip(dev, "АВАРИЙНАЯ ОТМЕНА", last, problem)
        return verdict

    def settlement(self, dev: dict[str, Any], op_id: str, problem: str) -> Verdict:
        totals = self.totals(dev)
        lines = [self.bank, "СВЕРКА ИТОГОВ", f"Терминал: {dev['terminal_id']}", f"Пакет: {dev['batch']}",
                 f"Дата: {self._stamp()}", f"Оплаты: {totals['sale_count']} на {format_rubles(totals['sale'])}",
                 f"Отмены и возвраты: {totals['return_count']} на {format_rubles(totals['returns'])}",
                 f"Итого: {format_rubles(totals['sale'] - totals['returns'])}"]
        state = "failed" if problem else "approved"
        self.log("settlement", dev, op_id, totals["sale"] - totals["returns"], "", state)
        if problem:
            return Verdict(state, problem, None, [self.bank, "СВЕРКА ИТОГОВ", "НЕ ВЫПОЛНЕНА"])
        dev["batch"] += 1
        dev["last_settlement"] = self.now()
        dev["last"] = None  # a settled operation can no longer be reversed
        return Verdict(state, "", None, [*lines, "ИТОГИ СОВПАЛИ"])

    def check(self, dev: dict[str, Any], op_id: str, problem: str, word: str = "check") -> Verdict:
        totals = self.totals(dev)
        state = "failed" if problem else "approved"
        self.log(word, dev, op_id, 0, "", state)
        lines = [self.bank, "ОТЧЁТ ТЕРМИНАЛА" if word == "report" else "ПРОВЕРКА СВЯЗИ",
                 f"Терминал: {dev['terminal_id']}", f"Пакет: {dev['batch']}",
                 f"Оплаты: {totals['sale_count']} на {format_rubles(totals['sale'])}",
                 f"Отмены и возвраты: {totals['return_count']} на {format_rubles(totals['returns'])}"]
        return Verdict(state, problem, None, lines if not problem else [self.bank, "НЕТ СВЯЗИ С БАНКОМ"])

    def totals(self, dev: dict[str, Any]) -> dict[str, int]:
        """Approved, not reversed operations of the current batch."""
        done = [tx for tx in dev["transactions"] if tx["batch"] == dev["batch"] and tx["state"] == "approved"]
        sales = [tx for tx in done if tx["kind"] == "sale"]
        returns = [tx for tx in done if tx["kind"] in ("cancel", "refund")]
        return {"sale_count": len(sales), "sale": sum(tx["amount"] for tx in sales),
                "return_count": len(returns), "returns": sum(tx["amount"] for tx in returns)}

    def log(self, operation: str, dev: dict[str, Any], op_id: str, amount: int, rrn: str, state: str,
            batch: int | None = None) -> None:
        self.data["journal"].append({
            "operation": operation, "device": dev["name"], "amount": format_rubles(amount), "rrn": rrn,
            "state": state, "batch": dev["batch"] if batch is None else batch, "id": op_id, "time": self.now_iso(),
        })

    def log_refusal(self, operation: str, dev: dict[str, Any], op_id: str, amount: int) -> None:
        self.log(operation, dev, op_id, amount, "", "failed")

    # internals ---------------------------------------------------------------------------------------------
    @staticmethod
    def _return_problem(original: dict[str, Any] | None, amount: int) -> str:
        if original is None:
            return "not_found"
        if original["kind"] != "sale" or original["state"] != "approved":
            return "not_sale"
        if amount > original["remaining"]:
            return "exceeds"
        return ""

    def _return(self, dev: dict[str, Any], kind: str, op_id: str, amount: int, original: dict[str, Any] | None,
                problem: str, title: str) -> Verdict:
        if problem in LOCAL_REFUSALS:  # refused by the terminal itself: no transaction, "last" unchanged
            self.log_refusal(kind, dev, op_id, amount)
            return Verdict("failed", problem, None, [self.bank, title, "ОТКАЗ"])
        tx = self._transaction(dev, kind, op_id, amount, problem, original)
        if tx["state"] == "approved" and original is not None:
            original["remaining"] -= amount
        return self._verdict(tx, problem, title)

    def _transaction(self, dev: dict[str, Any], kind: str, op_id: str, amount: int, problem: str,
                     original: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record one card operation that reached the terminal; it becomes the terminal's last one."""
        seq = self._next()
        state = "approved" if not problem else ("declined" if problem in DECLINES else "failed")
        tx = {
            "uid": uuid.uuid4().hex, "txn": str(seq), "rrn": f"{400000000000 + seq}" if not problem else "",
            "auth": f"{(seq * 7919) % 1000000:06d}" if not problem else "",
            "pan": (original or {}).get("pan") or f"220220******{1000 + seq % 9000}",
            "kind": kind, "id": op_id, "amount": amount, "remaining": amount if kind == "sale" else 0,
            "batch": dev["batch"], "state": state, "time": self.now_iso(),
            "original": original["uid"] if original else None, "device": dev["name"],
            "terminal_id": dev["terminal_id"],
        }
        dev["transactions"].append(tx)
        dev["last"] = tx["uid"]
        self.log(kind, dev, op_id, amount, tx["rrn"], state)
        return tx

    def _verdict(self, tx: dict[str, Any], problem: str, title: str) -> Verdict:
        dev = self.device(tx["device"])
        return Verdict(tx["state"], problem, tx, self._slip(dev, title, tx, problem))

    def _undo(self, dev: dict[str, Any], tx: dict[str, Any]) -> None:
        tx["state"] = "reversed"
        if tx["kind"] == "sale":
            tx["remaining"] = 0
        elif tx["original"]:
            original = self.find(dev, uid=tx["original"])
            if original is not None:
                original["remaining"] += tx["amount"]
        dev["last"] = None  # reversed: nothing left to reverse

    def _stamp(self) -> str:
        return self.local_now().strftime("%d.%m.%Y %H:%M")

    def _slip(self, dev: dict[str, Any], title: str, tx: dict[str, Any] | None, problem: str) -> list[str]:
        lines = [self.bank, title, f"Терминал: {dev['terminal_id']}", f"Дата: {self._stamp()}"]
        if tx is not None:
            lines += [f"Карта: {tx['pan']}", f"Сумма: {format_rubles(tx['amount'])} руб."]
            if tx["rrn"]:
                lines += [f"Код авторизации: {tx['auth']}", f"RRN: {tx['rrn']}"]
        lines.append("ОТКАЗ" if problem else "ОДОБРЕНО")
        return lines


# --- KKM Server -----------------------------------------------------------------------------------------------

ERRORS = {  # Sber-like texts; the client reads the code from the text
    "decline": "Отказ: операция отклонена банком (код ответа 05)",
    "insufficient_funds": "Недостаточно средств (код ответа 51)",
    "no_connection": "Нет связи с банком, операция не выполнена",
    "memory_full": "Ошибка 4130: память терминала заполнена, выполните сверку итогов",
    "no_settlement": "Ошибка 4134: слишком давно не было сверки итогов, выполните сверку итогов",
    "not_found": "Исходная операция не найдена",
    "not_sale": "Исходная операция не является одобренной оплатой",
    "closed_batch": "Отмена невозможна: операция уже прошла сверку итогов, выполните возврат",
    "exceeds": "Сумма больше остатка по исходной операции",
    "not_last": "Операция не является последней на терминале: аварийная отмена невозможна",
    "nothing_to_reverse": "Нет одобренной операции для аварийной отмены",
    "settlement_fails": "Сверка итогов не выполнена: ошибка обмена с банком",
    "reversal_refused": "Аварийная отмена отклонена терминалом",
}

COMMANDS = {
    "PayByPaymentCard": "sale",
    "CancelPaymentByPaymentCard": "cancel",
    "ReturnPaymentByPaymentCard": "refund",
    "EmergencyReversal": "reversal",
    "Settlement": "settlement",
    "TerminalReport": "check",
}


class _Refused(Exception):
    """A request KKM Server refuses before anything runs (not stored under its IdCommand)."""


class CardTerminalEmulator(EmulatorApp):
    """What the KKM Server and DualConnector emulators share: the book, its file, the lock, the control API."""

    bank = "ПАО СБЕРБАНК"
    faults_known = FAULTS

    def __init__(self, state_path: str | None, card_delay: float, days_without_settlement_limit: int | None,
                 tz: str = DEFAULT_TZ):
        super().__init__()
        self.tz = tz  # the venue's time zone (an IANA name): the slips' times
        self.faults = FaultQueue(self.faults_known)
        self._file = JsonStateFile(state_path)
        self._lock = threading.RLock()  # every read and write of the book; never held during card_delay
        self._initial: dict[str, Any] = {"card_delay": card_delay,
                                         "days_without_settlement_limit": days_without_settlement_limit}
        self.card_delay = card_delay
        self.book = TerminalBook(self._load(), self.bank, days_without_settlement_limit, tz)

    # --- state --------------------------------------------------------------------------------------------
    def _load(self) -> dict[str, Any] | None:
        data = self._file.load()
        if not data:
            return None
        for dev in data["devices"].values():  # a restart interrupts whatever was running
            dev["busy"] = None
        return self._recover(data)

    def _recover(self, data: dict[str, Any]) -> dict[str, Any]:
        """Hook: fix up protocol-specific state after a restart."""
        return data

    def _save(self) -> None:
        self._file.save(self.book.data)

    # --- EmulatorApp ----------------------------------------------------------------------------------------
    def journal(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self.book.data["journal"]]

    def reset(self) -> None:
        """Factory-fresh: terminals, journal, clock and config as constructed."""
        with self._lock:
            self.card_delay = self._initial["card_delay"]
            self.book = TerminalBook(None, self.bank, self._initial["days_without_settlement_limit"], self.tz)
            self._save()

    def control(self, request: Request, action: str) -> Response | None:
        if action == "config":
            if request.method == "POST":
                self._configure(request.json())
            return json_response({"card_delay": self.card_delay,
                                  "days_without_settlement_limit": self.book.days_limit})
        if action == "clock":
            with self._lock:
                if request.method == "POST":
                    self.book.advance(request.json().get("advance_seconds", 0))
                    self._save()
                return json_response({"now": self.book.now_iso(), "offset": self.book.data["clock_offset"]})
        return None

    def _configure(self, data: dict[str, Any]) -> None:
        if "card_delay" in data:
            delay = data["card_delay"]
            if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
                raise ValueError("card_delay must be a non-negative number of seconds")
            self.card_delay = float(delay)
        if "days_without_settlement_limit" in data:
            limit = data["days_without_settlement_limit"]
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
                raise ValueError("days_without_settlement_limit must be a non-negative integer or null")
            self.book.days_limit = limit

    @staticmethod
    def delivery(fault: dict[str, Any] | None) -> Response | None:
        """The answer-level faults: hang until the client gives up, or drop the connection."""
        if fault and fault["fault"] == "timeout":
            return never_answers()
        if fault and fault["fault"] == "lost_response":
            return lost_answer()
        return None


class KkmServerEmulator(CardTerminalEmulator):
    name = "kkm-server-emulator"

    def __init__(
        self,
        state_path: str | None = None,
        card_delay: float = 0.0,
        users: dict[str, str] | None = None,
        days_without_settlement_limit: int = 5,
        tz: str = DEFAULT_TZ,
    ):
        self.users = dict(users or {})
        self._restarts = 0  # POST /_emulator/restart: answers of commands started before it are never sent
        super().__init__(state_path, card_delay, days_without_settlement_limit, tz)

    def control(self, request: Request, action: str) -> Response | None:
        if action == "restart" and request.method == "POST":
            data = request.json() if request.body else {}
            return json_response(self.restart(keep_results=data.get("keep_results", True) is not False))
        return super().control(request, action)

    def restart(self, keep_results: bool = True) -> dict[str, Any]:
        """KKM Server (the service, or the kiosk's PC) restarts: the commands it was running are forgotten
        (their answers never come), and so are the stored results unless ``keep_results``. The terminals
        themselves keep their books: a guest at the PIN pad finishes the payment on the terminal."""
        with self._lock:
            self._restarts += 1
            commands = self._commands
            kept = {k: c for k, c in commands.items() if keep_results and c["status"] != 1}
            commands.clear()
            commands.update(kept)
            self._save()
            return {"restarted": True, "kept_results": len(kept)}

    def _recover(self, data: dict[str, Any]) -> dict[str, Any]:
        for command in data.setdefault("commands", {}).values():
            if command["status"] == 1:
                command["status"] = 2
                command["response"].update(Status=2, Error="Операция прервана: перезапуск KKM Server")
        return data

    @property
    def _commands(self) -> dict[str, Any]:
        return self.book.data.setdefault("commands", {})

    # --- protocol -------------------------------------------------------------------------------------------
    def handle_protocol(self, request: Request) -> Response:
        if request.path.rstrip("/") != "/Execute" or request.method != "POST":
            return json_response({"Status": 2, "Error": f"Нет такого метода: {request.method} {request.path}"}, 404)
        if self.users and not self._authorized(request):
            return Response(401, "Требуется авторизация".encode(), {
                "WWW-Authenticate": 'Basic realm="KKM Server"', "Content-Type": "text/plain; charset=utf-8"})
        try:
            body = decode_json(request.body)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            return self._answer({"Status": 2, "Error": "Ошибка разбора JSON запроса"})
        command = str(body.get("Command") or "")
        if command == "GetRezult":
            return self._get_rezult(body)
        try:
            return self._execute(command, body)
        except _Refused as refused:
            return self._answer({"Command": command, "IdCommand": body.get("IdCommand"), "Status": 2,
                                 "Error": str(refused)})

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected = self.users.get(user)
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    def _execute(self, command: str, body: dict[str, Any]) -> Response:
        operation = COMMANDS.get(command)
        if operation is None:
            raise _Refused(f"Неизвестная команда: {command!r}")
        if operation == "check" and body.get("Detailed"):
            operation = "report"
        id_command = self._id_command(body)
        device_name = self._device_name(body.get("NumDevice", 0))
        amount = self._amount(body) if operation in CARD_OPERATIONS else 0
        fingerprint = encode_json([command, device_name, amount, str(body.get("UniversalID") or ""),
                                   str(body.get("ReceiptNumber") or ""), bool(body.get("Detailed"))])
        with self._lock:
            book = self.book
            stored = self._commands.get(id_command)
            if stored is not None:
                return self._repeat(stored, fingerprint, command, id_command)
            dev = book.device(device_name)
            if dev["busy"]:
                raise _Refused(f"Терминал занят другой операцией ({dev['busy']})")
            fault = self.faults.take(device_name, FAULT_TARGETS[operation], operation)
            refusal = book.refusal(dev, operation)
            self._commands[id_command] = {"fingerprint": fingerprint, "device": device_name, "status": 1,
                                          "response": self._running(command, id_command)}
            dev["busy"] = id_command
            started_in = self._restarts
            self._save()
        if not refusal:
            # the guest at the PIN pad; the lock is free meanwhile
            sleep_unless_stopping(guest_seconds(operation, fault, self.card_delay))
        with self._lock:
            if self.book is not book:  # reset while the guest was at the PIN pad: that terminal is gone
                raise _Refused("Операция прервана: эмулятор сброшен")
            try:
                response = self._perform(operation, command, id_command, device_name, body, amount, fault, refusal)
                if self._restarts == started_in:
                    self._commands[id_command].update(status=response["Status"], response=response)
            finally:
                dev["busy"] = None
                self._save()
        if self._restarts != started_in:
            # KKM Server restarted meanwhile: the terminal finished the operation, but the service that
            # would answer (and remember the result) is a new one.
            return lost_answer()
        return self._deliver(response, fault)

    def _perform(self, operation: str, command: str, id_command: str, device_name: str, body: dict[str, Any],
                 amount: int, fault: dict[str, Any] | None, refusal: str) -> dict[str, Any]:
        dev = self.book.device(device_name)
        if refusal:
            self.book.log_refusal(operation, dev, id_command, amount)
            verdict = Verdict("failed", refusal)
        else:
            verdict = self._run_operation(operation, dev, id_command, body, amount, fault_problem(operation, fault))
        response: dict[str, Any] = {"Command": command, "IdCommand": id_command, "NumDevice": int(device_name),
                                    "Status": 0 if verdict.approved else 2,
                                    "Error": ERRORS.get(verdict.problem, verdict.problem), "Warning": "",
                                    "Slip": "\n".join(verdict.slip_lines)}
        tx = verdict.tx
        if operation in CARD_OPERATIONS or operation == "reversal":
            response["Amount"] = format_rubles(tx["amount"] if tx else amount)
        if tx is not None and operation in CARD_OPERATIONS:
            response.update(UniversalID=tx["uid"] if verdict.approved else "", RRNCode=tx["rrn"],
                            AuthorizationCode=tx["auth"], CardNumber=tx["pan"])
            if operation == "sale":
                response["ReceiptNumber"] = str(body.get("ReceiptNumber") or "")
        elif tx is not None and verdict.approved:  # a reversal names what it reversed
            response.update(UniversalID=tx["uid"], RRNCode=tx["rrn"], CardNumber=tx["pan"])
        return response

    def _run_operation(self, operation: str, dev: dict[str, Any], id_command: str, body: dict[str, Any],
                       amount: int, problem: str) -> Verdict:
        book = self.book
        if operation == "sale":
            return book.sale(dev, id_command, amount, problem)
        if operation in ("cancel", "refund"):
            original = book.find(dev, uid=str(body.get("UniversalID") or "")) if body.get("UniversalID") else None
            return getattr(book, operation)(dev, id_command, amount, original, problem)
        if operation == "reversal":
            uid = str(body.get("UniversalID") or "")
            return book.reversal(dev, id_command, book.find(dev, uid=uid) if uid else None, bool(uid), problem)
        if operation == "settlement":
            return book.settlement(dev, id_command, problem)
        return book.check(dev, id_command, problem, word=operation)

    def _repeat(self, stored: dict[str, Any], fingerprint: str, command: str, id_command: str) -> Response:
        """Idempotency: the same command again gets the stored answer; another one under that id is refused."""
        if stored["fingerprint"] != fingerprint:
            raise _Refused(f"IdCommand {id_command} уже использован для другой команды")
        return self._answer(stored["response"])

    def _get_rezult(self, body: dict[str, Any]) -> Response:
        id_command = str(body.get("IdCommand") or "")
        with self._lock:
            stored = self._commands.get(id_command)
            fault = self.faults.take(stored["device"] if stored else None, FAULT_TARGETS["status"], "status")
            if stored is None:
                answer = {"Command": "GetRezult", "IdCommand": id_command, "Status": 3,
                          "Error": "Команда с таким IdCommand не найдена"}
            else:
                answer = {"Command": "GetRezult", "IdCommand": id_command, "Status": stored["status"],
                          "Error": stored["response"].get("Error", ""), "Rezult": dict(stored["response"])}
        return self._deliver(answer, fault)

    # --- helpers --------------------------------------------------------------------------------------------
    @staticmethod
    def _id_command(body: dict[str, Any]) -> str:
        id_command = body.get("IdCommand")
        if not isinstance(id_command, str) or not id_command or len(id_command) > MAX_ID_COMMAND:
            raise _Refused(f"IdCommand обязателен, не длиннее {MAX_ID_COMMAND} символов")
        return id_command

    @staticmethod
    def _device_name(num_device: Any) -> str:
        if isinstance(num_device, bool) or not isinstance(num_device, int) or num_device < 0:
            raise _Refused(f"Неверный NumDevice: {num_device!r}")
        return str(num_device or 1)  # 0 = the first device of that kind

    @staticmethod
    def _amount(body: dict[str, Any]) -> int:
        raw: Any = body.get("Amount")  # any JSON: rubles_to_kopecks refuses what is not an amount (None too)
        try:
            amount = rubles_to_kopecks(raw)
        except InvalidRequest as exc:
            raise _Refused(f"Неверная сумма: {body.get('Amount')!r}") from exc
        if amount <= 0:
            raise _Refused("Сумма должна быть больше нуля")
        return amount

    @staticmethod
    def _running(command: str, id_command: str) -> dict[str, Any]:
        return {"Command": command, "IdCommand": id_command, "Status": 1, "Error": "",
                "Warning": "Операция выполняется"}

    def _deliver(self, answer: dict[str, Any], fault: dict[str, Any] | None) -> Response:
        return self.delivery(fault) or self._answer(answer)

    @staticmethod
    def _answer(answer: dict[str, Any]) -> Response:
        """Amounts are stored as "189.00" strings (JSON state) and sent as the number 189.00."""
        wire = _with_decimal_amounts(answer)
        return Response(200, encode_json(wire).encode("utf-8"), {"Content-Type": "application/json; charset=utf-8"})


def _with_decimal_amounts(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (Decimal(v) if k == "Amount" and isinstance(v, str) and v else _with_decimal_amounts(v))
                for k, v in value.items()}
    return value
