"""Correction receipts: how a reconciliation gap found after the fact is fixed (DESIGN.md, never by editing
history).

A ``sellCorrection`` registers money taken with no receipt (a card sale whose sell receipt was never made);
a ``sellReturnCorrection`` money given back with no return receipt. Each carries its FFD 1.2 basis (tag
1174): made by the seller itself ("самостоятельно") or on an instruction of the tax service (its number),
and the date of the settlement being corrected (tag 1178). The lines are positions as in any receipt, paid
electronically (a kiosk takes cards only).

``parse_correction`` checks a manager's form completely before anything is saved; ``make_correction`` then
runs the task like every fiscal task: under the register lock (and the kiosk's sale lock, so that opening
the shift never lands between an order's receipt and its payment), the journal row and its uuid saved
before the call, the document stored with its FD number. The correction is counted by the reconciliation
of the shift it fixes (``Correction.shift``), whichever shift the register was in when it was made.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, cast

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.events import record_event
from core.locks import device_lock, sale_lock_key
from core.models import Kiosk
from core.money import rub
from fiscal import requisites
from fiscal import vat as vat_rules
from fiscal.models import Correction, FiscalOperation, Shift
from fiscal.register import FiscalFailed, register_session
from fiscal.shifts import BeforeClose, ensure_open
from fiscal.vat import Vat

log = logging.getLogger(__name__)

KOPECK = Decimal("0.01")
QUANTITY_PLACES = 3  # a manager types pieces or kilograms to the gram
MAX_LINES = 5  # rows of the panel's form
MAX_NAME_LENGTH = 128  # FFD 1.2 tag 1030
# Bounds far above any restaurant's receipt: a typo (or a hostile form) never reaches Decimal's precision limit
# or the database's 12 digits.
MAX_PRICE = Decimal("1000000")
MAX_QUANTITY = Decimal("10000")
MAX_TOTAL = Decimal("10000000")
MADE = "fiscal.correction.made"

# VAT (PROTOCOLS.md §1, "VAT and the taxation system"): the kiosk API's own rule (``fiscal.vat``), applied
# on the date of the settlement being corrected, not today's: a correction of a 2025 sale keeps its 20 %.
VAT_LABELS = dict(Vat.choices)


class CorrectionInvalid(ValueError):
    """The form cannot become a correction receipt; ``errors`` are the manager's Russian messages."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class CorrectionLine:
    name: str
    price: Decimal
    quantity: Decimal
    vat: str

    @property
    def amount(self) -> Decimal:
        return (self.price * self.quantity).quantize(KOPECK, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class CorrectionRequest:
    kind: str  # Correction.Kind
    basis: str  # Correction.Basis
    settlement_date: date
    instruction_number: str
    lines: tuple[CorrectionLine, ...]
    reason: str

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal("0.00"))

    @property
    def label(self) -> str:
        return Correction.Kind(self.kind).label

    def as_data(self) -> dict[str, Any]:
        """JSON-safe (exact strings for money), kept in the job's journal entry until the job runs it."""
        return {
            "kind": self.kind, "basis": self.basis, "settlement_date": self.settlement_date.isoformat(),
            "instruction_number": self.instruction_number, "reason": self.reason,
            "lines": [{"name": line.name, "price": str(line.price), "quantity": str(line.quantity), "vat": line.vat}
                      for line in self.lines],
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> CorrectionRequest:
        lines = tuple(CorrectionLine(line["name"], Decimal(line["price"]), Decimal(line["quantity"]), line["vat"])
                      for line in data["lines"])
        return cls(data["kind"], data["basis"], date.fromisoformat(data["settlement_date"]),
                   data["instruction_number"], lines, data["reason"])


# --- the manager's form -----------------------------------------------------------------------------------
def parse_correction(form: Mapping[str, str], kiosk: Kiosk, *, today: date | None = None) -> CorrectionRequest:
    """The panel's form as a request, or CorrectionInvalid naming every problem (nothing is saved here)."""
    today = today or timezone.localdate()
    errors: list[str] = []
    kind = form.get("kind", "")
    if kind not in Correction.Kind.values:
        errors.append("Выберите вид чека коррекции")
    basis = form.get("basis", "")
    number = form.get("instruction_number", "").strip()
    if basis not in Correction.Basis.values:
        errors.append("Выберите основание коррекции: самостоятельно или по предписанию")
    elif basis == Correction.Basis.INSTRUCTION and not number:
        errors.append("Для коррекции по предписанию укажите номер предписания налогового органа")
    elif len(number) > 64:
        errors.append("Номер предписания длиннее 64 символов")
    settlement_date = _date(form.get("settlement_date", ""))
    if settlement_date is None:
        errors.append("Укажите дату корректируемого расчёта")
    elif settlement_date > today:
        errors.append("Дата корректируемого расчёта не может быть позже сегодняшней")
    lines = _lines(form, kiosk.taxation_type, settlement_date or today, errors)
    reason = " ".join(form.get("reason", "").split())
    if not reason:
        errors.append("Укажите, почему нужна коррекция: это попадёт в журнал")
    if errors:
        raise CorrectionInvalid(errors)
    assert settlement_date is not None  # else errors named it
    return CorrectionRequest(kind, basis, settlement_date, number if basis == "instruction" else "", lines, reason)


def _date(raw: str) -> date | None:
    """``YYYY-MM-DD`` (a date input) or ``DD.MM.YYYY`` (typed by hand)."""
    for pattern in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            return datetime.strptime(raw.strip(), pattern).date()
        except ValueError:
            continue
    return None


def _lines(form: Mapping[str, str], taxation: str, on: date, errors: list[str]) -> tuple[CorrectionLine, ...]:
    lines = []
    for index in range(MAX_LINES):
        raw = {field: form.get(f"{field}_{index}", "").strip() for field in ("name", "price", "quantity", "vat")}
        if not (raw["name"] or raw["price"]):
            continue  # an empty row of the form (its quantity has a default)
        line = _line(raw, index + 1, taxation, on, errors)
        if line is not None:
            lines.append(line)
    if not lines and not any(error.startswith("Позиция") for error in errors):
        errors.append("Укажите хотя бы одну позицию")
    elif sum((line.amount for line in lines), Decimal(0)) > MAX_TOTAL:
        errors.append(f"Сумма чека коррекции больше {rub(MAX_TOTAL)}: проверьте цены и количества")
    return tuple(lines)


def _line(raw: dict[str, str], n: int, taxation: str, on: date, errors: list[str]) -> CorrectionLine | None:
    found = []
    if not raw["name"]:
        found.append(f"Позиция {n}: укажите наименование")
    elif len(raw["name"]) > MAX_NAME_LENGTH:
        found.append(f"Позиция {n}: наименование длиннее {MAX_NAME_LENGTH} символов")
    price = _decimal(raw["price"], 2)
    if price is None:
        found.append(f"Позиция {n}: цена — число рублей с копейками, например 189.00")
    elif price <= 0:
        found.append(f"Позиция {n}: цена должна быть больше нуля")
    elif price > MAX_PRICE:
        found.append(f"Позиция {n}: цена больше {rub(MAX_PRICE)}")
    quantity = _decimal(raw["quantity"], QUANTITY_PLACES)
    if quantity is None:
        found.append(f"Позиция {n}: количество — число, до {QUANTITY_PLACES} знаков после запятой")
    elif quantity <= 0:
        found.append(f"Позиция {n}: количество должно быть больше нуля")
    elif quantity > MAX_QUANTITY:
        found.append(f"Позиция {n}: количество больше {MAX_QUANTITY}")
    if not raw["vat"]:
        found.append(f"Позиция {n}: выберите ставку НДС")
    elif problem := vat_problem(raw["vat"], taxation, on):
        found.append(f"Позиция {n}: {problem}")
    if found or price is None or quantity is None:  # a None price or quantity has its message in found
        errors.extend(found)
        return None
    if (price * quantity).quantize(KOPECK, rounding=ROUND_HALF_UP) <= 0:
        errors.append(f"Позиция {n}: сумма меньше копейки")
        return None
    return CorrectionLine(raw["name"], price, quantity, raw["vat"])


def _decimal(raw: str, places: int) -> Decimal | None:
    """An exact number with at most ``places`` decimals (a comma is accepted), else None. Never a float."""
    try:
        value = Decimal(raw.replace(",", ".").replace(" ", ""))
    except InvalidOperation:
        return None
    if not value.is_finite() or cast(int, value.as_tuple().exponent) < -places:  # finite: an int exponent
        return None
    return value


def vat_problem(vat: str, taxation: str, on: date) -> str:
    """Why ``vat`` cannot be on a full-payment position of a seller on ``taxation`` for a settlement made
    ``on`` that date ("" when it can)."""
    if vat not in VAT_LABELS:
        return f"неизвестная ставка НДС «{vat}»"
    return vat_rules.refusal(vat, taxation, on) or ""


# --- the task -----------------------------------------------------------------------------------------------
def correction_task(kiosk: Kiosk, request: CorrectionRequest) -> dict[str, Any]:
    """The ATOL JSON task (PROTOCOLS.md §1; FFD 1.2 correction fields as the driver names them)."""
    total = request.total
    task: dict[str, Any] = {
        "type": request.kind,
        "taxationType": kiosk.taxation_type,
        "correctionType": request.basis,
        "correctionBaseDate": request.settlement_date.strftime("%Y.%m.%d"),
        "items": [_position(line) for line in request.lines],
        "payments": [{"type": "electronically", "sum": total}],
        "total": total,
    }
    if request.basis == Correction.Basis.INSTRUCTION:
        task["correctionBaseNumber"] = request.instruction_number  # tag 1179: an instruction's only
    if kiosk.atol_operator:
        task["operator"] = kiosk.atol_operator
    # A correction is a receipt of the kiosk's register like any other: the requisites of an automatic device
    # (machine number, address and place of settlement) from the one place every receipt gets them.
    task.update(requisites.receipt_fields(kiosk))
    return task


def _position(line: CorrectionLine) -> dict[str, Any]:
    return {
        "type": "position",
        "name": line.name,
        "price": line.price,
        "quantity": line.quantity.normalize(),
        "amount": line.amount,
        "tax": {"type": line.vat},
        "paymentMethod": "fullPayment",
        "paymentObject": "commodity",
        "measurementUnit": "piece",
    }


# --- the workflow ------------------------------------------------------------------------------------------
def make_correction(shift: Shift, request: CorrectionRequest, *, before_close: BeforeClose, user=None,
                    job=None) -> Correction:
    """Make the correction receipt for ``shift``'s gap; returns it with its done operation and document.

    Raises FiscalFailed (nothing was made, the journal row says why), FiscalOutcomeUnknown (resolved later
    by its uuid, like every fiscal task) or DeviceBusy. ``before_close`` runs before a close of an expired
    shift (the top floor hands down the terminal's settlement: ``fiscal.shifts.BeforeClose``). ``job`` (the
    panel's journal entry) makes a job delivered twice find its correction instead of making a second one.
    """
    kiosk = shift.kiosk
    if job is not None:
        earlier = Correction.objects.select_related("operation").filter(job=job).first()
        if earlier is not None:
            return _resume(earlier, user=user)
    purpose = f"{kiosk.code}: чек коррекции"
    with device_lock(sale_lock_key(kiosk), purpose=purpose, wait=settings.CLOSE_WAIT_FOR_SALE), \
            register_session(kiosk, purpose=purpose) as session:
        ensure_open(session, before_close=before_close)  # a correction, like any receipt, is made in an open shift
        with transaction.atomic():
            op = session.create(correction_task(kiosk, request), reference=f"correction:shift:{shift.pk}")
            correction = Correction.objects.create(
                kiosk=kiosk, shift=shift, operation=op, job=job, kind=request.kind, basis=request.basis,
                settlement_date=request.settlement_date, instruction_number=request.instruction_number,
                total=request.total, reason=request.reason, created_by=_user(user),
            )
        session.perform(op)
    return _made(correction, user=user)


def _resume(correction: Correction, *, user=None) -> Correction:
    """A correction already started by this job: its task is resolved by its uuid, never sent again."""
    if correction.operation.unresolved:
        with register_session(correction.kiosk, purpose=f"{correction.kiosk.code}: чек коррекции"):
            pass  # the session resolves what was left unresolved on the register
        correction.operation.refresh_from_db()
    op = correction.operation
    if op.state != FiscalOperation.State.DONE:
        raise FiscalFailed(f"{correction.kiosk.code}: чек коррекции не пробит: {op.error_message}", op)
    return _made(correction, user=user)


def _made(correction: Correction, *, user=None) -> Correction:
    correction = Correction.objects.select_related("operation__document", "shift", "kiosk").get(pk=correction.pk)
    document = correction.operation.document
    if not correction.kiosk.events.filter(action=MADE, data__correction=correction.pk).exists():
        record_event(MADE, kiosk=correction.kiosk, user=user, object_ref=f"shift:{correction.shift_id}",
                     message=(f"{correction.get_kind_display()} на {correction.total} ₽ за смену "
                              f"№{correction.shift.number}: ФД {document.fd_number}. {correction.reason}"),
                     data={"correction": correction.pk, "fd": document.fd_number, "basis": correction.basis})
    return correction


def _user(user):
    return user if user is not None and getattr(user, "is_authenticated", False) else None
