"""The demo venue wired to the emulators (``python manage.py demo``, called by ``make run``)."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, Permission, User
from django.db import transaction

from nekassir.models import Kiosk, TerminalKind, TerminalTransport

MANAGER_USERNAME = "manager"
MANAGERS_GROUP = "Менеджеры"


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
    """Create or refresh the demo venue; returns working credentials (the password is new each time)."""
    kiosks = []
    for spec in DEMO_KIOSKS:
        defaults = {
            **spec,
            "has_register": True,
            "atol_url": emulator_url("atol"),
            "kkm_url": emulator_url("kkm"),
            "dc_url": emulator_url("dualconnector") + "/",
        }
        kiosk, _ = Kiosk.objects.update_or_create(code=spec["code"], defaults=defaults)
        kiosks.append(kiosk)
    group, _ = Group.objects.get_or_create(name=MANAGERS_GROUP)
    group.permissions.set(Permission.objects.filter(content_type__app_label__in=["nekassir", "fiscal", "payments"]))
    manager, _ = User.objects.get_or_create(username=MANAGER_USERNAME, defaults={"is_staff": True})
    password = secrets.token_urlsafe(9)
    manager.set_password(password)
    manager.is_staff = True
    manager.save()
    manager.groups.add(group)
    return {
        "manager": {"username": MANAGER_USERNAME, "password": password},
        "kiosks": [{"code": k.code} for k in kiosks],
    }
