"""``kkt <kiosk> check``: does the web server answer, is the register reachable and ready, how is it
registered. Answers in plain Russian so a support engineer knows what to fix."""

from __future__ import annotations

from typing import Any

from fiscal.atol_errors import AtolError
from fiscal.register import FiscalError, register_session
from nekassir.models import Kiosk


def check_register(kiosk: Kiosk) -> dict[str, Any]:
    report: dict[str, Any] = {"kiosk": kiosk.code, "ok": False, "problems": []}
    problems: list[str] = report["problems"]
    try:
        with register_session(kiosk, purpose=f"{kiosk.code}: проверка связи") as session:
            try:
                report["server"] = session.client.server_info()
            except AtolError as exc:
                problems.append(f"ATOL Web Server по адресу {kiosk.atol_url} не отвечает: {exc}")
                report["error"] = exc.kind  # what went wrong, for the advice of the admin's connection check
                return report
            device = (session.run({"type": "getDeviceStatus"}).result or {}).get("deviceStatus") or {}
            report["device"] = device
            problems.extend(_device_problems(device))
            registration = session.run({"type": "getRegistrationInfo"}).result or {}
            report["registration"] = registration
            Kiosk.objects.filter(pk=kiosk.pk).update(registration_info=registration)
            fn = (session.run({"type": "getFnStatus"}).result or {}).get("fnStatus") or {}
            report["fn"] = fn
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
