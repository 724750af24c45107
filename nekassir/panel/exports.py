"""The accountant's exports (issue 14): a period's orders, receipts and card operations as CSV or XLSX.

``/reports/export.csv`` and ``/reports/export.xlsx`` with ``kind`` (``orders``, ``receipts``, ``card``),
``from`` and ``to`` (``YYYY-MM-DD``, both included, the venue's days) and an optional ``kiosk`` (its code).
Russian headers; times are the venue's wall time (``TIME_ZONE``).

A year of a busy venue is millions of rows, so nothing here holds the period in memory: each export is a
generator of rows over ``.iterator(chunk_size=…)`` (a server-side cursor on PostgreSQL).

* CSV is streamed as it is read (``StreamingHttpResponse``): UTF-8 with a BOM, ``;`` between fields and a
  decimal comma, as Excel opens it in a Russian locale.
* XLSX is written by openpyxl's write-only workbook (rows go to disk as they come, memory stays flat) into a
  temporary file, which is then streamed (``FileResponse``); the file is unlinked as soon as it is open, so
  nothing is left behind whatever happens to the download. A sheet holds at most 1,048,576 rows: after
  ``ROWS_PER_SHEET`` data rows (plus the header) the export goes on in a new sheet «Заказы (2)», ….
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models import CharField, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import FileResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.http import content_disposition_header
from openpyxl import Workbook  # type: ignore[import-untyped]
from openpyxl.cell import WriteOnlyCell  # type: ignore[import-untyped]

from core.models import Kiosk
from fiscal.models import FiscalDocument
from nekassir.models import Order, Refund
from nekassir.panel.reports import BadPeriod, Period, kiosks_named
from payments.acquiring import kopecks_to_rubles
from payments.models import CardOperation

ROWS_PER_SHEET = 1_048_575  # data rows per XLSX sheet: the format's 1,048,576 rows less the header
CHUNK = 2000  # rows fetched from the database at a time
CSV_BATCH = 500  # CSV rows sent to the client at a time
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MONEY_FORMAT = "#,##0.00"
TIME_FORMAT = "DD.MM.YYYY HH:MM:SS"
CENT = Decimal("0.01")
YES = "да"


@dataclass(frozen=True)
class Export:
    kind: str
    title: str  # the sheet's name
    headers: Sequence[str]
    rows: Iterable[Sequence[Any]]  # values: str, int, Decimal (money), aware datetime, None


def _local(moment: datetime | None) -> datetime | None:
    return timezone.localtime(moment, timezone.get_default_timezone()) if moment is not None else None


def _rub(kopecks: int | None) -> Decimal | None:
    return None if kopecks is None else kopecks_to_rubles(kopecks)


# --- orders ------------------------------------------------------------------------------------------
ORDER_HEADERS = ("Номер", "Киоск", "Создан", "Смена", "Состояние", "Тип заказа", "Сумма, ₽", "Оплачено картой, ₽",
                 "RRN", "ФД чека прихода", "Аннулирован", "Возвращено, ₽")


def order_rows(period: Period, kiosk: Kiosk | None) -> Iterator[Sequence[Any]]:
    refunded = (Refund.objects.filter(order=OuterRef("pk"), return_operation__state="done").order_by()
                .values("order").annotate(s=Sum("amount_kopecks")).values("s"))
    orders = Order.objects.filter(created_at__gte=period.since, created_at__lt=period.until)
    if kiosk is not None:
        orders = orders.filter(kiosk=kiosk)
    statuses, types = dict(Order.Status.choices), dict(Order.OrderType.choices)
    rows = (orders.annotate(refunded=Subquery(refunded)).order_by("created_at", "pk")
            .values_list("number", "kiosk__code", "created_at", "shift__number", "status", "order_type", "total",
                         "card_sale__state", "card_sale__amount_kopecks", "card_sale__rrn",
                         "sell_operation__fd_number", "annul_operation__state", "refunded"))
    for (number, code, created, shift, status, order_type, total, card_state, card_kopecks, rrn, fd, annul,
         refunded_kopecks) in rows.iterator(chunk_size=CHUNK):
        approved = card_state == CardOperation.State.APPROVED
        yield (number, code, _local(created), shift, statuses.get(status, status), types.get(order_type, order_type),
               total, _rub(card_kopecks) if approved else None, (rrn or None) if approved else None, fd,
               YES if annul == "done" else "", _rub(refunded_kopecks))


# --- receipts ----------------------------------------------------------------------------------------
RECEIPT_TYPES = (FiscalDocument.Type.SELL, FiscalDocument.Type.SELL_RETURN, FiscalDocument.Type.SELL_CORRECTION,
                 FiscalDocument.Type.SELL_RETURN_CORRECTION)
# VAT columns: (rate code, its label, the rate in % or None when the sum carries no VAT). A calculated rate
# (vat122: 22/122, a prepayment's) counts in its rate's column: the VAT in it is the same share.
RATES = (("vat22", "НДС 22%", 22), ("vat20", "НДС 20%", 20), ("vat10", "НДС 10%", 10), ("vat7", "НДС 7%", 7),
         ("vat5", "НДС 5%", 5), ("vat0", "НДС 0%", None), ("none", "без НДС", None))
CALCULATED = {"vat122": "vat22", "vat120": "vat20", "vat110": "vat10", "vat107": "vat7", "vat105": "vat5"}
RECEIPT_HEADERS = ("Дата и время", "Киоск", "Вид", "ФН", "ФД", "ФПД", "Смена", "Номер чека", "Сумма, ₽",
                   *(f"Сумма по ставке {label}, ₽" for _, label, _ in RATES),
                   *(f"{label}, ₽" for _, label, rate in RATES if rate))


def vat_columns(request: Any) -> list[Decimal | None]:
    """From the receipt task as sent (its positions' ``amount`` and ``tax.type``): the sum at each rate, then
    the VAT at each rate that has one (sum × rate / (100 + rate), half-up to kopecks). Empty when unknown."""
    items = request.get("items") if isinstance(request, dict) else None
    if not items:
        return [None] * (len(RATES) + sum(1 for *_, rate in RATES if rate))
    sums: dict[str, Decimal] = {}
    for item in items:
        if not isinstance(item, dict) or item.get("type", "position") != "position":
            continue
        code = str((item.get("tax") or {}).get("type") or "")
        code = CALCULATED.get(code, code)
        sums[code] = sums.get(code, Decimal(0)) + Decimal(str(item.get("amount") or 0))
    columns: list[Decimal | None] = [sums[code].quantize(CENT) if code in sums else None for code, _, _ in RATES]
    columns += [(sums[code] * rate / (100 + rate)).quantize(CENT, rounding=ROUND_HALF_UP) if code in sums else None
                for code, _, rate in RATES if rate]
    return columns


def receipt_rows(period: Period, kiosk: Kiosk | None) -> Iterator[Sequence[Any]]:
    documents = FiscalDocument.objects.filter(doc_type__in=RECEIPT_TYPES, registered_at__gte=period.since,
                                              registered_at__lt=period.until)
    if kiosk is not None:
        documents = documents.filter(kiosk=kiosk)
    kinds = dict(FiscalDocument.Type.choices)
    rows = (documents.order_by("registered_at", "pk")
            .values_list("registered_at", "kiosk__code", "doc_type", "fn_number", "fd_number", "fpd",
                         "shift_number", "receipt_number", "total", "operation__request"))
    for registered, code, doc_type, fn, fd, fpd, shift, number, total, request in rows.iterator(chunk_size=CHUNK):
        yield (_local(registered), code, kinds.get(doc_type, doc_type), fn, fd, fpd, shift, number, total,
               *vat_columns(request))


# --- card operations ---------------------------------------------------------------------------------
CARD_HEADERS = ("Дата и время", "Киоск", "Операция", "Состояние", "Сумма, ₽", "RRN", "Код авторизации", "Карта",
                "Смена", "Заказ")


def mask_pan(pan: str) -> str:
    """A card number as it may be kept: what the terminal masked stays; a whole number keeps 6 + 4 digits."""
    digits = sum(ch.isdigit() for ch in pan)
    if "*" in pan or digits <= 10:
        return pan
    seen, out = 0, []
    for ch in pan:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen <= 6 or seen > digits - 4 else "*")
        else:
            out.append(ch)
    return "".join(out)


def card_rows(period: Period, kiosk: Kiosk | None) -> Iterator[Sequence[Any]]:
    operations = CardOperation.objects.filter(kind__in=CardOperation.MONEY_KINDS, created_at__gte=period.since,
                                              created_at__lt=period.until)
    if kiosk is not None:
        operations = operations.filter(kiosk=kiosk)
    kinds, states = dict(CardOperation.Kind.choices), dict(CardOperation.State.choices)
    order = Coalesce("paid_order__number", "refund__order__number", "original__paid_order__number",
                     output_field=CharField())
    rows = (operations.annotate(order_number=order).order_by("created_at", "pk")
            .values_list("created_at", "kiosk__code", "kind", "state", "amount_kopecks", "rrn", "auth_code",
                         "masked_pan", "shift__number", "order_number"))
    for created, code, kind, state, kopecks, rrn, auth, pan, shift, number in rows.iterator(chunk_size=CHUNK):
        yield (_local(created), code, kinds.get(kind, kind), states.get(state, state), _rub(kopecks), rrn or None,
               auth or None, mask_pan(pan or "") or None, shift, number)


KINDS: dict[str, tuple[str, Sequence[str], Callable[[Period, Kiosk | None], Iterator[Sequence[Any]]]]] = {
    "orders": ("Заказы", ORDER_HEADERS, order_rows),
    "receipts": ("Чеки", RECEIPT_HEADERS, receipt_rows),
    "card": ("Операции по картам", CARD_HEADERS, card_rows),
}


def export_of(params: Any) -> tuple[Export, Period, Kiosk | None]:
    """The export a query asks for, or BadPeriod (400) for an unknown kind, a bad date or an unknown kiosk.
    Nothing is read yet: the rows come as the response is sent."""
    kind = params.get("kind", "")
    if kind not in KINDS:
        raise BadPeriod(f"Неизвестный вид выгрузки kind={kind[:40]!r}: ожидается orders, receipts или card")
    period = Period.parse(params)
    named = kiosks_named([params.get("kiosk", "")])
    kiosk = named[0] if named else None
    title, headers, rows = KINDS[kind]
    return Export(kind, title, headers, rows(period, kiosk)), period, kiosk


def filename(export: Export, period: Period, kiosk: Kiosk | None, extension: str) -> str:
    where = f"_{kiosk.code}" if kiosk is not None else ""
    return f"{export.kind}_{period.start.isoformat()}_{period.end.isoformat()}{where}.{extension}"


# --- CSV ---------------------------------------------------------------------------------------------
class _Echo:
    """A file for csv.writer whose write() returns the line instead of keeping it."""

    def write(self, value: str) -> str:
        return value


def csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%d.%m.%Y %H:%M:%S")
    if isinstance(value, Decimal):
        return f"{value:.2f}".replace(".", ",")
    return value


def csv_lines(export: Export) -> Iterator[str]:
    writer = csv.writer(_Echo(), delimiter=";")
    batch = ["\ufeff" + writer.writerow(export.headers)]
    for row in export.rows:
        batch.append(writer.writerow([csv_cell(value) for value in row]))
        if len(batch) >= CSV_BATCH:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)


def csv_response(export: Export, name: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(csv_lines(export), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = content_disposition_header(True, name) or "attachment"
    return response


# --- XLSX --------------------------------------------------------------------------------------------
def _xlsx_cell(sheet: Any, value: Any) -> Any:
    if isinstance(value, datetime):
        cell = WriteOnlyCell(sheet, value.replace(tzinfo=None))  # the venue's wall time (Excel has no zones)
        cell.number_format = TIME_FORMAT
        return cell
    if isinstance(value, Decimal):
        cell = WriteOnlyCell(sheet, value)
        cell.number_format = MONEY_FORMAT
        return cell
    return value


def write_xlsx(export: Export, path: str) -> int:
    """Writes the export to ``path``; returns the number of sheets. ``ROWS_PER_SHEET`` is read at each call."""
    book = Workbook(write_only=True)
    sheet: Any = None
    sheets = 0
    rows_here = 0
    for row in export.rows:
        if sheet is None or rows_here >= ROWS_PER_SHEET:
            sheets += 1
            sheet = book.create_sheet(export.title if sheets == 1 else f"{export.title} ({sheets})")
            sheet.append(list(export.headers))
            rows_here = 0
        sheet.append([_xlsx_cell(sheet, value) for value in row])
        rows_here += 1
    if sheet is None:  # an empty period: the header alone
        sheets = 1
        book.create_sheet(export.title).append(list(export.headers))
    book.save(path)
    return sheets


def xlsx_response(export: Export, name: str) -> FileResponse:
    handle, path = tempfile.mkstemp(prefix="nekassir-export-", suffix=".xlsx")
    os.close(handle)
    try:
        write_xlsx(export, path)
        stream = open(path, "rb")  # FileResponse closes it when sent
    finally:
        os.unlink(path)  # the open file stays readable until closed; nothing is left on disk
    return FileResponse(stream, as_attachment=True, filename=name, content_type=XLSX_TYPE)
