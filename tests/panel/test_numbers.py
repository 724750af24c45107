"""Malformed numbers (issue 16 item 5): every numeric query or form parameter of the panel is ASCII digits in
range or a 400, never a 500; a refund quantity too large to round is a Russian refusal, nothing saved."""

from __future__ import annotations

import pytest
from django.test import Client
from django_q.conf import Conf
from django_q.models import OrmQ

from core.models import Event
from nekassir.models import Refund
from nekassir.panel.params import BIGGEST_ID, optional_id
from payments.models import CardOperation
from tests.factories import make_terminal_kiosk
from tests.panel_support import ALL_PANEL_PERMISSIONS, fake_completed_order, fake_shift, make_user

pytestmark = pytest.mark.django_db(transaction=True)

THIRTY_DIGITS = "9" * 30
BAD_NUMBERS = ["²", "١٢", "１２", "-1", "+1", " 1", "1 ", "1.0", "1e3", "0x10", THIRTY_DIGITS, str(BIGGEST_ID + 1),
               "9" * 5000]


@pytest.fixture
def world(monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", False)  # what an action starts is queued, never run
    kiosk = make_terminal_kiosk("http://127.0.0.1:9", kkm_url="http://127.0.0.1:9", code="K1")
    shift = fake_shift(kiosk)
    order = fake_completed_order(kiosk, shift)
    CardOperation.objects.filter(pk=order.card_sale_id).update(terminal_reference="ref-1")
    browser = Client(raise_request_exception=False)
    browser.force_login(make_user("numbers", *ALL_PANEL_PERMISSIONS, "view_order"))
    return {"kiosk": kiosk, "shift": shift, "order": order, "browser": browser}


# --- the one helper --------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", BAD_NUMBERS)
def test_the_helper_refuses_anything_but_ascii_digits_in_range(raw):
    from django.core.exceptions import BadRequest

    with pytest.raises(BadRequest):
        optional_id({"n": raw}, "n")


def test_the_helper_reads_ids_and_treats_absent_or_empty_as_none():
    assert optional_id({"n": "42"}, "n") == 42
    assert optional_id({"n": "007"}, "n") == 7
    assert optional_id({"n": str(BIGGEST_ID)}, "n") == BIGGEST_ID
    assert optional_id({}, "n") is None and optional_id({"n": ""}, "n") is None


# --- the panel's GET parameters -----------------------------------------------------------------------
@pytest.mark.parametrize("raw", ["²", THIRTY_DIGITS, str(BIGGEST_ID + 1), "1.5"])
@pytest.mark.parametrize("url", ["/journal/?before={}", "/journal/?after={}", "/?job={}",
                                 "/kiosk/K1/service/?job={}"])
def test_a_malformed_number_in_the_address_is_a_400(world, url, raw):
    browser = world["browser"]
    if url.startswith("/kiosk/"):
        world["kiosk"].set_service_pin("2468")
        browser = Client(raise_request_exception=False)
        assert browser.post("/kiosk/K1/service/", {"pin": "2468"}).status_code == 302
    answer = browser.get(url.format(raw))
    assert answer.status_code == 400, (url, raw, answer.status_code)
    assert "Неверный запрос" in answer.content.decode()


def test_good_numbers_in_the_address_still_work(world):
    browser = world["browser"]
    job = Event.objects.create(action="panel.check", kiosk=world["kiosk"], data={"job": "check"})
    assert browser.get("/journal/?before=5").status_code == 200
    assert browser.get(f"/journal/?after={BIGGEST_ID}").status_code == 200
    assert browser.get(f"/?job={job.pk}").status_code == 200
    assert browser.get("/?job=").status_code == 200


@pytest.mark.parametrize("url", ["/jobs/{}/", "/shifts/{}/", "/kiosks/K1/print/receipt/{}/"])
def test_a_huge_number_in_the_path_is_not_found(world, url):
    method = "post" if "/print/" in url else "get"
    answer = getattr(world["browser"], method)(url.format(THIRTY_DIGITS))
    assert answer.status_code == 404, (url, answer.status_code)


@pytest.mark.parametrize("raw", ["²", THIRTY_DIGITS, "-3"])
@pytest.mark.parametrize("route", ["receipt", "slip"])
def test_a_print_route_refuses_a_malformed_shift_and_starts_nothing(world, route, raw):
    order = world["order"]
    target = order.sell_operation.document.pk if route == "receipt" else order.card_sale.pk
    before = Event.objects.count(), OrmQ.objects.count()
    answer = world["browser"].post(f"/kiosks/K1/print/{route}/{target}/", {"shift": raw})
    assert answer.status_code == 400, answer.status_code
    assert (Event.objects.count(), OrmQ.objects.count()) == before
    good = world["browser"].post(f"/kiosks/K1/print/{route}/{target}/", {"shift": str(world["shift"].pk)})
    assert good.status_code in (200, 302) and OrmQ.objects.count() == before[1] + 1


# --- refund quantities --------------------------------------------------------------------------------
@pytest.mark.parametrize("quantity", ["1e100", "1E+30", "9" * 40, "1e-100", "sNaN", "-0", "0.0001"])
def test_a_refund_quantity_that_cannot_be_rounded_is_refused_in_russian(world, quantity):
    from nekassir.refunds import RefundError, request_refund

    order = world["order"]
    line = order.lines.get()
    with pytest.raises(RefundError) as refused:
        request_refund(order, {line.pk: quantity}, to_card=True, cancel_in_iiko=False)
    assert "количество" in str(refused.value).lower() or "ни одной позиции" in str(refused.value)
    assert Refund.objects.count() == 0 and OrmQ.objects.count() == 0


def test_the_refund_form_answers_a_huge_quantity_with_a_message_not_a_500(world):
    order = world["order"]
    line = order.lines.get()
    answer = world["browser"].post(f"/orders/{order.pk}/refund/",
                                   {f"qty_{line.pk}": "1e100", "to_card": "on", "after": "0"})
    assert answer.status_code == 200, answer.status_code
    assert 'data-testid="refund-error"' in answer.content.decode()
    assert "Неверное количество" in answer.content.decode()
    assert Refund.objects.count() == 0 and OrmQ.objects.count() == 0


def test_a_quantity_written_with_trailing_zeros_is_still_accepted(world):
    from nekassir.refunds import request_refund

    order = world["order"]
    line = order.lines.get()
    refund = request_refund(order, {line.pk: "1.000000"}, to_card=True, cancel_in_iiko=False)
    assert refund.amount_kopecks == order.card_sale.amount_kopecks


@pytest.mark.parametrize("name", ["page", "receipts"])
def test_a_shift_page_number_is_digits_or_a_400(world, name):
    url = f"/shifts/{world['shift'].pk}/"
    browser = world["browser"]
    for raw in ("²", THIRTY_DIGITS, "-1", "1.0"):
        assert browser.get(url, {name: raw}).status_code == 400, raw
    for raw in ("", "1", "2", "999"):  # past the last page: the last page, as before
        assert browser.get(url, {name: raw}).status_code == 200, raw


@pytest.mark.parametrize("action", ["charged", "not-charged"])
def test_the_card_resolution_forms_refuse_a_malformed_operation_number(world, action):
    order = world["order"]
    before = Event.objects.count(), CardOperation.objects.count()
    for raw in ("²", THIRTY_DIGITS):
        answer = world["browser"].post(f"/orders/{order.pk}/card/{action}/",
                                       {"operation": raw, "rrn": "123456789012", "auth_code": "ABC123",
                                        "note": "проверка"})
        assert answer.status_code == 400, (raw, answer.status_code)
    assert (Event.objects.count(), CardOperation.objects.count()) == before
