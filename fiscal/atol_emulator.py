"""Emulator of ATOL Web Server 10.7+ (``/api/v2``) in front of one or more ATOL fiscal registers.

It speaks the real HTTP protocol (see docs: PROTOCOLS.md §1) so that the ATOL client is tested exactly as it
runs against a kiosk: tasks are queued with ``POST /api/v2/requests`` and executed asynchronously, one at a
time per register, by a background worker thread per ``deviceID``; clients poll ``GET /api/v2/requests/{uuid}``.

Each ``deviceID`` is its own register (created on first use) with its own fiscal storage (FN) number,
document counter, shift, receipt counter and shift totals. Everything, including every task and its result,
is kept in a JSON state file so that a restarted emulator still answers for earlier uuids, like the real
server's database.

Control API (besides the common ``/_emulator/faults``, ``/journal``, ``/reset``):

* ``GET|POST /_emulator/clock`` ``{"advance_seconds": N}``: the registers' clock is real time plus an offset.
* ``POST /_emulator/paper`` ``{"present": bool, "device": optional}``: paper replaced / run out.
* ``POST /_emulator/ofd`` ``{"online": bool, "device": optional}``: stop / resume sending documents to the OFD.
* ``GET /_emulator/devices``: a summary of every register (FN number, last FD, shift, paper).
* ``GET /_emulator/prints``: non-document printouts (nonFiscal slips, copies, reprints, continued prints).
* ``GET /_emulator/marking``: per register, the marking code under validation and the codes accepted in this shift.
* ``POST /_emulator/registration`` ``{"device": "K1", "autoMode": bool, "machineNumber": "...",
  "paymentsAddress": "...", "paymentsPlace": "..."}`` (each optional): how the register is registered, as
  ``getRegistrationInfo`` reports it; answers the registration's ``device`` block. A new register is registered
  for an automatic device (``autoMode``, machine number ``KIOSK-<deviceID>``), as a kiosk's register is.

Receipts of a register registered in automatic mode must carry ``machineNumber`` (FFD tag 1036): one without it
is refused with error 501 before anything is made. That is a modelling choice: whether a real register fills
1036 from its registration when the task omits it is unconfirmed (PROTOCOLS.md §1), so the emulator takes the
strict reading and every client must send it. The journal entry of each receipt carries ``machineNumber``,
``paymentsAddress`` and ``paymentsPlace`` at top level as the task sent them (None when it did not).

Marked goods (PROTOCOLS.md §4): the FN validates one marking code at a time (``beginMarkingCodeValidation`` →
``getMarkingCodeValidationStatus`` → ``acceptMarkingCode`` / ``declineMarkingCode``; a second begin while a code is
held is driver error 401); accepted codes are kept per register until the shift closes, and a receipt position
with ``imcParams`` whose code was not accepted in this shift for the same planned status is refused with driver
error 420 «КМ не проверен в ФН». A closed receipt uses up its codes' validations (a code is validated again before
it goes into another receipt) and tells the marking operator (``marking_operator``, any object with
``code_status``, ``mark_sold``, ``mark_returned``; by default an in-memory table) what it sold or took back.
Receipt journal entries keep every position as sent, ``imcParams`` and ``industryInfo`` included.

Plain Python, no Django.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import queue
import random
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Protocol

from core.emulator_http import (
    EmulatorApp,
    JsonStateFile,
    Request,
    Response,
    json_response,
    lost_answer,
)
from core.gs1 import InvalidMarkingCode, parse_code

# --- protocol vocabulary ------------------------------------------------------------------------------

# Tasks that make a fiscal document; the server refuses a request carrying more than one of them.
FISCAL_TASKS = frozenset(
    {"sell", "sellReturn", "buy", "buyReturn", "sellCorrection", "sellReturnCorrection", "openShift", "closeShift"}
)
# Receipt kinds and their operation type (FFD tag 1054).
RECEIPT_OPERATIONS = {"sell": 1, "sellReturn": 2, "buy": 3, "buyReturn": 4}
CORRECTION_OPERATIONS = {"sellCorrection": 1, "sellReturnCorrection": 2}
# Tasks that need the printer (and therefore paper) without making a fiscal document.
PRINT_TASKS = frozenset({"reportX", "nonFiscal", "printLastReceiptCopy", "printFnDocument", "continuePrint"})
QUERY_TASKS = frozenset(
    {
        "getShiftStatus", "getDeviceStatus", "getFnStatus", "getFnDocument", "getShiftTotals",
        "ofdExchangeStatus", "getRegistrationInfo",
    }
)
SYNC_OPERATIONS = {
    "queryShiftStatus": "getShiftStatus",
    "queryDeviceStatus": "getDeviceStatus",
    "queryFnStatus": "getFnStatus",
}

VAT_TYPES = frozenset(
    {"none", "vat0", "vat5", "vat7", "vat10", "vat20", "vat22", "vat105", "vat107", "vat110", "vat120", "vat122"}
)
PAYMENT_TYPES = ("cash", "electronically", "prepaid", "credit", "other")
TAXATION_TYPES = frozenset({"osn", "usnIncome", "usnIncomeOutcome", "esn", "patent"})
PAYMENT_METHODS = frozenset(
    {"fullPrepayment", "prepayment", "advance", "fullPayment", "partialPayment", "credit", "creditPayment"}
)
PAYMENT_OBJECTS = frozenset(
    {
        "commodity", "excise", "job", "service", "gamblingBet", "gamblingPrize", "lottery", "lotteryPrize",
        "intellectualActivity", "payment", "agentCommission", "composite", "another", "proprietaryLaw",
        "nonOperatingIncome", "otherPayments", "insuranceContributions", "merchantFee", "resortFee", "deposit",
        "expense", "pensionInsuranceIP", "pensionInsurance", "medicalInsuranceIP", "medicalInsurance",
        "socialInsurance", "casinoPayment", "fundsIssuance", "exciseWithoutMarking", "exciseWithMarking",
        "commodityWithoutMarking", "commodityWithMarking",
    }
)
MEASUREMENT_UNITS = frozenset(
    {
        "piece", "gram", "kilogram", "ton", "centimeter", "decimeter", "meter", "squareCentimeter",
        "squareDecimeter", "squareMeter", "milliliter", "liter", "cubicMeter", "kilowattHour", "gkal", "day",
        "hour", "minute", "second", "kilobyte", "megabyte", "gigabyte", "terabyte", "otherUnits",
    }
)
MAX_NAME_LENGTH = 128  # FFD 1.2 tag 1030
# Requisites of an automatic device in a receipt task (FFD tags 1036, 1009, 1187), top-level strings.
REQUISITES = ("machineNumber", "paymentsAddress", "paymentsPlace")

# Marked goods (FFD 1.2, PROTOCOLS.md §4): the register-side validation tasks and the values of a code's params.
MARKING_TASKS = frozenset(
    {
        "beginMarkingCodeValidation", "getMarkingCodeValidationStatus", "acceptMarkingCode", "declineMarkingCode",
        "cancelMarkingCodeValidation", "clearMarkingCodeValidationResult", "pingIsm", "ismExchangeStatus",
    }
)
IMC_TYPES = frozenset(
    {
        "auto", "imcUnrecognized", "imcShort", "imcFmVerifyCode88", "imcVerifyCode44", "imcFmVerifyCode44",
        "imcVerifyCode4",
    }
)
SALE_STATUSES = frozenset({"itemPieceSold", "itemDryForSale"})
RETURN_STATUSES = frozenset({"itemPieceReturn", "itemDryReturn"})
ESTIMATED_STATUSES = SALE_STATUSES | RETURN_STATUSES | {"itemStatusUnchanged"}
CHECK_FLAGS = ("imcCheckFlag", "imcCheckResult", "imcStatusInfo", "imcEstimatedStatusCorrect", "ecrStandAloneFlag")
INDUSTRY_FIELDS = ("fois", "date", "number", "industryAttribute")
DEFAULT_MARKING_DELAY = 0.05  # seconds until the marking operator's answer to one code is "ready"

FINAL_STATUSES = frozenset({"ready", "error", "interrupted", "canceled"})
FAILED_STATUSES = frozenset({"error", "interrupted"})

FAULTS: dict[str, str] = {
    "paper_out": "нет бумаги: следующий фискальный документ не начат (ошибка 44), ККТ не печатает до paper_in",
    "paper_out_after_write": "бумага кончилась после записи в ФН: документ сделан, warnings.notPrinted",
    "cover_open": "открыта крышка: следующий документ отклонён (ошибка 45)",
    "no_connection": "нет связи с ККТ: следующий документ отклонён (ошибка 2), ничего не сделано",
    "blocked_then_ready": "исход документа неизвестен (blocked), через seconds он оказывается сделанным (ready)",
    "blocked_then_error": "исход документа неизвестен (blocked), через seconds он оказывается не сделанным (error)",
    "lost_post_answer": "задача принята, но ответ на POST /api/v2/requests потерян",
    "lost_get_answer": "ответ на GET /api/v2/requests/{uuid} потерян",
    "fn_error": "ошибка фискального накопителя: документ отклонён",
    "shift_expires_before_next_sell": "часы ККТ переходят за expiredTime открытой смены прямо перед следующим "
                                      "чеком прихода: чек отклонён с ошибкой 68 (смена превысила 24 часа)",
    "ism_unreachable": "ОИСМ недоступен: следующая проверка КМ без ответа оператора маркировки (ошибка 411), "
                       "КМ принимается только по проверке ФН (ecrStandAloneFlag)",
    "code_sold": "оператор маркировки отвечает на следующую проверку КМ, что код уже выбыл (продан)",
    "code_blocked": "оператор маркировки отвечает на следующую проверку КМ, что оборот кода приостановлен "
                    "(заблокирован)",
}
# Faults taken by the next beginMarkingCodeValidation (the operator's answer to that one code).
MARKING_FAULTS = frozenset({"ism_unreachable", "code_sold", "code_blocked"})
# Faults consumed by the device worker when it starts a fiscal sub-task (the rest hit HTTP answers).
DEVICE_FAULTS = (
    frozenset(FAULTS) - {"lost_post_answer", "lost_get_answer", "shift_expires_before_next_sell"} - MARKING_FAULTS
)
# Faults that wait for a particular kind of document (any other task leaves them armed).
SELL_FAULTS = frozenset({"shift_expires_before_next_sell"})
BLOCKING_FAULTS = frozenset({"blocked_then_ready", "blocked_then_error"})
# Faults that end the task at once: the register never starts printing.
IMMEDIATE_FAULTS = frozenset({"paper_out", "cover_open", "no_connection", "fn_error"})
DEFAULT_BLOCKED_SECONDS = 1.0

REGISTER_TZ = timezone(timedelta(hours=3))  # Moscow time, as the registers in the venues are set
SHIFT_LENGTH = timedelta(hours=24)
OFD_SEND_SECONDS = 3.0  # documents older than this are considered sent to the OFD (while it is online)
OFD_TIMEOUT = timedelta(days=30)  # the FN warns (and the real one blocks) after 30 days without the OFD
FNS_URL = "www.nalog.gov.ru"
SERVER_VERSION = "10.10.6.0"
DRIVER_VERSION = "10.10.6.0"
KOPECK = Decimal("0.01")
TOLERANCE = Decimal("0.005")


# --- driver errors ------------------------------------------------------------------------------------


class DriverError(Exception):
    """A driver error code with its description, as the result entry reports it."""

    def __init__(self, code: int, description: str):
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


OK = (0, "Ошибок нет")
NO_CONNECTION = (2, "Нет связи")
NO_DATA = (28, "Запрошенные данные отсутствуют")
NO_PAPER = (44, "Нет бумаги")
COVER_OPEN = (45, "Открыта крышка")
NOT_PAID = (66, "Чек оплачен не полностью")
SHIFT_EXPIRED = (68, "Смена превысила 24 часа")
SHIFT_CLOSED = (73, "Смена закрыта - операция невозможна")
SHIFT_OPEN = (83, "Смена открыта - операция невозможна")
FN_ERROR = (119, "Ошибка ФН")
INTERNAL = (6, "Внутренняя ошибка эмулятора")
INVALID_TASK = 501
INTERRUPTED = (502, "Задание прервано из-за предыдущих ошибок")
# Marking errors of the driver (libfptr LIBFPTR_ERROR_MARKING_CODE_VALIDATION_IN_PROGRESS = 401,
# LIBFPTR_ERROR_INVALID_STATE = 410, LIBFPTR_ERROR_OFD_EXCHANGE = 411, LIBFPTR_ERROR_MARK_NOT_CHECKED = 420), with
# the driver's texts, as published in the libfptr error enum (e.g. github.com/ExLuzZziVo/KKTServiceLib,
# KKTServiceLib.Atol.Types.Enums.KKTErrorType) and ATOL's JSON task scripts (driverErrorObject adds "error").
MARK_VALIDATION_IN_PROGRESS = (401, "Процедура проверки КМ уже запущена")
MARK_INVALID_STATE = (410, "Неверное состояние")
MARK_EXCHANGE_ERROR = (411, "Ошибка обмена с сервером ОФД или ИСМ")
MARK_NOT_CHECKED = (420, "КМ не проверен в ФН")


def fail(error: tuple[int, str]) -> DriverError:
    return DriverError(*error)


def invalid(field_path: str, reason: str) -> DriverError:
    return DriverError(INVALID_TASK, f'Некорректное значение поля "{field_path}" ({reason})')


def missing(field_path: str) -> DriverError:
    return DriverError(INVALID_TASK, f'Отсутствует обязательное поле "{field_path}"')


# --- task validation (the driver checks the JSON before touching the register) --------------------------


@dataclass
class Receipt:
    """What a validated receipt changes in the register: its total and money by payment type."""

    total: Decimal
    payments: dict[str, Decimal] = field(default_factory=dict)


def _number(value: Any, field_path: str) -> Decimal:
    # bool is an int in Python but never a number in the driver's JSON.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(field_path, "ожидается число")
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite():
        raise invalid(field_path, "ожидается число")
    return number


def _required(obj: dict[str, Any], key: str, path: str) -> Any:
    if key not in obj or obj[key] is None:
        raise missing(f"{path}{key}")
    return obj[key]


def _optional_choice(obj: dict[str, Any], key: str, path: str, choices: frozenset[str]) -> None:
    if key in obj and obj[key] not in choices:
        raise invalid(f"{path}{key}", f"неизвестное значение {obj[key]!r}")


def _validate_position(item: dict[str, Any], path: str) -> Decimal:
    """Checks one ``position`` item; returns its amount."""
    name = _required(item, "name", path)
    if not isinstance(name, str) or not name.strip():
        raise invalid(f"{path}name", "ожидается непустая строка")
    if len(name) > MAX_NAME_LENGTH:
        raise invalid(f"{path}name", f"длина больше {MAX_NAME_LENGTH} символов")
    price = _number(_required(item, "price", path), f"{path}price")
    quantity = _number(_required(item, "quantity", path), f"{path}quantity")
    amount = _number(_required(item, "amount", path), f"{path}amount")
    if price < 0:
        raise invalid(f"{path}price", "отрицательная цена")
    if quantity <= 0:
        raise invalid(f"{path}quantity", "количество должно быть больше нуля")
    if amount < 0:
        raise invalid(f"{path}amount", "отрицательная сумма")
    tax = _required(item, "tax", path)
    if not isinstance(tax, dict):
        raise invalid(f"{path}tax", "ожидается объект")
    tax_type = _required(tax, "type", f"{path}tax.")
    if tax_type not in VAT_TYPES:
        raise invalid(f"{path}tax.type", f"неизвестная ставка НДС {tax_type!r}")
    _optional_choice(item, "paymentMethod", path, PAYMENT_METHODS)
    _optional_choice(item, "paymentObject", path, PAYMENT_OBJECTS)
    unit = item.get("measurementUnit")
    # FFD 1.2 allows a unit name or its numeric code (tag 2108).
    if unit is not None and not (
        unit in MEASUREMENT_UNITS or (isinstance(unit, int) and not isinstance(unit, bool) and 0 <= unit <= 255)
    ):
        raise invalid(f"{path}measurementUnit", f"неизвестная единица {unit!r}")
    _validate_imc_params(item, path)
    return amount


def _validate_items(items: Any) -> Decimal:
    """Checks the ``items`` array; returns the sum of the positions' amounts."""
    if not isinstance(items, list):
        raise invalid("items", "ожидается массив")
    total = Decimal(0)
    positions = 0
    for index, item in enumerate(items):
        path = f"items[{index}]."
        if not isinstance(item, dict):
            raise invalid(f"items[{index}]", "ожидается объект")
        kind = item.get("type")
        if kind == "text":  # printed lines inside a receipt are allowed and carry no money
            if not isinstance(item.get("text"), str):
                raise invalid(f"{path}text", "ожидается строка")
            continue
        if kind != "position":
            raise invalid(f"{path}type", f"неизвестный тип элемента {kind!r}")
        total += _validate_position(item, path)
        positions += 1
    if positions == 0:
        raise DriverError(INVALID_TASK, "Чек не содержит ни одной позиции")
    return total.quantize(KOPECK)


def _validate_payments(payments: Any) -> dict[str, Decimal]:
    if not isinstance(payments, list) or not payments:
        raise invalid("payments", "ожидается непустой массив")
    by_type: dict[str, Decimal] = {}
    for index, payment in enumerate(payments):
        path = f"payments[{index}]."
        if not isinstance(payment, dict):
            raise invalid(f"payments[{index}]", "ожидается объект")
        kind = _required(payment, "type", path)
        if kind not in PAYMENT_TYPES:
            raise invalid(f"{path}type", f"неизвестный тип оплаты {kind!r}")
        amount = _number(_required(payment, "sum", path), f"{path}sum")
        if amount < 0:
            raise invalid(f"{path}sum", "отрицательная сумма")
        by_type[kind] = by_type.get(kind, Decimal(0)) + amount
    return by_type


def _settle(total: Decimal, paid: dict[str, Decimal]) -> dict[str, Decimal]:
    """Applies the register's payment rules; returns the money kept by payment type (change given in cash)."""
    paid_sum = sum(paid.values(), Decimal(0))
    if paid_sum + TOLERANCE < total:
        raise fail(NOT_PAID)
    non_cash = paid_sum - paid.get("cash", Decimal(0))
    if non_cash > total + TOLERANCE:
        raise DriverError(INVALID_TASK, "Сумма безналичных оплат превышает сумму чека")
    kept = dict(paid)
    change = paid_sum - total
    if change > 0:
        kept["cash"] = kept.get("cash", Decimal(0)) - change
    return {kind: amount.quantize(KOPECK) for kind, amount in kept.items()}


def _validate_common(task: dict[str, Any]) -> None:
    _optional_choice(task, "taxationType", "", TAXATION_TYPES)
    if "operator" in task and not isinstance(task["operator"], dict):
        raise invalid("operator", "ожидается объект")
    if "clientInfo" in task and not isinstance(task["clientInfo"], dict):
        raise invalid("clientInfo", "ожидается объект")


def validate_receipt(task: dict[str, Any]) -> Receipt:
    """sell / sellReturn / buy / buyReturn, checked strictly like the driver does."""
    _validate_common(task)
    items_total = _validate_items(_required(task, "items", ""))
    paid = _validate_payments(_required(task, "payments", ""))
    if "total" in task:
        declared = _number(task["total"], "total")
        if abs(declared - items_total) > TOLERANCE:
            raise invalid("total", f"итог {declared} не равен сумме позиций {items_total}")
    return Receipt(items_total, _settle(items_total, paid))


CORRECTION_TYPES = frozenset({"self", "instruction"})  # FFD tag 1173: 0 = самостоятельно, 1 = по предписанию
CORRECTION_BASIS = ("correctionType", "correctionBaseDate", "correctionBaseNumber")


def validate_correction(task: dict[str, Any]) -> Receipt:
    """sellCorrection / sellReturnCorrection of FFD 1.2: positions and payments exactly like a receipt, plus
    the basis (tag 1174): ``correctionType`` (1173), ``correctionBaseDate`` (1178, the date of the settlement
    corrected, "YYYY.MM.DD" as the driver's JSON writes dates) and, for an instruction of the tax service,
    ``correctionBaseNumber`` (1179, the instruction's number)."""
    receipt = validate_receipt(task)
    kind = _required(task, "correctionType", "")
    if kind not in CORRECTION_TYPES:
        raise invalid("correctionType", f"ожидается self или instruction, получено {kind!r}")
    base_date = _required(task, "correctionBaseDate", "")
    try:
        datetime.strptime(str(base_date), "%Y.%m.%d")
    except ValueError:
        raise invalid("correctionBaseDate", f"ожидается дата ГГГГ.ММ.ДД, получено {base_date!r}") from None
    number = task.get("correctionBaseNumber")
    if kind == "instruction" and (not isinstance(number, str) or not number.strip()):
        raise invalid("correctionBaseNumber", "для коррекции по предписанию нужен номер предписания")
    return receipt


def validate_non_fiscal(task: dict[str, Any]) -> list[str]:
    """Returns the printed text lines."""
    items = _required(task, "items", "")
    if not isinstance(items, list):
        raise invalid("items", "ожидается массив")
    lines = []
    for index, item in enumerate(items):
        path = f"items[{index}]."
        if not isinstance(item, dict):
            raise invalid(f"items[{index}]", "ожидается объект")
        if item.get("type") != "text":
            continue  # barcodes and pictures print too; the emulator keeps only the text
        text = _required(item, "text", path)
        if not isinstance(text, str):
            raise invalid(f"{path}text", "ожидается строка")
        _optional_choice(item, "alignment", path, frozenset({"left", "center", "right"}))
        lines.append(text)
    return lines


def document_number_param(task: dict[str, Any]) -> int:
    number = _required(task, "fiscalDocumentNumber", "")
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise invalid("fiscalDocumentNumber", "ожидается целое положительное число")
    return number


# --- money and time helpers ---------------------------------------------------------------------------


def money(value: Decimal | str) -> float:
    """A JSON number in rubles, rounded to kopecks (amounts are Decimal inside)."""
    return float(Decimal(value).quantize(KOPECK))


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, REGISTER_TZ).replace(microsecond=0).isoformat()


def _empty_counter() -> dict[str, Any]:
    return {"count": 0, "sum": "0", "payments": {kind: "0" for kind in PAYMENT_TYPES}}


def _empty_totals() -> dict[str, Any]:
    return {kind: _empty_counter() for kind in (*RECEIPT_OPERATIONS, *CORRECTION_OPERATIONS)}


def _counter_view(counter: dict[str, Any]) -> dict[str, Any]:
    return {
        "count": counter["count"],
        "sum": money(counter["sum"]),
        "payments": {kind: money(amount) for kind, amount in counter["payments"].items()},
    }


# --- one register ---------------------------------------------------------------------------------------


class Register:
    """One fiscal register with its FN, working on a plain dict that lives in the emulator's JSON state.

    Callers hold the emulator's lock; the methods only read and change the dict.
    """

    def __init__(self, data: dict[str, Any], rng: random.Random):
        self.data = data
        self.rng = rng

    @classmethod
    def new(cls, device_id: str, rng: random.Random, now: float) -> Register:
        data = {
            "id": device_id,
            "fnNumber": "99" + "".join(rng.choice("0123456789") for _ in range(14)),
            "registrationNumber": "".join(rng.choice("0123456789") for _ in range(10)) + "052011",
            "serialNumber": "00106" + "".join(rng.choice("0123456789") for _ in range(9)),
            "lastFd": 0,
            "paperPresent": True,
            "ofdOnline": True,
            "shift": {"number": 0, "state": "closed", "openedAt": None, "receipts": 0, "totals": _empty_totals()},
            "documents": {},
            "lastReceiptFd": None,
            "notPrintedFd": None,
            "tasks": {},
            "lastNumber": 0,
            "blocked": None,
        }
        register = cls(data, rng)
        # A registered FN already holds its registration report as document 1 (it also counts for the OFD).
        register._store_document("registration", now, {"ofdSent": True})
        return register

    # -- identity and clock-derived state --
    @property
    def marking(self) -> dict[str, Any]:
        """The FN's marking state: the one code under validation (``held``) and the codes accepted in this shift
        (``accepted``, by their base64, with the status they were validated for and the five flags)."""
        return self.data.setdefault("marking", {"held": None, "accepted": {}})

    @property
    def fn_number(self) -> str:
        return self.data["fnNumber"]

    @property
    def shift(self) -> dict[str, Any]:
        return self.data["shift"]

    def shift_state(self, now: float) -> str:
        if self.shift["state"] != "opened":
            return "closed"
        if now >= self.shift["openedAt"] + SHIFT_LENGTH.total_seconds():
            return "expired"
        return "opened"

    def expired_time(self) -> str | None:
        if self.shift["openedAt"] is None:
            return None
        return iso(self.shift["openedAt"] + SHIFT_LENGTH.total_seconds())

    # -- documents --
    def _store_document(self, kind: str, now: float, extra: dict[str, Any]) -> dict[str, Any]:
        self.data["lastFd"] += 1
        number = self.data["lastFd"]
        document = {
            "type": kind,
            "fiscalDocumentNumber": number,
            # The fiscal sign (ФПД) is a 32-bit number; the driver reports it as a string of digits.
            "fiscalDocumentSign": str(self.rng.randint(10**9, 2**32 - 1)),
            "epoch": now,
            "dateTime": iso(now),
            "shiftNumber": self.shift["number"],
            "ofdSent": False,
            **extra,
        }
        self.data["documents"][str(number)] = document
        return document

    def document(self, number: int) -> dict[str, Any]:
        document = self.data["documents"].get(str(number))
        if document is None:
            raise DriverError(NO_DATA[0], f"{NO_DATA[1]}: документ {number} не найден в ФН")
        return document

    def fiscal_params(self, document: dict[str, Any]) -> dict[str, Any]:
        params = {
            "fiscalDocumentNumber": document["fiscalDocumentNumber"],
            "fiscalDocumentSign": document["fiscalDocumentSign"],
            "fiscalDocumentDateTime": document["dateTime"],
            "shiftNumber": document["shiftNumber"],
            "fnNumber": self.fn_number,
            "registrationNumber": self.data["registrationNumber"],
            "fnsUrl": FNS_URL,
        }
        if "fiscalReceiptNumber" in document:
            params["fiscalReceiptNumber"] = document["fiscalReceiptNumber"]
            params["total"] = money(document["total"])
        return params

    # -- shift --
    def open_shift(self, now: float) -> dict[str, Any]:
        self.shift.update(
            number=self.shift["number"] + 1, state="opened", openedAt=now, receipts=0, totals=_empty_totals()
        )
        return self._store_document("openShift", now, {})

    def close_shift(self, now: float) -> dict[str, Any]:
        document = self._store_document("closeShift", now, {"receiptsCount": self.shift["receipts"]})
        # The counters stay readable (getShiftTotals) until the next shift opens, like the register's.
        self.shift["state"] = "closed"
        # A validation counts only for a receipt of the same shift.
        self.data["marking"] = {"held": None, "accepted": {}}
        return document

    def add_receipt(self, kind: str, receipt: Receipt, now: float, task: dict[str, Any]) -> dict[str, Any]:
        self.shift["receipts"] += 1
        counter = self.shift["totals"][kind]
        counter["count"] += 1
        counter["sum"] = str(Decimal(counter["sum"]) + receipt.total)
        for payment_type, amount in receipt.payments.items():
            counter["payments"][payment_type] = str(Decimal(counter["payments"][payment_type]) + amount)
        document = self._store_document(
            kind,
            now,
            {
                "fiscalReceiptNumber": self.shift["receipts"],
                "total": str(receipt.total),
                "payments": {kind_: str(amount) for kind_, amount in receipt.payments.items()},
                "items": task.get("items") or [],
            },
        )
        self.data["lastReceiptFd"] = document["fiscalDocumentNumber"]
        return document

    def totals_view(self) -> dict[str, Any]:
        totals = self.shift["totals"]

        def cash(kind: str) -> Decimal:
            return Decimal(totals[kind]["payments"]["cash"])

        drawer = cash("sell") - cash("sellReturn") - cash("buy") + cash("buyReturn")
        return {
            "shiftNumber": self.shift["number"],
            "receipts": {kind: _counter_view(totals[kind]) for kind in RECEIPT_OPERATIONS},
            "corrections": {kind: _counter_view(totals[kind]) for kind in CORRECTION_OPERATIONS},
            "receiptsCount": self.shift["receipts"],
            "income": {"count": 0, "sum": 0.0},
            "outcome": {"count": 0, "sum": 0.0},
            "cashDrawer": {"sum": money(drawer)},
        }

    # -- OFD --
    def unsent_documents(self, now: float) -> list[dict[str, Any]]:
        """Documents not yet at the OFD; while it is online, anything older than a few seconds is sent."""
        documents = sorted(self.data["documents"].values(), key=lambda d: d["fiscalDocumentNumber"])
        if self.data["ofdOnline"]:
            for document in documents:
                if not document["ofdSent"] and document["epoch"] <= now - OFD_SEND_SECONDS:
                    document["ofdSent"] = True
        return [d for d in documents if not d["ofdSent"]]

    # -- driver query results --
    def shift_status(self, now: float) -> dict[str, Any]:
        return {
            "shiftStatus": {
                "state": self.shift_state(now),
                "number": self.shift["number"],
                "expiredTime": self.expired_time(),
            }
        }

    def device_status(self, now: float) -> dict[str, Any]:
        return {
            "deviceStatus": {
                "paperPresent": self.data["paperPresent"],
                "paperNearEnd": False,
                "coverOpened": False,
                "blocked": False,
                "fnPresent": True,
                "fnFiscal": True,
                "fiscal": True,
                "invalidFN": False,
                "printerError": False,
                "printerOverheat": False,
                "cutError": False,
                "cashDrawerOpened": False,
                "shift": self.shift_state(now),
                "currentDateTime": iso(now),
                "documentNotPrinted": self.data["notPrintedFd"] is not None,
                "model": 69,
                "modelName": "АТОЛ 30Ф",
                "serialNumber": self.data["serialNumber"],
                "receiptLineLength": 48,
            }
        }

    def fn_status(self, now: float) -> dict[str, Any]:
        unsent = self.unsent_documents(now)
        ofd_timeout = bool(unsent) and now - unsent[0]["epoch"] > OFD_TIMEOUT.total_seconds()
        last = self.data["documents"][str(self.data["lastFd"])]
        return {
            "fnStatus": {
                "fnNumber": self.fn_number,
                "fiscalDocumentNumber": self.data["lastFd"],
                "fiscalReceiptNumber": self.shift["receipts"],
                "documentDateTime": last["dateTime"],
                "fnState": "fiscalMode",
                "shift": {"state": self.shift_state(now), "number": self.shift["number"]},
                "warnings": {
                    "memoryOverflow": False,
                    "needReplacement": False,
                    "ofdTimeout": ofd_timeout,
                    "resourceExhausted": False,
                    "criticalError": False,
                },
            }
        }

    def fn_document(self, number: int) -> dict[str, Any]:
        document = self.document(number)
        kind = document["type"]
        tlv: dict[str, Any] = {
            "fiscalDocumentType": (
                "receipt" if kind in RECEIPT_OPERATIONS
                else "receiptCorrection" if kind in CORRECTION_OPERATIONS
                else kind
            ),
            "short": False,
            "1012": document["dateTime"],
            "1040": document["fiscalDocumentNumber"],
            "1077": document["fiscalDocumentSign"],
            "1041": self.fn_number,
            "1037": self.data["registrationNumber"],
            "1038": document["shiftNumber"],
        }
        if "fiscalReceiptNumber" in document:
            operation = RECEIPT_OPERATIONS.get(kind) or CORRECTION_OPERATIONS[kind]
            moment = datetime.fromtimestamp(document["epoch"], REGISTER_TZ).strftime("%Y%m%dT%H%M")
            tlv.update(
                {
                    "1042": document["fiscalReceiptNumber"],
                    "1054": operation,
                    "1020": money(document["total"]),
                    "1059": document["items"],
                    "qr": (
                        f"t={moment}&s={Decimal(document['total']):.2f}&fn={self.fn_number}"
                        f"&i={document['fiscalDocumentNumber']}&fp={document['fiscalDocumentSign']}&n={operation}"
                    ),
                }
            )
        if "receiptsCount" in document:
            tlv["1118"] = document["receiptsCount"]
        return {"documentTLV": tlv}

    def ofd_exchange_status(self, now: float) -> dict[str, Any]:
        unsent = self.unsent_documents(now)
        first = unsent[0] if unsent else None
        return {
            "status": {
                "notSentCount": len(unsent),
                "notSentFirstDocNumber": first["fiscalDocumentNumber"] if first else 0,
                "notSentFirstDocDateTime": first["dateTime"] if first else None,
                "lastSuccessKeysUpdate": iso(now - 86400),
            },
            "errors": {
                "network": {"code": 0, "description": ""},
                "ofd": {"code": 0, "description": ""},
                "fn": {"code": 0, "description": ""},
                "documentNumber": 0,
                "fnCommandCode": 0,
                "lastSuccessConnectionDateTime": iso(now) if self.data["ofdOnline"] else None,
            },
            "warnings": {"dataForSendIsEmpty": not unsent},
        }

    def registration(self) -> dict[str, Any]:
        """Automatic mode and the requisites of an automatic device, as set by ``/_emulator/registration``."""
        device_id = self.data["id"]
        defaults = {
            "autoMode": True,
            "machineNumber": f"KIOSK-{device_id}",
            "paymentsAddress": "г. Москва, ул. Тверская, д. 1",
            "paymentsPlace": f"Киоск самообслуживания {device_id}",
        }
        return {**defaults, **(self.data.get("registration") or {})}

    def check_requisites(self, kind: str, body: dict[str, Any]) -> None:
        """A receipt of a register registered for an automatic device needs its machine number (tag 1036)."""
        for wire in REQUISITES:
            if wire in body and not isinstance(body[wire], str):
                raise invalid(wire, "ожидается строка")
        fiscal_receipt = kind in RECEIPT_OPERATIONS or kind in CORRECTION_OPERATIONS
        if fiscal_receipt and self.registration()["autoMode"] and not body.get("machineNumber"):
            raise missing("machineNumber")

    def registration_info(self) -> dict[str, Any]:
        registration = self.registration()
        return {
            "device": {
                "autoMode": registration["autoMode"],
                "machineInstallation": registration["autoMode"],
                "machineNumber": registration["machineNumber"],
                "fnNumber": self.fn_number,
                "registrationNumber": self.data["registrationNumber"],
                "paymentsAddress": registration["paymentsAddress"],
                "paymentsPlace": registration["paymentsPlace"],
                "ffdVersion": "1.2",
                "defaultTaxationType": "osn",
                "offlineMode": False,
                "encryption": False,
                "service": False,
                "excise": False,
                "gambling": False,
                "lottery": False,
                "internet": False,
                "bso": False,
                "fnsUrl": FNS_URL,
            },
            "organization": {
                "name": "ООО \"Некассир\"",
                "vatin": "7700000000",
                "address": "г. Москва, ул. Тверская, д. 1",
                "email": "kassa@example.ru",
                "taxationTypes": ["osn", "usnIncome"],
                "agents": [],
            },
            "ofd": {
                "name": "ООО \"Эмулятор ОФД\"",
                "vatin": "7700000001",
                "host": "ofd.example.ru",
                "port": 7777,
                "dns": "8.8.8.8",
            },
        }


# --- marked goods: the marking operator and the codes as the FN reads them ------------------------------


class MarkingOperator(Protocol):
    """The marking operator (ОИСМ) as the register meets it: a code's state, told when a receipt sells or returns
    it. ``code_status`` answers "valid", "sold", "expired", "blocked", "not_found" or "sale_stopped".
    The top floor hands in the marking room's registry, shared with the check service's emulator."""

    def code_status(self, raw: str) -> str: ...

    def mark_sold(self, raw: str) -> None: ...

    def mark_returned(self, raw: str) -> None: ...


def code_gtin(raw: str) -> str | None:
    """The GTIN of a well-formed code as scanned, None for anything else (the FN's own check fails)."""
    try:
        return parse_code(raw).gtin
    except InvalidMarkingCode:
        return None


class InMemoryMarkingOperator:
    """The default operator: a well-formed code never seen is "valid", except GTINs starting "0999" ("not_found",
    a test hook) and malformed codes; a sold code is "sold" until returned ("valid" again). Thread-safe."""

    def __init__(self) -> None:
        self._states: dict[str, str] = {}
        self._lock = threading.Lock()

    def code_status(self, raw: str) -> str:
        gtin = code_gtin(raw)
        if gtin is None or gtin.startswith("0999"):
            return "not_found"
        with self._lock:
            return self._states.get(raw, "valid")

    def set_status(self, raw: str, status: str) -> None:
        with self._lock:
            self._states[raw] = status

    def mark_sold(self, raw: str) -> None:
        self.set_status(raw, "sold")

    def mark_returned(self, raw: str) -> None:
        self.set_status(raw, "valid")


def decode_imc(value: Any, field_path: str) -> str:
    """The code as scanned from its base64 (``imc``); the exact bytes must be UTF-8 (printable ASCII and GS)."""
    if not isinstance(value, str) or not value:
        raise invalid(field_path, "ожидается строка base64")
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise invalid(field_path, "не декодируется из base64") from None


def _marking_params(params: Any, path: str) -> tuple[str, dict[str, Any]]:
    """Checks the params of one code (``beginMarkingCodeValidation`` and a position's ``imcParams``)."""
    if not isinstance(params, dict):
        raise invalid(path.rstrip("."), "ожидается объект")
    raw = decode_imc(_required(params, "imc", path), f"{path}imc")
    _optional_choice(params, "imcType", path, IMC_TYPES)
    status = _required(params, "itemEstimatedStatus", path)
    if status not in ESTIMATED_STATUSES:
        raise invalid(f"{path}itemEstimatedStatus", f"неизвестное значение {status!r}")
    mode = params.get("imcModeProcessing")
    if mode is not None and (isinstance(mode, bool) or not isinstance(mode, int) or mode < 0):
        raise invalid(f"{path}imcModeProcessing", "ожидается целое неотрицательное число")
    return raw, params


def _validate_imc_params(item: dict[str, Any], path: str) -> None:
    """A position's ``imcParams`` (the code, its type, its planned status, the validation's five flags) and
    ``industryInfo`` (tags 1260-1265: the permissive mode's requisites)."""
    if "imcParams" in item:
        _, params = _marking_params(item["imcParams"], f"{path}imcParams.")
        checks = params.get("itemInfoCheckResult")
        if checks is not None and (
            not isinstance(checks, dict) or any(not isinstance(checks.get(flag, False), bool) for flag in CHECK_FLAGS)
        ):
            raise invalid(f"{path}imcParams.itemInfoCheckResult", "ожидается объект с флагами true/false")
        unit = item.get("measurementUnit", "piece")
        if unit in ("piece", 0) and _number(item["quantity"], f"{path}quantity") != 1:
            raise invalid(f"{path}quantity", "у маркированного штучного товара количество должно быть 1")
    if "industryInfo" in item:
        industry = item["industryInfo"]
        if not isinstance(industry, list) or not industry:
            raise invalid(f"{path}industryInfo", "ожидается непустой массив")
        for index, entry in enumerate(industry):
            entry_path = f"{path}industryInfo[{index}]."
            if not isinstance(entry, dict):
                raise invalid(entry_path.rstrip("."), "ожидается объект")
            for key in INDUSTRY_FIELDS:
                value = _required(entry, key, entry_path)
                if not isinstance(value, str) or not value:
                    raise invalid(f"{entry_path}{key}", "ожидается непустая строка")
            try:
                datetime.strptime(entry["date"], "%d.%m.%Y")
            except ValueError:
                raise invalid(f"{entry_path}date", f"ожидается дата ДД.ММ.ГГГГ, получено {entry['date']!r}") from None


# --- the emulator ---------------------------------------------------------------------------------------


def _is_final(task: dict[str, Any]) -> bool:
    return all(entry["status"] in FINAL_STATUSES for entry in task["results"])


class _TaskGone(Exception):
    """The task disappeared under the worker (``/_emulator/reset``): drop it silently."""


class AtolWebServerEmulator(EmulatorApp):
    """ATOL Web Server emulator; one register per ``deviceID``, each with its own worker thread."""

    name = "atol-web-server"
    faults_known = FAULTS

    def __init__(
        self,
        state_path: str | None = None,
        print_delay: float = 0.2,
        auto_open_shift: bool = True,
        users: dict[str, str] | None = None,
        flat_errors: bool = False,
        marking_operator: MarkingOperator | None = None,
        marking_delay: float = DEFAULT_MARKING_DELAY,
    ):
        super().__init__()
        self.marking_operator: MarkingOperator = marking_operator or InMemoryMarkingOperator()
        self.marking_delay = marking_delay
        self.print_delay = print_delay
        self.auto_open_shift = auto_open_shift
        self.users = dict(users or {})
        self.flat_errors = flat_errors
        self._rng = random.Random()
        self._lock = threading.RLock()  # one lock over the whole state: HTTP threads and device workers
        self._closing = threading.Event()
        self._store = JsonStateFile(state_path)
        self._queues: dict[str, queue.Queue] = {}
        self._threads: list[threading.Thread] = []
        with self._lock:
            self._state = self._store.load() or self._fresh_state()
            self._resume_unfinished_tasks()

    # ================================================================================= state helpers
    @staticmethod
    def _fresh_state() -> dict[str, Any]:
        return {"clockOffset": 0.0, "devices": {}, "journal": [], "prints": []}

    def _save(self) -> None:
        self._store.save(self._state)

    def _now(self) -> float:
        return time.time() + self._state["clockOffset"]

    def _register(self, device_id: str) -> Register:
        """The register behind ``device_id``, created (with a new FN) on first use."""
        data = self._state["devices"].get(device_id)
        if data is None:
            register = Register.new(device_id, self._rng, self._now())
            self._state["devices"][device_id] = register.data
            self._save()
            return register
        return Register(data, self._rng)

    def _resume_unfinished_tasks(self) -> None:
        """After a restart, tasks that were still queued or running are finished, in their order.

        A document is committed together with its sub-task's final status, so re-running a sub-task that
        was not final never makes a document twice.
        """
        for device_id, data in self._state["devices"].items():
            data["blocked"] = None
            pending = [t for t in data["tasks"].values() if not _is_final(t)]
            for task in sorted(pending, key=lambda t: t["number"]):
                for entry in task["results"]:
                    if entry["status"] == "inProgress":
                        entry["status"] = "wait"
                self._enqueue(device_id, task)

    # ================================================================================= worker threads
    def _enqueue(self, device_id: str, task: dict[str, Any]) -> None:
        work = self._queues.get(device_id)
        if work is None:
            work = self._queues[device_id] = queue.Queue()
            thread = threading.Thread(
                target=self._worker, args=(device_id, work), name=f"atol-{device_id}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        work.put(task)

    def close(self) -> None:
        """Stops the device workers (safe to call more than once; workers are daemons anyway)."""
        self._closing.set()
        for work in list(self._queues.values()):
            work.put(None)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2)

    def _worker(self, device_id: str, work: queue.Queue) -> None:
        while not self._closing.is_set():
            task = work.get()
            if task is None or self._closing.is_set():
                return
            try:
                self._process_task(device_id, task)
            except _TaskGone:
                continue
            except Exception:  # an emulator bug: show it, fail the task, keep the worker alive
                traceback.print_exc()
                self._fail_unfinished(device_id, task)

    def _check_current(self, device_id: str, task: dict[str, Any]) -> Register:
        """Called under the lock: the task must still be this device's (a reset drops everything)."""
        data = self._state["devices"].get(device_id)
        if data is None or data["tasks"].get(task["uuid"]) is not task:
            raise _TaskGone
        return Register(data, self._rng)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._closing.wait(seconds)
        if self._closing.is_set():
            raise _TaskGone

    def _fail_unfinished(self, device_id: str, task: dict[str, Any]) -> None:
        with self._lock:
            for entry in task["results"]:
                if entry["status"] not in FINAL_STATUSES:
                    self._finish(entry, error=INTERNAL)
            self._save()

    @staticmethod
    def _finish(entry: dict[str, Any], result: dict[str, Any] | None = None, error: tuple[int, str] = OK) -> None:
        entry["status"] = "ready" if error == OK else "error"
        entry["result"] = result if error == OK else None
        entry["error"] = {"code": error[0], "description": error[1]}

    def _process_task(self, device_id: str, task: dict[str, Any]) -> None:
        failed = False
        for index, body in enumerate(task["request"]):
            with self._lock:
                self._check_current(device_id, task)
                entry = task["results"][index]
                if entry["status"] == "canceled":
                    return
                if entry["status"] in FINAL_STATUSES:  # finished before a restart
                    failed = failed or entry["status"] in FAILED_STATUSES
                    continue
                if failed:
                    entry["status"] = "interrupted"
                    entry["error"] = {"code": INTERRUPTED[0], "description": INTERRUPTED[1]}
                    self._save()
                    continue
                if entry["status"] == "wait":
                    entry["status"] = "inProgress"
                    self._save()
            if body.get("type") in FISCAL_TASKS:
                self._run_fiscal(device_id, task, entry, body)
            else:
                self._run_other(device_id, task, entry, body)
            failed = entry["status"] in FAILED_STATUSES

    # ================================================================================= fiscal sub-tasks
    def _run_fiscal(self, device_id: str, task: dict[str, Any], entry: dict[str, Any], body: dict[str, Any]) -> None:
        kind = body["type"]
        with self._lock:
            register = self._check_current(device_id, task)
            try:
                receipt = self._validate_fiscal(kind, body)
                register.check_requisites(kind, body)
            except DriverError as exc:
                self._finish(entry, error=(exc.code, exc.description))
                self._save()
                return
            # A fault is bound to the sub-task it hit, so a re-run after a restart replays the same outcome.
            only = set(DEVICE_FAULTS) | (set(SELL_FAULTS) if kind == "sell" else set())
            fault = entry.get("fault") or self.faults.take(device_id, only=only)
            if fault:
                entry["fault"] = fault
                self._save()
            pages = self._pages(register, kind)
        fault_name = fault["fault"] if fault else None
        if fault_name in BLOCKING_FAULTS:
            assert fault is not None  # fault_name comes from it
            if not self._hold_blocked(device_id, task, entry, fault):
                return
            fault = fault_name = None  # the register answered: it goes on as a normal document
        if fault_name not in IMMEDIATE_FAULTS:
            self._sleep(self.print_delay * pages)
        with self._lock:
            register = self._check_current(device_id, task)
            try:
                result = self._make_fiscal(register, kind, body, receipt, fault)
            except DriverError as exc:
                self._finish(entry, error=(exc.code, exc.description))
            else:
                self._finish(entry, result)
            self._save()

    def _hold_blocked(self, device_id: str, task: dict[str, Any], entry: dict[str, Any], fault: dict[str, Any]) -> bool:
        """The outcome is unknown for a while: the queue blocks on this task. Returns True to go on."""
        with self._lock:
            register = self._check_current(device_id, task)
            entry["status"] = "blocked"
            entry["error"] = {"code": NO_CONNECTION[0], "description": NO_CONNECTION[1]}
            register.data["blocked"] = {"reason": "connectionError", "uuid": task["uuid"]}
            self._save()
        self._sleep(float(fault.get("blocked_seconds", DEFAULT_BLOCKED_SECONDS)))
        with self._lock:
            register = self._check_current(device_id, task)
            register.data["blocked"] = None
            if fault["fault"] == "blocked_then_error":
                code = int(fault.get("code", NO_CONNECTION[0]))
                self._finish(entry, error=(code, fault.get("description", NO_CONNECTION[1])))
                self._save()
                return False
            self._save()
        return True

    @staticmethod
    def _validate_fiscal(kind: str, body: dict[str, Any]) -> Receipt | None:
        if kind in RECEIPT_OPERATIONS:
            return validate_receipt(body)
        if kind in CORRECTION_OPERATIONS:
            return validate_correction(body)
        return None

    def _pages(self, register: Register, kind: str) -> int:
        """How many documents the task prints (a receipt in a closed shift also prints the shift opening)."""
        if kind in RECEIPT_OPERATIONS or kind in CORRECTION_OPERATIONS:
            return 2 if register.shift_state(self._now()) == "closed" and self.auto_open_shift else 1
        return 1

    def _make_fiscal(
        self,
        register: Register,
        kind: str,
        body: dict[str, Any],
        receipt: Receipt | None,
        fault: dict[str, Any] | None,
    ) -> dict[str, Any]:
        fault_name = fault["fault"] if fault else None
        self._raise_for_fault(register, fault)
        if not register.data["paperPresent"]:
            raise fail(NO_PAPER)
        now = self._now()
        warnings: dict[str, Any] = {"notPrinted": False}
        if kind == "openShift":
            if register.shift_state(now) != "closed":
                raise fail(SHIFT_OPEN)
            document = register.open_shift(now)
        elif kind == "closeShift":
            if register.shift_state(now) == "closed":
                raise fail(SHIFT_CLOSED)
            document = register.close_shift(now)
        else:
            assert receipt is not None
            if fault_name == "shift_expires_before_next_sell" and register.shift_state(now) == "opened":
                # The shift reaches its 24 hours between the caller's shift check and this sell.
                register.shift["openedAt"] = now - SHIFT_LENGTH.total_seconds()
            codes = self._check_marked_positions(register, body)
            if self._ensure_shift_for_receipt(register, now, body):
                warnings["shiftAutoOpened"] = True
            document = register.add_receipt(kind, receipt, now, body)
            self._marked_positions_done(register, kind, codes)
        self._journal(register, document, body)
        if fault_name == "paper_out_after_write":
            # The document is in the FN, only its paper copy is missing: continuePrint prints it later.
            register.data["paperPresent"] = False
            register.data["notPrintedFd"] = document["fiscalDocumentNumber"]
            warnings["notPrinted"] = True
        result = {"fiscalParams": register.fiscal_params(document), "warnings": warnings}
        if kind == "closeShift":
            result["fiscalParams"]["receiptsCount"] = document["receiptsCount"]
            result["shiftTotals"] = register.totals_view()
        return result

    @staticmethod
    def _raise_for_fault(register: Register, fault: dict[str, Any] | None) -> None:
        """Faults that stop the document before anything is written to the FN."""
        name = fault["fault"] if fault else None
        if name == "paper_out":
            register.data["paperPresent"] = False
            raise fail(NO_PAPER)
        if name == "cover_open":
            raise fail(COVER_OPEN)
        if name == "no_connection":
            raise fail(NO_CONNECTION)
        if name == "fn_error":
            assert fault is not None
            raise DriverError(int(fault.get("code", FN_ERROR[0])), str(fault.get("description", FN_ERROR[1])))

    def _ensure_shift_for_receipt(self, register: Register, now: float, body: dict[str, Any]) -> bool:
        """A receipt needs an open shift; returns True when the register opened it by itself."""
        state = register.shift_state(now)
        if state == "expired":
            raise fail(SHIFT_EXPIRED)
        if state == "opened":
            return False
        if not self.auto_open_shift:
            raise fail(SHIFT_CLOSED)
        document = register.open_shift(now)
        self._journal(register, document, {"type": "openShift", "operator": body.get("operator")})
        return True

    def _journal(self, register: Register, document: dict[str, Any], body: dict[str, Any]) -> None:
        entry = {
            "type": document["type"],
            "device": register.data["id"],
            "fnNumber": register.fn_number,
            "fiscalDocumentNumber": document["fiscalDocumentNumber"],
            "shiftNumber": document["shiftNumber"],
            "total": money(document.get("total", "0")),
            "items": body.get("items") or [],
            "payments": body.get("payments") or [],
            "dateTime": document["dateTime"],
        }
        if "fiscalReceiptNumber" in document:
            entry["fiscalReceiptNumber"] = document["fiscalReceiptNumber"]
        if document["type"] in RECEIPT_OPERATIONS or document["type"] in CORRECTION_OPERATIONS:
            entry.update({wire: body.get(wire) for wire in REQUISITES})  # as sent, for the soak's invariant
        # A correction's basis, as sent (tags 1173, 1178, 1179).
        entry.update({key: body[key] for key in CORRECTION_BASIS if key in body})
        self._state["journal"].append(entry)

    # ================================================================================= other sub-tasks
    def _run_other(self, device_id: str, task: dict[str, Any], entry: dict[str, Any], body: dict[str, Any]) -> None:
        kind = body.get("type")
        with self._lock:
            register = self._check_current(device_id, task)
            prints = kind in PRINT_TASKS and register.data["paperPresent"]
            if kind == "continuePrint" and register.data["notPrintedFd"] is None:
                prints = False
        if prints:
            self._sleep(self.print_delay)
        with self._lock:
            register = self._check_current(device_id, task)
            try:
                result = self._execute_other(register, kind, body)
            except DriverError as exc:
                self._finish(entry, error=(exc.code, exc.description))
            else:
                self._finish(entry, result)
            self._save()

    def _execute_other(self, register: Register, kind: Any, body: dict[str, Any]) -> dict[str, Any]:
        now = self._now()
        if kind in QUERY_TASKS:
            return self._query(register, kind, body)
        if kind in MARKING_TASKS:
            return self._marking(register, kind, body, now)
        if kind not in PRINT_TASKS:
            raise DriverError(INVALID_TASK, f"Неизвестный тип задания {kind!r}")
        lines = validate_non_fiscal(body) if kind == "nonFiscal" else None
        number = document_number_param(body) if kind == "printFnDocument" else None
        if not register.data["paperPresent"]:
            raise fail(NO_PAPER)
        if kind == "reportX":
            self._report_x(register, now)
        elif kind == "nonFiscal":
            self._print(register, "nonFiscal", now, text="\n".join(lines or []))
        elif kind == "printFnDocument":
            assert number is not None  # read above for this kind
            register.document(number)
            self._print(register, "printFnDocument", now, fiscalDocumentNumber=number)
        elif kind == "printLastReceiptCopy":
            if register.data["lastReceiptFd"] is None:
                raise DriverError(NO_DATA[0], f"{NO_DATA[1]}: в ФН нет чеков")
            self._print(register, "printLastReceiptCopy", now, fiscalDocumentNumber=register.data["lastReceiptFd"])
        elif kind == "continuePrint" and register.data["notPrintedFd"] is not None:
            self._print(register, "continuePrint", now, fiscalDocumentNumber=register.data["notPrintedFd"])
            register.data["notPrintedFd"] = None
        return {}

    def _report_x(self, register: Register, now: float) -> None:
        """The X report prints counters but is not a fiscal document: it takes no FD number."""
        state = register.shift_state(now)
        if state == "closed":
            raise fail(SHIFT_CLOSED)
        if state == "expired":
            raise fail(SHIFT_EXPIRED)
        self._state["journal"].append(
            {
                "type": "reportX",
                "device": register.data["id"],
                "fnNumber": register.fn_number,
                "shiftNumber": register.shift["number"],
                "total": 0.0,
                "items": [],
                "payments": [],
                "dateTime": iso(now),
            }
        )

    def _print(self, register: Register, kind: str, now: float, **details: Any) -> None:
        self._state["prints"].append({"type": kind, "device": register.data["id"], "dateTime": iso(now), **details})

    def _query(self, register: Register, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        now = self._now()
        if kind == "getShiftStatus":
            return register.shift_status(now)
        if kind == "getDeviceStatus":
            return register.device_status(now)
        if kind == "getFnStatus":
            return register.fn_status(now)
        if kind == "getFnDocument":
            return register.fn_document(document_number_param(body))
        if kind == "getShiftTotals":
            return {"shiftTotals": register.totals_view()}
        if kind == "ofdExchangeStatus":
            return register.ofd_exchange_status(now)
        return register.registration_info()

    # ================================================================================= marked goods
    def _marking(self, register: Register, kind: str, body: dict[str, Any], now: float) -> dict[str, Any]:
        """The FN's validation of marking codes: one code at a time (begin → status → accept / decline)."""
        marking = register.marking
        held = marking["held"]
        if kind == "beginMarkingCodeValidation":
            if held is not None:
                raise fail(MARK_VALIDATION_IN_PROGRESS)
            raw, params = _marking_params(_required(body, "params", ""), "params.")
            return self._begin_validation(register, raw, params, now)
        if kind == "getMarkingCodeValidationStatus":
            # ATOL's task script reports a failed status call inside the result (driverError), not as a task error.
            if held is None:
                return {"driverError": self._driver_error(MARK_INVALID_STATE, "imcCheckWrongState")}
            if now < held["readyAt"]:
                return {"ready": False}
            return self._validation_status(held)
        if kind in ("acceptMarkingCode", "declineMarkingCode"):
            if held is None or now < held["readyAt"]:
                raise fail(MARK_INVALID_STATE)
            marking["held"] = None
            if kind == "declineMarkingCode":
                return {}
            checks = self._check_result(held)
            marking["accepted"][held["imc"]] = {
                "status": held["status"], "itemInfoCheckResult": checks, "shiftNumber": register.shift["number"],
            }
            return {"itemInfoCheckResult": checks}
        if kind == "cancelMarkingCodeValidation":  # harmless when nothing is held
            marking["held"] = None
            return {}
        if kind == "clearMarkingCodeValidationResult":
            marking["accepted"] = {}
            return {}
        # pingIsm / ismExchangeStatus: the answers' exact shapes are unconfirmed (PROTOCOLS.md §4); an armed
        # ism_unreachable fault makes the operator unreachable here too (without consuming it).
        reachable = not any(
            fault["fault"] == "ism_unreachable" and fault["device"] in (None, register.data["id"])
            for fault in self.faults.pending()
        )
        if kind == "pingIsm":
            return {"ismPing": {"isAvailable": reachable, "time": 40 if reachable else 0},
                    "driverError": self._driver_error(OK if reachable else MARK_EXCHANGE_ERROR)}
        return {"status": {"notSentCount": 0, "isConnected": reachable, "lastSuccessConnectionDateTime": iso(now)}}

    def _begin_validation(self, register: Register, raw: str, params: dict[str, Any], now: float) -> dict[str, Any]:
        fault = self.faults.take(register.data["id"], only=set(MARKING_FAULTS))
        fault_name = fault["fault"] if fault else None
        fn_ok = code_gtin(raw) is not None
        operator: str | None
        if fault_name == "ism_unreachable":
            operator = None
        elif fault_name == "code_sold":
            operator = "sold"
        elif fault_name == "code_blocked":
            operator = "blocked"
        else:
            operator = self.marking_operator.code_status(raw)
        register.marking["held"] = {
            "imc": params["imc"],
            "status": params["itemEstimatedStatus"],
            "imcType": params.get("imcType", "auto"),
            "imcModeProcessing": params.get("imcModeProcessing", 0),
            "fnCheckResult": fn_ok,
            "operator": operator,
            "readyAt": now + self.marking_delay,
        }
        return {
            "offlineValidation": {
                "fmCheck": True, "fmCheckResult": fn_ok, "fmCheckErrorReason": "checked" if fn_ok else "typeIncorrect",
            }
        }

    @staticmethod
    def _driver_error(error: tuple[int, str], name: str = "") -> dict[str, Any]:
        answer: dict[str, Any] = {"code": error[0], "description": error[1]}
        if name:
            answer["error"] = name
        return answer

    @staticmethod
    def _estimated_status_correct(held: dict[str, Any]) -> bool:
        """What the operator says of the planned status: a sale needs a valid code, a return a sold one."""
        if held["status"] in RETURN_STATUSES:
            return held["operator"] == "sold"
        return held["operator"] == "valid"

    def _check_result(self, held: dict[str, Any]) -> dict[str, bool]:
        """The five flags of tag 2106 for the held code."""
        answered = held["operator"] is not None
        return {
            "imcCheckFlag": True,
            "imcCheckResult": held["fnCheckResult"],
            "imcStatusInfo": answered,
            "imcEstimatedStatusCorrect": answered and self._estimated_status_correct(held),
            "ecrStandAloneFlag": not answered,
        }

    def _validation_status(self, held: dict[str, Any]) -> dict[str, Any]:
        if held["operator"] is None:  # no answer from the operator: the result of the FN's own check only
            return {"ready": True, "sentImcRequest": True,
                    "driverError": self._driver_error(MARK_EXCHANGE_ERROR, "serverNoConnect")}
        correct = self._estimated_status_correct(held)
        if correct:
            item_status = "itemEstimatedStatusCorrect"
        elif held["operator"] in ("blocked", "sale_stopped"):
            item_status = "itemSaleStopped"
        else:
            item_status = "itemEstimatedStatusIncorrect"
        return {
            "ready": True,
            "sentImcRequest": True,
            "driverError": self._driver_error(OK),
            "onlineValidation": {
                "itemInfoCheckResult": self._check_result(held),
                "markOperatorResponse": {"responseStatus": True, "itemStatusCheck": correct},
                "markOperatorItemStatus": item_status,
                "markOperatorResponseResult": "unrecognized" if held["operator"] == "not_found" else "correct",
                "imcType": held["imcType"],
                "imcModeProcessing": held["imcModeProcessing"],
            },
        }

    @staticmethod
    def _check_marked_positions(register: Register, body: dict[str, Any]) -> list[tuple[str, str]]:
        """Every code in a receipt must have been accepted by a validation in this shift, for the same planned
        status; returns the (base64, code as scanned) of the receipt's codes."""
        accepted = register.marking["accepted"]
        codes: list[tuple[str, str]] = []
        for index, item in enumerate(body.get("items") or []):
            params = item.get("imcParams") if isinstance(item, dict) else None
            if params is None:
                continue
            imc = params["imc"]
            known = accepted.get(imc)
            if known is None or known["status"] != params["itemEstimatedStatus"]:
                raise DriverError(MARK_NOT_CHECKED[0], f"{MARK_NOT_CHECKED[1]} (items[{index}])")
            if any(imc == seen for seen, _ in codes):
                raise invalid(f"items[{index}].imcParams.imc", "код маркировки повторяется в чеке")
            codes.append((imc, decode_imc(imc, f"items[{index}].imcParams.imc")))
        return codes

    def _marked_positions_done(self, register: Register, kind: str, codes: list[tuple[str, str]]) -> None:
        """A closed receipt uses up its codes' validations and tells the operator what it sold or took back."""
        for imc, raw in codes:
            register.marking["accepted"].pop(imc, None)
            if kind == "sell":
                self.marking_operator.mark_sold(raw)
            elif kind == "sellReturn":
                self.marking_operator.mark_returned(raw)

    # ================================================================================= HTTP protocol
    def handle_protocol(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if path == "/api/v2/serverInfo" and request.method == "GET":
            return json_response(
                {"version": SERVER_VERSION, "serverVersion": SERVER_VERSION, "driverVersion": DRIVER_VERSION}
            )
        if not self._authorized(request):
            headers = {"WWW-Authenticate": 'Basic realm="ATOL Web Server"', "Content-Type": "text/plain"}
            return Response(401, b"Unauthorized", headers)
        device_id = request.query.get("deviceID") or "default"
        if path == "/api/v2/requests" and request.method == "POST":
            return self._post_request(request, device_id)
        if path.startswith("/api/v2/requests/"):
            uuid = path[len("/api/v2/requests/") :]
            if request.method == "GET":
                return self._get_request(uuid, request.query.get("deviceID"))
            if request.method == "DELETE":
                return self._delete_request(uuid, request.query.get("deviceID"))
            return self._error_response(405, "Метод не поддерживается")
        if path == "/api/v2/getRequestsQueueStatus" and request.method == "GET":
            with self._lock:
                return json_response(self._queue_status(self._register(device_id)))
        operation = path[len("/api/v2/operations/") :] if path.startswith("/api/v2/operations/") else None
        if operation in SYNC_OPERATIONS and request.method == "POST":
            with self._lock:
                answer = self._query(self._register(device_id), SYNC_OPERATIONS[operation], {})
                self._save()
            return json_response(answer)
        return self._error_response(404, f"Нет такого метода: {request.method} {request.path}")

    def _authorized(self, request: Request) -> bool:
        if not self.users:
            return True
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected = self.users.get(user)
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    def _error_response(self, status: int, description: str) -> Response:
        if self.flat_errors:
            return json_response({"errorCode": status, "errorDescription": description}, status)
        return json_response({"error": {"code": status, "description": description}}, status)

    @staticmethod
    def _queue_status(register: Register) -> dict[str, Any]:
        blocked = register.data["blocked"]
        return {
            "isBlocked": blocked is not None,
            "blockReason": blocked["reason"] if blocked else "",
            "blockedUUID": blocked["uuid"] if blocked else "",
        }

    def _post_request(self, request: Request, device_id: str) -> Response:
        try:
            data = request.json()
        except (ValueError, UnicodeDecodeError):
            return self._error_response(400, "Некорректный JSON")
        problem = self._check_request_body(data)
        if problem:
            return self._error_response(400, problem)
        uuid, subtasks = data["uuid"], data["request"]
        with self._lock:
            register = self._register(device_id)
            if uuid in register.data["tasks"]:
                return self._error_response(409, f"Задание с uuid {uuid} уже существует")
            register.data["lastNumber"] += 1
            task = {
                "uuid": uuid,
                "number": register.data["lastNumber"],
                "request": subtasks,
                "results": [
                    {"status": "wait", "result": None, "error": {"code": OK[0], "description": OK[1]}}
                    for _ in subtasks
                ],
            }
            register.data["tasks"][uuid] = task
            self._save()
            self._enqueue(device_id, task)
            answer = {"number": task["number"], "uuid": uuid, **self._queue_status(register)}
            answer.pop("blockReason")
        has_fiscal = any(body["type"] in FISCAL_TASKS for body in subtasks)
        if has_fiscal and self.faults.take(device_id, only={"lost_post_answer"}):
            return lost_answer()  # queued all the same: the client must find out by polling the uuid
        return json_response(answer, 201)

    @staticmethod
    def _check_request_body(data: Any) -> str | None:
        if not isinstance(data, dict):
            return "Тело запроса должно быть объектом"
        uuid = data.get("uuid")
        if not isinstance(uuid, str) or not uuid:
            return 'Отсутствует поле "uuid"'
        subtasks = data.get("request")
        if subtasks is None:
            return 'Отсутствует поле "request"'
        if not isinstance(subtasks, list) or not subtasks:
            return 'Поле "request" должно быть непустым массивом'
        if not all(isinstance(body, dict) and isinstance(body.get("type"), str) for body in subtasks):
            return 'Каждое задание должно быть объектом с полем "type"'
        if sum(body["type"] in FISCAL_TASKS for body in subtasks) > 1:
            return "В одном запросе допускается не более одного фискального задания"
        return None

    def _find_task(self, uuid: str, device_id: str | None) -> tuple[str, dict[str, Any]] | None:
        """A given deviceID is searched alone; without one, the default device first, then any device."""
        devices = self._state["devices"]
        if device_id is not None:
            candidates = [device_id]
        else:
            candidates = ["default", *sorted(d for d in devices if d != "default")]
        for candidate in candidates:
            task = devices.get(candidate, {}).get("tasks", {}).get(uuid)
            if task is not None:
                return candidate, task
        return None

    def _render_entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        rendered = {"status": entry["status"], "result": entry["result"]}
        code, description = entry["error"]["code"], entry["error"]["description"]
        if self.flat_errors:
            rendered.update(errorCode=code, errorDescription=description)
        else:
            rendered["error"] = {"code": code, "description": description}
        return rendered

    def _get_request(self, uuid: str, device_id: str | None) -> Response:
        with self._lock:
            found = self._find_task(uuid, device_id)
            if found is None:
                return self._error_response(404, f"Задание {uuid} не найдено")
            owner, task = found
            answer = {"results": [self._render_entry(entry) for entry in task["results"]]}
        if self.faults.take(owner, only={"lost_get_answer"}):
            return lost_answer()
        return json_response(answer)

    def _delete_request(self, uuid: str, device_id: str | None) -> Response:
        with self._lock:
            found = self._find_task(uuid, device_id)
            if found is None:
                return self._error_response(404, f"Задание {uuid} не найдено")
            _, task = found
            if any(entry["status"] != "wait" for entry in task["results"]):
                return self._error_response(405, "Отменить можно только задание в очереди (wait)")
            for entry in task["results"]:
                entry["status"] = "canceled"
            self._save()
            return json_response({"results": [self._render_entry(entry) for entry in task["results"]]})

    # ================================================================================= control API
    def journal(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._state["journal"]]

    def reset(self) -> None:
        """Fresh registers (each gets a NEW FN on first use), empty journal, paper present, clock offset 0."""
        with self._lock:
            self._state = self._fresh_state()
            for work in self._queues.values():
                while True:
                    try:
                        work.get_nowait()
                    except queue.Empty:
                        break
            self._save()

    def control(self, request: Request, action: str) -> Response | None:
        if action == "clock":
            return self._control_clock(request)
        if action == "paper" and request.method == "POST":
            data = request.json()
            return self._set_device_flag(data, "paperPresent", bool(data["present"]))
        if action == "ofd" and request.method == "POST":
            data = request.json()
            return self._set_device_flag(data, "ofdOnline", bool(data["online"]))
        if action == "devices" and request.method == "GET":
            with self._lock:
                registers = [Register(data, self._rng) for data in self._state["devices"].values()]
                return json_response([self._device_summary(register) for register in registers])
        if action == "prints" and request.method == "GET":
            with self._lock:
                return json_response(list(self._state["prints"]))
        if action == "registration" and request.method == "POST":
            return self._control_registration(request.json())
        if action == "marking" and request.method == "GET":
            with self._lock:
                return json_response(
                    {device: data.get("marking") or {"held": None, "accepted": {}}
                     for device, data in self._state["devices"].items()}
                )
        return None

    def _control_registration(self, data: dict[str, Any]) -> Response:
        """Register ``device`` anew: automatic mode or not, machine number, address and place of settlement."""
        changes = {key: data[key] for key in ("autoMode", *REQUISITES) if key in data}
        if "autoMode" in changes and not isinstance(changes["autoMode"], bool):
            raise ValueError("autoMode must be true or false")
        if any(not isinstance(changes[wire], str) for wire in REQUISITES if wire in changes):
            raise ValueError("machineNumber, paymentsAddress, paymentsPlace must be strings")
        with self._lock:
            register = self._register(str(data.get("device") or "default"))
            register.data["registration"] = {**(register.data.get("registration") or {}), **changes}
            self._save()
            return json_response(register.registration_info()["device"])

    def _control_clock(self, request: Request) -> Response:
        with self._lock:
            if request.method == "POST":
                advance = request.json()["advance_seconds"]
                if isinstance(advance, bool) or not isinstance(advance, int | float):
                    raise ValueError("advance_seconds must be a number")
                self._state["clockOffset"] += float(advance)
                self._save()
            now = self._now()
            return json_response({"offset_seconds": self._state["clockOffset"], "now": iso(now)})

    def _set_device_flag(self, data: dict[str, Any], flag: str, value: bool) -> Response:
        """Sets a register flag on one device (``device``) or on every register that exists."""
        with self._lock:
            device_id = data.get("device")
            registers = [self._register(device_id)] if device_id else [
                Register(d, self._rng) for d in self._state["devices"].values()
            ]
            for register in registers:
                register.data[flag] = value
            self._save()
            return json_response({"ok": True, "devices": [r.data["id"] for r in registers]})

    def _device_summary(self, register: Register) -> dict[str, Any]:
        now = self._now()
        return {
            "device": register.data["id"],
            "fnNumber": register.fn_number,
            "registrationNumber": register.data["registrationNumber"],
            "lastFiscalDocumentNumber": register.data["lastFd"],
            "shiftNumber": register.shift["number"],
            "shiftState": register.shift_state(now),
            "receiptsInShift": register.shift["receipts"],
            "paperPresent": register.data["paperPresent"],
            "ofdOnline": register.data["ofdOnline"],
            "notPrintedDocument": register.data["notPrintedFd"],
            "queue": self._queue_status(register),
        }
