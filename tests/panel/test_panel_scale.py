"""The panel at scale (issue 7): long lists are paged, the shift's reconciliation still covers the whole
shift, the journal is paged without counting it, and the venue page's lookups match its partial indexes."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from core.events import record_event
from fiscal.models import FiscalDocument, FiscalOperation
from nekassir.models import ACTIVE_STEPS, ATTENTION_STATUSES, Order, Refund
from nekassir.panel.reconciliation import facts_of, order_queryset, shift_order_facts
from nekassir.panel.views import shifts as shift_views
from nekassir.panel.views import venue as venue_views
from payments.models import CardOperation
from tests.panel_support import fake_completed_order, fake_shift

pytestmark = pytest.mark.django_db(transaction=True)


def rows(html: str, testid: str) -> int:
    return html.count(f'data-testid="{testid}"')


def test_the_shift_page_pages_receipts_and_orders_while_its_totals_cover_the_whole_shift(
        manager_client, venue, monkeypatch):
    monkeypatch.setattr(shift_views, "ON_PAGE", 3)
    kiosk = venue.kiosks["K1"]
    shift = fake_shift(kiosk)
    orders = [fake_completed_order(kiosk, shift, total=Decimal("100.00")) for _ in range(7)]
    Order.objects.filter(pk=orders[-1].pk).update(status="cancelled")  # charged, yet cancelled: a gap

    first = manager_client.get(f"/shifts/{shift.pk}/").content.decode()
    assert rows(first, "order-row") == 3 and rows(first, "receipt-row") == 3
    assert "700,00 ₽" in first  # the receipts' total is the whole shift's
    assert "Заказов с расхождениями: 1" in first
    assert f'href="/orders/{orders[-1].pk}/">{orders[-1].number}</a>' in first  # listed, though on page 3
    assert 'href="?page=2#shift-orders"' in first and 'href="?receipts=2#shift-receipts"' in first

    last = manager_client.get(f"/shifts/{shift.pk}/?page=3&receipts=2").content.decode()
    assert rows(last, "order-row") == 1 and rows(last, "receipt-row") == 3
    assert orders[-1].number in last and "7–7 из 7" in last
    assert 'href="?page=3&amp;receipts=3#shift-receipts"' in last  # the other list's page is kept
    # a page out of range shows the last one
    assert rows(manager_client.get(f"/shifts/{shift.pk}/?page=99").content.decode(), "order-row") == 1


def test_the_shift_reads_each_order_as_the_same_facts_as_its_order_page(venue):
    kiosk = venue.kiosks["K1"]
    shift = fake_shift(kiosk)
    plain, refunded, cancelled, short = (fake_completed_order(kiosk, shift) for _ in range(4))
    back = FiscalOperation.objects.create(kiosk=kiosk, task_type="sellReturn", state="done", fd_number=9001)
    FiscalDocument.objects.create(fn_number=shift.fn_number, fd_number=9001, kiosk=kiosk, shift=shift,
                                  operation=back, doc_type="sellReturn", total=Decimal("100.00"))
    card_back = CardOperation.objects.create(op_id="back-1", kiosk=kiosk, kind="refund", state="approved",
                                             transport="kkm", amount_kopecks=9000, shift=shift)
    Refund.objects.create(order=refunded, kiosk=kiosk, amount_kopecks=10000, state="done", card_operation=card_back,
                          return_operation=back)
    Refund.objects.create(order=refunded, kiosk=kiosk, amount_kopecks=5000, state="failed")
    annul = FiscalOperation.objects.create(kiosk=kiosk, task_type="sellReturn", state="sent")
    Order.objects.filter(pk=cancelled.pk).update(status="cancelled", annul_operation=annul)
    CardOperation.objects.filter(pk=short.card_sale_id).update(amount_kopecks=100)

    by_rows = {pk: facts for pk, _, facts in shift_order_facts(shift)}
    loaded = {o.pk: facts_of(o) for o in order_queryset(Order.objects.filter(shift=shift))}
    assert by_rows == loaded
    assert len(by_rows[refunded.pk].refunds) == 2 and by_rows[cancelled.pk].annul.state == "sent"
    assert by_rows[plain.pk].sale.amount == Decimal("250.00") and by_rows[short.pk].sale.amount == Decimal("1.00")


def test_the_journal_is_paged_by_id_older_and_newer(manager_client, manager, venue, monkeypatch):
    monkeypatch.setattr(venue_views, "JOURNAL_PAGE", 3)
    kiosk = venue.kiosks["K1"]
    events = [record_event("panel.check", kiosk=kiosk, user=manager, message=f"Действие {n}") for n in range(7)]
    record_event("order.completed", kiosk=kiosk, message="не ручное")  # not a manual action: never listed

    def page(query: str) -> tuple[list[str], str, str]:
        html = manager_client.get(f"/journal/{query}").content.decode()
        newer = re.search(r'href="([^"]*)" data-testid="journal-newer"', html)
        older = re.search(r'href="([^"]*)" data-testid="journal-older"', html)
        return (re.findall(r"Действие \d", html), newer.group(1).replace("&amp;", "&") if newer else "",
                older.group(1) if older else "")

    shown, newer, older = page("")
    assert shown == ["Действие 6", "Действие 5", "Действие 4"] and not newer and older == f"?before={events[4].pk}"
    shown, newer, older = page(older)
    assert shown == ["Действие 3", "Действие 2", "Действие 1"] and newer == f"?after={events[3].pk}"
    shown, _, last = page(older)
    assert shown == ["Действие 0"] and not last
    assert page(newer)[0] == ["Действие 6", "Действие 5", "Действие 4"]
    assert page(f"?after={events[6].pk}")[0] == []  # nothing newer (the journal moved on): a link back to its start
    assert "не ручное" not in manager_client.get("/journal/").content.decode()


def test_the_partial_indexes_name_every_step_before_done_and_the_statuses_needing_attention():
    assert set(ACTIVE_STEPS) == {step.value for step in Order.Step} - {Order.Step.DONE}
    assert set(ATTENTION_STATUSES) == {Order.Status.NOT_DELIVERED, Order.Status.NEEDS_ATTENTION}
    index = next(i for i in Order._meta.indexes if i.name == "order_active_or_attention")
    assert index.condition.children == [("step__in", ACTIVE_STEPS), ("status__in", ATTENTION_STATUSES)]
