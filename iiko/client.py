"""Client of the iiko Cloud API (iikoTransport): plain Python over httpx, no Django.

Typed results (dataclasses, money as ``Decimal``) and typed errors; no retries beyond the one the
protocol prescribes (a 401 renews the token and repeats the call once, which is safe because a 401
means iiko did not look at the request). Everything else is for the workflow to decide, and the
errors say which outcomes are unknown (``error.outcome_unknown``): an order may have been created
although we got no answer, so the workflow asks ``orders_by_id`` for the attempt's id before anything
else.

Also a pure helper, ``build_order``, that turns plain kiosk data into the ``order`` object of
``order/create`` / ``deliveries/create`` with money emitted exactly (never through float arithmetic).
See /work/shared/reference/PROTOCOLS.md §3.

Floor: middle, the iiko room (``iiko``); imports neither ``fiscal``, ``payments`` nor ``nekassir``, only the
bottom (``core``) (import-linter, pyproject.toml).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, TypeVar, cast

import httpx

from core.addresses import without_credentials
from core.tls import ssl_context
from iiko import schema

DEFAULT_BASE_URL = "https://api-ru.iiko.services"
# A token lives 1 hour; renewing at 50 minutes leaves room for clock skew and slow calls.
TOKEN_RENEW_AFTER = 50 * 60
DEFAULT_TRANSPORT_TO_FRONT_TIMEOUT = 8
MAX_EXTERNAL_NUMBER = 50
MAX_AMOUNT = Decimal("999.999")  # the vendor schema's maximum for an order item amount
_CENT = Decimal("0.01")
_MILLI = Decimal("0.001")


# --- errors ---------------------------------------------------------------------------------------


class IikoError(Exception):
    """Base of the iiko client's errors. ``outcome_unknown``: iiko may have done the work."""

    outcome_unknown = False


class IikoAuthError(IikoError):
    """The credentials were refused (or a fresh token was refused again)."""

    def __init__(self, message: str, status: int | None = None, error_description: str | None = None):
        super().__init__(message)
        self.status = status
        self.error_description = error_description


class IikoConnectionError(IikoError):
    """The call was not delivered (no connection, or no token could be had): safe to repeat."""


class IikoTimeout(IikoError):
    """No answer (timed out, or the connection dropped after the request went out).

    The outcome is UNKNOWN: an order may well have been created. Resolve it (``orders_by_id``
    with the attempt's id) before doing anything else with that order.
    """

    outcome_unknown = True


class IikoHTTPError(IikoError):
    """iiko answered with an error status and its ``{correlationId, errorDescription, error}``."""

    def __init__(
        self, status: int, correlation_id: str | None, error: str | None, error_description: str | None,
        body: str = "",
    ):
        self.status = status
        self.correlation_id = correlation_id
        self.error = error
        self.error_description = error_description
        self.body = body
        detail = error_description or body[:200] or "no details"
        super().__init__(f"iiko HTTP {status}" + (f" {error}" if error else "") + f": {detail}")

    @property
    def outcome_unknown(self) -> bool:  # type: ignore[override]
        # 400 = refused before doing anything; 408 / 5xx = it may have been half way through.
        return self.status == 408 or self.status >= 500

    @property
    def duplicate_order(self) -> bool:
        """iiko refused ``order/create`` because it already has an order with this id (PROTOCOLS.md §3)."""
        return self.status == 400 and is_duplicate_refusal(self.error, self.error_description)


def is_duplicate_refusal(error: str | None, error_description: str | None) -> bool:
    """Does an error answer say "an order with this id already exists"?

    The vendor schema documents no error codes, so both fields are read loosely ("DuplicatedOrderId",
    as our emulator answers, or a description saying it). A miss is safe for the caller: a resend
    refused for any other reason still leaves the first send in doubt, never "not created".
    """
    code = (error or "").lower()
    text = (error_description or "").lower()
    return "duplicat" in code or "duplicat" in text or "already exists" in text or "уже существует" in text


class IikoBadResponse(IikoError):
    """A success status with a body we cannot understand: what happened is not known."""

    outcome_unknown = True


# --- typed results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Organization:
    id: str
    name: str | None


@dataclass(frozen=True)
class TerminalGroup:
    id: str
    organization_id: str
    name: str
    time_zone: str | None
    in_sleep: bool = False


@dataclass(frozen=True)
class TerminalGroupAlive:
    terminal_group_id: str
    organization_id: str
    is_alive: bool


@dataclass(frozen=True)
class PaymentType:
    id: str | None
    code: str | None
    name: str | None
    kind: str | None  # Card, Cash, ...
    processing_type: str | None  # External, Internal, Both
    print_cheque: bool
    is_deleted: bool
    terminal_group_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class OrderType:
    id: str
    organization_id: str
    name: str
    order_service_type: str  # Common (table orders), DeliveryByCourier, DeliveryPickUp
    is_deleted: bool = False
    is_default: bool | None = None


@dataclass(frozen=True)
class SizePrice:
    size_id: str | None  # None: the product has no size scale
    price: Decimal


@dataclass(frozen=True)
class ModifierGroup:
    id: str  # the modifier group (productGroupId in an order)
    min_amount: int
    max_amount: int
    required: bool | None
    child_ids: tuple[str, ...]


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    code: str | None
    type: str | None  # Dish, Good, Modifier, Service
    group_id: str | None
    parent_group: str | None
    measure_unit: str | None
    size_prices: tuple[SizePrice, ...]
    modifier_groups: tuple[ModifierGroup, ...]
    is_deleted: bool

    @property
    def has_size_scale(self) -> bool:
        """Sized products need ``productSizeId`` in an order, or iiko refuses the order."""
        return any(sp.size_id for sp in self.size_prices)

    def price(self, size_id: str | None = None) -> Decimal | None:
        for sp in self.size_prices:
            if sp.size_id == size_id:
                return sp.price
        return None


@dataclass(frozen=True)
class Size:
    id: str
    name: str
    is_default: bool | None


@dataclass(frozen=True)
class ProductGroup:
    id: str
    name: str
    parent_group: str | None
    is_group_modifier: bool
    is_deleted: bool


@dataclass(frozen=True)
class Nomenclature:
    revision: int
    groups: tuple[ProductGroup, ...]
    products: tuple[Product, ...]
    sizes: tuple[Size, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)

    def product(self, product_id: str) -> Product | None:
        return next((p for p in self.products if p.id == product_id), None)


@dataclass(frozen=True)
class ErrorInfo:
    """Why iiko could not create an order (``errorInfo``), e.g. code ``ProductNotFound``."""

    code: str | None
    message: str | None
    error_reason: str | None = None


@dataclass(frozen=True)
class CreateOrderResult:
    correlation_id: str
    order_id: str
    creation_status: str  # InProgress | Success | Error
    error_info: ErrorInfo | None
    external_number: str | None
    timestamp: int | None
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class CommandStatus:
    state: str  # InProgress | Success | Error
    error_reason: str | None
    exception: Any
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.state != "InProgress"

    @property
    def message(self) -> str | None:
        if isinstance(self.exception, dict) and self.exception.get("message"):
            return str(self.exception["message"])
        return self.error_reason


@dataclass(frozen=True)
class OrderInfo:
    """One order as ``order/by_id`` / ``deliveries/by_id`` see it."""

    id: str
    organization_id: str
    creation_status: str  # InProgress | Success | Error
    error_info: ErrorInfo | None
    external_number: str | None
    timestamp: int | None
    status: str | None  # table orders: New/Bill/Closed/Deleted; deliveries: Unconfirmed...Cancelled
    number: int | None
    sum: Decimal | None
    terminal_group_id: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def delivered(self) -> bool:
        """The order is in iiko (an order in creation error is not: it must be re-sent)."""
        return self.creation_status == "Success"


@dataclass(frozen=True)
class CreateOrderSettings:
    """``createOrderSettings``. ``service_print`` exists for table orders only."""

    transport_to_front_timeout: int | None = DEFAULT_TRANSPORT_TO_FRONT_TIMEOUT
    check_stop_list: bool = False
    service_print: bool | None = None

    def for_table_order(self) -> dict[str, Any]:
        return {**self.for_delivery(), "servicePrint": self.service_print}

    def for_delivery(self) -> dict[str, Any]:
        return {"transportToFrontTimeout": self.transport_to_front_timeout, "checkStopList": self.check_stop_list}


# --- building an order ----------------------------------------------------------------------------


def exact_number(value: Decimal | int | str, places: Decimal = _CENT) -> int | float:
    """A JSON number for ``value`` with at most ``places``, emitted exactly.

    ``float`` only at the JSON boundary, on a value already quantized: Python prints the shortest
    repr, so ``Decimal("189.90")`` goes on the wire as ``189.9``, never as ``189.90000000000001``.
    Floats are refused as input (they are how money goes wrong); so is a value with more digits
    than ``places`` (rounding it would silently change what the guest paid).
    """
    if isinstance(value, (float, bool)):
        raise TypeError(f"money and amounts must be Decimal, int or str, not {type(value).__name__}")
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"not a number: {value!r}") from exc
    if not number.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    quantized = number.quantize(places, rounding=ROUND_HALF_UP)
    if quantized != number:
        raise ValueError(f"{value} has more than {abs(cast(int, places.as_tuple().exponent))} decimal places")
    if quantized == quantized.to_integral_value():
        return int(quantized)
    return float(quantized)


def _required(data: dict[str, Any], key: str, what: str) -> Any:
    if data.get(key) in (None, ""):
        raise ValueError(f"{what} needs {key!r}")
    return data[key]


def _amount(value: Any, what: str) -> int | float:
    amount = exact_number(value, _MILLI)
    if not 0 < amount <= MAX_AMOUNT:
        raise ValueError(f"{what} amount must be in (0, {MAX_AMOUNT}], got {value}")
    return amount


def _price(value: Any, what: str) -> int | float:
    price = exact_number(value, _CENT)
    if price < 0:
        raise ValueError(f"{what} price must not be negative, got {value}")
    return price


def build_modifier(modifier: dict[str, Any]) -> dict[str, Any]:
    """``{product_id, amount, price, group_id?}`` -> iiko's ``{productId, amount, productGroupId, price}``."""
    out: dict[str, Any] = {
        "productId": _required(modifier, "product_id", "a modifier"),
        "amount": _amount(modifier.get("amount", 1), "a modifier"),
        "price": _price(_required(modifier, "price", "a modifier"), "a modifier"),
    }
    if modifier.get("group_id"):
        out["productGroupId"] = modifier["group_id"]
    return out


def build_item(item: dict[str, Any]) -> dict[str, Any]:
    """``{product_id, amount, price, size_id?, modifiers?, comment?}`` -> a ``Product`` order item."""
    out: dict[str, Any] = {
        "type": "Product",
        "productId": _required(item, "product_id", "an item"),
        "amount": _amount(_required(item, "amount", "an item"), "an item"),
        "price": _price(_required(item, "price", "an item"), "an item"),
    }
    if item.get("size_id"):
        out["productSizeId"] = item["size_id"]
    modifiers = [build_modifier(m) for m in item.get("modifiers") or ()]
    if modifiers:
        out["modifiers"] = modifiers
    if item.get("comment"):
        out["comment"] = str(item["comment"])[:255]
    return out


def build_card_payment(payment_type_id: str, total: Decimal | int | str) -> dict[str, Any]:
    """The kiosk's card payment: charged and fiscalised by the kiosk, so iiko must do neither."""
    return {
        "paymentTypeKind": "Card",
        "sum": _price(total, "the payment"),
        "paymentTypeId": payment_type_id,
        "isProcessedExternally": True,
        "isFiscalizedExternally": True,
        "paymentAdditionalData": {"type": "Card"},
    }


def build_order(
    order_id: str,
    external_number: str,
    order_type_id: str,
    items: list[dict[str, Any]],
    payment_type_id: str,
    total: Decimal | int | str,
    phone: str | None = None,
) -> dict[str, Any]:
    """The ``order`` object of ``order/create`` (and of ``deliveries/create`` when ``phone`` is set).

    ``order_id`` is the attempt's own uuid, generated and saved before the call; ``total`` is the
    money actually charged, sent as one card payment. Items are plain data:
    ``{"product_id", "amount", "price", "size_id"?, "modifiers"?: [{"product_id", "amount",
    "price", "group_id"?}], "comment"?}`` with Decimal (or int/str) money and amounts.
    """
    if not external_number or len(external_number) > MAX_EXTERNAL_NUMBER:
        raise ValueError(f"external_number must be 1..{MAX_EXTERNAL_NUMBER} characters")
    if not items:
        raise ValueError("an order needs at least one item")
    order: dict[str, Any] = {
        "id": order_id,
        "externalNumber": external_number,
        "orderTypeId": order_type_id,
        "items": [build_item(item) for item in items],
        "payments": [build_card_payment(payment_type_id, total)],
    }
    if phone:
        order["phone"] = phone
    return order


def items_total(items: Iterable[dict[str, Any]]) -> Decimal:
    """What iiko will count for ``build_order`` items: price x amount plus modifiers, per item.

    For the workflow to compare with the money charged before sending (iiko does not refuse a
    payment that differs from the order sum, but the venue's books then disagree).
    """
    total = Decimal(0)
    for item in items:
        amount = Decimal(item["amount"])
        total += Decimal(item["price"]) * amount
        for modifier in item.get("modifiers") or ():
            total += Decimal(modifier["price"]) * Decimal(modifier.get("amount", 1)) * amount
    return total.quantize(_CENT, rounding=ROUND_HALF_UP)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal) and value.is_finite():  # callers may pass Decimals in their own dicts
        exponent = value.as_tuple().exponent
        return exact_number(value, Decimal(1).scaleb(min(int(exponent), 0)))
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(body: Any) -> str:
    """The JSON text the client sends for ``body`` (Decimals as exact numbers)."""
    return json.dumps(body, ensure_ascii=False, default=_json_default)


# --- the client -------------------------------------------------------------------------------------


class IikoClient:
    """One iiko Cloud API account (v1 ``apiLogin`` or v2 ``appId`` + ``clientSecret`` + ``apiKey``).

    Thread-safe: the token is shared and renewed under a lock.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_login: str | None = None,
        app_id: str | None = None,
        client_secret: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        iiko_timeout_header: int | None = 15,
        *,
        clock: Callable[[], float] = time.monotonic,
        token_renew_after: float = TOKEN_RENEW_AFTER,
        validate: bool = False,
        validate_responses: bool = False,
    ):
        if api_login:
            self._auth_path, self._auth_body = "/api/1/access_token", {"apiLogin": api_login}
        elif app_id and client_secret and api_key:
            self._auth_path = "/api/v2/access_token"
            self._auth_body = {"appId": app_id, "clientSecret": client_secret, "apiKey": api_key}
        else:
            raise ValueError("iiko credentials: give api_login, or app_id + client_secret + api_key")
        self.base_url = base_url.rstrip("/")
        self.iiko_timeout_header = iiko_timeout_header
        self.validate = validate
        self.validate_responses = validate_responses
        self._clock = clock
        self._token_renew_after = token_renew_after
        self._token: str | None = None
        self._token_at = 0.0
        self._token_lock = threading.Lock()
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, verify=ssl_context())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> IikoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- discovery ---------------------------------------------------------------------------------
    def organizations(self, organization_ids: list[str] | None = None) -> list[Organization]:
        body = {"organizationIds": organization_ids, "returnAdditionalInfo": False, "includeDisabled": False}
        data = self._call("/api/1/organizations", body)
        return _parsed(lambda: [Organization(o["id"], o.get("name")) for o in data["organizations"]])

    def terminal_groups(self, organization_ids: list[str], include_disabled: bool = False) -> list[TerminalGroup]:
        body = {"organizationIds": organization_ids, "includeDisabled": include_disabled}
        data = self._call("/api/1/terminal_groups", body)
        return _parsed(lambda: _terminal_groups(data))

    def terminal_groups_is_alive(self, organization_id: str, terminal_group_ids: list[str]) -> list[TerminalGroupAlive]:
        body = {"organizationIds": [organization_id], "terminalGroupIds": terminal_group_ids}
        data = self._call("/api/1/terminal_groups/is_alive", body)
        return _parsed(lambda: [
            TerminalGroupAlive(s["terminalGroupId"], s["organizationId"], bool(s["isAlive"]))
            for s in data["isAliveStatus"]
        ])

    def payment_types(self, organization_ids: list[str]) -> list[PaymentType]:
        data = self._call("/api/1/payment_types", {"organizationIds": organization_ids})
        return _parsed(lambda: [_payment_type(p) for p in data["paymentTypes"]])

    def order_types(self, organization_ids: list[str]) -> list[OrderType]:
        data = self._call("/api/1/deliveries/order_types", {"organizationIds": organization_ids})
        return _parsed(lambda: [
            _order_type(t, group["organizationId"]) for group in data["orderTypes"] for t in group["items"]
        ])

    def nomenclature(self, organization_id: str) -> Nomenclature:
        data = self._call("/api/1/nomenclature", {"organizationId": organization_id})
        return _parsed(lambda: _nomenclature(data))

    # --- orders --------------------------------------------------------------------------------------
    def create_order(
        self, organization_id: str, terminal_group_id: str, order: dict[str, Any],
        settings: CreateOrderSettings | None = None,
    ) -> CreateOrderResult:
        """``order/create`` (a table order). The answer is usually ``InProgress``: follow it with
        ``command_status`` or ``orders_by_id``."""
        body = {
            "organizationId": organization_id,
            "terminalGroupId": terminal_group_id,
            "createOrderSettings": (settings or CreateOrderSettings()).for_table_order(),
            "order": order,
        }
        data = self._call("/api/1/order/create", body)
        return _parsed(lambda: _create_result(data))

    def create_delivery(
        self, organization_id: str, terminal_group_id: str, order: dict[str, Any],
        settings: CreateOrderSettings | None = None,
    ) -> CreateOrderResult:
        """``deliveries/create`` (a pickup order); iiko requires the guest's phone."""
        if not order.get("phone"):
            raise ValueError("deliveries/create needs the guest's phone in the order")
        body = {
            "organizationId": organization_id,
            "terminalGroupId": terminal_group_id,
            "createOrderSettings": (settings or CreateOrderSettings()).for_delivery(),
            "order": order,
        }
        data = self._call("/api/1/deliveries/create", body)
        return _parsed(lambda: _create_result(data))

    def command_status(self, organization_id: str, correlation_id: str) -> CommandStatus:
        """A 410 (``IikoHTTPError.status == 410``) means the correlation id is too old to ask about."""
        body = {"organizationId": organization_id, "correlationId": correlation_id}
        data = self._call("/api/1/commands/status", body)
        return _parsed(lambda: CommandStatus(data["state"], data.get("errorReason"), data.get("exception"), data))

    def wait_for_command(
        self, organization_id: str, correlation_id: str, max_wait: float = 30.0, interval: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> CommandStatus:
        """Polls ``commands/status`` about once a ``interval`` until done or ``max_wait`` elapsed;
        returns the last status, which is still ``InProgress`` when the cap was reached."""
        deadline = time.monotonic() + max_wait
        status = self.command_status(organization_id, correlation_id)
        while not status.done and time.monotonic() + interval <= deadline:
            sleep(interval)
            status = self.command_status(organization_id, correlation_id)
        return status

    def orders_by_id(self, organization_ids: list[str], order_ids: list[str]) -> list[OrderInfo]:
        """Table orders by our ids; an id iiko never saw is simply absent from the list."""
        body = {"organizationIds": organization_ids, "orderIds": order_ids}
        data = self._call("/api/1/order/by_id", body)
        return _parsed(lambda: [_order_info(o) for o in data["orders"]])

    def deliveries_by_id(self, organization_id: str, order_ids: list[str]) -> list[OrderInfo]:
        body = {"organizationId": organization_id, "orderIds": order_ids}
        data = self._call("/api/1/deliveries/by_id", body)
        return _parsed(lambda: [_order_info(o) for o in data["orders"]])

    def cancel_order(
        self, organization_id: str, order_id: str, removal_type_id: str | None = None,
        removal_comment: str | None = None,
    ) -> str:
        """``order/cancel`` (iiko 9.0.5+); returns the command's correlation id. No money moves."""
        body: dict[str, Any] = {"organizationId": organization_id, "orderId": order_id}
        if removal_type_id:
            body["removalTypeId"] = removal_type_id
        if removal_comment:
            body["removalComment"] = removal_comment[:255]
        data = self._call("/api/1/order/cancel", body)
        return _parsed(lambda: str(data["correlationId"]))

    def cancel_delivery(
        self, organization_id: str, order_id: str, cancel_cause_id: str | None = None,
        comment: str | None = None, removal_type_id: str | None = None,
    ) -> str:
        body: dict[str, Any] = {"organizationId": organization_id, "orderId": order_id}
        if cancel_cause_id:
            body["cancelCauseId"] = cancel_cause_id
        if comment:
            body["cancelComment"] = comment
        if removal_type_id:
            body["removalTypeId"] = removal_type_id
        data = self._call("/api/1/deliveries/cancel", body)
        return _parsed(lambda: str(data["correlationId"]))

    # --- token ---------------------------------------------------------------------------------------
    def token(self) -> str:
        """The current token, renewed when older than ``token_renew_after`` (by the injected clock)."""
        with self._token_lock:
            if self._token is None or self._clock() - self._token_at >= self._token_renew_after:
                self._token = self._fetch_token()
                self._token_at = self._clock()
            return self._token

    def _forget_token(self, token: str) -> None:
        with self._token_lock:
            if self._token == token:  # another thread may already have renewed it
                self._token = None

    def _fetch_token(self) -> str:
        try:
            response = self._send(self._auth_path, self._auth_body, token=None)
        except IikoTimeout as exc:  # getting a token changes nothing in iiko: the call was not made
            raise IikoConnectionError(f"no iiko token: {exc}") from exc
        if response.status_code in (400, 401, 403):
            error = _error_fields(response)
            raise IikoAuthError(
                f"iiko refused the credentials (HTTP {response.status_code}): {error[2] or response.text[:200]}",
                response.status_code, error[2],
            )
        if response.status_code != 200:
            raise IikoConnectionError(f"no iiko token: HTTP {response.status_code} {response.text[:200]}")
        try:
            data = self._decode(self._auth_path, response)
            return str(data["token"])
        except (IikoBadResponse, KeyError, TypeError) as exc:
            raise IikoConnectionError(f"no iiko token: unreadable answer: {exc}") from exc

    # --- plumbing ------------------------------------------------------------------------------------
    def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.validate:
            schema.validate_request(path, json.loads(dumps(body)))  # exactly what goes on the wire
        token = self.token()
        response = self._send(path, body, token)
        if response.status_code == 401:
            # An expired or revoked token: iiko did not process the call, so renewing once is safe.
            self._forget_token(token)
            response = self._send(path, body, self.token())
            if response.status_code == 401:
                raise IikoAuthError(f"iiko refused a fresh token for {path}", 401, _error_fields(response)[2])
        if response.status_code != 200:
            correlation_id, error, description = _error_fields(response)
            raise IikoHTTPError(response.status_code, correlation_id, error, description, response.text)
        return self._decode(path, response)

    def _send(self, path: str, body: dict[str, Any], token: str | None) -> httpx.Response:
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self.iiko_timeout_header is not None:
            headers["Timeout"] = str(self.iiko_timeout_header)
        try:
            return self._http.post(path, content=dumps(body).encode("utf-8"), headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            where = without_credentials(self.base_url, mark="***")  # the message is logged and shown
            raise IikoConnectionError(f"cannot reach iiko at {where}: {exc!r}") from exc
        except httpx.TimeoutException as exc:
            raise IikoTimeout(f"no answer from iiko for {path} in time: {exc!r}") from exc
        except httpx.TransportError as exc:  # the request went out, the answer did not come back
            raise IikoTimeout(f"connection lost waiting for iiko's answer to {path}: {exc!r}") from exc

    def _decode(self, path: str, response: httpx.Response) -> dict[str, Any]:
        try:
            data = json.loads(response.content, parse_float=Decimal)  # money stays exact
        except ValueError as exc:
            raise IikoBadResponse(f"iiko answered {path} with something that is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise IikoBadResponse(f"iiko answered {path} with {type(data).__name__}, not an object")
        if self.validate_responses:
            errors = schema.response_errors(path, response.status_code, data)
            if errors:
                raise IikoBadResponse(f"iiko's answer to {path} does not match its schema: {'; '.join(errors[:5])}")
        return data


# --- parsing ---------------------------------------------------------------------------------------


_Parsed = TypeVar("_Parsed")


def _parsed(build: Callable[[], _Parsed]) -> _Parsed:
    """Runs a result parser; a missing or ill-typed field becomes ``IikoBadResponse``."""
    try:
        return build()
    except (KeyError, TypeError, ValueError, InvalidOperation, AttributeError) as exc:
        raise IikoBadResponse(f"unexpected iiko answer: {exc!r}") from exc


def _error_fields(response: httpx.Response) -> tuple[str | None, str | None, str | None]:
    """``(correlationId, error, errorDescription)`` of an error answer, tolerating non-JSON bodies."""
    try:
        data = response.json()
    except ValueError:
        return None, None, response.text[:500] or None
    if not isinstance(data, dict):
        return None, None, response.text[:500]
    return data.get("correlationId"), data.get("error"), data.get("errorDescription")


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _terminal_groups(data: dict[str, Any]) -> list[TerminalGroup]:
    out = []
    for key, in_sleep in (("terminalGroups", False), ("terminalGroupsInSleep", True)):
        for group in data.get(key) or ():
            for tg in group["items"]:
                out.append(TerminalGroup(tg["id"], tg["organizationId"], tg["name"], tg.get("timeZone"), in_sleep))
    return out


def _payment_type(p: dict[str, Any]) -> PaymentType:
    return PaymentType(
        id=p.get("id"), code=p.get("code"), name=p.get("name"), kind=p.get("paymentTypeKind"),
        processing_type=p.get("paymentProcessingType"), print_cheque=bool(p.get("printCheque")),
        is_deleted=bool(p.get("isDeleted")),
        terminal_group_ids=tuple(tg["id"] for tg in p.get("terminalGroups") or ()),
    )


def _order_type(t: dict[str, Any], organization_id: str) -> OrderType:
    return OrderType(
        t["id"], organization_id, t["name"], t["orderServiceType"], bool(t.get("isDeleted")), t.get("isDefault"),
    )


def _nomenclature(data: dict[str, Any]) -> Nomenclature:
    groups = tuple(
        ProductGroup(g["id"], g["name"], g.get("parentGroup"), bool(g["isGroupModifier"]), bool(g.get("isDeleted")))
        for g in data["groups"]
    )
    sizes = tuple(Size(s["id"], s["name"], s.get("isDefault")) for s in data["sizes"])
    products = tuple(_product(p) for p in data["products"])
    return Nomenclature(int(data["revision"]), groups, products, sizes, data)


def _product(p: dict[str, Any]) -> Product:
    return Product(
        id=p["id"], name=p["name"], code=p.get("code"), type=p.get("type"), group_id=p.get("groupId"),
        parent_group=p.get("parentGroup"), measure_unit=p.get("measureUnit"),
        size_prices=tuple(
            SizePrice(sp.get("sizeId"), _decimal(sp["price"]["currentPrice"])) for sp in p.get("sizePrices") or ()
        ),
        modifier_groups=tuple(
            ModifierGroup(
                g["id"], int(g["minAmount"]), int(g["maxAmount"]), g.get("required"),
                tuple(c["id"] for c in g.get("childModifiers") or ()),
            )
            for g in p.get("groupModifiers") or ()
        ),
        is_deleted=bool(p.get("isDeleted")),
    )


def _error_info(data: dict[str, Any] | None) -> ErrorInfo | None:
    if not data:
        return None
    return ErrorInfo(data.get("code"), data.get("message"), data.get("errorReason"))


def _create_result(data: dict[str, Any]) -> CreateOrderResult:
    info = data["orderInfo"]
    return CreateOrderResult(
        correlation_id=data["correlationId"], order_id=info["id"], creation_status=info["creationStatus"],
        error_info=_error_info(info.get("errorInfo")), external_number=info.get("externalNumber"),
        timestamp=info.get("timestamp"), raw=data,
    )


def _order_info(info: dict[str, Any]) -> OrderInfo:
    order = info.get("order") or {}
    total = order.get("sum")
    return OrderInfo(
        id=info["id"], organization_id=info["organizationId"], creation_status=info["creationStatus"],
        error_info=_error_info(info.get("errorInfo")), external_number=info.get("externalNumber"),
        timestamp=info.get("timestamp"), status=order.get("status"), number=order.get("number"),
        sum=_decimal(total) if total is not None else None, terminal_group_id=order.get("terminalGroupId"),
        raw=info,
    )
