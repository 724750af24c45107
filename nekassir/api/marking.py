"""Marked goods in a kiosk order (issue 13): the lines' ``marking_codes`` checked before anything is saved, and
the order's units (``OrderMark``) saved in the order's own transaction.

A line of a product in ``marking.MarkedProduct`` carries one code per unit, exactly as the scanner read it (GS
kept); kiosks sell marked goods by the piece, so such a line must be a piece line whose quantity is the number
of its codes. Every refusal is a 422 whose ``error.code`` is the first detail's code and whose details name the
line, its product and the code as sent. ``marking_code_in_use`` is our own registry: a code is in at most one
order in progress or sold and not returned. It is checked by a query here (for the message), and guarded by the
unique constraint ``order_mark_code_active`` when the units are saved: two kiosks posting one code at once get
one 201 and one 422, never two orders.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from core.gs1 import InvalidMarkingCode, parse_code
from marking.models import MarkedProduct
from nekassir.api.errors import ApiError, safe_text
from nekassir.api.schemas import MAX_MARKING_CODE_LENGTH, LineIn, OrderIn
from nekassir.models import MeasurementUnit, Order, OrderLine, OrderMark

MESSAGE = "Коды маркировки не прошли проверку: {first}"
IN_USE = "код уже в другом заказе: в работе или продан и не возвращён"


def check_marking(data: OrderIn) -> None:
    """ApiError 422 (``marking_*``) unless every marked line carries one valid, unused code per unit."""
    products = {
        str(p.product_id): p
        for p in MarkedProduct.objects.filter(product_id__in={line.product_id for line in data.lines})
    }
    details: list[dict[str, Any]] = []
    seen: dict[str, tuple[int, int]] = {}
    for index, line in enumerate(data.lines):
        product = products.get(str(line.product_id))
        codes = line.marking_codes or []
        if product is None:
            if codes:
                details.append(_detail(index, line, "marking_codes_unexpected",
                                       "товар не отмечен как маркированный: коды маркировки для него не принимаются "
                                       "(отметьте товар в админке как маркированный)"))
            continue
        if not codes:
            details.append(_detail(index, line, "marking_codes_missing",
                                   "маркированный товар: нужен код маркировки каждой единицы"))
            continue
        if line.unit != MeasurementUnit.PIECE or line.quantity != len(codes):
            reason = (f"количество {line.quantity.normalize():f} не равно числу кодов маркировки ({len(codes)})"
                      if line.unit == MeasurementUnit.PIECE else
                      "маркированный товар продаётся поштучно (unit piece), по коду на единицу")
            details.append(_detail(index, line, "marking_codes_mismatch", reason))
        for number, raw in enumerate(codes):
            try:
                code = parse_code(raw)
            except InvalidMarkingCode as exc:
                details.append(_code_detail(index, number, line, raw, "marking_code_invalid", str(exc)))
                continue
            if code.gtin not in (product.gtins or []):
                details.append(_code_detail(index, number, line, raw, "marking_gtin_mismatch",
                                            f"GTIN {code.gtin} не относится к этому товару"))
            elif raw in seen:
                first_line, first_number = seen[raw]
                where = f"позиция {first_line + 1}, код {first_number + 1}"
                details.append(_code_detail(index, number, line, raw, "marking_code_duplicate",
                                            f"код уже есть в заказе ({where})"))
            else:
                seen[raw] = (index, number)
    in_use = set(OrderMark.objects.filter(code__in=seen, state__in=OrderMark.ACTIVE).values_list("code", flat=True))
    for raw in sorted(in_use, key=lambda c: seen[c]):
        index, number = seen[raw]
        details.append(_code_detail(index, number, data.lines[index], raw, "marking_code_in_use", IN_USE))
    if details:
        details.sort(key=lambda d: (d["line"], _code_number(d["field"])))
        raise _refusal(details)


def save_marks(order: Order, rows: list[OrderLine], lines: list[LineIn]) -> int:
    """Save one ``OrderMark`` per unit of the order's marked lines (inside the order's transaction); how many.

    The insert runs in a savepoint: a code another order took since ``check_marking`` (two kiosks, one code)
    trips ``order_mark_code_active`` and becomes the 422 ``marking_code_in_use`` (the whole order is rolled
    back), told apart from the same order posted twice, which fails earlier on the order's own id."""
    marks = [
        OrderMark(order=order, line=row, unit=unit, code=raw, gtin=parse_code(raw).gtin)
        for row, line in zip(rows, lines, strict=True)
        for unit, raw in enumerate(line.marking_codes or [], start=1)
    ]
    if not marks:
        return 0
    try:
        with transaction.atomic():  # a savepoint: the constraint's failure is ours to read
            OrderMark.objects.bulk_create(marks)
    except IntegrityError:
        codes = [mark.code for mark in marks]
        taken = set(OrderMark.objects.filter(code__in=codes, state__in=OrderMark.ACTIVE)
                    .values_list("code", flat=True)) or {codes[0]}
        details = []
        for index, line in enumerate(lines):
            for number, raw in enumerate(line.marking_codes or []):
                if raw in taken:
                    details.append(_code_detail(index, number, line, raw, "marking_code_in_use", IN_USE))
        raise _refusal(details) from None
    return len(marks)


def has_marks(lines: list[LineIn]) -> bool:
    return any(line.marking_codes for line in lines)


def _refusal(details: list[dict[str, Any]]) -> ApiError:
    first = details[0]
    return ApiError(422, first["code"], MESSAGE.format(first=first["message"]), details=details)


def _detail(index: int, line: LineIn, code: str, reason: str) -> dict[str, Any]:
    return {"field": f"lines.{index}.marking_codes", "code": code, "message": f"позиция {index + 1}: {reason}",
            "line": index, "product_id": str(line.product_id)}


def _code_detail(index: int, number: int, line: LineIn, raw: str, code: str, reason: str) -> dict[str, Any]:
    return {"field": f"lines.{index}.marking_codes.{number}", "code": code,
            "message": f"позиция {index + 1}, код {number + 1}: {reason}", "line": index,
            "product_id": str(line.product_id), "marking_code": safe_text(raw, MAX_MARKING_CODE_LENGTH * 2)}


def _code_number(field: str) -> int:
    last = field.rsplit(".", 1)[-1]
    return int(last) if last.isdigit() else -1
