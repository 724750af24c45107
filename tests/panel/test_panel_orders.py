"""The order page and its actions: refund by lines, resend to iiko, copies of the receipt and the slip."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from core.models import Event
from iiko import emulator as demo
from nekassir.models import Order, Refund
from tests.panel_support import HX, place

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def order(client, venue):
    paid = place(client, venue)
    assert paid.status == Order.Status.COMPLETED
    return paid


def line(order, product_id):
    return order.lines.get(product_id=product_id)


def test_the_order_page_shows_everything_about_the_order(manager_client, order, venue):
    html = manager_client.get(f"/orders/{order.pk}/").content.decode()
    document = order.sell_operation.document
    assert (order.number in html and "Бургер" in html) or "бургер" in html.lower()
    assert f"<dd>{document.fd_number}</dd>" in html and document.fpd in html
    assert "<svg" in html and document.qr.replace("&", "&amp;") in html and document.qr.endswith("n=1")
    assert order.card_sale.rrn in html and order.card_sale.slip.splitlines()[0] in html
    attempt = order.iiko_attempts.get()
    assert attempt.iiko_order_id in html and "&quot;externalNumber&quot;" in html  # the raw request, as sent
    assert "Оплата одобрена" in html  # the status timeline
    assert "Оформить возврат" in html


def test_a_partial_refund_returns_exactly_those_lines(manager_client, manager, order, venue):
    coffee = line(order, demo.PRODUCT_CAPPUCCINO_ID)
    answer = manager_client.post(f"/orders/{order.pk}/refund/", {
        f"qty_{coffee.pk}": "1", "to_card": "on", "after": "0",
    })
    assert answer.status_code == 302, answer.content.decode()
    refund = Refund.objects.get()
    assert refund.state == Refund.State.DONE and refund.amount == coffee.price and refund.created_by == manager
    assert refund.lines == {str(coffee.pk): "1"}
    html = manager_client.get(answer["Location"]).content.decode()
    assert 'data-state="done"' in html and f"ФД {refund.return_operation.fd_number}" in html
    assert html.count('data-testid="receipt"') == 2 and "n=2" in html  # the sellReturn with its own QR


def test_a_full_refund_takes_every_remaining_line_and_cancels_in_iiko(manager_client, order, venue):
    answer = manager_client.post(f"/orders/{order.pk}/refund/", {
        "full": "1", "to_card": "on", "cancel_in_iiko": "on", "after": "0",
    })
    assert answer.status_code == 302
    refund = Refund.objects.get()
    assert refund.amount_kopecks == order.card_sale.amount_kopecks and refund.iiko_state == "отменён"
    html = manager_client.get(answer["Location"]).content.decode()
    assert "Оформить возврат" not in html  # nothing left to refund


def test_a_second_submit_of_the_same_form_is_refused(manager_client, order, venue):
    coffee = line(order, demo.PRODUCT_CAPPUCCINO_ID)
    form = {f"qty_{coffee.pk}": "1", "to_card": "on", "after": "0"}
    assert manager_client.post(f"/orders/{order.pk}/refund/", form).status_code == 302
    again = manager_client.post(f"/orders/{order.pk}/refund/", form)
    assert again.status_code == 200
    assert "оформлен другой возврат" in again.content.decode()
    assert Refund.objects.count() == 1


def test_refund_errors_are_shown_in_russian(manager_client, order, venue):
    coffee = line(order, demo.PRODUCT_CAPPUCCINO_ID)
    above = manager_client.post(f"/orders/{order.pk}/refund/", {f"qty_{coffee.pk}": "3", "to_card": "on",
                                                                 "after": "0"})
    assert "Нельзя вернуть больше, чем оплачено" in above.content.decode()
    nothing = manager_client.post(f"/orders/{order.pk}/refund/", {"after": "0"})
    assert "Выберите: вернуть деньги на карту" in nothing.content.decode()
    empty = manager_client.post(f"/orders/{order.pk}/refund/", {"to_card": "on", "after": "0"})
    assert "Не выбрано ни одной позиции" in empty.content.decode()
    assert not Refund.objects.exists()


def test_two_managers_at_once_cannot_refund_twice(order, venue, manager):
    """Both forms were opened before either refund: the second is refused, whoever comes second."""
    from tests.threads import run_in_threads

    coffee = line(order, demo.PRODUCT_CAPPUCCINO_ID)

    def submit():
        client = Client()
        client.force_login(manager)
        return client.post(f"/orders/{order.pk}/refund/", {f"qty_{coffee.pk}": "1", "to_card": "on",
                                                             "after": "0"}).status_code

    results, errors = run_in_threads(submit, [(), ()])
    assert not errors
    assert sorted(results) == [200, 302]
    assert Refund.objects.count() == 1


def test_without_the_permission_there_is_no_refund_form_and_a_crafted_post_is_403(client, viewer, order, venue):
    client.force_login(viewer)
    html = client.get(f"/orders/{order.pk}/").content.decode()
    assert "Оформить возврат" not in html
    answer = client.post(f"/orders/{order.pk}/refund/", {"full": "1", "to_card": "on", "after": "0"})
    assert answer.status_code == 403
    assert not Refund.objects.exists()


def test_csrf_is_enforced(manager, order, venue):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(manager)
    assert strict.post(f"/orders/{order.pk}/refund/", {"full": "1", "to_card": "on", "after": "0"}).status_code == 403
    assert strict.post("/kiosks/K1/shift/open/").status_code == 403
    assert not Refund.objects.exists() and not Event.objects.filter(action__startswith="panel.").exists()


def test_resend_to_iiko_moves_a_not_delivered_order_once(client, manager_client, venue, settings):
    venue.iiko.fault("creation_timeout", count=settings.IIKO_MAX_ATTEMPTS)
    order = place(client, venue)
    order.refresh_from_db()
    assert order.status == Order.Status.NOT_DELIVERED
    assert "Отправить в iiko ещё раз" in manager_client.get(f"/orders/{order.pk}/").content.decode()
    answer = manager_client.post(f"/orders/{order.pk}/resend/", headers=HX)
    assert 'data-job-kind="resend"' in answer.content.decode()
    start = Event.objects.get(action="panel.resend")
    assert start.object_ref == f"order:{order.pk}" and start.user.username == "anna"
    assert Event.objects.filter(object_ref=f"job:{start.pk}").exists()
    order.refresh_from_db()  # iiko works again: the resend's own new attempt delivers it
    assert order.status == Order.Status.COMPLETED and order.iiko_round == 2
    assert [a.state for a in order.iiko_attempts.filter(round=2)] == ["success"]
    assert [o["creationStatus"] for o in venue.iiko.journal()][-1] == "Success"
    # Not from any other state: the compare-and-set finds nothing to move.
    Order.objects.filter(pk=order.pk).update(status=Order.Status.COMPLETED)
    again = manager_client.post(f"/orders/{order.pk}/resend/")
    assert "уже не ждёт передачи" in again.content.decode()
    assert Event.objects.filter(action="panel.resend").count() == 1


def test_copies_of_the_receipt_and_the_slip_are_printed_and_journaled(manager_client, order, venue):
    document = order.sell_operation.document
    receipt = manager_client.post(f"/kiosks/K1/print/receipt/{document.pk}/", {"order": str(order.pk)}, headers=HX)
    assert 'data-job-state="ok"' in receipt.content.decode()
    slip = manager_client.post(f"/kiosks/K1/print/slip/{order.card_sale.pk}/", {"order": str(order.pk)})
    assert slip.status_code == 302 and slip["Location"].startswith(f"/orders/{order.pk}/?job=")
    prints = venue.atol.control.get("/_emulator/prints").json()
    assert {"printFnDocument", "nonFiscal"} <= {p["type"] for p in prints}
    assert any(p.get("fiscalDocumentNumber") == document.fd_number for p in prints)
    html = manager_client.get(f"/orders/{order.pk}/").content.decode()
    assert f"Копия документа ФД {document.fd_number}" in html  # in the order's timeline, with who


def test_copies_need_their_permission(client, viewer, order, venue):
    client.force_login(viewer)
    document = order.sell_operation.document
    assert client.post(f"/kiosks/K1/print/receipt/{document.pk}/").status_code == 403
    assert client.post(f"/kiosks/K1/print/slip/{order.card_sale.pk}/").status_code == 403


def test_the_orders_list_finds_by_number(manager_client, order, venue):
    html = manager_client.get("/orders/", {"q": order.number}).content.decode()
    assert f"/orders/{order.pk}/" in html
    assert Decimal(order.total)
