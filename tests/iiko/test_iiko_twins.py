"""No twin orders in iiko (issue 11 item 8, PROTOCOLS.md §3): after a lost ``order/create`` answer the
same order id is sent again, and a new id only once iiko shows the first one in ``Error``.

The emulator's ``lost_create_answer`` (created, answer lost) and ``invisible_for`` (a created order is not
shown by ``by_id`` for a while, as a busy iiko does) over real HTTP, then the whole checkout with both.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
import pytest

from core.models import Kiosk
from iiko import emulator as demo
from iiko.client import IikoClient, IikoHTTPError, IikoTimeout, build_order
from nekassir.checkout import run_checkout
from nekassir.models import IikoAttempt, Order
from tests.venue import build_venue, order_body, place_order

ORG = demo.ORG_ID
TG = demo.TERMINAL_GROUP_ID
NEW_FAULTS = {"lost_create_answer", "invisible_for"}


def burger_order(phone: str | None = None) -> dict:
    order_type = demo.ORDER_TYPE_PICKUP_ID if phone else demo.ORDER_TYPE_TAKEAWAY_ID
    items = [{"product_id": demo.PRODUCT_BURGER_ID, "amount": 1, "price": Decimal("289.00")}]
    return build_order(str(uuid.uuid4()), "K1-007", order_type, items, demo.CARD_PAYMENT_TYPE_ID,
                       Decimal("289.00"), phone=phone)


@pytest.fixture
def iiko(iiko_emulator):
    with IikoClient(iiko_emulator.url, api_login=demo.DEMO_API_LOGIN, timeout=5.0, validate=True,
                    validate_responses=True) as c:
        yield c
    assert iiko_emulator.app.schema_violations == []


def advance(emulator, seconds: float) -> None:
    emulator.control.post("/_emulator/clock", json={"advance_seconds": seconds}).raise_for_status()


# --- the emulator ------------------------------------------------------------------------------------


def test_every_fault_is_listed_with_what_it_does(iiko_emulator):
    known = httpx.get(f"{iiko_emulator.url}/_emulator/faults/known").json()
    assert NEW_FAULTS <= set(known)
    assert {"creation_timeout", "front_offline", "http_500", "slow", "lost_answer"} <= set(known)
    assert all(isinstance(text, str) and text.strip() for text in known.values())


def test_lost_create_answer_creates_the_order_and_loses_only_the_answer(iiko, iiko_emulator):
    iiko.organizations()
    iiko_emulator.fault("lost_create_answer")
    iiko.terminal_groups([ORG])  # other methods do not consume it
    order = burger_order()
    with pytest.raises(IikoTimeout):
        iiko.create_order(ORG, TG, order)
    assert [o["id"] for o in iiko_emulator.journal()] == [order["id"]]
    # The same id again: iiko refuses it as a duplicate, which says the first one arrived.
    with pytest.raises(IikoHTTPError) as caught:
        iiko.create_order(ORG, TG, order)
    assert caught.value.status == 400 and caught.value.duplicate_order and not caught.value.outcome_unknown
    assert len(iiko_emulator.journal()) == 1


def test_invisible_for_hides_a_created_order_from_by_id_for_its_seconds(iiko, iiko_emulator):
    iiko_emulator.fault("invisible_for", count=2, seconds=60)
    order = burger_order()
    iiko.create_order(ORG, TG, order)
    delivery = burger_order(phone="+79161234567")
    iiko.create_delivery(ORG, TG, delivery)
    assert iiko.orders_by_id([ORG], [order["id"]]) == []
    assert iiko.deliveries_by_id(ORG, [delivery["id"]]) == []
    assert len(iiko_emulator.journal()) == 2  # the kitchen has them
    advance(iiko_emulator, 60)
    assert iiko.orders_by_id([ORG], [order["id"]])[0].delivered
    assert iiko.deliveries_by_id(ORG, [delivery["id"]])[0].delivered
    visible = burger_order()  # the fault was used up: the next order is seen at once
    iiko.create_order(ORG, TG, visible)
    assert [o.id for o in iiko.orders_by_id([ORG], [visible["id"]])] == [visible["id"]]


def test_other_refusals_are_not_duplicates(iiko):
    bad_group = str(uuid.uuid4())
    with pytest.raises(IikoHTTPError) as caught:
        iiko.create_order(ORG, bad_group, burger_order())
    assert caught.value.status == 400 and not caught.value.duplicate_order


# --- the checkout ------------------------------------------------------------------------------------


@pytest.fixture
def venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator, settings):
    settings.TERMINAL_HTTP_TIMEOUT = 0.5
    settings.TERMINAL_GUEST_TIMEOUT = 0.5
    settings.TERMINAL_POLL_FOR = 0.4
    settings.IIKO_CREATE_WAIT = 0.3  # our patience with an order iiko does not show yet
    return build_venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator)


def kitchen(venue) -> list[dict]:
    return venue.iiko.journal()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("as_delivery", [False, True], ids=["table", "pickup"])
def test_a_lost_create_answer_of_an_order_iiko_does_not_show_yet_gives_the_kitchen_one_order(
    client, venue, as_delivery,
):
    if as_delivery:
        Kiosk.objects.filter(code="K1").update(iiko_send_as_delivery=True)
    venue.iiko.fault("lost_create_answer")
    venue.iiko.fault("invisible_for", seconds=120)
    body = order_body((demo.PRODUCT_BURGER_ID, "1"), phone="+79161234567")
    answer = client.post("/api/v1/orders", body, content_type="application/json",
                         headers={"Authorization": f"Bearer {venue.tokens['K1']}"})
    assert answer.status_code == 201, answer.content
    order = Order.objects.get(pk=body["id"])
    # iiko has it but does not show it: in doubt, never re-sent under a new id.
    assert len(kitchen(venue)) == 1, kitchen(venue)
    assert order.step == Order.Step.IIKO and order.retry_at is not None
    (attempt,) = order.iiko_attempts.all()
    assert attempt.state == IikoAttempt.State.UNKNOWN and attempt.iiko_order_id == kitchen(venue)[0]["id"]
    assert attempt.responses and attempt.responses[-1]["error"] == "DuplicatedOrderId"  # the resend's answer
    run_checkout(str(order.pk))  # recovery, still invisible: the same
    assert order.iiko_attempts.count() == 1 and len(kitchen(venue)) == 1
    advance(venue.iiko, 120)  # iiko shows it now
    assert run_checkout(str(order.pk)) == Order.Status.COMPLETED
    (attempt,) = order.iiko_attempts.all()
    assert attempt.state == IikoAttempt.State.SUCCESS and attempt.iiko_number
    assert [o["creationStatus"] for o in kitchen(venue)] == ["Success"]
    assert not venue.iiko.app.schema_violations


@pytest.mark.django_db(transaction=True)
def test_a_create_that_never_arrived_is_sent_again_under_the_same_id(client, venue):
    venue.iiko.fault("http_500", path="/api/1/order/create")  # no answer worth the name, nothing created
    order = place_order(client, venue)
    order.refresh_from_db()
    assert order.status == Order.Status.COMPLETED, order.error_message
    (attempt,) = order.iiko_attempts.all()
    assert attempt.state == IikoAttempt.State.SUCCESS
    assert [o["id"] for o in kitchen(venue)] == [attempt.iiko_order_id]


@pytest.mark.django_db(transaction=True)
def test_a_new_id_only_after_iiko_shows_the_first_in_error(client, venue):
    venue.iiko.fault("lost_create_answer")
    venue.iiko.fault("creation_timeout")  # the order that arrived ends in Error: iikoFront did not take it
    order = place_order(client, venue)
    order.refresh_from_db()
    assert order.status == Order.Status.COMPLETED, order.error_message
    first, second = order.iiko_attempts.order_by("id")
    assert (first.state, second.state) == (IikoAttempt.State.ERROR, IikoAttempt.State.SUCCESS)
    assert [o["creationStatus"] for o in kitchen(venue)] == ["Error", "Success"]


@pytest.mark.django_db(transaction=True)
def test_an_order_invisible_longer_than_our_patience_needs_attention_and_is_never_sent_twice(
    client, venue, settings,
):
    venue.iiko.fault("lost_create_answer")
    venue.iiko.fault("invisible_for", seconds=3600)
    order = place_order(client, venue)
    for _ in range(settings.CHECKOUT_ATTENTION_AFTER + 2):  # recovery coming back again and again
        run_checkout(str(order.pk))
    order.refresh_from_db()
    assert order.status == Order.Status.NEEDS_ATTENTION and order.step == Order.Step.IIKO
    assert order.retry_at is not None  # still followed
    assert order.iiko_attempts.count() == 1 and len(kitchen(venue)) == 1
    (attempt,) = order.iiko_attempts.all()
    assert "не показывает" in attempt.error_message  # what staff read on the order page
    advance(venue.iiko, 3600)
    assert run_checkout(str(order.pk)) == Order.Status.COMPLETED
    assert len(kitchen(venue)) == 1


@pytest.mark.django_db(transaction=True)
def test_a_resend_whose_answer_is_lost_too_stays_in_doubt_and_is_bounded(client, venue, settings):
    venue.iiko.fault("http_500", count=10, path="/api/1/order/create")
    order = place_order(client, venue)
    order.refresh_from_db()
    assert order.step == Order.Step.IIKO and order.retry_at is not None  # deferred, not not_delivered
    (attempt,) = order.iiko_attempts.all()
    assert attempt.state == IikoAttempt.State.UNKNOWN
    sent = [f for f in venue.iiko.app.faults.pending() if f["fault"] == "http_500"]
    assert sent and sent[0]["count"] == 10 - settings.IIKO_MAX_ATTEMPTS  # one send and its resends, no more
    venue.iiko.reset()
    assert run_checkout(str(order.pk)) == Order.Status.COMPLETED
    assert order.iiko_attempts.count() == 1 and len(kitchen(venue)) == 1
