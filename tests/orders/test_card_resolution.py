"""A manager resolves an unknown card operation by hand on the order page (issue 11, item 1).

«Деньги списаны» needs the RRN and the authorization code from the bank slip or the terminal's report;
«не списаны» needs a terminal report taken at that moment (a device job under the terminal's lock). Both
need a reason, record who, are journaled, and resume the order's checkout: approved → iiko, declined →
annulment. Against the emulators over real HTTP.

The precondition — an order waiting at the card step with its sale unknown — is made for real on the
DualConnector kiosk K2: the sale is performed but its answer never comes, and the emergency reversal's
answer never comes either (performed or refused, as the test chooses), so the terminal stays blocked.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from core.models import Event
from core.money import rub
from nekassir.models import Order, Refund
from payments.models import CardOperation
from tests.panel_support import HX, place

pytestmark = pytest.mark.django_db(transaction=True)
State = CardOperation.State
RESOLVED = "card.resolved_by_hand"


def stuck_sale(client, venue, *, charged: bool) -> Order:
    """K2's sale went through on the terminal, its answer was lost; the emergency reversal's answer was lost
    too. ``charged``: the terminal refused that reversal (the money stays taken), else it performed it."""
    venue.dc.fault("timeout")  # the sale: approved, the answer never comes
    venue.dc.fault("timeout", approved=not charged)  # the emergency reversal, its answer never comes
    order = place(client, venue, "K2")
    order.refresh_from_db()
    sale = order.card_sale
    assert order.step == Order.Step.CARD and sale.state == State.UNKNOWN, (order.step, sale.state)
    return order


def sale_rrn(venue) -> str:
    return next(e["rrn"] for e in venue.dc.journal() if e["operation"] == "sale")


def charged(client, order, **form):
    body = {"operation": str(order.card_sale_id), "rrn": "", "auth_code": "", "note": "", **form}
    return client.post(f"/orders/{order.pk}/card/charged/", body)


def not_charged(client, order, **form):
    body = {"operation": str(order.card_sale_id), "note": "", **form}
    return client.post(f"/orders/{order.pk}/card/not-charged/", body, headers=HX)


def manual_events():
    return list(Event.objects.filter(action=RESOLVED))


# --- the page ---------------------------------------------------------------------------------------
def test_the_order_page_shows_the_unknown_operation_and_both_choices(client, manager_client, viewer, venue):
    order = stuck_sale(client, venue, charged=True)
    html = manager_client.get(f"/orders/{order.pk}/").content.decode()
    assert 'data-testid="card-unknown"' in html and "результат неизвестен" in html
    assert f'action="/orders/{order.pk}/card/charged/"' in html
    assert f'action="/orders/{order.pk}/card/not-charged/"' in html
    assert "Деньги списаны" in html and "Деньги не списаны" in html
    other = Client()
    other.force_login(viewer)
    html = other.get(f"/orders/{order.pk}/").content.decode()
    assert 'data-testid="card-unknown"' in html  # shown to everyone, resolvable only with the permission
    assert "/card/charged/" not in html and "/card/not-charged/" not in html


# --- «деньги списаны» ----------------------------------------------------------------------------------
def test_charged_by_hand_needs_the_refund_permission(client, viewer, venue):
    order = stuck_sale(client, venue, charged=True)
    other = Client()
    other.force_login(viewer)
    answer = charged(other, order, rrn=sale_rrn(venue), auth_code="123456", note="по слипу")
    assert answer.status_code == 403
    assert not_charged(other, order, note="по отчёту").status_code == 403
    order.card_sale.refresh_from_db()
    assert order.card_sale.state == State.UNKNOWN and not manual_events()
    assert not Event.objects.filter(action__startswith="panel.card").exists()


@pytest.mark.parametrize(("form", "error"), [
    ({"rrn": "", "auth_code": "123456", "note": "по слипу"}, "Укажите RRN"),
    ({"rrn": "12345", "auth_code": "123456", "note": "по слипу"}, "RRN — это 12 цифр"),
    ({"rrn": "RRN", "auth_code": "", "note": "по слипу"}, "Укажите код авторизации"),
    ({"rrn": "RRN", "auth_code": "12 34", "note": "по слипу"}, "Код авторизации — 6 цифр или латинских букв"),
    ({"rrn": "RRN", "auth_code": "123456", "note": "  "}, "Укажите причину"),
])
def test_charged_needs_a_well_formed_rrn_auth_code_and_a_reason(client, manager_client, venue, form, error):
    order = stuck_sale(client, venue, charged=True)
    if form["rrn"] == "RRN":
        form = {**form, "rrn": sale_rrn(venue)}
    answer = charged(manager_client, order, **form)
    assert answer.status_code == 200
    html = answer.content.decode()
    assert 'data-testid="resolve-error"' in html and error in html
    sale = CardOperation.objects.get(pk=order.card_sale_id)
    assert sale.state == State.UNKNOWN and not sale.rrn and not sale.manual_note and sale.resolved_by is None
    assert not manual_events()
    order.refresh_from_db()
    assert order.step == Order.Step.CARD


def test_charged_by_hand_completes_the_order_and_the_sale_can_be_refunded(client, manager_client, manager, venue):
    order = stuck_sale(client, venue, charged=True)
    rrn = sale_rrn(venue)
    answer = charged(manager_client, order, rrn=f" {rrn} ", auth_code="a1b2c3", note="RRN со слипа терминала")
    assert answer.status_code == 302, answer.content.decode()
    sale = CardOperation.objects.get(pk=order.card_sale_id)
    assert sale.state == State.APPROVED and sale.rrn == rrn and sale.auth_code == "A1B2C3"
    assert sale.resolved_by == manager and sale.manual_note == "RRN со слипа терминала"
    assert sale.finished_at is not None and "вручную" in sale.resolution
    [event] = manual_events()
    assert event.user == manager and event.object_ref == f"order:{order.pk}"
    assert event.data["choice"] == "charged" and event.data["note"] == "RRN со слипа терминала"
    assert event.data["operation"] == sale.op_id and event.data["rrn"] == rrn
    # The lost reversal was closed with it (else it would keep the terminal blocked), and the order went on.
    assert not CardOperation.objects.filter(kiosk=order.kiosk, state__in=CardOperation.UNRESOLVED).exists()
    order.refresh_from_db()
    assert order.status == Order.Status.COMPLETED, (order.status, order.error_message)
    assert [o["creationStatus"] for o in venue.iiko.journal()] == ["Success"]
    html = manager_client.get(f"/orders/{order.pk}/").content.decode()
    assert "anna" in html and "RRN со слипа терминала" in html  # the timeline: who and why
    # Stored so that it can be refunded: the terminal finds the sale by its RRN.
    refund = manager_client.post(f"/orders/{order.pk}/refund/", {"full": "1", "to_card": "on", "after": "0"})
    assert refund.status_code == 302, refund.content.decode()
    assert Refund.objects.get().state == Refund.State.DONE
    assert ("cancel", "approved") in [(e["operation"], e["state"]) for e in venue.dc.journal()]  # same day: a cancel


def test_a_kkm_sale_charged_by_hand_is_refused_a_card_refund_in_plain_words(client, manager_client, venue):
    """KKM Server refunds by UniversalID, which a lost answer never gave us: no refund to the card from here."""
    order = place(client, venue, "K1")
    assert order.status == Order.Status.COMPLETED
    CardOperation.objects.filter(pk=order.card_sale_id).update(terminal_reference="", resolved_by=User.objects.get())
    answer = manager_client.post(f"/orders/{order.pk}/refund/", {"full": "1", "to_card": "on", "after": "0"})
    html = answer.content.decode()
    assert answer.status_code == 200 and "UniversalID" in html and "на самом терминале" in html
    assert not Refund.objects.exists()


def test_an_operation_resolved_meanwhile_is_not_resolved_again(client, manager_client, venue):
    order = stuck_sale(client, venue, charged=True)
    CardOperation.objects.filter(pk=order.card_sale_id).update(state=State.DECLINED)
    answer = charged(manager_client, order, rrn=sale_rrn(venue), auth_code="123456", note="по слипу")
    assert answer.status_code == 200
    assert "уже не неизвестен" in answer.content.decode()
    assert CardOperation.objects.get(pk=order.card_sale_id).state == State.DECLINED and not manual_events()
    refused = not_charged(manager_client, order, note="по отчёту")
    assert "уже не неизвестен" in refused.content.decode()
    assert not Event.objects.filter(action="panel.card_not_charged").exists()


# --- «деньги не списаны» -----------------------------------------------------------------------------
def test_not_charged_takes_a_terminal_report_stores_it_and_annuls_the_receipt(client, manager_client, manager, venue):
    order = stuck_sale(client, venue, charged=False)
    answer = not_charged(manager_client, order, note="в отчёте терминала оплаты нет")
    assert answer.status_code == 200
    assert 'data-job-kind="card_not_charged"' in answer.content.decode()
    # The report was taken from the terminal (op 63), journaled like every terminal call.
    report = CardOperation.objects.get(kind=CardOperation.Kind.REPORT)
    assert report.state == State.APPROVED and report.sent_at is not None and "ОТЧЁТ ТЕРМИНАЛА" in report.slip
    assert ("report", "approved") in [(e["operation"], e["state"]) for e in venue.dc.journal()]
    sale = CardOperation.objects.get(pk=order.card_sale_id)
    assert sale.state == State.DECLINED and sale.resolved_by == manager
    assert sale.manual_report == report.slip and sale.manual_note == "в отчёте терминала оплаты нет"
    [event] = manual_events()
    assert event.user == manager and event.data["choice"] == "not_charged"
    assert event.data["report"] == report.op_id and event.data["note"] == "в отчёте терминала оплаты нет"
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED and order.annul_operation.state == "done"
    assert [e.get("type") for e in venue.atol.journal()][-1] == "sellReturn"
    assert not venue.iiko.journal()


def test_not_charged_needs_a_reason_and_starts_nothing_without_one(client, manager_client, venue):
    order = stuck_sale(client, venue, charged=False)
    answer = not_charged(manager_client, order, note=" ")
    assert answer.status_code == 200 and "Укажите причину" in answer.content.decode()
    assert not Event.objects.filter(action="panel.card_not_charged").exists()
    assert "report" not in [e["operation"] for e in venue.dc.journal()]
    assert CardOperation.objects.get(pk=order.card_sale_id).state == State.UNKNOWN


def test_a_terminal_that_gives_no_report_leaves_the_operation_unknown(client, manager_client, venue):
    order = stuck_sale(client, venue, charged=False)
    venue.dc.fault("no_connection")  # the report fails
    answer = not_charged(manager_client, order, note="по отчёту")
    html = answer.content.decode()
    assert 'data-job-state="failed"' in html and "отчёт" in html
    sale = CardOperation.objects.get(pk=order.card_sale_id)
    assert sale.state == State.UNKNOWN and sale.resolved_by is None and not sale.manual_report
    assert not manual_events()
    order.refresh_from_db()
    assert order.step == Order.Step.CARD


# --- the venue page's current problems --------------------------------------------------------------
def test_the_venue_page_names_the_order_and_the_kiosk_and_escalates_after_an_hour(client, manager_client, venue):
    from datetime import timedelta

    from django.utils import timezone

    order = stuck_sale(client, venue, charged=True)
    html = manager_client.get("/alerts/", headers=HX).content.decode()
    assert f"Заказ {order.number} ({rub(order.total)}, киоск K2): исход оплаты картой неизвестен" in html
    assert f'href="/orders/{order.pk}/"' in html and "<td>K2</td>" in html
    assert "требует внимания" not in html
    CardOperation.objects.filter(pk=order.card_sale_id).update(sent_at=timezone.now() - timedelta(minutes=61))
    html = manager_client.get("/alerts/", headers=HX).content.decode()
    assert f"Больше часа не разрешена оплата картой заказа {order.number}" in html
    assert "терминал нельзя сверить" in html and "5 дней без сверки" in html
    charged(manager_client, order, rrn=sale_rrn(venue), auth_code="123456", note="по слипу")
    html = manager_client.get("/alerts/", headers=HX).content.decode()
    assert order.number not in html  # resolved: completed, nothing left to do
