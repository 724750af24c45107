"""Shared pieces of the service-menu tests: managers with and without rights, orders placed through the kiosk
API, orders written straight to the database for volume tests, and the «Проверить связь» button.

The fixtures built on these (``venue`` with the service PIN, ``manager``, ``viewer``, ``manager_client``,
``support``) are in tests/conftest.py: the panel, order, fiscal, core and browser tests use them.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from itertools import count

from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone

import nekassir.panel.admin_registrations  # noqa: F401  (until nekassir/admin.py imports it)
from core.models import Event, Kiosk
from fiscal.models import FiscalDocument, FiscalOperation, Shift
from iiko import emulator as demo
from nekassir.models import Order, OrderLine
from payments.models import CardOperation
from tests.venue import order_body

HX = {"HX-Request": "true"}
PIN = "2468"

_seq = count(1)


def make_user(username: str, *codenames: str, reads: bool = True) -> User:
    """A panel account in a group of its own with ``codenames``; it reads the panel (``view_order``, which every
    panel page needs) unless ``reads=False``."""
    user = User.objects.create_user(username, password="pass-" + username)
    reading = Permission.objects.filter(codename="view_order", content_type__app_label="nekassir") if reads else []
    if codenames or reads:
        group, _ = Group.objects.get_or_create(name=f"group-{username}")
        group.permissions.set([*Permission.objects.filter(codename__in=codenames), *reading])
        user.groups.add(group)
    return user


ALL_PANEL_PERMISSIONS = ("refund_order", "manage_shift", "print_xreport", "print_copy", "change_order",
                         "check_device")


def place(client, venue, kiosk: str = "K1", *lines: tuple[str, str]) -> Order:
    """An order through the kiosk API (the checkout runs inline: django-q sync in tests)."""
    body = order_body(*(lines or ((demo.PRODUCT_BURGER_ID, "1"), (demo.PRODUCT_CAPPUCCINO_ID, "2"))))
    answer = client.post("/api/v1/orders", body, content_type="application/json",
                         headers={"Authorization": f"Bearer {venue.tokens[kiosk]}"})
    assert answer.status_code == 201, answer.content
    return Order.objects.get(pk=body["id"])


def fake_shift(kiosk, number: int = 1, state: str = Shift.State.OPEN) -> Shift:
    now = timezone.now()
    return Shift.objects.create(kiosk=kiosk, fn_number="9999078900000001", number=number, state=state,
                                opened_at=now, expires_at=now + timezone.timedelta(hours=24))


def fake_completed_order(kiosk, shift: Shift, total: Decimal = Decimal("250.00")) -> Order:
    """A consistent completed order written to the database only (sell receipt + approved sale)."""
    n = next(_seq)
    op = FiscalOperation.objects.create(kiosk=kiosk, task_type="sell", state="done", fn_number=shift.fn_number,
                                        fd_number=1000 + n, fpd=str(3000000 + n), receipt_number=n,
                                        shift_number=shift.number)
    FiscalDocument.objects.create(fn_number=shift.fn_number, fd_number=1000 + n, kiosk=kiosk, shift=shift,
                                  operation=op, doc_type="sell", fpd=str(3000000 + n), receipt_number=n,
                                  shift_number=shift.number, total=total, registered_at=timezone.now())
    sale = CardOperation.objects.create(op_id=f"fake-{uuid.uuid4().hex[:12]}", kiosk=kiosk, kind="sale",
                                        state="approved", transport="kkm", amount_kopecks=int(total * 100),
                                        shift=shift, rrn=f"{n:012d}", slip="СЛИП\nОДОБРЕНО")
    order = Order.objects.create(
        kiosk=kiosk, number=f"{kiosk.code}-{n:03d}", business_date=timezone.localdate(), seq=n,
        status=Order.Status.COMPLETED, step=Order.Step.DONE, order_type="takeaway", total=total,
        request_body={}, body_hash=uuid.uuid4().hex, shift=shift, sell_operation=op, card_sale=sale,
    )
    OrderLine.objects.create(order=order, position=1, product_id=uuid.uuid4(), name="Бургер", receipt_name="Бургер",
                             price=total, quantity=Decimal("1"), vat="vat22", amount=total)
    return order


def check(client, kiosk: Kiosk) -> tuple[Event, str]:
    """Press the button (q2 runs the job inline in tests) and read the job page it leads to."""
    answer = client.post(f"/kiosks/{kiosk.code}/connection/")
    assert answer.status_code == 302 and answer["Location"].startswith("/jobs/"), answer.status_code
    start = Event.objects.get(action="panel.connection", kiosk=kiosk)
    page = client.get(answer["Location"])
    assert page.status_code == 200
    return Event.objects.get(object_ref=f"job:{start.pk}"), page.content.decode()
