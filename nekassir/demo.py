"""The demo venue wired to the emulators (``python manage.py demo``, called by ``make run``)."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from django.conf import settings
from django.contrib.auth.models import Group, Permission, User
from django.db import transaction
from django.utils import timezone

from core.models import IikoConnection, Kiosk, KioskToken, TerminalKind, TerminalTransport
from iiko import emulator as menu
from marking.models import MarkedProduct

MANAGER_USERNAME = "manager"
MANAGERS_GROUP = "Менеджеры"
# The demo kiosks' service-menu PIN (the kiosk embed); a real venue sets its own in the admin.
DEMO_PIN = "1234"


def emulator_url(name: str) -> str:
    return f"http://{settings.EMULATOR_HOST}:{settings.EMULATOR_PORTS[name]}"


# The demo menu's marked goods (issue 13): packaged water and ice cream, with plausible GTINs (valid GS1 check
# digits; the 460-469 prefix is Russia's). Their codes come from the check-service emulator (``marking_codes``).
DEMO_MARKED_PRODUCTS: list[dict[str, Any]] = [
    {"product_id": menu.PRODUCT_WATER_ID, "name": "Вода питьевая негазированная 0,5 л",
     "group": MarkedProduct.Group.WATER, "gtins": ["04607012345608"]},
    {"product_id": menu.PRODUCT_ICE_CREAM_ID, "name": "Мороженое пломбир",
     "group": MarkedProduct.Group.DAIRY, "gtins": ["04607012345615"]},
]
# How many codes ``demo --json`` mints per product and state: enough valid ones for a soak, a few of the others.
DEMO_CODE_COUNTS = {"valid": 200, "sold": 3, "expired": 3}
MINT_TIMEOUT = 5.0


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
    for marked in DEMO_MARKED_PRODUCTS:
        MarkedProduct.objects.update_or_create(
            product_id=marked["product_id"], defaults={k: v for k, v in marked.items() if k != "product_id"})
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
    # Every right of the apps: the panel's actions (fiscal.check_device for the device checks too), and the
    # marked products in the admin.
    apps = ["core", "nekassir", "fiscal", "payments", "marking"]
    group.permissions.set(Permission.objects.filter(content_type__app_label__in=apps))
    manager, _ = User.objects.get_or_create(username=MANAGER_USERNAME, defaults={"is_staff": True})
    manager.is_staff = True
    manager.groups.add(group)
    return manager


# --- marking codes minted now, for the demo's kiosks and the soak ----------------------------------------
def marking_emulator_url() -> str:
    """The check-service emulator: the one ``MARKING_CHECK_URL`` points at (``make run`` points it there), or
    the demo's own emulator when the check service is off."""
    return settings.MARKING_CHECK_URL or emulator_url("marking")


class MintingFailed(Exception):
    """The check-service emulator did not mint codes; the message (Russian) says why."""


def mint_codes(base_url: str, gtin: str, status: str, count: int, *, timeout: float = MINT_TIMEOUT) -> list[str]:
    """``count`` fresh codes of ``gtin`` in ``status`` from the emulator's control API (``POST /_emulator/codes``),
    each exactly as a scanner reads it (GS and crypto tail included)."""
    try:
        answer = httpx.post(f"{base_url.rstrip('/')}/_emulator/codes",
                            json={"gtin": gtin, "status": status, "count": count}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise MintingFailed(f"эмулятор службы проверки кодов ({base_url}) недоступен: {exc}") from exc
    if answer.status_code != 200:
        raise MintingFailed(f"{base_url} не выпустил коды (HTTP {answer.status_code}): это не эмулятор службы "
                            f"проверки кодов?")
    try:
        codes = answer.json()["codes"]
    except (ValueError, KeyError, TypeError):
        codes = None
    if not isinstance(codes, list) or len(codes) != count or not all(isinstance(c, str) for c in codes):
        raise MintingFailed(f"{base_url} ответил на выпуск кодов не списком из {count} кодов")
    return codes


def demo_marking_codes(counts: dict[str, int] | None = None) -> tuple[dict[str, dict[str, list[str]]] | None, str]:
    """For each marked product of the demo, codes in each state as the check-service emulator sees them now
    (fresh each run: the emulators' state persists, so yesterday's valid codes may be sold today).
    ``(None, reason)`` when the emulator cannot mint them: the demo goes on without."""
    base_url = marking_emulator_url()
    codes: dict[str, dict[str, list[str]]] = {}
    try:
        for marked in DEMO_MARKED_PRODUCTS:
            codes[marked["product_id"]] = {
                status: mint_codes(base_url, marked["gtins"][0], status, count)
                for status, count in (counts or DEMO_CODE_COUNTS).items()
            }
    except MintingFailed as exc:
        return None, str(exc)
    return codes, ""
