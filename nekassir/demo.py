"""The demo venue wired to the emulators (``python manage.py demo``, called by ``make run``)."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.contrib.auth.models import Group, Permission, User
from django.db import transaction
from django.utils import timezone

from core.env import private_dir
from core.models import IikoConnection, Kiosk, KioskToken, TerminalKind, TerminalTransport, _token_digest
from iiko import emulator as menu
from marking.models import MarkedProduct

MANAGER_USERNAME = "manager"
MANAGERS_GROUP = "Менеджеры"
# The demo kiosks' service-menu PIN (the kiosk embed); a real venue sets its own in the admin.
DEMO_PIN = "1234"
DEMO_IIKO_NAME = "Демо iiko (эмулятор)"


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
# The demo's manager password and kiosk tokens, kept in the data folder (owner-only) so that every run prints them.
CREDENTIALS_FILE = "demo_credentials.json"


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


def seed_demo(*, reset: bool = False) -> dict[str, Any]:
    """The demo venue wired to this environment's emulators, made once; returns its working credentials.

    An existing venue is left as it is: the kiosks' device addresses and passwords, their PINs, the iiko
    connection, the manager's password and every token; new rights of the apps are added to the managers'
    group. The credentials it prints are the ones it issued and keeps in the data folder (``CREDENTIALS_FILE``,
    owner-only, like the secret key), so every run prints the same working password and tokens; a kept token
    missing from a database made afresh is put back, one revoked since is replaced by a new one (the others
    stay as they are). The manager's password is ``None`` when somebody set another one by hand (or it was
    set before credentials were kept): it is not changed. ``reset``: the venue as the demo makes it (this
    environment's emulator addresses, PIN ``DEMO_PIN``), a new manager password (which logs the manager
    out) and new tokens, the old ones revoked."""
    with transaction.atomic():
        kept = _kept_credentials()
        connection = _iiko_connection(reset)
        kiosks = []
        for spec in DEMO_KIOSKS:
            kiosk = _kiosk(spec, connection, reset)
            kiosks.append({"code": kiosk.code, "token": _token(kiosk, kept["kiosk_tokens"].get(kiosk.code), reset)})
        for marked in DEMO_MARKED_PRODUCTS:
            fields = {k: v for k, v in marked.items() if k != "product_id"}
            if reset:
                MarkedProduct.objects.update_or_create(product_id=marked["product_id"], defaults=fields)
            else:
                MarkedProduct.objects.get_or_create(product_id=marked["product_id"], defaults=fields)
        password = _manager_password(kept["manager_password"], reset)
        _keep_credentials({"manager_password": password,
                           "kiosk_tokens": {kiosk["code"]: kiosk["token"] for kiosk in kiosks}})
    return {
        "manager": {"username": MANAGER_USERNAME, "password": password},
        "kiosks": kiosks,
        "products": [
            {"id": p["id"], "name": p["name"], "price": p["price"], "vat": p["vat"]}
            for p in menu.DEMO_PRODUCTS
        ],
    }


def _kiosk_defaults(spec: dict[str, Any], connection: IikoConnection) -> dict[str, Any]:
    return {
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


def _iiko_connection(reset: bool) -> IikoConnection:
    fields = {"base_url": emulator_url("iiko"), "api_login": menu.DEMO_API_LOGIN}
    if reset:
        return IikoConnection.objects.update_or_create(name=DEMO_IIKO_NAME, defaults=fields)[0]
    return IikoConnection.objects.get_or_create(name=DEMO_IIKO_NAME, defaults=fields)[0]


def _kiosk(spec: dict[str, Any], connection: IikoConnection, reset: bool) -> Kiosk:
    kiosk = Kiosk.objects.filter(code=spec["code"]).first()
    if kiosk is not None and not reset:
        return kiosk  # a running venue's addresses, device passwords and PIN stay as they are
    kiosk, _ = Kiosk.objects.update_or_create(code=spec["code"], defaults=_kiosk_defaults(spec, connection))
    kiosk.set_service_pin(DEMO_PIN)
    kiosk.save()
    return kiosk


def _token(kiosk: Kiosk, kept: str | None, reset: bool) -> str:
    """The kiosk's kept token while it is live (put back when this database has never seen it); otherwise a
    new one, added beside the kiosk's other tokens (with ``reset``: instead of them, which are revoked)."""
    if reset:
        KioskToken.objects.filter(kiosk=kiosk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    elif kept and kept.startswith(KioskToken.PLAINTEXT_PREFIX):
        row = KioskToken.objects.filter(token_hash=_token_digest(kept)).first()
        if row is None:
            KioskToken.objects.create(kiosk=kiosk, prefix=kept[:10], token_hash=_token_digest(kept))
            return kept
        if row.kiosk_id == kiosk.pk and row.revoked_at is None:
            return kept
    return KioskToken.issue(kiosk)


def _manager() -> User:
    """The demo's manager in the managers' group (made if missing; its password is not touched here)."""
    group, _ = Group.objects.get_or_create(name=MANAGERS_GROUP)
    # Every right of the apps (added, never taken away): the panel's actions (fiscal.check_device for the device
    # checks too), and the marked products in the admin.
    apps = ["core", "nekassir", "fiscal", "payments", "marking"]
    group.permissions.add(*Permission.objects.filter(content_type__app_label__in=apps))
    manager, created = User.objects.get_or_create(username=MANAGER_USERNAME, defaults={"is_staff": True})
    if created:
        manager.set_unusable_password()
        manager.save(update_fields=["password"])
    manager.groups.add(group)
    return manager


def _manager_password(kept: str | None, reset: bool) -> str | None:
    manager = _manager()
    if not reset:
        if kept and check_password(kept, manager.password):  # no rehash: a changed hash logs the manager out
            return kept
        if manager.has_usable_password():
            return None  # set by hand (or before the demo kept its credentials): not changed
    # A manager just made, or one nobody can log in as (no usable password): the kept password, or a new one.
    password = kept if kept and not reset else secrets.token_urlsafe(9)
    manager.is_staff = True
    manager.set_password(password)
    manager.save()
    return password


def _credentials_path() -> Path:
    return Path(settings.DATA_DIR) / CREDENTIALS_FILE


def _kept_credentials() -> dict[str, Any]:
    """What the last run kept: ``{"manager_password": str | None, "kiosk_tokens": {code: token}}``."""
    try:
        kept = json.loads(_credentials_path().read_text())
    except (OSError, ValueError):
        kept = None
    if not isinstance(kept, dict):
        kept = {}
    password, tokens = kept.get("manager_password"), kept.get("kiosk_tokens")
    return {"manager_password": password if isinstance(password, str) else None,
            "kiosk_tokens": {code: token for code, token in tokens.items() if isinstance(token, str)}
            if isinstance(tokens, dict) else {}}


def _keep_credentials(credentials: dict[str, Any]) -> None:
    """Written whole (a new file renamed over the old one), readable by its owner only, in the data folder."""
    path = _credentials_path()
    private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(descriptor, "w") as out:
            json.dump(credentials, out, ensure_ascii=False, indent=2)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def addresses_elsewhere() -> list[str]:
    """Russian lines naming each demo device whose address is not this environment's emulator (the venue
    is left as it is: a ``make run`` started with other ports uses it; ``demo --reset`` points it here)."""
    lines = []
    connection = IikoConnection.objects.filter(name=DEMO_IIKO_NAME).first()
    if connection is not None and connection.base_url != emulator_url("iiko"):
        lines.append(f"iiko: {connection.base_url}, а эмулятор этого окружения — {emulator_url('iiko')}")
    for spec in DEMO_KIOSKS:
        kiosk = Kiosk.objects.filter(code=spec["code"]).first()
        if kiosk is None:
            continue
        devices = [("ATOL", kiosk.atol_url, emulator_url("atol"))]
        if kiosk.terminal_transport == TerminalTransport.KKM_SERVER:
            devices.append(("KKM Server", kiosk.kkm_url, emulator_url("kkm")))
        if kiosk.terminal_transport == TerminalTransport.DUALCONNECTOR:
            devices.append(("DualConnector", kiosk.dc_url.rstrip("/"), emulator_url("dualconnector")))
        lines += [f"киоск {kiosk.code}, {name}: {url}, а эмулятор этого окружения — {ours}"
                  for name, url, ours in devices if url != ours]
    if not lines:
        return []
    return [f"Адрес не изменён ({line})" for line in lines] + [
        "Так и нужно, если make run запущен с другими портами эмуляторов (*_EMULATOR_PORT): задайте их и здесь. "
        "Направить демо-заведение на эмуляторы этого окружения: manage.py demo --reset"]


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
