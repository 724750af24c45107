"""Requisites of an automatic device: the machine number (FFD tag 1036), the address (1009) and the place
(1187) of settlement that every receipt of a kiosk's register carries (PROTOCOLS.md §1).

They are the kiosk's settings (``Kiosk.machine_number``, ``payments_address``, ``payments_place``, editable in
the admin), put in every receipt task by ``receipt_fields``. Empty ones are read from the register's
``getRegistrationInfo`` before the kiosk's first receipt (``ensure_read``, called by
``fiscal.shifts.ensure_open``); after an FN change (the FN number the register
reports is not the one the requisites were read for) the registration is read again and its values replace
ours: a new FN means the register was registered again. ``kkt <kiosk> check`` does the same and says, in
Russian, what in the registration does not fit a kiosk (``registration_warnings``).
"""

from __future__ import annotations

import logging
from typing import Any

from core.events import record_event
from core.models import Kiosk, TaxationType
from fiscal.register import FiscalFailed, RegisterSession

log = logging.getLogger(__name__)

_NAMES = {  # what a person reads for each requisite
    "machine_number": "Номер автомата",
    "payments_address": "Адрес расчётов",
    "payments_place": "Место расчётов",
}


def receipt_fields(kiosk: Kiosk) -> dict[str, str]:
    """``machineNumber``, ``paymentsAddress``, ``paymentsPlace`` for a receipt task (sell, sellReturn,
    correction): the one place every receipt gets them. Read from the row, because ``ensure_read`` may just
    have filled them through another instance of this kiosk (a refund's register session holds its own)."""
    if kiosk.pk is not None:
        kiosk.refresh_from_db(fields=list(Kiosk.REQUISITE_FIELDS))
    return kiosk.receipt_requisites


def registered(registration: dict[str, Any]) -> dict[str, str]:
    """The three requisites as the registration holds them (kiosk field names; "" when absent)."""
    device = registration.get("device") or {}
    return {name: str(device.get(wire) or "").strip() for name, wire in Kiosk.REQUISITE_FIELDS.items()}


def automatic_mode(registration: dict[str, Any]) -> bool:
    return bool((registration.get("device") or {}).get("autoMode"))


def ensure_read(session: RegisterSession) -> None:
    """Before a receipt: the requisites are known for the FN the register is on (read once per FN)."""
    kiosk = session.kiosk
    if kiosk.requisites_fn_number and kiosk.requisites_fn_number == kiosk.fn_number:
        return
    try:
        op = session.run({"type": "getRegistrationInfo"})
    except FiscalFailed as exc:
        # The receipt goes with what the kiosk has; a register that needs a machine number refuses it (501)
        # before anything is made, and the next receipt asks again.
        log.warning("kiosk=%s getRegistrationInfo failed, requisites not read: %s", kiosk.code, exc)
        return
    apply_registration(kiosk, op.result or {}, kiosk.fn_number)


def apply_registration(kiosk: Kiosk, registration: dict[str, Any], fn_number: str) -> dict[str, tuple[str, str]]:
    """Fill the kiosk's requisites from ``registration`` read on FN ``fn_number``: the empty ones the first
    time, every one the registration holds after an FN change. Saves them (and the registration) and journals
    what changed; returns ``{field: (old, new)}``."""
    fn_changed = bool(kiosk.requisites_fn_number) and bool(fn_number) and kiosk.requisites_fn_number != fn_number
    changes = {}
    for name, value in registered(registration).items():
        current = getattr(kiosk, name)
        if value and value != current and (fn_changed or not current):
            changes[name] = (current, value)
            setattr(kiosk, name, value)
    kiosk.requisites_fn_number = fn_number
    kiosk.registration_info = registration
    fields = {name: getattr(kiosk, name) for name in (*Kiosk.REQUISITE_FIELDS, "requisites_fn_number")}
    Kiosk.objects.filter(pk=kiosk.pk).update(registration_info=registration, **fields)
    if changes:
        why = "после замены ФН" if fn_changed else "из регистрации ККТ"
        text = "; ".join(f"{_NAMES[name]}: «{new}»" for name, (_, new) in changes.items())
        record_event("fiscal.requisites.read", kiosk=kiosk, message=f"Реквизиты автомата {why}: {text}",
                     data={"fn_number": fn_number, "changes": changes})
    return changes


def registration_warnings(kiosk: Kiosk, registration: dict[str, Any]) -> list[str]:
    """What in the register's registration does not fit this kiosk, in Russian, with what to do."""
    if not registration:
        return []
    warnings = []
    if not automatic_mode(registration):
        warnings.append("ККТ зарегистрирована не для автоматического устройства для расчётов: чеки киоска без "
                        "кассира должна печатать ККТ в режиме автомата. Перерегистрируйте ККТ в этом режиме "
                        "(через ОФД или личный кабинет ФНС) с номером автомата, адресом и местом расчётов")
    elif not kiosk.machine_number and not registered(registration)["machine_number"]:
        warnings.append("Номера автомата нет ни в регистрации ККТ, ни в настройках киоска: ККТ в режиме автомата "
                        "не примет чек без него. Впишите номер автомата в настройку киоска")
    for name, value in registered(registration).items():
        ours = getattr(kiosk, name)
        if value and ours and value != ours:
            warnings.append(f"{_NAMES[name]} в регистрации ККТ «{value}» не совпадает с настройкой киоска «{ours}»: "
                            "исправьте настройку киоска (или очистите её — она прочитается из ККТ)")
    taxation = (registration.get("organization") or {}).get("taxationTypes")
    if isinstance(taxation, list) and taxation and kiosk.taxation_type not in taxation:
        ours = TaxationType(kiosk.taxation_type).label if kiosk.taxation_type in TaxationType.values else ""
        warnings.append(f"Система налогообложения киоска ({ours or kiosk.taxation_type}) не указана в регистрации "
                        f"ККТ ({', '.join(map(str, taxation))}): исправьте настройку киоска")
    return warnings
