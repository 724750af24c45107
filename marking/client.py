"""Client of the marking operator's permissive-mode check service (Честный ЗНАК, «разрешительный режим»).

Before a marked unit is sold, the seller asks the service about its codes (several in one request) and
copies the answer's ``reqId`` and ``reqTimestamp`` into the receipt (``industryInfo``, PROTOCOLS.md §4).
Plain Python over httpx, no Django; typed answer, typed errors. A check has no side effects, so a lost
answer is simply "unavailable": asking again is always safe.

The wire protocol, and how sure we are of it (searched in public pages, December 2026):

* ``POST https://markirovka.crpt.ru/api/v4/true-api/codes/check`` with the header ``X-API-KEY: <key>``
  (a 36-character key issued per seller) and the body ``{"codes": ["<code as scanned, GS kept>", ...]}``;
  the answer ``{"code": 0, "description": "ok", "codes": [{"cis", "valid", "printView", "gtin", "groupIds",
  "verified", "found", "realizable", "utilised", "isBlocked", "expireDate", "productionDate", "isOwner",
  "errorCode", "isTracking", "sold", "packageType", "producerInn", "grayZone"}], "reqId": "<uuid>",
  "reqTimestamp": <ms>}``. Confirmed by a vendor's public wiki with a curl example and a real answer
  (Фабиус wiki, «Разрешительный режим», https://wiki.sftserv.ru/, version of 2024-03-14); CRPT's own
  True API documentation is behind a qualified-signature login (no public specification), so the path,
  header and fields come from that secondary source. The permissive-mode requisites (ФОИВ 030, decree of
  21.11.2023 No 1944) are confirmed by Честный ЗНАК's own article on offline checks (markirovka.ru,
  «Офлайн проверка на кассах. Локальный модуль ЧЗ»).
* UNCONFIRMED: the error answers' shape (we read ``description`` / ``error_message`` when present), any
  limit on codes per request, and the production rule that clients pick a host from a CDN list first
  (``/api/v4/true-api/cdn/info``, recalled, not found in the searched pages): ``base_url`` is a setting,
  point it at the host to use.
* UNCONFIRMED: the venue's local module (ЛМ ЧЗ) mirrors the check with its own address, HTTP Basic login
  and path (a local install guide, docs.rbsoft.ru, shows Basic auth but not the path): keep ``check_path``
  and ``base_url`` settings; Basic credentials written into the address (``http://user:pass@host:5995``)
  are sent by httpx as they are.

Floor: middle, the marking room (``marking``); imports only the bottom (``core``); no Django (import-linter,
pyproject.toml).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from core.addresses import without_credentials
from core.gs1 import InvalidMarkingCode, parse_code
from core.tls import ssl_context

DEFAULT_CHECK_PATH = "/api/v4/true-api/codes/check"
FLAG_KEYS = ("found", "valid", "verified", "realizable", "utilised", "isBlocked", "sold", "expireDate",
             "errorCode", "gtin", "groupIds")


# --- errors ---------------------------------------------------------------------------------------


class MarkingError(Exception):
    """Base of the check client's errors."""


class MarkingUnavailable(MarkingError):
    """No verdict: the service could not be reached, timed out, dropped the answer, answered 5xx or something
    unreadable. ``MARKING_OFFLINE_SALE`` decides what the sale does."""


class MarkingRefused(MarkingError):
    """The service refused the request itself (4xx: a bad or missing key, a malformed request)."""

    def __init__(self, message: str, status: int | None = None, description: str | None = None):
        super().__init__(message)
        self.status = status
        self.description = description


# --- typed answer ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeVerdict:
    raw: str
    sellable: bool
    reason: str  # Russian, for the guest and the panel; "" when sellable
    flags: dict[str, Any] = field(default_factory=dict)  # FLAG_KEYS as answered, plus "expired"

    def as_json(self) -> dict[str, Any]:
        return {"raw": self.raw, "sellable": self.sellable, "reason": self.reason, "flags": self.flags}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CodeVerdict:
        return cls(str(data["raw"]), bool(data["sellable"]), str(data["reason"]), dict(data.get("flags") or {}))


@dataclass(frozen=True)
class CheckAnswer:
    req_id: str
    req_timestamp: int  # ms since the epoch, as the service stamped it
    codes: dict[str, CodeVerdict]  # keyed by the raw code as sent
    code: int = 0
    description: str = ""

    @property
    def all_sellable(self) -> bool:
        return all(v.sellable for v in self.codes.values())


def verdict(raw: str, entry: dict[str, Any], now: datetime) -> CodeVerdict:
    """The service's answer about one code, read by the rule of PROTOCOLS.md §4: sellable only when
    errorCode is 0 and it is found, valid, verified, realizable, utilised, not blocked, not sold, not expired."""
    flags = {key: entry.get(key) for key in FLAG_KEYS}
    expire = _expire_date(entry.get("expireDate"))
    flags["expired"] = expire is not None and expire <= now
    error_code = entry.get("errorCode", 0)
    checks = [
        (error_code in (0, None), f"служба проверки вернула ошибку по коду (errorCode {error_code})"),
        (entry.get("found") is True, "код не найден в системе маркировки"),
        (entry.get("valid") is True, "код не прошёл проверку формата"),
        (entry.get("verified") is True, "криптоподпись кода не подтверждена"),
        (entry.get("isBlocked") is not True, "продажа товара заблокирована"),
        (entry.get("sold") is not True, "товар с этим кодом уже продан"),
        (not flags["expired"], "срок годности товара истёк"),
        (entry.get("utilised") is True, "код не нанесён (не отчитан о нанесении)"),
        (entry.get("realizable") is True, "товар не в обороте у продавца, продавать нельзя"),
    ]
    reason = next((text for ok, text in checks if not ok), "")
    return CodeVerdict(raw=raw, sellable=not reason, reason=reason, flags=flags)


def _expire_date(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _print_view(raw: str) -> str | None:
    """``01`` + GTIN + ``21`` + serial: the part the service may echo without the crypto tail."""
    try:
        code = parse_code(raw)
    except InvalidMarkingCode:
        return None
    return f"01{code.gtin}21{code.serial}"


# --- the client -----------------------------------------------------------------------------------


class MarkingCheckClient:
    """One seller's access to the check service (the cloud, or the venue's local module)."""

    def __init__(
        self, base_url: str, token: str, timeout: float = 5.0, *, check_path: str = DEFAULT_CHECK_PATH,
        clock: Callable[[], float] = time.time,
    ):
        self.base_url = base_url.rstrip("/")
        self.check_path = "/" + check_path.lstrip("/")
        self._token = token
        self._clock = clock
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, verify=ssl_context())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MarkingCheckClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self, codes: list[str]) -> CheckAnswer:
        """The service's verdict on every code, in one request."""
        if not codes:
            raise ValueError("no codes to check")
        response = self._post({"codes": list(codes)})
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise MarkingUnavailable(f"служба проверки кодов ответила {response.status_code}: "
                                     f"{_description(response) or 'без подробностей'}")
        if response.status_code != 200:
            description = _description(response)
            raise MarkingRefused(
                f"служба проверки кодов отказала ({response.status_code}): {description or 'без подробностей'}",
                response.status_code, description,
            )
        return self._answer(codes, response)

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        headers = {"Content-Type": "application/json; charset=utf-8", "X-API-KEY": self._token}
        where = without_credentials(self.base_url, mark="***")  # messages are logged and shown
        try:
            return self._http.post(self.check_path, content=json.dumps(body).encode("utf-8"), headers=headers)
        except httpx.TimeoutException as exc:
            raise MarkingUnavailable(f"служба проверки кодов {where} не ответила вовремя: {exc!r}") from exc
        except httpx.TransportError as exc:  # no connection, or the answer was dropped
            raise MarkingUnavailable(f"нет связи со службой проверки кодов {where}: {exc!r}") from exc

    def _answer(self, sent: list[str], response: httpx.Response) -> CheckAnswer:
        try:
            data = response.json()
            if not isinstance(data, dict):
                raise TypeError(f"{type(data).__name__}, not an object")
            top_code = int(data.get("code", 0))
            description = str(data.get("description") or "")
            if top_code != 0:
                raise MarkingRefused(f"служба проверки кодов отказала: code {top_code} {description}".strip(),
                                     200, description)
            req_id, req_timestamp = str(data["reqId"]), int(data["reqTimestamp"])
            entries = [e for e in data["codes"] if isinstance(e, dict)]
        except (ValueError, KeyError, TypeError) as exc:
            raise MarkingUnavailable(f"служба проверки кодов ответила непонятно: {exc!r}") from exc
        by_cis = {str(e.get("cis")): e for e in entries}
        by_view = {str(e.get("printView")): e for e in entries if e.get("printView")}
        now = datetime.fromtimestamp(self._clock(), tz=UTC)
        verdicts = {}
        for raw in sent:
            entry = by_cis.get(raw) or by_view.get(_print_view(raw) or "")
            if entry is None:
                raise MarkingUnavailable(f"в ответе службы проверки нет кода {_print_view(raw) or raw[:31]}")
            verdicts[raw] = verdict(raw, entry, now)
        return CheckAnswer(req_id=req_id, req_timestamp=req_timestamp, codes=verdicts, code=top_code,
                           description=description)


def _description(response: httpx.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300] or None
    if isinstance(data, dict):
        for key in ("description", "error_message", "errorMessage", "message", "error"):
            if data.get(key):
                return str(data[key])[:300]
    return response.text[:300] or None
