"""The kiosk API over Django's test client: orders, idempotency, validation, errors, status."""

from __future__ import annotations

import copy
import json
import threading
import uuid
from decimal import Decimal

import pytest
from django.test import Client

from core.models import Kiosk, KioskToken
from iiko import emulator as demo
from nekassir.api import orders as api_orders
from nekassir.models import Order, OrderLine, OrderModifier, PickupCounter
from tests.threads import run_in_threads

URL = "/api/v1/orders"
REAL_QUEUE_CHECKOUT = api_orders._queue_checkout  # before the autouse fixture stands in for it


# --- helpers ---------------------------------------------------------------------------------------


def make_kiosk(code: str = "K1", **fields) -> Kiosk:
    return Kiosk.objects.create(code=code, name=f"Киоск {code}", has_register=False, **fields)


def order_body(**changes) -> dict:
    """A valid order of demo products: 578.00 + 378.00 + 80.00 (syrup) + 521.50 (0.350 kg) = 1557.50."""
    body = {
        "id": str(uuid.uuid4()),
        "lines": [
            {"product_id": demo.PRODUCT_BURGER_ID, "name": "Бургер «Классический»", "price": "289.00",
             "quantity": "2", "vat": "vat22", "modifiers": []},
            {"product_id": demo.PRODUCT_CAPPUCCINO_ID, "name": "Капучино 0,3 л", "price": "189.00",
             "quantity": "2", "vat": "vat22",
             "modifiers": [{"product_id": demo.MODIFIER_VANILLA_ID, "group_id": demo.MODIFIER_GROUP_SYRUPS_ID,
                            "name": "Сироп ванильный", "price": "40.00", "quantity": "1"}]},
            {"product_id": demo.PRODUCT_CASHEW_ID, "name": "Кешью жареный, на развес", "price": "1490.00",
             "quantity": "0.350", "unit": "kilogram", "vat": "vat22"},
        ],
        "total": "1557.50",
        "payment": "card",
        "order_type": "takeaway",
    }
    body.update(changes)
    return body


def one_line_body(price: str = "100.00", quantity: str = "1", **line) -> dict:
    amount = (Decimal(price) * Decimal(quantity)).quantize(Decimal("0.01"))
    return order_body(
        lines=[{"product_id": demo.PRODUCT_WATER_ID, "name": "Вода", "price": price, "quantity": quantity,
                "vat": "vat22", **line}],
        total=f"{amount:.2f}",
    )


def post(client: Client, token: str | None, body, content_type: str = "application/json"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, str | bytes) else json.dumps(body, ensure_ascii=False)
    return client.post(URL, data=data, content_type=content_type, headers=headers)


def get(client: Client, token: str | None, order_id: str):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(f"{URL}/{order_id}", headers=headers)


def row_counts() -> tuple[int, ...]:
    return (Order.objects.count(), OrderLine.objects.count(), OrderModifier.objects.count(),
            PickupCounter.objects.count())


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    return error


def detail_codes(response) -> set[tuple[str, str]]:
    return {(d["field"], d["code"]) for d in response.json()["error"].get("details", [])}


@pytest.fixture(autouse=True)
def queued(monkeypatch) -> list[str]:
    """Order ids whose checkout was queued; the checkout itself is not this file's business."""
    calls: list[str] = []
    monkeypatch.setattr(api_orders, "_queue_checkout", lambda order_id: calls.append(str(order_id)))
    return calls


@pytest.fixture
def kiosk(db) -> Kiosk:
    return make_kiosk()


@pytest.fixture
def token(kiosk) -> str:
    return KioskToken.issue(kiosk)


@pytest.fixture
def client() -> Client:
    return Client(enforce_csrf_checks=True)  # a bearer API: CSRF must not get in the way


# --- creating an order -------------------------------------------------------------------------------


def test_a_new_order_is_created_with_its_number_and_status(client, kiosk, token):
    body = order_body()
    response = post(client, token, body)
    assert response.status_code == 201, response.content
    answer = response.json()
    assert answer["id"] == body["id"]
    assert answer["number"] == "K1-001"
    assert answer["status"] == "received"
    assert answer["total"] == "1557.50"
    assert answer["receipt"] is None and answer["card"] is None and answer["iiko"] is None
    assert answer["error"] is None

    order = Order.objects.get(pk=body["id"])
    assert order.kiosk == kiosk and order.seq == 1 and order.order_type == "takeaway"
    assert order.total == Decimal("1557.50")
    assert order.request_body == body
    lines = list(order.lines.order_by("position"))
    assert [(ln.position, ln.amount, ln.unit) for ln in lines] == [
        (1, Decimal("578.00"), "piece"), (2, Decimal("378.00"), "piece"), (3, Decimal("521.50"), "kilogram"),
    ]
    assert lines[0].receipt_name == 'Бургер "Классический"'
    assert lines[0].name == "Бургер «Классический»"
    assert lines[2].quantity == Decimal("0.350")
    syrup = lines[1].modifiers.get()
    assert (syrup.amount, syrup.quantity, syrup.receipt_quantity, syrup.vat) == (
        Decimal("80.00"), Decimal("1.000"), Decimal("2.000000"), "vat22")
    assert str(syrup.group_id) == demo.MODIFIER_GROUP_SYRUPS_ID


def test_the_checkout_is_queued_once_after_commit(client, token, queued, django_capture_on_commit_callbacks):
    body = order_body()
    with django_capture_on_commit_callbacks(execute=True):
        post(client, token, body)
    with django_capture_on_commit_callbacks(execute=True):
        post(client, token, body)  # a replay queues nothing
    assert queued == [body["id"]]


def test_queueing_calls_nekassir_checkout_start_checkout(monkeypatch):
    started = []
    monkeypatch.setattr("nekassir.checkout.start_checkout", started.append)
    order_id = uuid.uuid4()
    REAL_QUEUE_CHECKOUT(order_id)
    assert started == [order_id]


def test_numbers_count_up_per_kiosk(client, token):
    numbers = [post(client, token, order_body()).json()["number"] for _ in range(3)]
    assert numbers == ["K1-001", "K1-002", "K1-003"]


def test_long_and_emoji_names_are_kept_whole_and_fitted_for_the_receipt(client, token):
    caesar = next(p["name"] for p in demo.DEMO_PRODUCTS if p["id"] == demo.PRODUCT_CAESAR_ID)
    body = order_body(
        lines=[
            {"product_id": demo.PRODUCT_CAESAR_ID, "name": caesar, "price": "390.00", "quantity": "1", "vat": "vat22"},
            {"product_id": demo.PRODUCT_ICE_CREAM_ID, "name": "Мороженое пломбир 🍦", "price": "150.00",
             "quantity": "1", "vat": "vat10"},
        ],
        total="540.00",
    )
    assert post(client, token, body).status_code == 201
    first, second = OrderLine.objects.order_by("position")
    assert first.name == caesar and len(first.receipt_name) <= 128 and first.receipt_name.endswith("...")
    assert second.name == "Мороженое пломбир 🍦" and second.receipt_name == "Мороженое пломбир"


def test_amounts_round_half_up_to_kopecks(client, token):
    # 0.05 × 0.5 = 0.025 -> 0.03
    assert post(client, token, one_line_body("0.05", "0.5") | {"total": "0.03"}).status_code == 201
    response = post(client, token, one_line_body("0.05", "0.5") | {"total": "0.02"})
    assert_error(response, 422, "validation_error")
    assert ("total", "total_mismatch") in detail_codes(response)


def test_modifier_quantity_is_per_unit_of_its_line(client, token):
    line = {"product_id": demo.PRODUCT_CAPPUCCINO_ID, "name": "Капучино", "price": "189.00", "quantity": "3",
            "vat": "vat22", "modifiers": [{"product_id": demo.MODIFIER_CARAMEL_ID, "name": "Сироп карамельный",
                                           "price": "40.00", "quantity": "2", "vat": "vat10"}]}
    # 3 × 189.00 + 3 × 2 × 40.00 = 567.00 + 240.00
    assert post(client, token, order_body(lines=[line], total="807.00")).status_code == 201
    modifier = OrderModifier.objects.get()
    assert modifier.amount == Decimal("240.00") and modifier.vat == "vat10" and modifier.group_id is None
    assert_error(post(client, token, order_body(lines=[line], total="647.00")), 422, "validation_error")


def test_optional_contacts_are_saved(client, token):
    body = order_body(phone="+79161234567", email_or_phone="guest@example.com", order_type="dine_in")
    assert post(client, token, body).status_code == 201
    order = Order.objects.get()
    assert (order.phone, order.email_or_phone, order.order_type) == ("+79161234567", "guest@example.com", "dine_in")


def test_blank_contacts_count_as_absent(client, token):
    assert post(client, token, order_body(phone="", email_or_phone="")).status_code == 201
    assert Order.objects.get().phone == ""


def test_a_pickup_delivery_kiosk_requires_the_phone(client, db):
    kiosk = make_kiosk("K2", iiko_send_as_delivery=True)
    token = KioskToken.issue(kiosk)
    response = post(client, token, order_body())
    assert_error(response, 422, "validation_error")
    assert ("phone", "phone_required") in detail_codes(response)
    assert post(client, token, order_body(phone="+79161234567")).status_code == 201


# --- idempotency -----------------------------------------------------------------------------------


def test_the_same_body_again_returns_the_same_order(client, token):
    body = order_body()
    first = post(client, token, body)
    # same JSON value, other key order and spacing
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2, ensure_ascii=False)
    again = post(client, token, reordered)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert Order.objects.count() == 1


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b.update(total="1557.49"),  # invalid body: still a conflict, not a 422
        lambda b: b["lines"][0].update(price="1.005"),
        lambda b: b.update(order_type="dine_in"),  # valid but different
        lambda b: b["lines"].pop(),
        lambda b: b.update(lines="nonsense"),
        lambda b: b.update(extra=1),
    ],
)
def test_the_same_id_with_another_body_is_a_conflict_before_validation(client, token, change):
    body = order_body()
    assert post(client, token, body).status_code == 201
    other = copy.deepcopy(body)
    change(other)
    before = row_counts()
    error = assert_error(post(client, token, other), 409, "idempotency_conflict")
    assert "details" not in error
    assert row_counts() == before


def test_the_same_id_from_another_kiosk_is_a_conflict(client, token, db):
    body = order_body()
    assert post(client, token, body).status_code == 201
    other_token = KioskToken.issue(make_kiosk("K2"))
    assert_error(post(client, other_token, body), 409, "idempotency_conflict")
    assert Order.objects.count() == 1


def test_a_number_where_a_string_was_sent_is_another_body(client, token):
    body = order_body()
    assert post(client, token, body).status_code == 201
    text = json.dumps(body, ensure_ascii=False).replace('"total": "1557.50"', '"total": 1557.50')
    assert_error(post(client, token, text), 409, "idempotency_conflict")


@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_posts_make_one_order():
    token = KioskToken.issue(make_kiosk())
    body = order_body()
    start = threading.Barrier(4)

    def send():
        start.wait()
        response = post(Client(), token, body)
        return response.status_code, response.json()

    results, errors = run_in_threads(send, [()] * 4)
    assert errors == []
    assert sorted(status for status, _ in results) == [200, 200, 200, 201]
    assert {answer["number"] for _, answer in results} == {"K1-001"}
    assert Order.objects.count() == 1
    assert OrderLine.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_different_orders_get_distinct_numbers(queued):
    token = KioskToken.issue(make_kiosk())
    start = threading.Barrier(6)

    def send():
        start.wait()
        return post(Client(), token, order_body()).json()["number"]

    results, errors = run_in_threads(send, [()] * 6)
    assert errors == []
    assert sorted(results) == [f"K1-00{i}" for i in range(1, 7)]
    assert len(queued) == 6


# --- validation ------------------------------------------------------------------------------------


def set_line(field, value, index=0):
    return lambda b: b["lines"][index].__setitem__(field, value)


def set_modifier(field, value):
    return lambda b: b["lines"][1]["modifiers"][0].__setitem__(field, value)


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        (lambda b: b.update(total="1557.49"), "total", "total_mismatch"),
        (lambda b: b.update(total="1557.5"), None, None),  # same money, fine: see below
        (lambda b: b.update(total="1557.500"), "total", "money_format"),
        (lambda b: b.update(total=1557.5), "total", "money_format"),
        (lambda b: b.update(total="1000000.01"), "total", "money_too_large"),
        (set_line("price", "289.005"), "lines.0.price", "money_format"),
        (set_line("price", "-289.00"), "lines.0.price", "money_format"),
        (set_line("price", 289), "lines.0.price", "money_format"),
        (set_line("price", "1e3"), "lines.0.price", "money_format"),
        (set_line("price", "٢٨٩"), "lines.0.price", "money_format"),
        (set_line("price", "9999999.99"), "lines.0.price", "money_too_large"),
        (set_line("quantity", "0"), "lines.0.quantity", "quantity_not_positive"),
        (set_line("quantity", "0.000"), "lines.0.quantity", "quantity_not_positive"),
        (set_line("quantity", "-1"), "lines.0.quantity", "quantity_format"),
        (set_line("quantity", "1000"), "lines.0.quantity", "quantity_format"),
        (set_line("quantity", "1.0001"), "lines.0.quantity", "quantity_format"),
        (set_line("quantity", 2), "lines.0.quantity", "quantity_format"),
        (set_line("vat", "vat18"), "lines.0.vat", "enum"),
        (set_line("vat", None), "lines.0.vat", "enum"),
        (set_line("unit", "bucket"), "lines.0.unit", "enum"),
        (set_line("name", ""), "lines.0.name", "string_too_short"),
        (set_line("name", "   "), "lines.0.name", "name_empty"),
        (set_line("name", "Б" * 1001), "lines.0.name", "string_too_long"),
        (set_line("name", "Бургер\x00"), "lines.0.name", "name_invalid_characters"),
        (set_line("name", 5), "lines.0.name", "string_type"),
        (set_line("product_id", "burger"), "lines.0.product_id", "uuid_parsing"),
        (set_line("size_id", "small"), "lines.0.size_id", "uuid_parsing"),
        (set_line("modifiers", {}), "lines.0.modifiers", "list_type"),
        (set_line("colour", "red"), "lines.0.colour", "extra_forbidden"),
        (lambda b: b["lines"][0].pop("vat"), "lines.0.vat", "missing"),
        (set_modifier("price", "40.001"), "lines.1.modifiers.0.price", "money_format"),
        (set_modifier("quantity", "0"), "lines.1.modifiers.0.quantity", "quantity_not_positive"),
        (set_modifier("group_id", "syrups"), "lines.1.modifiers.0.group_id", "uuid_parsing"),
        (set_modifier("vat", "vat18"), "lines.1.modifiers.0.vat", "enum"),
        (lambda b: b.update(lines=[]), "lines", "too_short"),
        (lambda b: b.update(lines=b["lines"][:1] * 101), "lines", "too_long"),
        (lambda b: b["lines"][1].update(modifiers=b["lines"][1]["modifiers"] * 21), "lines.1.modifiers", "too_long"),
        (lambda b: b.update(lines="burger"), "lines", "list_type"),
        (lambda b: b.update(lines=[1]), "lines.0", "model_type"),
        (lambda b: b.update(payment="cash"), "payment", "enum"),
        (lambda b: b.update(order_type="delivery"), "order_type", "enum"),
        (lambda b: b.update(phone="89161234567"), "phone", "phone_invalid"),
        (lambda b: b.update(phone="+7916123456"), "phone", "phone_invalid"),
        (lambda b: b.update(phone="+7 916 123-45-67"), "phone", "phone_invalid"),
        (lambda b: b.update(email_or_phone="guest@"), "email_or_phone", "email_or_phone_invalid"),
        (lambda b: b.update(email_or_phone="+7916"), "email_or_phone", "phone_invalid"),
        (lambda b: b.update(email_or_phone="a" * 60 + "@example.com"), "email_or_phone", "email_or_phone_invalid"),
        (lambda b: b.update(id="not-a-uuid"), "id", "uuid_parsing"),
        (lambda b: b.update(id=12345), "id", "uuid_type"),
        (lambda b: b.pop("id"), "id", "missing"),
        (lambda b: b.pop("total"), "total", "missing"),
        (lambda b: b.update(coupon="FREE"), "coupon", "extra_forbidden"),
    ],
)
def test_bad_orders_are_refused_with_field_errors_and_change_nothing(client, token, change, field, code):
    body = order_body()
    change(body)
    before = row_counts()
    response = post(client, token, body)
    if field is None:
        assert response.status_code == 201
        return
    error = assert_error(response, 422, "validation_error")
    assert (field, code) in detail_codes(response), error
    assert all(d["message"] and not d["message"].isascii() for d in error["details"]), error  # Russian
    assert row_counts() == before


def test_too_many_receipt_positions_are_refused(client, token):
    line = {"product_id": demo.PRODUCT_CAPPUCCINO_ID, "name": "Капучино", "price": "1.00", "quantity": "1",
            "vat": "vat22", "modifiers": [{"product_id": demo.MODIFIER_VANILLA_ID, "name": "Сироп",
                                           "price": "1.00", "quantity": "1"}]}
    response = post(client, token, order_body(lines=[line] * 51, total="102.00"))
    assert_error(response, 422, "validation_error")
    assert ("lines", "too_many_positions") in detail_codes(response)
    assert post(client, token, order_body(lines=[line] * 50, total="100.00")).status_code == 201


def test_a_hundred_lines_are_accepted(client, token):
    assert post(client, token, one_line_body() | {"lines": one_line_body()["lines"] * 100,
                                                  "total": "10000.00"}).status_code == 201


def test_error_details_do_not_echo_the_input(client, token):
    response = post(client, token, order_body(secret_field="s3cr3t-value", phone="s3cr3t-phone"))
    assert b"s3cr3t-value" not in response.content and b"s3cr3t-phone" not in response.content


# --- bodies that are not an order at all -----------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("{", "malformed_json"),
        ('{"id": "x",}', "malformed_json"),
        ('{"total": NaN}', "malformed_json"),
        (" ", "malformed_json"),
        (b"\xff\xfe{}", "malformed_json"),
        ("[" * 100 + "]" * 100, "body_not_object"),
        ('{"a":' * 40 + "1" + "}" * 40, "malformed_json"),
        ("[]", "body_not_object"),
        ('"order"', "body_not_object"),
        ("42", "body_not_object"),
        ("null", "body_not_object"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_400(client, token, data, code):
    before = row_counts()
    assert_error(post(client, token, data), 400, code)
    assert row_counts() == before


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
     "application/json; charset=latin-1"],
)
def test_a_body_that_is_not_json_is_a_415(client, token, content_type):
    body = json.dumps(order_body())
    assert_error(post(client, token, body, content_type=content_type), 415, "unsupported_media_type")
    assert Order.objects.count() == 0


def test_json_with_a_charset_is_fine(client, token):
    assert post(client, token, order_body(), content_type="application/json; charset=UTF-8").status_code == 201


def test_an_oversize_body_is_a_413(client, token):
    body = order_body(padding="x" * 600_000)
    assert_error(post(client, token, body), 413, "payload_too_large")
    assert Order.objects.count() == 0


# --- authentication --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer nkk_wrong", "Basic dXNlcjpwYXNz", "Token {token}", "{token}",
     "Bearer " + "x" * 5000],
)
def test_a_missing_or_bad_token_is_a_401(client, token, authorization):
    headers = {} if authorization is None else {"Authorization": authorization.format(token=token)}
    response = client.post(URL, data=json.dumps(order_body()), content_type="application/json", headers=headers)
    assert_error(response, 401, "unauthorized")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert Order.objects.count() == 0


def test_a_revoked_token_and_an_inactive_kiosk_are_refused(client, kiosk, token):
    KioskToken.objects.get().revoke()
    assert_error(post(client, token, order_body()), 401, "unauthorized")
    fresh = KioskToken.issue(kiosk)
    assert post(client, fresh, order_body()).status_code == 201
    Kiosk.objects.filter(pk=kiosk.pk).update(active=False)
    assert_error(post(client, fresh, order_body()), 401, "unauthorized")


def test_the_token_is_checked_before_the_body(client):
    assert_error(post(client, None, "{"), 401, "unauthorized")


# --- reading an order ------------------------------------------------------------------------------


def test_a_kiosk_reads_its_own_order(client, token):
    body = order_body()
    created = post(client, token, body).json()
    response = get(client, token, body["id"])
    assert response.status_code == 200
    assert response.json() == created
    assert set(created) == {"id", "number", "status", "total", "created_at", "receipt", "receipt_not_printed",
                            "card", "iiko", "error"}


def test_the_guest_error_is_shown(client, token):
    body = order_body()
    post(client, token, body)
    Order.objects.filter(pk=body["id"]).update(status="failed", error_code="register_not_ready",
                                               error_message="Касса не готова. Обратитесь к персоналу.")
    answer = get(client, token, body["id"]).json()
    assert answer["status"] == "failed"
    assert answer["error"] == {"code": "register_not_ready", "message": "Касса не готова. Обратитесь к персоналу."}


def test_another_kiosks_order_unknown_and_malformed_ids_are_404(client, token, db):
    body = order_body()
    post(client, token, body)
    other_token = KioskToken.issue(make_kiosk("K2"))
    assert_error(get(client, other_token, body["id"]), 404, "not_found")
    assert_error(get(client, token, str(uuid.uuid4())), 404, "not_found")
    assert_error(get(client, token, "not-a-uuid"), 404, "not_found")


def test_reading_needs_the_token(client, token):
    assert_error(get(client, None, str(uuid.uuid4())), 401, "unauthorized")


# --- errors outside the endpoints ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("put", URL), ("delete", URL), ("patch", URL), ("get", URL), ("post", f"{URL}/{uuid.uuid4()}"),
     ("delete", f"{URL}/{uuid.uuid4()}")],
)
def test_a_wrong_method_is_a_json_405(client, token, method, path):
    response = getattr(client, method)(path, headers={"Authorization": f"Bearer {token}"})
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"]


@pytest.mark.parametrize(
    "path", ["/api/", "/api/v1/", "/api/v1/nothing", "/api/v2/orders", f"{URL}/", f"{URL}/{uuid.uuid4()}/x"]
)
def test_unknown_api_paths_are_a_json_404(client, token, path):
    assert_error(client.get(path, headers={"Authorization": f"Bearer {token}"}), 404, "not_found")
    assert_error(client.post(path, data="{}", content_type="application/json"), 404, "not_found")


def test_an_unexpected_failure_is_a_json_500_not_a_page(client, token, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("nekassir.api.views.create_order", explode)
    before = row_counts()
    assert_error(post(client, token, order_body()), 500, "internal_error")
    assert row_counts() == before


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer nkk_wrong", "Basic dXNlcjpwYXNz", "Token {token}", "{token}",
     "Bearer " + "x" * 5000],
)
@pytest.mark.parametrize("which", ["existing", "unknown", "malformed"])
def test_reading_with_a_missing_or_bad_token_is_a_401_whatever_the_id(client, token, authorization, which):
    body = order_body()
    post(client, token, body)
    order_id = {"existing": body["id"], "unknown": str(uuid.uuid4()), "malformed": "not-a-uuid"}[which]
    headers = {} if authorization is None else {"Authorization": authorization.format(token=token)}
    response = client.get(f"{URL}/{order_id}", headers=headers)
    assert_error(response, 401, "unauthorized")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_reading_with_a_revoked_token_or_for_an_inactive_kiosk_is_a_401(client, kiosk, token):
    body = order_body()
    post(client, token, body)
    KioskToken.objects.get().revoke()
    assert_error(get(client, token, body["id"]), 401, "unauthorized")
    fresh = KioskToken.issue(kiosk)
    assert get(client, fresh, body["id"]).status_code == 200
    Kiosk.objects.filter(pk=kiosk.pk).update(active=False)
    assert_error(get(client, fresh, body["id"]), 401, "unauthorized")
    assert_error(get(client, fresh, str(uuid.uuid4())), 401, "unauthorized")


def test_a_status_poll_is_one_sql_statement(client, token):
    """Every kiosk polls its order every 250 ms (30 kiosks: 120 GETs a second on one venue server, issue 15):
    the token, the kiosk and the order with its receipt and card sale are read by one statement."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.panel_support import fake_completed_order, fake_shift

    body = order_body()
    post(client, token, body)
    other = make_kiosk("K9")
    done = fake_completed_order(other, fake_shift(other))  # with its receipt (QR and all) and card sale
    for order_id, bearer in ((body["id"], token), (str(done.pk), KioskToken.issue(other))):
        with CaptureQueriesContext(connection) as queries:
            answer = get(client, bearer, order_id)
        assert answer.status_code == 200
        assert len(queries.captured_queries) == 1, [q["sql"] for q in queries.captured_queries]
    assert answer.json()["receipt"]["qr"].startswith("t=") and answer.json()["card"]["rrn"] == done.card_sale.rrn
    # The poll's own statement (nekassir/api/status_query.py) gives what the models give, field for field.
    from nekassir.api.status import order_status_json

    Order.objects.filter(pk=done.pk).update(iiko_number="42", error_code="x", error_message="сообщение")
    fresh = Order.objects.select_related("sell_operation__document", "card_sale").get(pk=done.pk)
    assert get(client, KioskToken.issue(other), str(done.pk)).json() == json.loads(json.dumps(order_status_json(fresh)))


def test_the_status_poll_is_a_prepared_statement_on_postgresql(client, token):
    """Issue 15: planning the poll's six-table join cost PostgreSQL twice what running it did, 120 times a second
    with 30 kiosks: on PostgreSQL it is prepared once per connection, then only executed."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's (make test-postgres)")
    body = order_body()
    post(client, token, body)
    first = get(client, token, body["id"]).json()
    for _ in range(3):
        assert get(client, token, body["id"]).json() == first
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert len([s for s in prepared if '"core_kiosktoken"' in s and "token_hash" in s]) == 1, prepared
    # A wrong token is still a 401 through the prepared statement.
    assert get(client, "wrong-token", body["id"]).status_code == 401
