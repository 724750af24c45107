"""The iiko client against the iiko emulator over real HTTP: auth, orders, faults, typed errors."""

from __future__ import annotations

import json
import socket
import uuid
from decimal import Decimal

import httpx
import pytest

from iiko import emulator as demo
from iiko import schema as iiko_schema
from iiko.client import (
    CreateOrderSettings,
    IikoAuthError,
    IikoClient,
    IikoConnectionError,
    IikoHTTPError,
    IikoTimeout,
    build_order,
    dumps,
    exact_number,
    items_total,
)
from iiko.emulator import IikoEmulator
from iiko.schema import SchemaValidationError

ORG = demo.ORG_ID
TG = demo.TERMINAL_GROUP_ID


class FakeClock:
    """The client's clock, moved by hand (token renewal at 50 minutes without waiting 50 minutes)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_client(url: str, **kwargs) -> IikoClient:
    options = {"api_login": demo.DEMO_API_LOGIN, "timeout": 5.0, "validate": True, "validate_responses": True}
    return IikoClient(url, **{**options, **kwargs})


@pytest.fixture
def client(iiko_emulator):
    with make_client(iiko_emulator.url) as c:
        yield c
    assert iiko_emulator.app.schema_violations == []  # every answer the emulator gave was valid


def cappuccino_order(order_id: str | None = None, **overrides) -> dict:
    items = overrides.pop("items", None) or [
        {"product_id": demo.PRODUCT_CAPPUCCINO_ID, "amount": 1, "price": Decimal("189.00"),
         "modifiers": [{"product_id": demo.MODIFIER_VANILLA_ID, "amount": 1, "price": Decimal("40.00"),
                        "group_id": demo.MODIFIER_GROUP_SYRUPS_ID}]},
        {"product_id": demo.PRODUCT_FRIES_ID, "size_id": demo.SIZE_LARGE_ID, "amount": 2, "price": Decimal("159.00")},
        {"product_id": demo.PRODUCT_CASHEW_ID, "amount": Decimal("0.350"), "price": Decimal("1490.00")},
    ]
    args = {
        "order_id": order_id or str(uuid.uuid4()), "external_number": "K1-042",
        "order_type_id": demo.ORDER_TYPE_TAKEAWAY_ID, "items": items,
        "payment_type_id": demo.CARD_PAYMENT_TYPE_ID, "total": items_total(items), **overrides,
    }
    return build_order(**args)


def create_and_wait(client: IikoClient, order: dict, terminal_group: str = TG):
    created = client.create_order(ORG, terminal_group, order)
    status = client.wait_for_command(ORG, created.correlation_id, max_wait=5, interval=0.05)
    return created, status


# --- auth ----------------------------------------------------------------------------------------------


def test_auth_v1_and_discovery(client):
    assert [o.id for o in client.organizations()] == [ORG]
    groups = client.terminal_groups([ORG])
    assert {g.id for g in groups} == {demo.TERMINAL_GROUP_ID, demo.TERMINAL_GROUP_2_ID}
    assert [a.is_alive for a in client.terminal_groups_is_alive(ORG, [TG])] == [True]
    card = next(p for p in client.payment_types([ORG]) if p.id == demo.CARD_PAYMENT_TYPE_ID)
    assert (card.kind, card.processing_type, card.print_cheque) == ("Card", "External", True)
    order_types = {t.id: t for t in client.order_types([ORG])}
    assert order_types[demo.ORDER_TYPE_TAKEAWAY_ID].order_service_type == "Common"
    assert order_types[demo.ORDER_TYPE_DINE_IN_ID].order_service_type == "Common"


def test_auth_v2(iiko_emulator):
    with make_client(
        iiko_emulator.url, api_login=None, app_id=demo.DEMO_APP_ID, client_secret=demo.DEMO_CLIENT_SECRET,
        api_key=demo.DEMO_API_KEY,
    ) as client:
        assert [o.id for o in client.organizations()] == [ORG]


@pytest.mark.parametrize(
    "credentials",
    [{"api_login": "someone-else"},
     {"api_login": None, "app_id": demo.DEMO_APP_ID, "client_secret": "wrong", "api_key": demo.DEMO_API_KEY}],
)
def test_refused_credentials_are_an_auth_error(iiko_emulator, credentials):
    with make_client(iiko_emulator.url, **credentials) as client, pytest.raises(IikoAuthError) as caught:
        client.organizations()
    assert caught.value.status == 401
    assert caught.value.outcome_unknown is False


def test_credentials_are_required():
    with pytest.raises(ValueError, match="credentials"):
        IikoClient("http://127.0.0.1:9", app_id=demo.DEMO_APP_ID)


def test_token_is_cached_and_renewed_at_50_minutes(iiko_emulator):
    clock = FakeClock()
    with make_client(iiko_emulator.url, clock=clock) as client:
        client.organizations()
        client.organizations()
        assert iiko_emulator.app.tokens_issued == 1
        clock.now += 49 * 60
        client.organizations()
        assert iiko_emulator.app.tokens_issued == 1
        clock.now += 60
        client.organizations()
        assert iiko_emulator.app.tokens_issued == 2


def test_expired_token_is_renewed_once_on_401_and_the_call_is_made_once(client, iiko_emulator):
    client.organizations()
    iiko_emulator.control.post("/_emulator/clock", json={"advance_seconds": 3601}).raise_for_status()
    order = cappuccino_order()
    created = client.create_order(ORG, TG, order)  # 401, new token, the same call again
    assert created.order_id == order["id"]
    assert iiko_emulator.app.tokens_issued == 2
    assert [o["id"] for o in iiko_emulator.journal()] == [order["id"]]


def test_a_fresh_token_refused_again_is_an_auth_error(client, iiko_emulator, monkeypatch):
    client.organizations()

    def always_401(request):
        raise demo._ErrorAnswer("Token is expired or invalid", "Unauthorized", 401)

    monkeypatch.setattr(iiko_emulator.app, "_check_token", always_401)
    with pytest.raises(IikoAuthError):
        client.organizations()
    assert iiko_emulator.app.tokens_issued == 2  # renewed once, not in a loop


# --- orders --------------------------------------------------------------------------------------------


def test_create_then_command_status_success_then_by_id(client, iiko_emulator):
    order = cappuccino_order()
    created, status = create_and_wait(client, order)
    assert (created.order_id, created.creation_status, created.external_number) == (order["id"], "InProgress", "K1-042")
    assert status.state == "Success"
    [info] = client.orders_by_id([ORG], [order["id"]])
    assert info.delivered and info.status == "New"
    assert info.sum == Decimal("1068.50")  # 189 + 40 syrup + 2 x 159 + 0.350 kg x 1490
    assert info.terminal_group_id == TG
    [entry] = iiko_emulator.journal()
    assert entry["id"] == order["id"] and entry["externalNumber"] == "K1-042"
    assert entry["creationStatus"] == "Success" and entry["status"] == "New"
    assert entry["orderTypeId"] == demo.ORDER_TYPE_TAKEAWAY_ID and entry["terminalGroupId"] == TG
    assert Decimal(str(entry["sum"])) == Decimal("1068.50")
    assert entry["payments"][0]["sum"] == 1068.5 and entry["payments"][0]["paymentTypeKind"] == "Card"


def test_unknown_order_id_is_absent_from_by_id(client):
    assert client.orders_by_id([ORG], [str(uuid.uuid4())]) == []


def test_cancel_order(client, iiko_emulator):
    order = cappuccino_order()
    create_and_wait(client, order)
    correlation_id = client.cancel_order(ORG, order["id"], removal_comment="Гость передумал")
    assert client.command_status(ORG, correlation_id).state == "Success"
    assert client.orders_by_id([ORG], [order["id"]])[0].status == "Deleted"
    assert iiko_emulator.journal()[0]["status"] == "Cancelled"
    with pytest.raises(IikoHTTPError) as caught:
        client.cancel_order(ORG, order["id"])
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("item", "code"),
    [
        ({"product_id": str(uuid.uuid4()), "amount": 1, "price": "100.00"}, "ProductNotFound"),
        ({"product_id": demo.PRODUCT_FRIES_ID, "amount": 1, "price": "129.00"}, "ProductSizeNotFound"),
    ],
)
def test_iiko_refuses_unknown_product_or_missing_size(client, item, code):
    order = cappuccino_order(items=[item])
    created, status = create_and_wait(client, order)
    assert created.creation_status == "InProgress"
    assert status.state == "Error" and status.message
    [info] = client.orders_by_id([ORG], [order["id"]])
    assert info.creation_status == "Error" and not info.delivered
    assert info.error_info.code == code


def test_duplicated_order_id_is_refused(client, iiko_emulator):
    order = cappuccino_order()
    client.create_order(ORG, TG, order)
    with pytest.raises(IikoHTTPError) as caught:
        client.create_order(ORG, TG, order)
    assert (caught.value.status, caught.value.error) == (400, "DuplicatedOrderId")
    assert caught.value.correlation_id and caught.value.outcome_unknown is False
    assert len(iiko_emulator.journal()) == 1


def test_pickup_delivery_needs_a_phone_and_a_delivery_order_type(client):
    with pytest.raises(ValueError, match="phone"):
        client.create_delivery(ORG, TG, cappuccino_order())
    order = cappuccino_order(phone="+79991234567", order_type_id=demo.ORDER_TYPE_PICKUP_ID)
    created = client.create_delivery(ORG, TG, order, CreateOrderSettings(transport_to_front_timeout=8))
    assert client.wait_for_command(ORG, created.correlation_id, max_wait=5, interval=0.05).state == "Success"
    assert client.orders_by_id([ORG], [order["id"]]) == []  # a delivery is not a table order
    [info] = client.deliveries_by_id(ORG, [order["id"]])
    assert info.delivered and info.status == "Unconfirmed"
    client.cancel_delivery(ORG, order["id"], comment="Гость не пришёл")
    assert client.deliveries_by_id(ORG, [order["id"]])[0].status == "Cancelled"
    # A table order type is refused for a delivery, as iikoFront refuses it.
    wrong = cappuccino_order(phone="+79991234567")
    created = client.create_delivery(ORG, TG, wrong)
    assert client.wait_for_command(ORG, created.correlation_id, max_wait=5, interval=0.05).state == "Error"
    assert client.deliveries_by_id(ORG, [wrong["id"]])[0].error_info.code == "IncorrectOrderType"


def test_command_status_of_a_forgotten_correlation_id_is_410(client, iiko_emulator):
    created = client.create_order(ORG, TG, cappuccino_order())
    iiko_emulator.control.post("/_emulator/clock", json={"advance_seconds": 25 * 3600}).raise_for_status()
    with pytest.raises(IikoHTTPError) as caught:
        client.command_status(ORG, created.correlation_id)
    assert caught.value.status == 410


# --- faults --------------------------------------------------------------------------------------------


def test_creation_timeout_fault(client, iiko_emulator):
    iiko_emulator.fault("creation_timeout")
    order = cappuccino_order()
    _created, status = create_and_wait(client, order)
    assert status.state == "Error"
    assert status.message == demo.CREATION_TIMEOUT_MESSAGE
    [info] = client.orders_by_id([ORG], [order["id"]])
    assert info.creation_status == "Error" and not info.delivered
    assert info.error_info.message == "Creation timeout expired, order automatically transited to error creation status"
    assert iiko_emulator.journal()[0]["creationStatus"] == "Error"
    # The next attempt, with a new id, goes through.
    assert create_and_wait(client, cappuccino_order())[1].state == "Success"


def test_http_500_is_a_typed_error_with_unknown_outcome(client, iiko_emulator):
    client.organizations()
    iiko_emulator.fault("http_500")
    with pytest.raises(IikoHTTPError) as caught:
        client.create_order(ORG, TG, cappuccino_order())
    assert caught.value.status == 500 and caught.value.outcome_unknown
    assert caught.value.error_description and caught.value.correlation_id
    assert iiko_emulator.journal() == []  # this 500 came before any work


def test_http_500_after_the_work_is_done_is_resolved_by_order_id(client, iiko_emulator):
    iiko_emulator.fault("http_500", processed=True, path="/api/1/order/create")
    order = cappuccino_order()
    with pytest.raises(IikoHTTPError):
        client.create_order(ORG, TG, order)
    assert [o.id for o in client.orders_by_id([ORG], [order["id"]])] == [order["id"]]


def test_slow_answer_is_a_timeout_with_unknown_outcome(iiko_emulator):
    iiko_emulator.fault("slow", seconds=3, path="/api/1/order/create")
    order = cappuccino_order()
    with make_client(iiko_emulator.url, timeout=0.5) as client:
        with pytest.raises(IikoTimeout) as caught:
            client.create_order(ORG, TG, order)
        assert caught.value.outcome_unknown
        # The doubt is resolved by asking for the attempt's id: iiko did take the order.
        [info] = client.orders_by_id([ORG], [order["id"]])
        assert info.id == order["id"]


def test_lost_answer_is_a_timeout_with_unknown_outcome(client, iiko_emulator):
    client.organizations()
    iiko_emulator.fault("lost_answer")
    order = cappuccino_order()
    with pytest.raises(IikoTimeout):
        client.create_order(ORG, TG, order)
    assert len(client.orders_by_id([ORG], [order["id"]])) == 1


def test_front_offline(client, iiko_emulator):
    iiko_emulator.fault("front_offline", device=TG)
    alive = {a.terminal_group_id: a.is_alive for a in
             client.terminal_groups_is_alive(ORG, [TG, demo.TERMINAL_GROUP_2_ID])}
    assert alive == {TG: False, demo.TERMINAL_GROUP_2_ID: True}
    # Another terminal group is not affected.
    assert create_and_wait(client, cappuccino_order(), demo.TERMINAL_GROUP_2_ID)[1].state == "Success"
    _created, status = create_and_wait(client, cappuccino_order())
    assert status.message == demo.CREATION_TIMEOUT_MESSAGE
    # One order consumed the fault: the front is back.
    assert client.terminal_groups_is_alive(ORG, [TG])[0].is_alive


def test_no_token_means_the_call_was_not_made(client, iiko_emulator):
    iiko_emulator.fault("http_500", path="/api/1/access_token")
    with pytest.raises(IikoConnectionError, match="no iiko token"):
        client.create_order(ORG, TG, cappuccino_order())
    assert iiko_emulator.journal() == []


def test_unreachable_iiko_is_a_connection_error():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with make_client(f"http://127.0.0.1:{port}") as client, pytest.raises(IikoConnectionError) as caught:
        client.create_order(ORG, TG, cappuccino_order())
    assert caught.value.outcome_unknown is False


# --- what goes on the wire --------------------------------------------------------------------------------


def test_every_body_the_client_sends_matches_the_vendor_schema(iiko_emulator, monkeypatch):
    seen: list[tuple[str, dict]] = []
    original = iiko_emulator.app.handle_protocol

    def spy(request):
        seen.append((request.path, json.loads(request.body)))
        return original(request)

    monkeypatch.setattr(iiko_emulator.app, "handle_protocol", spy)
    with make_client(iiko_emulator.url, validate=False, validate_responses=False) as client:
        client.organizations()
        client.terminal_groups([ORG])
        client.terminal_groups_is_alive(ORG, [TG])
        client.payment_types([ORG])
        client.order_types([ORG])
        client.nomenclature(ORG)
        table = cappuccino_order()
        client.wait_for_command(ORG, client.create_order(ORG, TG, table).correlation_id, interval=0.05)
        client.orders_by_id([ORG], [table["id"]])
        client.cancel_order(ORG, table["id"], removal_comment="test")
        pickup = cappuccino_order(phone="+79991234567", order_type_id=demo.ORDER_TYPE_PICKUP_ID)
        client.wait_for_command(ORG, client.create_delivery(ORG, TG, pickup).correlation_id, interval=0.05)
        client.deliveries_by_id(ORG, [pickup["id"]])
        client.cancel_delivery(ORG, pickup["id"], comment="test")
    with make_client(iiko_emulator.url, api_login=None, app_id=demo.DEMO_APP_ID,
                     client_secret=demo.DEMO_CLIENT_SECRET, api_key=demo.DEMO_API_KEY) as client:
        client.organizations()
    assert {path for path, _ in seen} == set(iiko_emulator.app._routes)  # every method we speak
    for path, body in seen:
        assert iiko_schema.request_errors(path, body) == [], path
    assert iiko_emulator.app.schema_violations == []


def test_client_validation_stops_a_malformed_order_before_sending(client, iiko_emulator):
    order = cappuccino_order()
    order["items"][0]["colour"] = "red"
    with pytest.raises(SchemaValidationError, match="colour"):
        client.create_order(ORG, TG, order)
    assert iiko_emulator.journal() == []


def test_emulator_refuses_invalid_bodies_and_missing_tokens_in_iiko_shape(client, iiko_emulator):
    http = httpx.Client(base_url=iiko_emulator.url, timeout=5)
    answer = http.post("/api/1/order/create", json={"organizationId": ORG})
    assert answer.status_code == 401 and set(answer.json()) == {"correlationId", "errorDescription", "error"}
    headers = {"Authorization": f"Bearer {client.token()}"}
    answer = http.post("/api/1/order/create", headers=headers,
                       json={"organizationId": ORG, "terminalGroupId": TG, "order": {"items": [{"type": "Beer"}]}})
    assert answer.status_code == 400
    assert "order.items[0].type: 'Beer' is not one of ['Product', 'Compound']" in answer.json()["errorDescription"]
    assert iiko_schema.response_errors("/api/1/order/create", 400, answer.json()) == []
    http.close()


# --- building orders ---------------------------------------------------------------------------------------


def test_build_order_shape_and_exact_money():
    order = cappuccino_order("2f0d3c52-7a4e-4b8e-9a65-0c1f2b3d4e5f", total=Decimal("1068.50"), phone="+7999")
    item = order["items"][0]
    assert item == {
        "type": "Product", "productId": demo.PRODUCT_CAPPUCCINO_ID, "amount": 1, "price": 189,
        "modifiers": [{"productId": demo.MODIFIER_VANILLA_ID, "amount": 1, "price": 40,
                       "productGroupId": demo.MODIFIER_GROUP_SYRUPS_ID}],
    }
    assert order["items"][1]["productSizeId"] == demo.SIZE_LARGE_ID
    assert order["payments"] == [{
        "paymentTypeKind": "Card", "sum": 1068.5, "paymentTypeId": demo.CARD_PAYMENT_TYPE_ID,
        "isProcessedExternally": True, "isFiscalizedExternally": True, "paymentAdditionalData": {"type": "Card"},
    }]
    assert order["phone"] == "+7999"
    assert '"amount": 0.35, "price": 1490}' in dumps(order)


@pytest.mark.parametrize(
    ("value", "text"),
    [(Decimal("0.10"), "0.1"), (Decimal("189.90"), "189.9"), ("1234567.89", "1234567.89"),
     (Decimal("0.29"), "0.29"), (100, "100"), (Decimal("1E+2"), "100")],
)
def test_money_goes_on_the_wire_exactly(value, text):
    assert json.dumps(exact_number(value)) == text


@pytest.mark.parametrize(
    ("value", "error"),
    [(0.1, TypeError), (Decimal("0.105"), ValueError), ("abc", ValueError), (Decimal("NaN"), ValueError)],
)
def test_money_that_cannot_be_exact_is_refused(value, error):
    with pytest.raises(error):
        exact_number(value)


def test_build_order_refuses_bad_input():
    with pytest.raises(ValueError, match="external_number"):
        cappuccino_order(external_number="x" * 51)
    with pytest.raises(ValueError, match="amount"):
        cappuccino_order(items=[{"product_id": demo.PRODUCT_BURGER_ID, "amount": 0, "price": "1"}])
    with pytest.raises(ValueError, match="product_id"):
        cappuccino_order(items=[{"amount": 1, "price": "1"}])
    assert dumps({"sum": Decimal("10.50")}) == '{"sum": 10.5}'


# --- the emulator's demo data and state ---------------------------------------------------------------------


def test_demo_menu(client):
    menu = client.nomenclature(ORG)
    names = {p.id: p.name for p in menu.products}
    assert any(len(name) > 128 for name in names.values())
    assert "🍦" in names[demo.PRODUCT_ICE_CREAM_ID]
    assert menu.product(demo.PRODUCT_FRIES_ID).has_size_scale
    assert menu.product(demo.PRODUCT_FRIES_ID).price(demo.SIZE_SMALL_ID) == Decimal("99.00")
    assert menu.product(demo.PRODUCT_CASHEW_ID).measure_unit == "кг"
    [group] = menu.product(demo.PRODUCT_CAPPUCCINO_ID).modifier_groups
    assert set(group.child_ids) == {demo.MODIFIER_VANILLA_ID, demo.MODIFIER_CARAMEL_ID}
    for product in demo.DEMO_PRODUCTS:
        assert menu.product(product["id"]).name == product["name"]
        assert product["vat"].startswith("vat") and Decimal(product["price"]) > 0


def test_state_survives_a_restart_and_reset_clears_it(tmp_path, serve_emulator):
    state = str(tmp_path / "iiko.json")
    first = serve_emulator(IikoEmulator(state_path=state, creation_delay=0))
    order = cappuccino_order()
    with make_client(first.url) as client:
        client.create_order(ORG, TG, order)
    second = serve_emulator(IikoEmulator(state_path=state, creation_delay=0))
    with make_client(second.url) as client:
        assert client.orders_by_id([ORG], [order["id"]])[0].delivered
        second.reset()
        assert client.orders_by_id([ORG], [order["id"]]) == []
