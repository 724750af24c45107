"""iiko's errors in Russian for the managers: what went wrong and what to do (issue 14).

iiko answers in English (``errorInfo`` ``{code, message}`` of an order it could not create, ``{error,
errorDescription}`` of a refused call) and our client words its own failures in English too; the attempts keep
that raw text, for support. ``explain`` turns a stored text into the manager's Russian; a text it does not
know becomes a general Russian line (the raw one stays beside it on the order page, under «Для поддержки»).
"""

from __future__ import annotations

import re

# (what the raw text contains, case-insensitive) -> the manager's Russian; the first match wins.
KNOWN: tuple[tuple[str, str], ...] = (
    (r"creation timeout|front_offline|TerminalGroupIsNotAlive|terminal group .* not alive",
     "iikoFront не принял заказ вовремя: касса iiko выключена, не в сети или занята. В iiko этого заказа нет. "
     "Проверьте, что iikoFront на кассе запущен и в сети, и повторите передачу."),
    (r"DuplicatedOrderId|already exists",
     "iiko уже получил заказ с этим номером: повторять не нужно, он появится в iiko."),
    (r"ProductSizeNotFound",
     "В меню iiko нет такого размера блюда: обновите меню киоска из iiko и проверьте размеры."),
    (r"ProductGroupNotFound",
     "Модификатор не из группы этого блюда в iiko: обновите меню киоска из iiko."),
    (r"ProductNotFound",
     "В меню iiko нет такого блюда или модификатора (удалено или переименовано): обновите меню киоска из iiko."),
    (r"OrderTypeNotFound",
     "В iiko нет выбранного типа заказа: проверьте типы заказа в настройках киоска."),
    (r"PaymentTypeCanNotBeUsedAsExternal",
     "Тип оплаты iiko нельзя проводить внешней оплатой: в iikoOffice включите для него внешнюю обработку."),
    (r"PaymentTypeNotFound",
     "В iiko нет выбранного типа оплаты (или он другого вида): проверьте тип оплаты в настройках киоска."),
    (r"PaymentSumShouldBePositive",
     "iiko не принимает заказ с нулевой суммой оплаты."),
    (r"no iiko token|HTTP 401|HTTP 403|credentials",
     "iiko не принял ключ API: проверьте API-логин подключения к iiko в администрировании."),
    (r"cannot reach iiko|ConnectError|connection refused|Name or service not known",
     "Нет связи с iiko: проверьте интернет на сервере заведения и повторите."),
    (r"no answer from iiko|connection lost|timed out|ReadTimeout|HTTP 408",
     "iiko не ответил вовремя: заказ мог дойти. Сервис сам проверит это по номеру заказа, повторно не "
     "отправляйте, пока проверка не закончится."),
    (r"HTTP 5\d\d",
     "Ошибка на стороне iiko (сервер iiko ответил ошибкой): повторите передачу через несколько минут."),
    (r"not JSON|does not match its schema|unexpected iiko answer",
     "iiko ответил непонятно (возможно, сбой или обновление iiko): повторите позже; если повторяется, "
     "сообщите в поддержку."),
    (r"HTTP 400",
     "iiko отказался принять заказ: проверьте настройки киоска для iiko (организация, группа терминалов, "
     "типы заказа и оплаты) и меню."),
)
_COMPILED = tuple((re.compile(pattern, re.IGNORECASE), russian) for pattern, russian in KNOWN)
UNKNOWN = "iiko вернул ошибку: заказ в iiko не создан. Подробности для поддержки — ниже."
_CYRILLIC = re.compile(r"[А-Яа-яЁё]")


def explain(raw: str) -> str:
    """The manager's Russian for a stored iiko error text; a text already in Russian (our own) as it is."""
    text = (raw or "").strip()
    if not text:
        return ""
    for pattern, russian in _COMPILED:
        if pattern.search(text):
            return russian
    if _CYRILLIC.search(text):
        return text
    return UNKNOWN


def is_raw(raw: str) -> bool:
    """Whether ``raw`` says more than ``explain`` shows (worth keeping under «Для поддержки»)."""
    return bool(raw) and explain(raw) != raw.strip()
