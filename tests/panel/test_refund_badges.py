"""Issue 14, item 2: an order's refund status («частично возвращён» / «возвращён», with the refunded sum) on the
order page, the orders list, the shift page, the venue's and the kiosk's blocks; the orders list filters by it.
Only done refunds count (one in flight or failed gives back nothing yet)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from nekassir.models import Order, Refund
from tests.panel_support import PIN, fake_completed_order, fake_shift, place

pytestmark = pytest.mark.django_db(transaction=True)


def refund(order, kopecks: int, state: str = Refund.State.DONE) -> Refund:
    return Refund.objects.create(order=order, kiosk=order.kiosk, lines={}, amount_kopecks=kopecks, state=state)


def badge(html: str, order) -> str:
    """The refund badge in the row / head of ``order`` ("" when none)."""
    found = re.search(r'data-testid="refund-badge" data-order="' + str(order.pk) + r'"[^>]*>(.*?)</span>', html, re.S)
    return re.sub(r"\s+", " ", found.group(1)).strip() if found else ""


@pytest.fixture
def orders(venue):
    kiosk = venue.kiosks["K1"]
    shift = fake_shift(kiosk)
    full, partial, none, failed = (fake_completed_order(kiosk, shift, Decimal("709.00")) for _ in range(4))
    refund(full, 50000)
    refund(full, 20900)  # two refunds that together return everything
    refund(partial, 25000)
    refund(partial, 10000, Refund.State.FAILED)  # gives nothing back
    refund(failed, 70900, Refund.State.FAILED)
    return {"full": full, "partial": partial, "none": none, "failed": failed, "shift": shift}


def test_a_full_refund_through_the_panel_shows_returned_on_the_order_list_and_kiosk_pages(client, manager_client,
                                                                                         venue):
    order = place(client, venue)
    answer = manager_client.post(f"/orders/{order.pk}/refund/", {"full": "1", "to_card": "on", "after": "0"})
    assert answer.status_code == 302
    total = f"{order.total:.2f}".replace(".", ",")
    page = manager_client.get(f"/orders/{order.pk}/").content.decode()
    assert badge(page, order) == f"возвращён · {total} ₽"
    listed = manager_client.get("/orders/").content.decode()
    assert badge(listed, order) == f"возвращён · {total} ₽"
    shift = manager_client.get(f"/shifts/{order.shift_id}/").content.decode()
    assert badge(shift, order) == f"возвращён · {total} ₽"
    assert client.post("/kiosk/K1/service/", {"pin": PIN}).status_code == 302
    kiosk_page = client.get("/kiosk/K1/service/").content.decode()
    assert badge(kiosk_page, order) == f"возвращён · {total} ₽"
    embed_order = client.get(f"/kiosk/K1/service/orders/{order.pk}/").content.decode()
    assert badge(embed_order, order) == f"возвращён · {total} ₽"


def test_partial_full_and_no_refund_in_the_orders_list(manager_client, orders):
    html = manager_client.get("/orders/").content.decode()
    assert badge(html, orders["full"]) == "возвращён · 709,00 ₽"
    assert badge(html, orders["partial"]) == "частично возвращён · 250,00 ₽"
    assert badge(html, orders["none"]) == "" and badge(html, orders["failed"]) == ""
    assert 'data-testid="refund-badge" data-order="' + str(orders["full"].pk) + '" class="refund full"' in html


def test_the_orders_list_filters_by_refund_status(manager_client, orders):
    def listed(refund_filter: str) -> set:
        html = manager_client.get("/orders/", {"refund": refund_filter}).content.decode()
        return {str(o.pk) for o in Order.objects.all() if f"/orders/{o.pk}/" in html}

    assert listed("full") == {str(orders["full"].pk)}
    assert listed("partial") == {str(orders["partial"].pk)}
    assert listed("any") == {str(orders["full"].pk), str(orders["partial"].pk)}
    assert len(listed("")) == 4 and len(listed("nonsense")) == 4  # no filter
    form = manager_client.get("/orders/", {"refund": "partial"}).content.decode()
    assert '<select name="refund"' in form and '<option value="partial" selected>' in form


def test_the_order_page_and_the_shift_page_show_the_partial_refund(manager_client, orders):
    partial = orders["partial"]
    page = manager_client.get(f"/orders/{partial.pk}/").content.decode()
    assert badge(page, partial) == "частично возвращён · 250,00 ₽"
    assert 'data-testid="refunded-total">250,00 ₽<' in page  # under the refunds table, of 709,00
    assert badge(manager_client.get(f"/orders/{orders['none'].pk}/").content.decode(), orders["none"]) == ""
    shift = manager_client.get(f"/shifts/{orders['shift'].pk}/").content.decode()
    assert badge(shift, partial) == "частично возвращён · 250,00 ₽" and badge(shift, orders["failed"]) == ""


def test_the_kiosk_block_lists_an_order_needing_attention_with_its_refund(manager_client, orders):
    partial = orders["partial"]
    Order.objects.filter(pk=partial.pk).update(status=Order.Status.NEEDS_ATTENTION)
    html = manager_client.get("/kiosks/K1/block/").content.decode()
    assert badge(html, partial) == "частично возвращён · 250,00 ₽"


# The rows panel/_orders_table.html wrote with template nodes before nekassir.panel.rows wrote them in Python.
TEMPLATE_ROWS = """{% load i18n panel %}{% for o in orders %}<tr data-testid="order-row">
    <td><a href="{% purl 'order' o.pk %}">{{ o.number }}</a></td>
    <td class="nowrap">{{ o.created_at|date:"d.m H:i" }}</td>
    <td>{{ o.kiosk.code }}</td>
    <td><span class="status s-{{ o.status }}">{{ o.get_status_display }}</span>{% if o.refund_state %} {% include "panel/_refund_badge.html" %}{% endif %}</td>
    <td class="num">{{ o.total|rub }}</td>
    {% if with_issues %}<td>{% if o.issues %}<span class="bad-text">{{ o.issues|join:"; " }}</span>{% else %}<span class="ok-text">✓</span>{% endif %}</td>{% endif %}
  </tr>{% endfor %}"""  # noqa: E501


@pytest.mark.parametrize("embed", [False, True])
def test_the_orders_rows_written_in_python_are_the_templates(orders, embed):
    """Issue 14 (page speed): the orders table's rows are written by nekassir.panel.rows; the same markup as the
    template rows they replaced, refund badges, issues (escaped), the venue's time and the embed's URLs included."""
    from django.template import Context, Template

    from nekassir.panel.access import Scope
    from nekassir.panel.rows import order_rows_html
    from nekassir.panel.venue import with_refunds

    orders["none"].number = "K1-<b>&"  # escaped the same way
    orders["none"].save(update_fields=["number"])
    rows = list(with_refunds(Order.objects.filter(shift=orders["shift"])).select_related("kiosk").order_by("pk"))
    for row, issues in zip(rows, (["чек <не найден>", "оплата"], [], ["x"], []), strict=False):
        row.issues = issues
    scope = Scope(kiosk=orders["shift"].kiosk) if embed else Scope(user=None)
    for with_issues in (False, True):
        expected = Template(TEMPLATE_ROWS).render(Context({"orders": rows, "scope": scope, "with_issues": with_issues}))
        written = order_rows_html(rows, scope, with_issues)
        assert re.sub(r">\n\s*<", "><", expected).strip() == written  # the template's line breaks aside
    assert "K1-&lt;b&gt;&amp;" in written and "чек &lt;не найден&gt;; оплата" in written
    assert written.count('data-testid="refund-badge"') == 2
    assert ("/kiosk/K1/service/orders/" in written) is embed
