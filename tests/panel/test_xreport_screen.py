"""Issue 14, item 3: after an X report the job's result shows the register's counters read right after it
(getShiftTotals in the same register session, journaled): receipts, income, returns, net, by payment type, the
way the closing report shows them, with «Напечатать ещё раз» (another X report job)."""

from __future__ import annotations

import re

import pytest

from core.models import Event
from fiscal import shifts
from fiscal.models import FiscalOperation
from iiko import emulator as demo
from nekassir.models import Refund
from nekassir.panel import jobs
from tests.panel_support import HX, make_user, place

pytestmark = pytest.mark.django_db(transaction=True)


def rub(amount) -> str:
    whole, cents = f"{amount:.2f}".split(".")
    groups = re.sub(r"(?<=\d)(?=(\d{3})+$)", "\u00a0", whole)  # the panel's thousands separator
    return f"{groups},{cents} ₽"


def text(html: str, testid: str) -> str:
    found = re.search(r'data-testid="' + testid + r'"[^>]*>(.*?)</(?:dd|td|section)>', html, re.S)
    assert found, testid
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(1))).strip()


@pytest.fixture
def sold(client, manager_client, venue):
    """An open shift with one card sale and a partial refund of it (one cappuccino)."""
    manager_client.post("/kiosks/K1/shift/open/")
    order = place(client, venue)
    coffee = order.lines.get(product_id=demo.PRODUCT_CAPPUCCINO_ID)
    assert manager_client.post(f"/orders/{order.pk}/refund/", {f"qty_{coffee.pk}": "1", "to_card": "on",
                                                               "after": "0"}).status_code == 302
    refund = Refund.objects.get()
    assert refund.state == Refund.State.DONE
    return order, refund


def test_the_x_report_shows_the_registers_counters_by_payment_type(manager_client, venue, sold):
    order, refund = sold
    html = manager_client.post("/kiosks/K1/xreport/", headers=HX).content.decode()
    assert 'data-job-state="ok"' in html and "X-отчёт напечатан" in html
    assert 'data-testid="xreport-figures"' in html
    assert text(html, "xreport-receipts") == "2"
    assert text(html, "totals-sells") == f"1 · {rub(order.total)}"
    assert text(html, "totals-returns") == f"1 · {rub(refund.amount)}"
    assert text(html, "totals-net") == rub(order.total - refund.amount)
    row = re.search(r'data-testid="xreport-payment" data-type="electronically">(.*?)</tr>', html, re.S)
    assert row, "the card payments' row"
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row.group(1))]
    assert cells == ["безналичными", rub(order.total), rub(refund.amount), rub(order.total - refund.amount)]
    assert 'data-type="cash"' not in html  # a payment type with nothing in it is left out
    # The counters were read right after the report, in the same register session, and journaled.
    tasks = list(FiscalOperation.objects.filter(kiosk__code="K1").order_by("id").values_list("task_type", flat=True))
    assert tasks[-2:] == ["reportX", "getShiftTotals"]
    outcome = Event.objects.filter(action=jobs.DONE, object_ref__startswith="job:").order_by("-id").first()
    assert outcome.data["totals"]["shiftTotals"]["receipts"]["sell"]["count"] == 1
    assert outcome.data["shift_id"] == order.shift_id


def test_the_job_page_shows_the_figures_and_prints_again(manager_client, venue, sold):
    answer = manager_client.post("/kiosks/K1/xreport/")
    first = int(re.search(r"job=(\d+)", answer["Location"]).group(1))
    page = manager_client.get(f"/jobs/{first}/").content.decode()
    assert 'data-testid="xreport-figures"' in page and "Напечатать ещё раз" in page
    again = re.search(r'<form[^>]*action="([^"]+)"[^>]*data-testid="xreport-again"', page)
    assert again and again.group(1) == "/kiosks/K1/xreport/"
    second = manager_client.post(again.group(1), headers=HX).content.decode()
    assert 'data-job-kind="xreport"' in second and 'data-job-state="ok"' in second
    assert Event.objects.filter(action="panel.xreport").count() == 2
    assert len([d for d in venue.atol.journal() if d["type"] == "reportX" and d["device"] == "K1"]) == 2


def test_without_the_x_report_right_the_figures_show_but_not_the_button(client, manager_client, venue, sold):
    answer = manager_client.post("/kiosks/K1/xreport/")
    job = int(re.search(r"job=(\d+)", answer["Location"]).group(1))
    client.force_login(make_user("reader"))
    page = client.get(f"/jobs/{job}/").content.decode()
    assert 'data-testid="xreport-figures"' in page and "Напечатать ещё раз" not in page


def test_the_fiscal_x_report_returns_the_counters_read_after_it(venue):
    kiosk = venue.kiosks["K1"]
    shifts.open_shift(kiosk)
    report = shifts.print_x_report(kiosk)
    assert report.operation.task_type == "reportX" and report.operation.state == FiscalOperation.State.DONE
    assert report.totals["shiftTotals"]["receipts"]["sell"]["count"] == 0
    journaled = Event.objects.get(action="fiscal.shift.xreport")
    assert journaled.data["totals"] == report.totals
