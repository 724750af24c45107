"""An emulator of the iiko Cloud API (iikoTransport) over real HTTP, for tests and the demo.

Speaks iiko's wire protocol (every method a ``POST`` with a JSON body, ``Authorization: Bearer``,
errors as ``{correlationId, errorDescription, error}``) for the methods the kiosk uses, with one demo
venue (organization, two terminal groups, a card and a cash payment type, order types, a small menu).
Every request it receives is validated against the vendor's OpenAPI schema (400 when invalid) and
so is every answer it gives (a schema violation of its own becomes a loud 500), so a client that
passes here sends what the real iiko documents.

Orders behave like the real ones: ``order/create`` answers ``InProgress``; the order becomes
``Success`` or ``Error`` after ``creation_delay`` seconds (``commands/status`` and ``order/by_id``
tell). Unknown products, a missing ``productSizeId`` for a sized product, a wrong payment or order
type end in ``Error`` with ``errorInfo``, as iikoFront would refuse them; a re-used order id is a
400 ``DuplicatedOrderId``.

Faults (``POST /_emulator/faults {"fault", "count", "device"?, ...}``; ``device`` = a terminal group
id or the organization id; ``path`` optionally limits a fault to one endpoint):

* ``creation_timeout``: the next order(s) end in ``Error`` "Creation timeout expired, ..." and are
  not in iiko (iikoFront never took them);
* ``front_offline``: ``terminal_groups/is_alive`` says not alive while armed, and each order created
  meanwhile consumes one count and ends in the creation timeout;
* ``http_500``: answers 500 without doing anything (``"processed": true``: does it, then answers 500);
* ``slow``: does the work, answers after ``seconds`` (default 20), so the client times out;
* ``lost_answer``: does the work, drops the connection without an answer;
* ``lost_create_answer``: ``order/create`` / ``deliveries/create`` creates the order, then drops the
  connection: no correlationId comes back (a refused create, e.g. a duplicate id, does not use it up);
* ``invisible_for`` (``{"seconds": N}``, default 30): each order created while armed is not shown by
  ``order/by_id`` / ``deliveries/by_id`` for N seconds of the emulator's clock, as a busy iiko does
  (the kitchen has it; the journal shows it).

``GET /_emulator/faults/known`` lists them with what they do (``FAULTS``).

Control API besides faults/journal/reset: ``POST /_emulator/clock {"advance_seconds"}`` moves the
emulator's clock (tokens expire after one hour of it), ``GET /_emulator/clock``,
``POST /_emulator/revoke_tokens``.

Floor: middle, the iiko room (``iiko``); imports neither ``fiscal``, ``payments`` nor ``nekassir``, only the
bottom (``core``) (import-linter, pyproject.toml).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from core.emulator_http import (
    EmulatorApp,
    FaultQueue,
    JsonStateFile,
    Request,
    Response,
    json_response,
    lost_answer,
)
from iiko import schema

# --- the demo venue -------------------------------------------------------------------------------

DEMO_API_LOGIN = "demo-api-login"
DEMO_APP_ID = "65b3b127-8fbd-4ad2-9c31-6316f180c24b"
DEMO_CLIENT_SECRET = "demo-client-secret"  # noqa: S105 - a public demo credential of the emulator
DEMO_API_KEY = "demo-api-key"

ORG_ID = "c0a4c803-9068-459f-ac88-9e88abd2d203"
ORG_NAME = "Демо-кафе «Некассир»"
TERMINAL_GROUP_ID = "3819ff4c-081f-4976-9482-cbc2b08007b0"
TERMINAL_GROUP_NAME = "Основной зал"
TERMINAL_GROUP_2_ID = "4b8dea39-ef4d-484d-8390-26ccb7030466"
TERMINAL_GROUP_2_NAME = "Фудкорт"
CARD_PAYMENT_TYPE_ID = "e9772cf3-6f24-40be-a316-f3dd0eee6586"
CASH_PAYMENT_TYPE_ID = "7d99af94-0cb1-4d85-928c-ece12b85ddaa"
ORDER_TYPE_TAKEAWAY_ID = "b3641f85-d498-49f7-97ac-b8c5d9393275"
ORDER_TYPE_DINE_IN_ID = "0b5c8523-ad2a-4676-84e3-2b5b149c7296"
ORDER_TYPE_PICKUP_ID = "79bf2f60-fb2d-4b06-afbc-e5b858615a57"  # a delivery type, for deliveries/create

GROUP_BURGERS_ID = "5cbbfc9c-7598-4d25-906e-948411f31f58"
GROUP_DRINKS_ID = "303782a2-bc37-4903-9a41-699f13e9b1f8"
GROUP_DESSERTS_ID = "6690d0e5-c86f-43e0-bf58-f8ffdebe777b"
GROUP_SNACKS_ID = "3ba4e225-3ec7-45f7-9220-bebf4ec94d3e"
MODIFIER_GROUP_SYRUPS_ID = "87ef6fe6-6b4d-44e5-8bd7-3257c456e71e"
SIZE_SMALL_ID = "5e8d0218-fc92-4eb7-ba68-10c0eb4d6261"
SIZE_MEDIUM_ID = "ff26d68b-3940-4695-99a9-d42ab46d18f5"
SIZE_LARGE_ID = "1bec3008-eaec-402a-bb79-9c134b3ca3a8"

PRODUCT_BURGER_ID = "119a276c-e8e2-42a1-8c7c-107fe2819fe5"
PRODUCT_FRIES_ID = "f954301c-ba85-4480-a0e0-e68a24e3a9ab"  # has a size scale: productSizeId required
PRODUCT_CAPPUCCINO_ID = "8b469dd6-8efd-4ace-92e6-a571ce8950f9"  # has the syrup modifier group
PRODUCT_MORS_ID = "35a13949-aa73-4d86-8c15-94a11ba9aaf4"
PRODUCT_CAESAR_ID = "c1653d64-ee89-4633-a055-8e946e0b9c92"  # a name longer than 128 characters
PRODUCT_ICE_CREAM_ID = "42a07721-2332-4b98-90ab-775e5860323a"  # an emoji in the name
PRODUCT_CASHEW_ID = "0221f576-69db-4b4c-a658-9885967a4277"  # weighed, price per kg
PRODUCT_WATER_ID = "5345c509-46c6-454f-89e4-9bcc77a5463b"
MODIFIER_VANILLA_ID = "897148aa-9aa6-42f4-ae84-3a649cff5072"
MODIFIER_CARAMEL_ID = "560036c9-899b-462d-9cf8-9f24ad4d33b7"

DEMO_SIZES: list[dict[str, Any]] = [
    {"id": SIZE_SMALL_ID, "name": "Маленькая", "priority": 1, "is_default": False},
    {"id": SIZE_MEDIUM_ID, "name": "Средняя", "priority": 2, "is_default": True},
    {"id": SIZE_LARGE_ID, "name": "Большая", "priority": 3, "is_default": False},
]

# The demo menu. ``price`` is a Decimal string (per kg for the weighed product; the default size's
# price for the sized one, whose every size is in ``sizes``); ``vat`` is the ATOL tax code.
DEMO_PRODUCTS: list[dict[str, Any]] = [
    {
        "id": PRODUCT_BURGER_ID, "name": "Бургер «Классический»", "price": "289.00", "vat": "vat22",
        "type": "Dish", "group_id": GROUP_BURGERS_ID, "measure_unit": "порц", "weighed": False, "sizes": [],
        "modifier_group_id": None,
    },
    {
        "id": PRODUCT_FRIES_ID, "name": "Картофель фри", "price": "129.00", "vat": "vat22",
        "type": "Dish", "group_id": GROUP_SNACKS_ID, "measure_unit": "порц", "weighed": False,
        "sizes": [
            {"id": SIZE_SMALL_ID, "name": "Маленькая", "price": "99.00"},
            {"id": SIZE_MEDIUM_ID, "name": "Средняя", "price": "129.00"},
            {"id": SIZE_LARGE_ID, "name": "Большая", "price": "159.00"},
        ],
        "modifier_group_id": None,
    },
    {
        "id": PRODUCT_CAPPUCCINO_ID, "name": "Капучино 0,3 л", "price": "189.00", "vat": "vat22",
        "type": "Dish", "group_id": GROUP_DRINKS_ID, "measure_unit": "порц", "weighed": False, "sizes": [],
        "modifier_group_id": MODIFIER_GROUP_SYRUPS_ID,
    },
    {
        "id": PRODUCT_MORS_ID, "name": "Морс клюквенный 0,4 л", "price": "120.00", "vat": "vat22",
        "type": "Dish", "group_id": GROUP_DRINKS_ID, "measure_unit": "порц", "weighed": False, "sizes": [],
        "modifier_group_id": None,
    },
    {
        "id": PRODUCT_CAESAR_ID,
        "name": (
            "Салат «Цезарь» с куриным филе гриль, хрустящими гренками из пшеничного багета, пармезаном, "
            "томатами черри и фирменным соусом по рецепту шефа, 250 г"
        ),
        "price": "390.00", "vat": "vat22", "type": "Dish", "group_id": GROUP_SNACKS_ID, "measure_unit": "порц",
        "weighed": False, "sizes": [], "modifier_group_id": None,
    },
    {
        "id": PRODUCT_ICE_CREAM_ID, "name": "Мороженое пломбир 🍦", "price": "150.00", "vat": "vat10",
        "type": "Dish", "group_id": GROUP_DESSERTS_ID, "measure_unit": "порц", "weighed": False, "sizes": [],
        "modifier_group_id": None,
    },
    {
        "id": PRODUCT_CASHEW_ID, "name": "Кешью жареный, на развес", "price": "1490.00", "vat": "vat22",
        "type": "Good", "group_id": GROUP_SNACKS_ID, "measure_unit": "кг", "weighed": True, "sizes": [],
        "modifier_group_id": None,
    },
    {
        "id": PRODUCT_WATER_ID, "name": "Вода питьевая негазированная 0,5 л", "price": "90.00", "vat": "vat22",
        "type": "Good", "group_id": GROUP_DRINKS_ID, "measure_unit": "шт", "weighed": False, "sizes": [],
        "modifier_group_id": None,
    },
]

DEMO_MODIFIERS: list[dict[str, Any]] = [
    {"id": MODIFIER_VANILLA_ID, "name": "Сироп ванильный", "price": "40.00", "vat": "vat22",
     "group_id": MODIFIER_GROUP_SYRUPS_ID},
    {"id": MODIFIER_CARAMEL_ID, "name": "Сироп карамельный", "price": "40.00", "vat": "vat22",
     "group_id": MODIFIER_GROUP_SYRUPS_ID},
]

DEMO_GROUPS: list[dict[str, Any]] = [
    {"id": GROUP_BURGERS_ID, "name": "Бургеры", "is_modifier_group": False},
    {"id": GROUP_SNACKS_ID, "name": "Закуски и салаты", "is_modifier_group": False},
    {"id": GROUP_DRINKS_ID, "name": "Напитки", "is_modifier_group": False},
    {"id": GROUP_DESSERTS_ID, "name": "Десерты", "is_modifier_group": False},
    {"id": MODIFIER_GROUP_SYRUPS_ID, "name": "Сиропы", "is_modifier_group": True},
]

DEMO_TERMINAL_GROUPS = {TERMINAL_GROUP_ID: TERMINAL_GROUP_NAME, TERMINAL_GROUP_2_ID: TERMINAL_GROUP_2_NAME}

DEMO_PAYMENT_TYPES: list[dict[str, Any]] = [
    # The kiosk's card type: charged by the kiosk's terminal, receipt printed by the kiosk's register.
    {"id": CARD_PAYMENT_TYPE_ID, "code": "KIOSKCARD", "name": "Банковская карта (киоск)", "kind": "Card",
     "processing": "External", "print_cheque": True},
    {"id": CASH_PAYMENT_TYPE_ID, "code": "CASH", "name": "Наличные", "kind": "Cash",
     "processing": "Internal", "print_cheque": True},
]

DEMO_ORDER_TYPES: list[dict[str, Any]] = [
    {"id": ORDER_TYPE_TAKEAWAY_ID, "name": "С собой", "service_type": "Common", "is_default": False},
    {"id": ORDER_TYPE_DINE_IN_ID, "name": "В зале", "service_type": "Common", "is_default": True},
    {"id": ORDER_TYPE_PICKUP_ID, "name": "Самовывоз", "service_type": "DeliveryPickUp", "is_default": False},
]

CREATION_TIMEOUT_MESSAGE = "Creation timeout expired, order automatically transited to error creation status"
TOKEN_LIFETIME = 3600.0
# How long commands/status remembers a correlation id before answering 410 (emulator's choice).
COMMAND_MEMORY = 24 * 3600.0
NOMENCLATURE_REVISION = 1
VENUE_TZ = timezone(timedelta(hours=3))
AUTH_PATHS = {"/api/1/access_token", "/api/v2/access_token"}
CREATE_PATHS = {"/api/1/order/create", "/api/1/deliveries/create"}
DEFAULT_INVISIBLE_SECONDS = 30.0
FAULTS: dict[str, str] = {
    "creation_timeout": "следующий заказ завершается creationStatus Error «Creation timeout expired»: "
                        "iikoFront его не взял, в iiko заказа нет",
    "front_offline": "terminal_groups/is_alive отвечает «не в сети», пока fault не исчерпан; каждый заказ за это время "
                     "тратит один count и завершается тем же таймаутом создания",
    "http_500": "ответ 500 без выполнения запроса ({\"processed\": true}: запрос выполнен, ответ всё равно 500)",
    "slow": "запрос выполнен, ответ приходит через seconds (по умолчанию 20): у клиента таймаут",
    "lost_answer": "любой запрос выполнен, соединение рвётся без ответа",
    "lost_create_answer": "order/create или deliveries/create создаёт заказ, ответ теряется: correlationId не "
                          "приходит (отказ, например повтор id, fault не тратит)",
    "invisible_for": "созданный заказ не виден в order/by_id и deliveries/by_id ещё seconds секунд "
                     "(по умолчанию 30), как у перегруженного iiko; на кухне он уже есть",
}
_ANY_TIME_FAULTS = {"http_500", "slow", "lost_answer"}
_CREATION_FAULTS = {"creation_timeout", "front_offline"}


# --- small helpers ---------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-ready copy: Decimals as exact JSON numbers (a quantized Decimal prints as itself)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _dec(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _iiko_time(ts: float) -> str:
    """iiko's "yyyy-MM-dd HH:mm:ss.fff", in the venue's time zone."""
    return datetime.fromtimestamp(ts, VENUE_TZ).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _error_body(description: str, error: str | None = None) -> dict[str, Any]:
    return {"correlationId": str(uuid.uuid4()), "errorDescription": description, "error": error}


class _Refused(Exception):
    """An order iikoFront would not take: it ends in creationStatus Error with this errorInfo."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class _ErrorAnswer(Exception):
    """A request iiko refuses at once: 400 (bad or refused), 401 (token), 410 (forgotten command)."""

    def __init__(self, description: str, error: str | None = None, status: int = 400):
        super().__init__(description)
        self.description = description
        self.error = error
        self.status = status


class _IikoFaults(FaultQueue):
    """The base queue, plus matching on several devices and an optional ``path`` per fault."""

    def take_first(self, names: set[str], devices: list[str], path: str) -> dict[str, Any] | None:
        with self._lock:
            for item in self._items:
                if item["fault"] in names and self._applies(item, devices, path):
                    item["count"] -= 1
                    if item["count"] <= 0:
                        self._items.remove(item)
                    return dict(item)
        return None

    def armed(self, name: str, devices: list[str]) -> bool:
        with self._lock:
            return any(i["fault"] == name and (i["device"] is None or i["device"] in devices) for i in self._items)

    @staticmethod
    def _applies(item: dict[str, Any], devices: list[str], path: str) -> bool:
        if item["device"] is not None and item["device"] not in devices:
            return False
        wanted = item.get("path")
        if path in AUTH_PATHS:  # getting a token is hit only by faults aimed at it by path
            return wanted == path
        return wanted in (None, path)


# --- the emulator ------------------------------------------------------------------------------------


class IikoEmulator(EmulatorApp):
    name = "iiko-emulator"
    faults_known = FAULTS
    faults: _IikoFaults

    def __init__(self, state_path: str | None = None, creation_delay: float = 0.2, validate: bool = True):
        super().__init__()
        self.faults = _IikoFaults(self.faults_known)
        self.creation_delay = creation_delay
        self.validate = validate
        self.tokens_issued = 0
        self.schema_violations: list[str] = []  # the emulator's own answers that broke the schema
        self._store = JsonStateFile(state_path)
        self._lock = threading.RLock()
        self._state = self._store.load() or self._fresh_state()
        self._routes = {
            "/api/1/access_token": self._access_token_v1,
            "/api/v2/access_token": self._access_token_v2,
            "/api/1/organizations": self._organizations,
            "/api/1/terminal_groups": self._terminal_groups,
            "/api/1/terminal_groups/is_alive": self._is_alive,
            "/api/1/payment_types": self._payment_types,
            "/api/1/deliveries/order_types": self._order_types,
            "/api/1/nomenclature": self._nomenclature,
            "/api/1/order/create": self._create_table_order,
            "/api/1/deliveries/create": self._create_delivery,
            "/api/1/commands/status": self._command_status,
            "/api/1/order/by_id": self._orders_by_id,
            "/api/1/deliveries/by_id": self._deliveries_by_id,
            "/api/1/order/cancel": self._cancel_table_order,
            "/api/1/deliveries/cancel": self._cancel_delivery,
        }

    @staticmethod
    def _fresh_state(tokens: dict[str, float] | None = None) -> dict[str, Any]:
        return {"orders": {}, "commands": {}, "tokens": tokens or {}, "clock_offset": 0.0, "next_number": 1}

    def _save(self) -> None:
        self._store.save(self._state)

    def now(self) -> float:
        """The emulator's clock: real time plus whatever ``/_emulator/clock`` added."""
        return time.time() + self._state["clock_offset"]

    # --- control API -----------------------------------------------------------------------------------
    def journal(self) -> list[dict[str, Any]]:
        with self._lock:
            now = self.now()
            orders = sorted(self._state["orders"].values(), key=lambda o: o["createdAt"])
            return [self._journal_entry(order, now) for order in orders]

    def reset(self) -> None:
        with self._lock:  # tokens survive, so clients that are connected stay connected
            self._state = self._fresh_state(self._state["tokens"])
            self.schema_violations.clear()
            self._save()

    def control(self, request: Request, action: str) -> Response | None:
        if action == "clock" and request.method == "POST":
            self.advance_clock(float(request.json().get("advance_seconds", 0)))
            return json_response({"ok": True, "now": self.now()})
        if action == "clock" and request.method == "GET":
            return json_response({"now": self.now(), "offset": self._state["clock_offset"]})
        if action == "revoke_tokens" and request.method == "POST":
            self.revoke_tokens()
            return json_response({"ok": True})
        return None

    def advance_clock(self, seconds: float) -> None:
        with self._lock:
            self._state["clock_offset"] += seconds
            self._save()

    def revoke_tokens(self) -> None:
        with self._lock:
            self._state["tokens"].clear()
            self._save()

    # --- protocol ----------------------------------------------------------------------------------------
    def handle_protocol(self, request: Request) -> Response:
        handler = self._routes.get(request.path)
        if handler is None:
            return json_response(_error_body(f"Unknown method {request.path}", "Not Found"), status=404)
        if request.method != "POST":
            return json_response(_error_body("Only POST is supported", "Method Not Allowed"), status=405)
        try:
            with self._lock:
                return self._serve(request, handler)
        except _ErrorAnswer as exc:
            return self._answer(request.path, exc.status, _error_body(exc.description, exc.error))

    def _serve(self, request: Request, handler: Callable[[dict[str, Any]], tuple[int, Any]]) -> Response:
        if request.path not in AUTH_PATHS:
            self._check_token(request)  # like iiko: 401 comes before any look at the body
        body = self._parse_body(request)
        fault = self.faults.take_first(_ANY_TIME_FAULTS, _devices(body), request.path)
        if fault and fault["fault"] == "http_500" and not fault.get("processed"):
            return self._internal_error(request.path)
        try:
            status, data = handler(body)
        except _ErrorAnswer as exc:
            status, data = exc.status, _error_body(exc.description, exc.error)
        except (KeyError, TypeError, AttributeError) as exc:  # only reachable with validate=False
            status, data = 400, _error_body(f"Invalid request: {exc!r}", "Bad Request")
        if fault and fault["fault"] == "http_500":
            return self._internal_error(request.path)  # the work is done, the answer says it failed
        response = self._answer(request.path, status, data)
        if fault and fault["fault"] == "slow":
            response.hang_seconds = float(fault.get("seconds", 20))
        if fault and fault["fault"] == "lost_answer":
            return lost_answer()
        if status == 200 and request.path in CREATE_PATHS and self._create_answer_lost(body, request.path):
            return lost_answer()  # the order exists; the caller never learns its correlationId
        return response

    def _create_answer_lost(self, body: dict[str, Any], path: str) -> bool:
        return self.faults.take_first({"lost_create_answer"}, _devices(body), path) is not None

    def _internal_error(self, path: str) -> Response:
        return self._answer(path, 500, _error_body("Internal server error (emulated fault)", "InternalServerError"))

    def _check_token(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            raise _ErrorAnswer("Authorization header with a Bearer token is required", "Unauthorized", 401)
        issued = self._state["tokens"].get(header[len("Bearer ") :].strip())
        if issued is None or self.now() - issued >= TOKEN_LIFETIME:
            raise _ErrorAnswer("Token is expired or invalid", "Unauthorized", 401)

    def _parse_body(self, request: Request) -> Any:
        try:
            body = json.loads(request.body.decode("utf-8") or "null", parse_float=Decimal)
        except (UnicodeDecodeError, ValueError) as exc:
            raise _ErrorAnswer(f"Request body is not valid JSON: {exc}", "Bad Request") from exc
        if self.validate:
            errors = schema.request_errors(request.path, body)
            if errors:
                raise _ErrorAnswer("Invalid request: " + "; ".join(errors), "Bad Request")
        if not isinstance(body, dict):
            raise _ErrorAnswer("Request body must be a JSON object", "Bad Request")
        return body

    def _answer(self, path: str, status: int, data: Any) -> Response:
        data = _plain(data)
        if self.validate:
            errors = schema.response_errors(path, status, data)
            if errors:  # a bug of the emulator itself: make it impossible to miss
                message = f"EMULATOR BUG: HTTP {status} answer to {path} violates the iiko schema: {errors}"
                self.schema_violations.append(message)
                return json_response({"error": message}, status=500)
        return json_response(data, status=status)

    # --- auth --------------------------------------------------------------------------------------------
    def _access_token_v1(self, body: dict[str, Any]) -> tuple[int, Any]:
        if body.get("apiLogin") != DEMO_API_LOGIN:
            raise _ErrorAnswer("Login is not authorized", "Unauthorized", 401)
        return 200, {"correlationId": str(uuid.uuid4()), "token": self._issue_token()}

    def _access_token_v2(self, body: dict[str, Any]) -> tuple[int, Any]:
        given = (body.get("appId"), body.get("clientSecret"), body.get("apiKey"))
        if given != (DEMO_APP_ID, DEMO_CLIENT_SECRET, DEMO_API_KEY):
            raise _ErrorAnswer("Application credentials are not authorized", "Unauthorized", 401)
        return 200, {"correlationId": str(uuid.uuid4()), "token": self._issue_token()}

    def _issue_token(self) -> str:
        now = self.now()
        tokens = self._state["tokens"]
        for old in [t for t, issued in tokens.items() if now - issued >= TOKEN_LIFETIME]:
            del tokens[old]
        token = secrets.token_urlsafe(32)
        tokens[token] = now
        self.tokens_issued += 1
        self._save()
        return token

    # --- discovery -----------------------------------------------------------------------------------------
    def _organizations(self, body: dict[str, Any]) -> tuple[int, Any]:
        wanted = body.get("organizationIds")
        organizations = [] if wanted and ORG_ID not in wanted else [
            {"responseType": "Simple", "id": ORG_ID, "name": ORG_NAME, "code": None, "externalData": None}
        ]
        return 200, {"correlationId": str(uuid.uuid4()), "organizations": organizations}

    def _terminal_groups(self, body: dict[str, Any]) -> tuple[int, Any]:
        groups = []
        if ORG_ID in body["organizationIds"]:
            groups.append({"organizationId": ORG_ID, "items": [_terminal_group(tg) for tg in DEMO_TERMINAL_GROUPS]})
        return 200, {"correlationId": str(uuid.uuid4()), "terminalGroups": groups, "terminalGroupsInSleep": []}

    def _is_alive(self, body: dict[str, Any]) -> tuple[int, Any]:
        statuses = [
            {
                "isAlive": not self.faults.armed("front_offline", [tg, ORG_ID]),
                "terminalGroupId": tg,
                "organizationId": ORG_ID,
            }
            for tg in body["terminalGroupIds"]
            if tg in DEMO_TERMINAL_GROUPS
        ]
        return 200, {"correlationId": str(uuid.uuid4()), "isAliveStatus": statuses}

    def _payment_types(self, body: dict[str, Any]) -> tuple[int, Any]:
        types = [_payment_type(p) for p in DEMO_PAYMENT_TYPES] if ORG_ID in body["organizationIds"] else []
        return 200, {"correlationId": str(uuid.uuid4()), "paymentTypes": types}

    def _order_types(self, body: dict[str, Any]) -> tuple[int, Any]:
        groups = []
        if ORG_ID in body["organizationIds"]:
            groups.append({"organizationId": ORG_ID, "items": [_order_type(t) for t in DEMO_ORDER_TYPES]})
        return 200, {"correlationId": str(uuid.uuid4()), "orderTypes": groups}

    def _nomenclature(self, body: dict[str, Any]) -> tuple[int, Any]:
        _require_org(body["organizationId"])
        return 200, {"correlationId": str(uuid.uuid4()), **_nomenclature_body()}

    # --- orders --------------------------------------------------------------------------------------------
    def _create_table_order(self, body: dict[str, Any]) -> tuple[int, Any]:
        return self._create(body, kind="table")

    def _create_delivery(self, body: dict[str, Any]) -> tuple[int, Any]:
        return self._create(body, kind="delivery")

    def _create(self, body: dict[str, Any], kind: str) -> tuple[int, Any]:
        org_id = body["organizationId"]
        _require_org(org_id)
        terminal_group_id = body.get("terminalGroupId")
        if terminal_group_id not in DEMO_TERMINAL_GROUPS:
            raise _ErrorAnswer(f"Terminal group {terminal_group_id} is not registered", "TerminalGroupUnregistered")
        order = body.get("order")
        if not isinstance(order, dict):
            raise _ErrorAnswer("order is required", "Bad Request")
        if kind == "delivery" and not order.get("phone"):
            raise _ErrorAnswer("A delivery needs the customer's phone", "InvalidPhone")
        order_id = order.get("id") or str(uuid.uuid4())
        if order_id in self._state["orders"]:
            raise _ErrorAnswer(f"Order with id {order_id} already exists", "DuplicatedOrderId")
        now = self.now()
        outcome, error_info, delay = self._decide(order, kind, terminal_group_id, org_id)
        record = self._order_record(order, order_id, kind, org_id, terminal_group_id, now)
        record.update(outcome=outcome, errorInfo=error_info, readyAt=now + delay,
                      visibleAt=now + self._invisible_seconds(body, kind))
        self._state["orders"][order_id] = record
        self._state["commands"][record["correlationId"]] = {"orderId": order_id, "createdAt": now}
        self._save()
        return 200, {"correlationId": record["correlationId"], "orderInfo": self._order_info(record, now)}

    def _decide(
        self, order: dict[str, Any], kind: str, terminal_group_id: str, org_id: str,
    ) -> tuple[str, dict[str, Any] | None, float]:
        """How the order will end: (outcome, errorInfo, seconds until it does)."""
        path = "/api/1/order/create" if kind == "table" else "/api/1/deliveries/create"
        fault = self.faults.take_first(_CREATION_FAULTS, [terminal_group_id, org_id], path)
        if fault:  # iikoFront did not pick the order up in time
            delay = max(self.creation_delay, float(fault.get("seconds", self.creation_delay)))
            return "Error", {"code": "Common", "message": CREATION_TIMEOUT_MESSAGE, "errorReason": None}, delay
        try:
            _check_order(order, kind)
        except _Refused as refused:
            return "Error", {"code": refused.code, "message": refused.message, "errorReason": None}, self.creation_delay
        return "Success", None, self.creation_delay

    def _invisible_seconds(self, body: dict[str, Any], kind: str) -> float:
        """How long ``by_id`` will not show this new order (``invisible_for``; 0 = at once)."""
        path = "/api/1/order/create" if kind == "table" else "/api/1/deliveries/create"
        fault = self.faults.take_first({"invisible_for"}, _devices(body), path)
        return float(fault.get("seconds", DEFAULT_INVISIBLE_SECONDS)) if fault else 0.0

    def _order_record(
        self, order: dict[str, Any], order_id: str, kind: str, org_id: str, terminal_group_id: str, now: float,
    ) -> dict[str, Any]:
        number = self._state["next_number"]
        self._state["next_number"] = number + 1
        items = _plain(order.get("items") or [])
        return {
            "id": order_id, "kind": kind, "organizationId": org_id, "terminalGroupId": terminal_group_id,
            "externalNumber": order.get("externalNumber"), "orderTypeId": order.get("orderTypeId"),
            "phone": order.get("phone"), "items": items, "payments": _plain(order.get("payments") or []),
            "sum": str(_items_sum(items)), "number": number, "createdAt": now, "correlationId": str(uuid.uuid4()),
            "cancelledAt": None, "cancelComment": None,
        }

    def _command_status(self, body: dict[str, Any]) -> tuple[int, Any]:
        command = self._state["commands"].get(body["correlationId"])
        if command is None:
            raise _ErrorAnswer(f"Correlation id {body['correlationId']} is not known", "Common")
        now = self.now()
        if now - command["createdAt"] > COMMAND_MEMORY:
            raise _ErrorAnswer("Correlation id is too old", "Gone", 410)
        if command.get("orderId") is None:
            return 200, {"state": "Success"}
        order = self._state["orders"][command["orderId"]]
        state = _creation_status(order, now)
        if state != "Error":
            return 200, {"state": state}
        error = order["errorInfo"] or {}
        return 200, {
            "state": "Error",
            "exception": {"message": error.get("message"), "code": error.get("code")},
            "errorReason": error.get("message"),
        }

    def _orders_by_id(self, body: dict[str, Any]) -> tuple[int, Any]:
        found = self._find_orders(body.get("orderIds") or [], "table", body["organizationIds"])
        return 200, {"correlationId": str(uuid.uuid4()), "orders": found}

    def _deliveries_by_id(self, body: dict[str, Any]) -> tuple[int, Any]:
        found = self._find_orders(body.get("orderIds") or [], "delivery", [body["organizationId"]])
        return 200, {"correlationId": str(uuid.uuid4()), "orders": found}

    def _find_orders(self, order_ids: list[str], kind: str, org_ids: list[str]) -> list[dict[str, Any]]:
        now = self.now()
        orders = (self._state["orders"].get(order_id) for order_id in order_ids)
        return [
            self._order_info(o, now) for o in orders
            if o is not None and o["kind"] == kind and o["organizationId"] in org_ids
            and now >= o.get("visibleAt", 0)  # a busy iiko (``invisible_for``) does not show it yet
        ]

    def _cancel_table_order(self, body: dict[str, Any]) -> tuple[int, Any]:
        return self._cancel(body, "table", body.get("removalComment"))

    def _cancel_delivery(self, body: dict[str, Any]) -> tuple[int, Any]:
        return self._cancel(body, "delivery", body.get("cancelComment") or body.get("removalComment"))

    def _cancel(self, body: dict[str, Any], kind: str, comment: str | None) -> tuple[int, Any]:
        now = self.now()
        order = self._state["orders"].get(body["orderId"])
        if order is None or order["kind"] != kind or order["organizationId"] != body["organizationId"]:
            raise _ErrorAnswer(f"Order {body['orderId']} not found", "OrderNotFound")
        if _creation_status(order, now) != "Success":
            raise _ErrorAnswer(f"Order {body['orderId']} was not created in iiko", "OrderNotFound")
        if order["cancelledAt"] is not None:
            raise _ErrorAnswer(f"Order {body['orderId']} is already cancelled", "WrongDeliveryStatus")
        order["cancelledAt"] = now
        order["cancelComment"] = comment
        correlation_id = str(uuid.uuid4())
        self._state["commands"][correlation_id] = {"orderId": None, "createdAt": now}
        self._save()
        return 200, {"correlationId": correlation_id}

    # --- rendering ----------------------------------------------------------------------------------------
    def _order_info(self, order: dict[str, Any], now: float) -> dict[str, Any]:
        status = _creation_status(order, now)
        changed = max(order["createdAt"], order["cancelledAt"] or 0, order["readyAt"] if status != "InProgress" else 0)
        rendered = None
        if status == "Success":
            rendered = _table_order(order) if order["kind"] == "table" else _delivery_order(order)
        return {
            "id": order["id"], "posId": None, "externalNumber": order["externalNumber"],
            "organizationId": order["organizationId"], "timestamp": int(changed * 1000),
            "creationStatus": status, "errorInfo": order["errorInfo"] if status == "Error" else None,
            "order": rendered,
        }

    def _journal_entry(self, order: dict[str, Any], now: float) -> dict[str, Any]:
        status = _creation_status(order, now)
        return {
            "id": order["id"], "kind": order["kind"], "organizationId": order["organizationId"],
            "externalNumber": order["externalNumber"], "terminalGroupId": order["terminalGroupId"],
            "orderTypeId": order["orderTypeId"], "phone": order["phone"], "items": order["items"],
            "payments": order["payments"], "sum": _plain(Decimal(order["sum"])), "number": order["number"],
            "creationStatus": status, "errorInfo": order["errorInfo"] if status == "Error" else None,
            "status": _journal_status(order, status), "correlationId": order["correlationId"],
            "time": datetime.fromtimestamp(order["createdAt"], VENUE_TZ).isoformat(timespec="milliseconds"),
        }


# --- order checks (what iikoFront would refuse) -------------------------------------------------------

_PRODUCTS = {p["id"]: p for p in DEMO_PRODUCTS}
_MODIFIERS = {m["id"]: m for m in DEMO_MODIFIERS}
_PAYMENT_TYPES = {p["id"]: p for p in DEMO_PAYMENT_TYPES}
_ORDER_TYPES = {t["id"]: t for t in DEMO_ORDER_TYPES}
_SIZES = {s["id"]: s for s in DEMO_SIZES}


def _require_org(org_id: str) -> None:
    if org_id != ORG_ID:
        raise _ErrorAnswer(f"Organization {org_id} is not available to this login", "OrganizationUnregistered")


def _devices(body: Any) -> list[str]:
    """What a fault's ``device`` may name in this request: its terminal groups and organizations."""
    if not isinstance(body, dict):
        return []
    devices = [body.get("terminalGroupId"), body.get("organizationId")]
    devices += list(body.get("terminalGroupIds") or []) + list(body.get("organizationIds") or [])
    return [d for d in devices if isinstance(d, str)]


def _check_order(order: dict[str, Any], kind: str) -> None:
    _check_order_type(order.get("orderTypeId"), kind)
    for item in order.get("items") or []:
        _check_item(item)
    for payment in order.get("payments") or []:
        _check_payment(payment)


def _check_order_type(order_type_id: str | None, kind: str) -> None:
    if order_type_id is None:
        return  # iiko then uses the venue's default type
    order_type = _ORDER_TYPES.get(order_type_id)
    if order_type is None:
        raise _Refused("OrderTypeNotFound", f"Order type {order_type_id} not found")
    is_table_type = order_type["service_type"] == "Common"
    if is_table_type != (kind == "table"):
        raise _Refused(
            "IncorrectOrderType",
            f"Order type {order_type['name']!r} ({order_type['service_type']}) cannot be used for a {kind} order",
        )


def _check_item(item: dict[str, Any]) -> None:
    if item.get("type") != "Product":
        raise _Refused("Common", f"Order item type {item.get('type')!r} is not supported by this venue")
    product = _PRODUCTS.get(item["productId"])
    if product is None:
        raise _Refused("ProductNotFound", f"Product {item['productId']} not found")
    size_id = item.get("productSizeId")
    size_ids = {s["id"] for s in product["sizes"]}
    if size_ids and size_id is None:
        message = f"Product {product['name']!r} has a size scale: productSizeId is required"
        raise _Refused("ProductSizeNotFound", message)
    if size_id is not None and size_id not in size_ids:
        raise _Refused("ProductSizeNotFound", f"Size {size_id} not found for product {product['name']!r}")
    for modifier in item.get("modifiers") or []:
        _check_modifier(modifier, product)


def _check_modifier(modifier: dict[str, Any], product: dict[str, Any]) -> None:
    found = _MODIFIERS.get(modifier["productId"])
    if found is None:
        raise _Refused("ProductNotFound", f"Modifier {modifier['productId']} not found")
    if found["group_id"] != product["modifier_group_id"]:
        raise _Refused("ProductGroupNotFound", f"{found['name']!r} is not a modifier of {product['name']!r}")
    if modifier.get("productGroupId") != found["group_id"]:
        message = f"Group modifier {found['name']!r} needs productGroupId {found['group_id']}"
        raise _Refused("ProductGroupNotFound", message)


def _check_payment(payment: dict[str, Any]) -> None:
    payment_type = _PAYMENT_TYPES.get(payment["paymentTypeId"])
    if payment_type is None:
        raise _Refused("PaymentTypeNotFound", f"Payment type {payment['paymentTypeId']} not found")
    if payment["paymentTypeKind"] != payment_type["kind"]:
        kinds = f"is of kind {payment_type['kind']}, not {payment['paymentTypeKind']}"
        raise _Refused("PaymentTypeNotFound", f"Payment type {payment_type['name']!r} {kinds}")
    if payment.get("isProcessedExternally") and payment_type["processing"] == "Internal":
        raise _Refused("PaymentTypeCanNotBeUsedAsExternal", f"{payment_type['name']!r} cannot be processed externally")
    if _dec(payment["sum"]) <= 0:
        raise _Refused("PaymentSumShouldBePositive", "Payment sum should be positive")


# --- rendering of demo data and orders -------------------------------------------------------------------


def _creation_status(order: dict[str, Any], now: float) -> str:
    return "InProgress" if now < order["readyAt"] else order["outcome"]


def _journal_status(order: dict[str, Any], creation_status: str) -> str | None:
    if creation_status != "Success":
        return None
    return "Cancelled" if order["cancelledAt"] is not None else "New"


def _items_sum(items: list[dict[str, Any]]) -> Decimal:
    total = Decimal(0)
    for item in items:
        total += _item_sum(item)
    return total.quantize(Decimal("0.01"))


def _item_sum(item: dict[str, Any]) -> Decimal:
    amount = _dec(item.get("amount", 0))
    total = _dec(item.get("price", 0)) * amount
    for modifier in item.get("modifiers") or []:
        total += _dec(modifier.get("price") or 0) * _dec(modifier["amount"]) * amount
    return total


def _payments_sum(order: dict[str, Any]) -> Decimal:
    return sum((_dec(p["sum"]) for p in order["payments"]), Decimal(0))


def _terminal_group(tg_id: str) -> dict[str, Any]:
    return {
        "id": tg_id, "organizationId": ORG_ID, "name": DEMO_TERMINAL_GROUPS[tg_id],
        "address": "Москва, ул. Демонстрационная, 1", "timeZone": "Russian Standard Time",
    }


def _payment_type(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": p["id"], "code": p["code"], "name": p["name"], "comment": None, "combinable": True,
        "externalRevision": NOMENCLATURE_REVISION, "applicableMarketingCampaigns": [], "isDeleted": False,
        "printCheque": p["print_cheque"], "paymentProcessingType": p["processing"], "paymentTypeKind": p["kind"],
        "terminalGroups": [_terminal_group(tg) for tg in DEMO_TERMINAL_GROUPS],
    }


def _order_type(t: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": t["id"], "name": t["name"], "orderServiceType": t["service_type"], "isDeleted": False,
        "externalRevision": NOMENCLATURE_REVISION, "isDefault": t["is_default"],
    }


def _price(value: str) -> dict[str, Any]:
    return {"currentPrice": Decimal(value), "isIncludedInMenu": True, "nextPrice": None,
            "nextIncludedInMenu": False, "nextDatePrice": None}


def _group(g: dict[str, Any], order: int) -> dict[str, Any]:
    return {
        "imageLinks": [], "parentGroup": None, "order": order, "isIncludedInMenu": not g["is_modifier_group"],
        "isGroupModifier": g["is_modifier_group"], "id": g["id"], "code": None, "name": g["name"],
        "additionalInfo": None, "tags": None, "isDeleted": False,
    }


def _product(p: dict[str, Any], order: int) -> dict[str, Any]:
    sizes = p.get("sizes") or []
    size_prices = [{"sizeId": s["id"], "price": _price(s["price"])} for s in sizes] or [
        {"sizeId": None, "price": _price(p["price"])}
    ]
    group_modifiers = []
    if p.get("modifier_group_id"):
        children = [m for m in DEMO_MODIFIERS if m["group_id"] == p["modifier_group_id"]]
        group_modifiers.append({
            "id": p["modifier_group_id"], "minAmount": 0, "maxAmount": 2, "required": False,
            "childModifiersHaveMinMaxRestrictions": False,
            "childModifiers": [{"id": m["id"], "defaultAmount": 0, "minAmount": 0, "maxAmount": 1} for m in children],
        })
    return {
        "groupId": None, "productCategoryId": None, "type": p["type"], "orderItemType": "Product",
        "modifierSchemaId": None, "splittable": bool(p.get("weighed")), "measureUnit": p["measure_unit"],
        "sizePrices": size_prices, "modifiers": [], "groupModifiers": group_modifiers, "imageLinks": [],
        "doNotPrintInCheque": False, "parentGroup": p["group_id"], "order": order, "useBalanceForSell": False,
        "canSetOpenPrice": False, "paymentSubject": None, "id": p["id"], "code": f"{order:05d}",
        "name": p["name"], "isDeleted": False, "weight": Decimal(1) if p.get("weighed") else None,
    }


def _modifier_product(m: dict[str, Any], order: int) -> dict[str, Any]:
    return {
        "groupId": m["group_id"], "type": "Modifier", "orderItemType": "Product", "splittable": False,
        "measureUnit": "порц", "sizePrices": [{"sizeId": None, "price": _price(m["price"])}], "modifiers": [],
        "groupModifiers": [], "imageLinks": [], "doNotPrintInCheque": False, "parentGroup": m["group_id"],
        "order": order, "useBalanceForSell": False, "canSetOpenPrice": False, "id": m["id"],
        "code": f"M{order:04d}", "name": m["name"], "isDeleted": False,
    }


def _nomenclature_body() -> dict[str, Any]:
    products = [_product(p, i) for i, p in enumerate(DEMO_PRODUCTS, start=1)]
    products += [_modifier_product(m, i) for i, m in enumerate(DEMO_MODIFIERS, start=1)]
    return {
        "groups": [_group(g, i) for i, g in enumerate(DEMO_GROUPS, start=1)],
        "productCategories": [],
        "products": products,
        "sizes": [
            {"id": s["id"], "name": s["name"], "priority": s["priority"], "isDefault": s["is_default"]}
            for s in DEMO_SIZES
        ],
        "revision": NOMENCLATURE_REVISION,
    }


def _named(id_: str, name: str) -> dict[str, str]:
    return {"id": id_, "name": name}


def _product_name(product_id: str) -> str:
    found = _PRODUCTS.get(product_id) or _MODIFIERS.get(product_id)
    return found["name"] if found else product_id


def _order_items(order: dict[str, Any]) -> list[dict[str, Any]]:
    rendered = []
    for item in order["items"]:
        amount = _dec(item["amount"])
        size_id = item.get("productSizeId")
        own_sum = _dec(item["price"]) * amount
        rendered.append({
            "type": "Product", "status": "Added", "amount": amount, "comment": item.get("comment"),
            "size": _named(size_id, _SIZES[size_id]["name"]) if size_id in _SIZES else None,
            "product": _named(item["productId"], _product_name(item["productId"])),
            "modifiers": [_order_modifier(m, amount) for m in item.get("modifiers") or []],
            "price": _dec(item["price"]), "cost": own_sum, "pricePredefined": True, "resultSum": own_sum,
        })
    return rendered


def _order_modifier(modifier: dict[str, Any], parent_amount: Decimal) -> dict[str, Any]:
    group_id = modifier.get("productGroupId")
    group = next((g for g in DEMO_GROUPS if g["id"] == group_id), None)
    price = _dec(modifier.get("price") or 0)
    return {
        "product": _named(modifier["productId"], _product_name(modifier["productId"])),
        "amount": _dec(modifier["amount"]), "amountIndependentOfParentAmount": False,
        "productGroup": _named(group["id"], group["name"]) if group else None,
        "price": price, "pricePredefined": True, "resultSum": price * _dec(modifier["amount"]) * parent_amount,
    }


def _order_payments(order: dict[str, Any]) -> list[dict[str, Any]]:
    rendered = []
    for payment in order["payments"]:
        payment_type = _PAYMENT_TYPES[payment["paymentTypeId"]]
        rendered.append({
            "paymentType": {"id": payment_type["id"], "name": payment_type["name"], "kind": payment_type["kind"]},
            "sum": _dec(payment["sum"]), "isPreliminary": False, "isExternal": True,
            "isProcessedExternally": bool(payment.get("isProcessedExternally")),
            "isFiscalizedExternally": bool(payment.get("isFiscalizedExternally")), "isPrepay": True,
        })
    return rendered


def _response_order_type(order: dict[str, Any]) -> dict[str, Any] | None:
    order_type = _ORDER_TYPES.get(order["orderTypeId"] or "")
    if order_type is None:
        return None
    # The order answer names service types differently from the order types list.
    service = {"DeliveryPickUp": "DeliveryByClient"}.get(order_type["service_type"], order_type["service_type"])
    return {"id": order_type["id"], "name": order_type["name"], "orderServiceType": service}


def _table_order(order: dict[str, Any]) -> dict[str, Any]:
    return {
        "tableIds": [], "customer": None, "phone": order["phone"],
        "status": "Deleted" if order["cancelledAt"] is not None else "New",
        "whenCreated": _iiko_time(order["createdAt"]), "sum": Decimal(order["sum"]), "number": order["number"],
        "guestsInfo": {"count": 1, "splitBetweenPersons": False}, "items": _order_items(order),
        "payments": _order_payments(order), "orderType": _response_order_type(order),
        "terminalGroupId": order["terminalGroupId"], "processedPaymentsSum": _payments_sum(order),
    }


def _delivery_order(order: dict[str, Any]) -> dict[str, Any]:
    created = order["createdAt"]
    cancelled = order["cancelledAt"]
    return {
        "phone": order["phone"] or "", "status": "Cancelled" if cancelled is not None else "Unconfirmed",
        "cancelInfo": None if cancelled is None else {
            "whenCancelled": _iiko_time(cancelled), "cause": _named(str(uuid.UUID(int=0)), "Отмена"),
            "comment": order["cancelComment"],
        },
        "completeBefore": _iiko_time(created + 15 * 60), "whenCreated": _iiko_time(created),
        "cookingStartTime": _iiko_time(created), "sum": Decimal(order["sum"]), "number": order["number"],
        "guestsInfo": {"count": 1, "splitBetweenPersons": False}, "items": _order_items(order),
        "payments": _order_payments(order), "orderType": _response_order_type(order),
        "terminalGroupId": order["terminalGroupId"], "processedPaymentsSum": _payments_sum(order),
    }
