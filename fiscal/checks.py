"""``kkt <kiosk> check``: does the web server answer, is the register reachable and ready, how is it
registered. Answers in plain Russian so a support engineer knows what to fix.

The registration also fills the kiosk's empty requisites of an automatic device (again after an FN change),
and what in it does not fit the kiosk (not registered for an automatic device, requisites that differ from
the kiosk's settings) comes back as ``warnings``: the register works, but its receipts would be wrong.
"""

from __future__ import annotations

from typing import Any

from core.addresses import without_credentials
from core.models import Kiosk
from fiscal import requisites
from fiscal.atol_errors import AtolError
from fiscal.register import FiscalError, register_session


def check_register(kiosk: Kiosk) -> dict[str, Any]:
    report: dict[str, Any] = {"kiosk": kiosk.code, "ok": False, "problems": [], "warnings": []}
    problems: list[str] = report["problems"]
    try:
        with register_session(kiosk, purpose=f"{kiosk.code}: проверка связи") as session:
            try:
                report["server"] = session.client.server_info()
            except AtolError as exc:
                address = without_credentials(kiosk.atol_url, mark="***")
                problems.append(f"ATOL Web Server по адресу {address} не отвечает: {exc}")
                report["error"] = exc.kind  # what went wrong, for the advice of the admin's connection check
                return report
            device = (session.run({"type": "getDeviceStatus"}).result or {}).get("deviceStatus") or {}
            report["device"] = device
            problems.extend(_device_problems(device))
            registration = session.run({"type": "getRegistrationInfo"}).result or {}
            report["registration"] = registration
            fn = (session.run({"type": "getFnStatus"}).result or {}).get("fnStatus") or {}
            report["fn"] = fn
            _check_requisites(kiosk, registration, fn, report)
            report["queue"] = vars(session.client.queue_status())
            if report["queue"]["is_blocked"]:
                reason = report["queue"]["block_reason"] or "причина неизвестна"
                problems.append(f"Очередь ККТ заблокирована ({reason})")
    except FiscalError as exc:
        problems.append(str(exc))
        report["error"] = exc.kind
        return report
    except AtolError as exc:
        problems.append(f"ATOL Web Server: {exc}")
        report["error"] = exc.kind
        return report
    report["ok"] = not problems
    return report


def _check_requisites(kiosk: Kiosk, registration: dict[str, Any], fn: dict[str, Any], report: dict[str, Any]) -> None:
    """Empty requisites filled from the registration (all of them when the FN is not the one they were read
    for), then what in the registration does not fit the kiosk."""
    fn_number = str(fn.get("fnNumber") or fn.get("serialNumber") or kiosk.fn_number)
    requisites.apply_registration(kiosk, registration, fn_number)
    report["requisites"] = kiosk.receipt_requisites
    report["warnings"].extend(requisites.registration_warnings(kiosk, registration))


def _device_problems(device: dict[str, Any]) -> list[str]:
    problems = []
    if device.get("paperPresent") is False:
        problems.append("В ККТ нет бумаги")
    if device.get("coverOpened"):
        problems.append("Открыта крышка ККТ")
    if device.get("fnPresent") is False:
        problems.append("ФН не обнаружен")
    if device.get("blocked"):
        problems.append("ККТ заблокирована")
    return problems
