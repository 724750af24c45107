"""Reports for the accountant (issue 14, item 6): the page /reports/ with a period's figures by day and by shift,
and the exports /reports/export.csv and /reports/export.xlsx of orders, receipts and card operations.

A known set of orders written straight to the database (two days in Moscow time, two kiosks, three shifts): a
sale at 01:30 Moscow time belongs to the Moscow day although it is the previous day in UTC; an annulled order
(card declined) and a partial refund; one order outside the period.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime
from decimal import Decimal
from itertools import count
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from openpyxl import load_workbook

from fiscal.models import FiscalDocument, FiscalOperation, Shift
from nekassir.models import Order, OrderLine, Refund
from nekassir.panel import exports
from nekassir.panel.templatetags import rub
from payments.models import CardOperation
from tests.factories import make_kiosk
from tests.panel_support import make_user

pytestmark = pytest.mark.django_db

MSK = ZoneInfo("Europe/Moscow")
_n = count(1)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=MSK)


def _receipt(kiosk, shift, doc_type: str, when: datetime, total: Decimal, items: list[tuple[str, Decimal, str]]):
    n = next(_n)
    request = {"type": doc_type, "items": [{"type": "position", "name": name, "amount": amount, "tax": {"type": vat}}
                                           for name, amount, vat in items],
               "payments": [{"type": "electronically", "sum": total}], "total": total}
    op = FiscalOperation.objects.create(kiosk=kiosk, task_type=doc_type, state="done", request=request,
                                        fn_number=shift.fn_number, fd_number=n, fpd=str(7000000 + n),
                                        shift_number=shift.number)
    FiscalDocument.objects.create(fn_number=shift.fn_number, fd_number=n, kiosk=kiosk, shift=shift, operation=op,
                                  doc_type=doc_type, fpd=str(7000000 + n), receipt_number=n,
                                  shift_number=shift.number, total=total, registered_at=when)
    return op


def _card(kiosk, shift, kind: str, state: str, kopecks: int, when: datetime, pan: str = "4276********1234"):
    n = next(_n)
    card = CardOperation.objects.create(op_id=f"r-{uuid.uuid4().hex[:12]}", kiosk=kiosk, kind=kind, state=state,
                                        transport="kkm", amount_kopecks=kopecks, shift=shift, rrn=f"{n:012d}",
                                        auth_code="A1B2C3", masked_pan=pan)
    CardOperation.objects.filter(pk=card.pk).update(created_at=when)
    return card


def make_order(kiosk, shift, when: datetime, lines: list[tuple[str, str, str, str]], *, annulled: bool = False):
    """``lines``: (name, quantity, price, vat). Sold (receipt + approved card), or annulled (card declined)."""
    amounts = [(name, Decimal(q) * Decimal(p), vat) for name, q, p, vat in lines]
    total = sum((a for _, a, _ in amounts), Decimal("0.00"))
    sell = _receipt(kiosk, shift, "sell", when, total, amounts)
    sale = _card(kiosk, shift, "sale", "declined" if annulled else "approved", int(total * 100), when,
                 pan="4276000011112222" if annulled else "4276********1234")
    n = next(_n)
    order = Order.objects.create(
        kiosk=kiosk, number=f"{kiosk.code}-{n:03d}", business_date=when.date(), seq=n,
        status=Order.Status.CANCELLED if annulled else Order.Status.COMPLETED, step=Order.Step.DONE,
        order_type="takeaway", total=total, request_body={}, body_hash=uuid.uuid4().hex, shift=shift,
        sell_operation=sell, card_sale=sale,
        annul_operation=_receipt(kiosk, shift, "sellReturn", when, total, amounts) if annulled else None,
    )
    Order.objects.filter(pk=order.pk).update(created_at=when)
    for position, (name, q, p, vat) in enumerate(lines, 1):
        OrderLine.objects.create(order=order, position=position, product_id=uuid.uuid4(), name=name,
                                 receipt_name=name, price=Decimal(p), quantity=Decimal(q), vat=vat,
                                 amount=Decimal(q) * Decimal(p))
    return order


def make_refund(order, shift, when: datetime, amount: Decimal, items):
    receipt = _receipt(order.kiosk, shift, "sellReturn", when, amount, items)
    card = _card(order.kiosk, shift, "refund", "approved", int(amount * 100), when)
    refund = Refund.objects.create(order=order, kiosk=order.kiosk, lines={}, amount_kopecks=int(amount * 100),
                                   state="done", card_operation=card, return_operation=receipt)
    Refund.objects.filter(pk=refund.pk).update(created_at=when)
    return refund


@pytest.fixture
def books(db):
    k1 = make_kiosk("http://127.0.0.1:9/", "K1")
    k2 = make_kiosk("http://127.0.0.1:9/", "K2")
    s1 = Shift.objects.create(kiosk=k1, fn_number="9999078900000001", number=1, state="closed",
                              opened_at=at("2026-03-02T08:00"), closed_at=at("2026-03-03T07:00"))
    s3 = Shift.objects.create(kiosk=k2, fn_number="9999078900000002", number=1, state="open",
                              opened_at=at("2026-03-03T08:00"))
    s4 = Shift.objects.create(kiosk=k1, fn_number="9999078900000001", number=2, state="open",
                              opened_at=at("2026-03-05T08:00"))
    a = make_order(k1, s1, at("2026-03-02T10:00"), [("Бургер", "1", "250.00", "vat22")])
    c = make_order(k1, s1, at("2026-03-02T12:00"), [("Кофе", "1", "300.00", "vat22")], annulled=True)
    b = make_order(k1, s1, at("2026-03-03T01:30"), [("Морс", "2", "50.00", "vat10")])  # 2026-03-02 22:30 UTC
    d = make_order(k2, s3, at("2026-03-03T12:00"), [("Бургер", "1", "250.00", "vat22"),
                                                     ("Морс", "3", "50.00", "vat10")])
    make_order(k1, s4, at("2026-03-05T12:00"), [("Бургер", "4", "249.75", "vat22")])  # outside the period
    make_refund(d, s3, at("2026-03-03T13:00"), Decimal("150.00"), [("Морс", Decimal("150.00"), "vat10")])
    return {"k1": k1, "k2": k2, "s1": s1, "s3": s3, "a": a, "b": b, "c": c, "d": d}


PERIOD = "from=2026-03-02&to=2026-03-03"


# --- the page ------------------------------------------------------------------------------------
def test_report_figures_for_a_known_period(manager_client, books):
    answer = manager_client.get(f"/reports/?{PERIOD}")
    assert answer.status_code == 200
    report = answer.context["report"]
    total = report.total
    assert (total.sales, total.sales_count) == (Decimal("1050.00"), 4)
    assert (total.annulments, total.annulments_count) == (Decimal("300.00"), 1)
    assert (total.returns, total.returns_count) == (Decimal("150.00"), 1)
    assert total.net == Decimal("600.00")
    assert total.card == Decimal("600.00") and total.other == Decimal("0.00")
    assert total.checks == 3 and total.average == Decimal("250.00")
    days = {row.day.isoformat(): row.figures for row in report.days}
    assert list(days) == ["2026-03-02", "2026-03-03"]
    assert (days["2026-03-02"].sales, days["2026-03-02"].annulments, days["2026-03-02"].net) == (
        Decimal("550.00"), Decimal("300.00"), Decimal("250.00"))
    assert (days["2026-03-03"].sales, days["2026-03-03"].returns, days["2026-03-03"].net) == (
        Decimal("500.00"), Decimal("150.00"), Decimal("350.00"))
    shifts = {(row.shift.kiosk.code, row.shift.number): row.figures for row in report.shifts}
    assert set(shifts) == {("K1", 1), ("K2", 1)}
    assert (shifts["K1", 1].sales, shifts["K1", 1].annulments, shifts["K1", 1].net) == (
        Decimal("650.00"), Decimal("300.00"), Decimal("350.00"))
    assert (shifts["K2", 1].sales, shifts["K2", 1].returns, shifts["K2", 1].net) == (
        Decimal("400.00"), Decimal("150.00"), Decimal("250.00"))
    assert [(item["name"], item["quantity"], item["amount"]) for item in report.top_items] == [
        ("Бургер", Decimal("2"), Decimal("500.00")), ("Морс", Decimal("5"), Decimal("250.00"))]
    html = answer.content.decode()
    assert rub(Decimal("1050")) in html and rub(Decimal("600")) in html  # the panel's one money format
    assert "<svg" in html and html.count('data-testid="day-bar"') == 2
    assert "<script" not in html.split("<main", 1)[1]  # the chart is drawn on the server, no script


def test_report_for_one_kiosk(manager_client, books):
    report = manager_client.get(f"/reports/?{PERIOD}&kiosk=K2").context["report"]
    assert (report.total.sales, report.total.returns, report.total.net) == (
        Decimal("400.00"), Decimal("150.00"), Decimal("250.00"))
    assert [row.shift.kiosk.code for row in report.shifts] == ["K2"]


def test_report_defaults_to_this_month(manager_client, books):
    answer = manager_client.get("/reports/")
    assert answer.status_code == 200
    assert answer.context["period"].start.day == 1


@pytest.mark.parametrize("query", ["from=2026-3-02&to=2026-03-03", "from=2026-03-02&to=2026-02-30",
                                   "from=2026-03-04&to=2026-03-03", "from=20260302&to=2026-03-03",
                                   "from=2025-01-01&to=2026-03-03", "from=2026-03-02&to=2026-03-03&kiosk=NOPE"])
def test_report_page_refuses_a_bad_period(manager_client, books, query):
    answer = manager_client.get(f"/reports/?{query}")
    assert answer.status_code == 400
    text = answer.content.decode().lower()
    assert 'data-testid="report-error"' in text and ("период" in text or "киоск" in text)


def test_report_queries_do_not_grow_with_the_period(manager_client, books):
    def queries(query: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert manager_client.get(f"/reports/?{query}").status_code == 200
        return len(captured)

    short = queries("from=2026-03-02&to=2026-03-02")
    long = queries("from=2026-01-01&to=2026-03-31")
    assert short == long and long <= 12, (short, long)


# --- access ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/reports/", f"/reports/export.csv?kind=orders&{PERIOD}",
                                  f"/reports/export.xlsx?kind=orders&{PERIOD}", "/reports/totals/"])
def test_reports_need_a_login_and_the_reading_right(client, books, path):
    assert client.get(path).status_code == 302  # to the login form
    client.force_login(make_user("nobody", reads=False))
    assert client.get(path).status_code == 403
    client.force_login(make_user("reader"))
    assert client.get(path).status_code == 200


def test_the_embed_has_no_reports(client, books):
    assert client.get("/kiosk/K1/service/reports/").status_code == 404


def test_the_panel_links_to_reports(manager_client, books):
    assert 'href="/reports/"' in manager_client.get("/").content.decode()


# --- exports ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("query", ["kind=menu&" + PERIOD, "kind=&" + PERIOD, PERIOD, "kind=orders&from=2026-03-02",
                                   "kind=orders&from=02.03.2026&to=2026-03-03", "kind=orders&from=x&to=y",
                                   "kind=card&from=2026-03-04&to=2026-03-03", f"kind=orders&{PERIOD}&kiosk=NOPE"])
@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_exports_refuse_bad_queries_with_400(manager_client, books, query, fmt):
    answer = manager_client.get(f"/reports/export.{fmt}?{query}")
    assert answer.status_code == 400
    text = answer.content.decode()
    assert any(word in text for word in ("Неизвестный вид", "дата", "Неизвестный киоск", "Период")), text


def read_csv(answer) -> list[list[str]]:
    assert answer.status_code == 200 and answer.streaming
    assert answer["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in answer["Content-Disposition"]
    text = b"".join(answer.streaming_content).decode("utf-8")
    assert text.startswith("\ufeff")  # Excel reads it as UTF-8
    return list(csv.reader(io.StringIO(text[1:]), delimiter=";"))


def test_orders_csv(manager_client, books):
    rows = read_csv(manager_client.get(f"/reports/export.csv?kind=orders&{PERIOD}"))
    header, *data = rows
    assert header[:4] == ["Номер", "Киоск", "Создан", "Смена"]
    assert [row[0] for row in data] == [books[k].number for k in "acbd"]
    b = dict(zip(header, data[2], strict=True))
    assert b["Создан"] == "03.03.2026 01:30:00"  # Moscow time (22:30 UTC on the 2nd)
    assert b["Сумма, ₽"] == "100,00" and b["Состояние"] == "выполнен"
    c = dict(zip(header, data[1], strict=True))
    assert c["Аннулирован"] == "да" and c["Оплачено картой, ₽"] == ""
    d = dict(zip(header, data[3], strict=True))
    assert d["Возвращено, ₽"] == "150,00" and d["Киоск"] == "K2"
    only_k2 = read_csv(manager_client.get(f"/reports/export.csv?kind=orders&{PERIOD}&kiosk=K2"))
    assert [row[0] for row in only_k2[1:]] == [books["d"].number]


def test_receipts_csv_with_vat_by_rate(manager_client, books):
    header, *data = read_csv(manager_client.get(f"/reports/export.csv?kind=receipts&{PERIOD}"))
    assert header[:9] == ["Дата и время", "Киоск", "Вид", "ФН", "ФД", "ФПД", "Смена", "Номер чека", "Сумма, ₽"]
    assert len(data) == 6  # 4 sells, the annulment and the refund's return
    sell_d = next(dict(zip(header, row, strict=True)) for row in data
                  if row[1] == "K2" and row[2] == "чек прихода")
    assert sell_d["Сумма, ₽"] == "400,00" and sell_d["Дата и время"] == "03.03.2026 12:00:00"
    assert sell_d["Сумма по ставке НДС 22%, ₽"] == "250,00" and sell_d["НДС 22%, ₽"] == "45,08"
    assert sell_d["Сумма по ставке НДС 10%, ₽"] == "150,00" and sell_d["НДС 10%, ₽"] == "13,64"
    assert sell_d["ФН"] == "9999078900000002" and sell_d["Смена"] == "1"
    returns = [row for row in data if row[2] == "чек возврата прихода"]
    assert len(returns) == 2


def test_card_csv_masks_the_card(manager_client, books):
    header, *data = read_csv(manager_client.get(f"/reports/export.csv?kind=card&{PERIOD}"))
    assert header == ["Дата и время", "Киоск", "Операция", "Состояние", "Сумма, ₽", "RRN", "Код авторизации",
                      "Карта", "Смена", "Заказ"]
    assert len(data) == 5
    rows = [dict(zip(header, row, strict=True)) for row in data]
    declined = next(r for r in rows if r["Состояние"] == "отказ")
    assert declined["Карта"] == "427600******2222"  # a full number is never written out
    refund = next(r for r in rows if r["Операция"] == "возврат")
    assert refund["Сумма, ₽"] == "150,00" and refund["Заказ"] == books["d"].number
    assert all(len(r["RRN"]) == 12 for r in rows)


def read_xlsx(answer):
    assert answer.status_code == 200
    assert answer["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert "attachment" in answer["Content-Disposition"]
    return load_workbook(io.BytesIO(b"".join(answer.streaming_content)), read_only=True)


def test_orders_xlsx(manager_client, books):
    book = read_xlsx(manager_client.get(f"/reports/export.xlsx?kind=orders&{PERIOD}"))
    assert book.sheetnames == ["Заказы"]
    header, *data = list(book["Заказы"].values)
    assert header[:3] == ("Номер", "Киоск", "Создан")
    assert [row[0] for row in data] == [books[k].number for k in "acbd"]
    b = dict(zip(header, data[2], strict=False))  # read-only sheets drop a row's trailing empty cells
    assert b["Создан"] == datetime(2026, 3, 3, 1, 30)  # Moscow wall time
    assert Decimal(str(b["Сумма, ₽"])) == Decimal("100.00")


def test_receipts_and_card_xlsx(manager_client, books):
    book = read_xlsx(manager_client.get(f"/reports/export.xlsx?kind=receipts&{PERIOD}&kiosk=K2"))
    header, *data = list(book[book.sheetnames[0]].values)
    assert len(data) == 2  # D's sell and its refund's return
    assert {row[header.index("ФД")] for row in data} and all(row[1] == "K2" for row in data)
    book = read_xlsx(manager_client.get(f"/reports/export.xlsx?kind=card&{PERIOD}"))
    header, *data = list(book[book.sheetnames[0]].values)
    assert len(data) == 5 and header[7] == "Карта"


def test_xlsx_continues_on_a_new_sheet(manager_client, books, monkeypatch):
    monkeypatch.setattr(exports, "ROWS_PER_SHEET", 3)
    book = read_xlsx(manager_client.get(f"/reports/export.xlsx?kind=orders&{PERIOD}"))
    assert book.sheetnames == ["Заказы", "Заказы (2)"]
    first, second = (list(book[name].values) for name in book.sheetnames)
    assert first[0] == second[0]  # each sheet has the header
    assert [row[0] for row in first[1:] + second[1:]] == [books[k].number for k in "acbd"]
    assert len(first) == 4 and len(second) == 2


def test_xlsx_temporary_file_is_removed(manager_client, books, tmp_path, monkeypatch):
    monkeypatch.setattr(exports.tempfile, "tempdir", str(tmp_path))
    read_xlsx(manager_client.get(f"/reports/export.xlsx?kind=orders&{PERIOD}"))
    assert list(tmp_path.iterdir()) == []


def test_empty_period_exports_only_the_header(manager_client, books):
    header, *data = read_csv(manager_client.get("/reports/export.csv?kind=orders&from=2020-01-01&to=2020-01-02"))
    assert header[0] == "Номер" and data == []
    book = read_xlsx(manager_client.get("/reports/export.xlsx?kind=card&from=2020-01-01&to=2020-01-02"))
    assert len(list(book[book.sheetnames[0]].values)) == 1


# --- the orders list ---------------------------------------------------------------------------------
def test_orders_list_loads_day_and_shift_totals(manager_client, books):
    page = manager_client.get("/orders/?kiosk=K2").content.decode()
    assert 'hx-get="/reports/totals/?kiosk=K2"' in page
    Order.objects.filter(pk=books["d"].pk).update(created_at=books["d"].created_at.now(MSK))
    fragment = manager_client.get("/reports/totals/?kiosk=K2").content.decode()
    assert 'data-testid="day-totals"' in fragment and rub(Decimal("400")) in fragment
    assert 'data-testid="shift-totals"' in fragment and "K2" in fragment and "№1" in fragment


def test_superuser_sees_reports(client, books):
    client.force_login(User.objects.create_superuser("root", password="x"))
    assert client.get(f"/reports/?{PERIOD}").status_code == 200


@pytest.mark.parametrize("code", ["K\x001", "K" * 200])
def test_odd_kiosk_codes_are_400_not_500(manager_client, books, code):
    assert manager_client.get(f"/reports/?{PERIOD}&kiosk={quote(code)}").status_code == 400
    assert manager_client.get(f"/reports/export.csv?kind=card&{PERIOD}&kiosk={quote(code)}").status_code == 400
