"""``iiko <kiosk> check``: is the kiosk's iiko set up so that its orders will go through?

Terminal group alive, the card payment type external (processed by the kiosk), the order types
present. Answers in plain Russian, for a support engineer.
"""

from __future__ import annotations

from typing import Any

from core.models import Kiosk
from iiko.client import IikoError
from iiko.connection import IikoNotConfigured, make_iiko_client


def check_iiko(kiosk: Kiosk) -> dict[str, Any]:
    report: dict[str, Any] = {"kiosk": kiosk.code, "ok": False, "problems": [], "notes": []}
    problems: list[str] = report["problems"]
    try:
        client = make_iiko_client(kiosk)
    except IikoNotConfigured as exc:
        problems.append(str(exc))
        report["error"] = "not_configured"
        return report
    org, group = str(kiosk.iiko_organization_id), str(kiosk.iiko_terminal_group_id)
    try:
        with client:
            alive = client.terminal_groups_is_alive(org, [group])
            payment_types = client.payment_types([org])
            order_types = client.order_types([org])
    except IikoError as exc:
        problems.append(f"iiko не отвечает или отказал: {exc}")
        report["error"] = type(exc).__name__  # for the advice of the admin's connection check
        return report
    report["terminal_group_alive"] = any(a.is_alive for a in alive if a.terminal_group_id == group)
    if not report["terminal_group_alive"]:
        problems.append("Группа терминалов iiko не в сети: iikoFront выключен или нет связи, заказы не дойдут")
    problems.extend(_payment_type_problems(kiosk, payment_types, report))
    problems.extend(_order_type_problems(kiosk, order_types))
    report["ok"] = not problems
    return report


def _payment_type_problems(kiosk: Kiosk, payment_types, report: dict[str, Any]) -> list[str]:
    wanted = str(kiosk.iiko_payment_type_id or "")
    card = next((p for p in payment_types if p.id == wanted), None)
    if card is None or card.is_deleted:
        return ["Тип оплаты «карта» не найден в iiko (или удалён)"]
    report["payment_type"] = {"name": card.name, "kind": card.kind, "processing": card.processing_type}
    problems = []
    if card.kind != "Card":
        problems.append(f"Тип оплаты «{card.name}» не карточный (вид {card.kind})")
    if card.processing_type not in ("External", "Both"):
        problems.append(f"Тип оплаты «{card.name}» не разрешает внешнее проведение (processing {card.processing_type})")
    report["notes"].append(
        "Заказы передаются с isProcessedExternally и isFiscalizedExternally: чек уже напечатал киоск, "
        "iikoFront второй чек не печатает."
    )
    return problems


def _order_type_problems(kiosk: Kiosk, order_types) -> list[str]:
    known = {t.id for t in order_types if not t.is_deleted}
    wanted = {
        "«с собой»": kiosk.iiko_order_type_takeaway_id,
        "«в зале»": kiosk.iiko_order_type_dine_in_id,
    }
    if kiosk.iiko_send_as_delivery:
        wanted["«самовывоз»"] = kiosk.iiko_order_type_pickup_id
    return [f"Тип заказа {label} не задан или не найден в iiko" for label, value in wanted.items()
            if not value or str(value) not in known]
