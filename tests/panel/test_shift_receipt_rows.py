"""The shift page's receipts table (issue 14, page speed): its rows are written by nekassir.panel.rows
(``receipt_rows_html``) with the markup of the template rows they replaced, byte for byte: sells, an annulment,
a refund, a correction receipt made for another shift, one not printed, one without a time; texts escaped; the
venue's time; the embed's URLs."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.template import Context, Template

from fiscal.models import Correction, FiscalDocument, Shift
from nekassir.models import Order
from nekassir.panel.access import Scope
from nekassir.panel.rows import receipt_rows_html
from nekassir.panel.views.shifts import DOC_LABELS, receipt_rows
from tests.factories import make_kiosk
from tests.panel.test_reports import _receipt, at, make_order, make_refund

pytestmark = pytest.mark.django_db

# The rows of templates/panel/shift.html before they were written in Python.
TEMPLATE_ROWS = """{% load i18n panel %}{% for d in receipts %}<tr data-testid="receipt-row">
      <td data-testid="receipt-number">{{ d.receipt_number|default:"—" }}</td>
      <td>{{ d.doc_label }}{% if not d.printed %} <span class="warn-text" data-testid="not-printed">{% translate "не напечатан" %}</span>{% endif %}</td>
      <td>{{ d.fd_number }}</td><td>{{ d.fpd }}</td>
      <td class="nowrap">{{ d.registered_at|date:"H:i:s" }}</td>
      <td>{% if d.order_pk %}<a href="{% purl 'order' d.order_pk %}">{{ d.order_number }}</a>{% elif d.corrects_pk %}<a href="{% purl 'shift' d.corrects_pk %}#shift-corrections">{% translate "коррекция смены" %} №{{ d.corrects_number }}</a>{% else %}—{% endif %}</td>
      <td class="num {% if d.doc_type == 'sellReturn' or d.doc_type == 'sellReturnCorrection' %}neg{% endif %}">{{ d.total|rub }}</td>
    </tr>{% endfor %}"""  # noqa: E501


@pytest.fixture
def shift():
    kiosk = make_kiosk("http://127.0.0.1:9/", "K1")
    earlier = Shift.objects.create(kiosk=kiosk, fn_number="9999078900000001", number=7, state="closed",
                                   opened_at=at("2026-03-01T08:00"), closed_at=at("2026-03-01T23:00"))
    current = Shift.objects.create(kiosk=kiosk, fn_number="9999078900000001", number=8, state="closed",
                                   opened_at=at("2026-03-02T08:00"), closed_at=at("2026-03-02T23:00"))
    sold = make_order(kiosk, current, at("2026-03-02T10:00"), [("Бургер", "2", "1250.00", "vat22")])
    Order.objects.filter(pk=sold.pk).update(number="K1-<b>&")
    make_order(kiosk, current, at("2026-03-02T12:00"), [("Кофе", "1", "300.00", "vat22")], annulled=True)
    make_refund(sold, current, at("2026-03-02T13:05"), Decimal("1250.00"), [("Бургер", Decimal("1250.00"), "vat22")])
    fixing = _receipt(kiosk, current, "sellCorrection", at("2026-03-02T14:00"), Decimal("10.00"),
                      [("Недостача", Decimal("10.00"), "vat22")])
    Correction.objects.create(kiosk=kiosk, shift=earlier, operation=fixing, kind="sellCorrection", basis="self",
                              settlement_date=at("2026-03-01T12:00").date(), total=Decimal("10.00"), reason="x")
    back = _receipt(kiosk, current, "sellReturnCorrection", at("2026-03-02T15:00"), Decimal("5.00"),
                    [("Возврат", Decimal("5.00"), "vat22")])
    FiscalDocument.objects.filter(operation=back).update(printed=False, registered_at=None, receipt_number=None)
    return current


@pytest.mark.parametrize("embed", [False, True])
def test_the_receipt_rows_written_in_python_are_the_templates(shift, embed):
    rows = list(receipt_rows(shift))
    for row in rows:
        row["doc_label"] = DOC_LABELS.get(row["doc_type"], row["doc_type"])
    scope = Scope(kiosk=shift.kiosk) if embed else Scope(user=None)
    expected = Template(TEMPLATE_ROWS).render(Context({"receipts": rows, "scope": scope}))
    written = receipt_rows_html(rows, scope)
    assert re.sub(r">\n\s*<", "><", expected).strip() == written  # the template's line breaks aside
    assert len(rows) == 6 and written.count('data-testid="receipt-row"') == 6
    assert "K1-&lt;b&gt;&amp;" in written and written.count('class="num neg"') == 3
    assert 'data-testid="not-printed"' in written and "коррекция смены №7" in written
    assert ("/kiosk/K1/service/" in written) is embed
