"""The demo venue wired to the emulators (``python manage.py demo``, called by ``make run``)."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, Permission, User
from django.db import transaction
from django.utils import timezone

from core.models import IikoConnection, Kiosk, KioskToken, TerminalKind, TerminalTransport
from iiko import emulator as menu

MANAGER_USERNAME = "manager"
MANAGERS_GROUP = "Менеджеры"
# The demo kiosks' service-menu PIN (the kiosk embed); a real venue sets its own in the admin.
DEMO_PIN = "1234"


def emulator_url(name: str) -> str:
    return f"http://{settings.EMULATOR_HOST}:{settings.EMULATOR_PORTS[name]}"


DEMO_KIOSKS: list[dict[str, Any]] = [
    {
        "code": "K1",
        "name": "Киоск 1 (Сбербанк через KKM Server)",
        "atol_device_id": "K1",
        "terminal_transport": TerminalTransport.KKM_SERVER,
        "terminal_kind": TerminalKind.SBERBANK,
        "kkm_device_number": 1,
    },
    {
        "code": "K2",
        "name": "Киоск 2 (INPAS DualConnector)",
        "atol_device_id": "K2",
        "terminal_transport": TerminalTransport.DUALCONNECTOR,
        "terminal_kind": TerminalKind.DUALCONNECTOR,
    },
]


@transaction.atomic
def seed_demo() -> dict[str, Any]:
    """Create or refresh the demo venue; returns working credentials (password and tokens are new each
    time: the plaintext of either is never stored, so the only working ones are those just issued)."""
    connection, _ = IikoConnection.objects.update_or_create(
        name="Демо iiko (эмулятор)", defaults={"base_url": emulator_url("iiko"), "api_login": menu.DEMO_API_LOGIN},
    )
    kiosks = []
    for spec in DEMO_KIOSKS:
        defaults = {
            **spec,
            "has_register": True,
            "atol_url": emulator_url("atol"),
            "kkm_url": emulator_url("kkm"),
            "dc_url": emulator_url("dualconnector") + "/",
            "iiko": connection,
            "iiko_organization_id": menu.ORG_ID,
            "iiko_terminal_group_id": menu.TERMINAL_GROUP_ID,
            "iiko_payment_type_id": menu.CARD_PAYMENT_TYPE_ID,
            "iiko_order_type_takeaway_id": menu.ORDER_TYPE_TAKEAWAY_ID,
            "iiko_order_type_dine_in_id": menu.ORDER_TYPE_DINE_IN_ID,
            "iiko_order_type_pickup_id": menu.ORDER_TYPE_PICKUP_ID,
        }
        kiosk, created = Kiosk.objects.update_or_create(code=spec["code"], defaults=defaults)
        if created or not kiosk.service_pin_hash:
            kiosk.set_service_pin(DEMO_PIN)
        KioskToken.objects.filter(kiosk=kiosk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        kiosks.append({"code": kiosk.code, "token": KioskToken.issue(kiosk)})
    manager = _manager()
    password = secrets.token_urlsafe(9)
    manager.set_password(password)
    manager.save()
    return {
        "manager": {"username": MANAGER_USERNAME, "password": password},
        "kiosks": kiosks,
        "products": [
            {"id": p["id"], "name": p["name"], "price": p["price"], "vat": p["vat"]}
            for p in menu.DEMO_PRODUCTS
        ],
    }


def _manager() -> User:
    group, _ = Group.objects.get_or_create(name=MANAGERS_GROUP)
    # Every right of the three apps: the panel's actions (fiscal.check_device for the device checks too).
    apps = ["core", "nekassir", "fiscal", "payments"]
    group.permissions.set(Permission.objects.filter(content_type__app_label__in=apps))
    manager, _ = User.objects.get_or_create(username=MANAGER_USERNAME, defaults={"is_staff": True})
    manager.is_staff = True
    manager.groups.add(group)
    return manager
