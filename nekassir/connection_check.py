"""«Проверить связь» for one kiosk: its register, card terminal and iiko, one plain-Russian line each.

The three support checks (``kkt|terminal|iiko <kiosk> check``) run one after the other, each under its
device's lock (a payment in progress is waited for a little, never interrupted), and their results
become what a support engineer reads on the kiosk's admin page: «в порядке», or what is wrong and what
to do. These are device calls, so this runs in a panel job (``nekassir.panel.jobs``), never inside a
web request. One device failing does not stop the others from being checked.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from core.addresses import has_credentials, without_credentials
from core.locks import DeviceBusy
from core.models import Kiosk
from fiscal.checks import check_register
from iiko.checks import check_iiko
from nekassir.alerts import FN_WARNINGS
from payments.models import CardOperation
from payments.terminal import check_terminal

log = logging.getLogger(__name__)

OK, BAD, OFF = "ok", "bad", "off"  # OFF: the kiosk does not use this device

# What to do, by the kind of failure (error kinds of the ATOL client / register workflow).
_REGISTER_ADVICE = {
    "unreachable": "Проверьте, что компьютер киоска включён и в сети, ATOL Web Server запущен, "
                   "а адрес ATOL Web Server в настройках киоска верный.",
    "auth": "Проверьте пользователя и пароль веб-запросов ATOL в настройках киоска: они должны совпадать "
            "с настройками ATOL Web Server.",
    "not_connected": "ATOL Web Server не видит ККТ: проверьте, что ККТ включена и подключена к компьютеру "
                     "киоска, и идентификатор ККТ (deviceID) в настройках киоска.",
    "register_unresolved": "Дождитесь, пока ККТ ответит по прежней операции (она проверяется автоматически), "
                           "затем проверьте снова.",
}
for _kind in ("timeout", "connection_lost", "bad_answer"):
    _REGISTER_ADVICE[_kind] = _REGISTER_ADVICE["unreachable"]

# What the terminal check's failure means, by the card operation's reason (payments.acquiring.Reason).
_TERMINAL_ADVICE = {
    "not_reachable": "Нет связи с {service} по адресу {url}{detail}. Проверьте, что служба запущена на компьютере "
                     "киоска и адрес в настройках киоска верный.",
    "timeout": "{service} по адресу {url} не ответил вовремя{detail}. Проверьте, что терминал включён и подключён "
               "к компьютеру киоска, и перезапустите службу.",
    "rejected": "{service} отказал в доступе{detail}. Проверьте пользователя, пароль и номер устройства "
                "в настройках киоска.",
}
_TERMINAL_ADVICE["lost_answer"] = _TERMINAL_ADVICE["timeout"]
_TERMINAL_NOT_READY = ("Терминал не готов{detail}. Проверьте экран терминала и его связь с банком; "
                       "если повторяется — поддержка банка.")

_IIKO_ADVICE = {
    "not_configured": "Укажите в настройках киоска подключение iiko, организацию, группу терминалов и типы оплаты "
                      "и заказа.",
    "IikoAuthError": "iiko не принял ключ API: проверьте логин API в подключении iiko.",
    "IikoConnectionError": "Проверьте доступ сервера в интернет и адрес сервера iiko в подключении iiko.",
    "IikoTimeout": "iiko не ответил вовремя: проверьте интернет на сервере; если повторяется — поддержка iiko.",
}


@dataclass(frozen=True)
class DeviceLine:
    device: str  # ККТ | Терминал | iiko
    state: str  # OK | BAD | OFF
    text: str  # one line for the engineer

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_connection(kiosk: Kiosk) -> list[DeviceLine]:
    lines = []
    for device, check in (("ККТ", _register), ("Терминал", _terminal), ("iiko", _iiko)):
        try:
            lines.append(check(kiosk))
        except DeviceBusy as exc:
            lines.append(DeviceLine(device, BAD, f"{exc}. Проверка не выполнена: повторите через минуту."))
        except Exception as exc:  # the engineer must see a line for every device, whatever happened
            log.exception("kiosk=%s connection check of %s failed", kiosk.code, device)
            lines.append(DeviceLine(device, BAD, f"Проверка не выполнена: {exc}"))
    return [_credentials_in_address(kiosk, line) for line in lines]


def _credentials_in_address(kiosk: Kiosk, line: DeviceLine) -> DeviceLine:
    """A login and password stored in the device's address (before the fields refused them): the device may
    work, but the password shows wherever the address does, so the line says so and what to do."""
    if line.device == "ККТ":
        address, where = kiosk.atol_url, "поля «пользователь веб-запросов» и «пароль веб-запросов» киоска"
    elif line.device == "Терминал":
        address = kiosk.kkm_url if kiosk.terminal_transport == "kkm" else kiosk.dc_url
        where = "поля «пользователь KKM Server» и «пароль KKM Server» киоска"
    else:
        address = kiosk.iiko.base_url if kiosk.iiko is not None else ""
        where = "поля apiLogin или appId, clientSecret и apiKey подключения iiko"
    if line.state == OFF or not has_credentials(address):
        return line
    advice = (f" В адресе ({without_credentials(address, mark='***')}) записаны логин и пароль: их видно везде, "
              f"где виден адрес. Перенесите их в {where}, а в адресе оставьте только адрес и порт.")
    return DeviceLine(line.device, BAD, line.text + advice)


def _sentence(problems: list[str]) -> str:
    return "; ".join(p.rstrip(".") for p in problems) + "."


def _register(kiosk: Kiosk) -> DeviceLine:
    if not kiosk.has_register:
        return DeviceLine("ККТ", OFF, "Своей ККТ АТОЛ у киоска нет.")
    if not kiosk.atol_url:
        return DeviceLine("ККТ", BAD, "Не задан адрес ATOL Web Server в настройках киоска.")
    report = check_register(kiosk)
    if report["ok"]:
        model = (report.get("device") or {}).get("modelName") or "ККТ"
        fn = report.get("fn") or {}
        text = f"В порядке: {model} на связи и готова к печати чеков, ФН {fn.get('fnNumber') or '—'}."
        warnings = [FN_WARNINGS.get(k, k) for k, on in sorted((fn.get("warnings") or {}).items()) if on]
        if warnings:
            text += f" Внимание: {', '.join(warnings)}."
        return DeviceLine("ККТ", OK, text + _registration_warnings(report))
    # No error kind: the register answered and told its own trouble (paper, cover, FN, queue).
    advice = _REGISTER_ADVICE.get(report.get("error", ""), "Устраните это на ККТ и проверьте связь ещё раз.")
    text = " ".join(filter(None, [_sentence(report["problems"]), advice]))
    return DeviceLine("ККТ", BAD, text + _registration_warnings(report))


def _registration_warnings(report: dict) -> str:
    """The register answers, but its registration does not fit the kiosk (``fiscal.checks``): said after the
    state, since the receipts it prints would carry wrong requisites."""
    warnings = report.get("warnings") or []
    return f" Регистрация ККТ: {_sentence(warnings)}" if warnings else ""


def _terminal(kiosk: Kiosk) -> DeviceLine:
    if not kiosk.terminal_transport:
        return DeviceLine("Терминал", OFF, "Банковский терминал у киоска не настроен.")
    service, url = ("KKM Server", kiosk.kkm_url) if kiosk.terminal_transport == "kkm" else ("DualConnector",
                                                                                            kiosk.dc_url)
    if not url:
        return DeviceLine("Терминал", BAD, f"Не задан адрес {service} в настройках киоска.")
    op = check_terminal(kiosk)
    if op.state == CardOperation.State.APPROVED:
        return DeviceLine("Терминал", OK, f"В порядке: {service} и терминал на связи.")
    detail = f" ({op.message})" if op.message else ""
    advice = _TERMINAL_ADVICE.get(op.reason, _TERMINAL_NOT_READY)
    return DeviceLine("Терминал", BAD, advice.format(service=service, url=without_credentials(url, mark="***"),
                                                     detail=detail))


def _iiko(kiosk: Kiosk) -> DeviceLine:
    report = check_iiko(kiosk)
    if report["ok"]:
        return DeviceLine("iiko", OK, "В порядке: группа терминалов в сети, тип оплаты и типы заказа найдены.")
    advice = _IIKO_ADVICE.get(report.get("error", ""), "")
    return DeviceLine("iiko", BAD, " ".join(filter(None, [_sentence(report["problems"]), advice])))
