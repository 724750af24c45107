"""The venue's current problems on the venue page: a fragment loaded by htmx, the same list as the Telegram
alerts, each with its kiosk, since when and a link; a bounded number of queries however many orders."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.models import Kiosk
from fiscal.models import FiscalOperation, Shift
from nekassir.models import Order
from nekassir.panel.alerts_panel import ORDER_LIMIT
from payments.models import Settlement
from tests.panel_support import HX, fake_completed_order, fake_shift

pytestmark = pytest.mark.django_db(transaction=True)


def fragment(client) -> str:
    answer = client.get("/alerts/", headers=HX)
    assert answer.status_code == 200
    return answer.content.decode()


def not_delivered(kiosk, shift, count: int = 1) -> list[Order]:
    orders = [fake_completed_order(kiosk, shift) for _ in range(count)]
    Order.objects.filter(pk__in=[o.pk for o in orders]).update(status=Order.Status.NOT_DELIVERED)
    return orders


def test_the_venue_page_loads_the_problems_after_itself(manager_client, venue):
    html = manager_client.get("/").content.decode()
    assert 'hx-get="/alerts/" hx-trigger="load, every 30s"' in html


def test_with_no_problems_everything_is_fine(manager_client, venue):
    html = fragment(manager_client)
    assert 'data-testid="alerts-none"' in html and "Всё в порядке" in html


def test_an_order_not_delivered_to_iiko_is_listed_with_its_kiosk_time_and_link(manager_client, venue):
    [order] = not_delivered(venue.kiosks["K1"], fake_shift(venue.kiosks["K1"]))
    html = fragment(manager_client)
    assert f"Заказ {order.number} (250,00 ₽, киоск K1) оплачен, но не передан в iiko" in html
    assert f'href="/orders/{order.pk}/"' in html and "<td>K1</td>" in html
    order.refresh_from_db()
    assert timezone.localtime(order.created_at).strftime("%d.%m %H:%M") in html
    assert "Всё в порядке" not in html


def test_an_unreconciled_shift_and_a_register_not_ready_are_listed_too(manager_client, venue):
    kiosk = venue.kiosks["K2"]
    shift = fake_shift(kiosk, number=5, state=Shift.State.CLOSED)
    Shift.objects.filter(pk=shift.pk).update(closed_at=shift.opened_at)
    Settlement.objects.create(kiosk=kiosk, shift=shift, state=Settlement.State.FAILED, message="нет связи с банком")
    Kiosk.objects.filter(pk=kiosk.pk).update(register_ready=False, register_problem="В ККТ нет бумаги")
    failed = FiscalOperation.objects.create(kiosk=kiosk, task_type="sell", state="failed", error_kind="no_paper")
    failed_at = timezone.now() - timedelta(hours=3)
    FiscalOperation.objects.filter(pk=failed.pk).update(created_at=failed_at)
    html = fragment(manager_client)
    assert "Смена №5 киоска K2 закрыта не сверенной: нет связи с банком" in html
    assert f'href="/shifts/{shift.pk}/"' in html
    assert "ККТ киоска K2 не готова: В ККТ нет бумаги" in html
    assert timezone.localtime(failed_at).strftime("%d.%m %H:%M") in html  # since the failure that set it
    assert html.index("ККТ киоска K2") < html.index("Смена №5")  # what stops sales comes first


def test_the_fragment_costs_the_same_queries_with_5_or_50_problems_and_lists_a_bounded_number(manager_client,
                                                                                                venue):
    kiosk = venue.kiosks["K1"]
    shift = fake_shift(kiosk)

    def queries() -> tuple[int, str]:
        with CaptureQueriesContext(connection) as captured:
            html = fragment(manager_client)
        return len(captured), html

    not_delivered(kiosk, shift, 5)
    few, _ = queries()
    not_delivered(kiosk, shift, 45)
    many, html = queries()
    assert many == few <= 12, (few, many)
    assert html.count("оплачен, но не передан в iiko") == ORDER_LIMIT
    assert 'href="/orders/?attention=1"' in html


def test_the_fragment_is_for_logged_in_managers(client, venue):
    answer = client.get("/alerts/", headers=HX)
    assert answer.status_code == 204 and answer["HX-Redirect"].startswith("/login/")
