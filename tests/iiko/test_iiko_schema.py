"""The vendor-schema validator: OpenAPI 3.0 specifics (nullable, $ref, discriminators) done right."""

from __future__ import annotations

import copy
import json
import time
from decimal import Decimal

import pytest
from jsonschema import Draft202012Validator

from iiko import schema as iiko_schema
from iiko.client import build_order
from iiko.schema import IikoSchema, SchemaUnavailableError, SchemaValidationError, UnknownOperationError

ORG = "c0a4c803-9068-459f-ac88-9e88abd2d203"
TG = "3819ff4c-081f-4976-9482-cbc2b08007b0"
PRODUCT = "119a276c-e8e2-42a1-8c7c-107fe2819fe5"
MODIFIER = "897148aa-9aa6-42f4-ae84-3a649cff5072"
GROUP = "87ef6fe6-6b4d-44e5-8bd7-3257c456e71e"
CARD = "e9772cf3-6f24-40be-a316-f3dd0eee6586"
ORDER_TYPE = "b3641f85-d498-49f7-97ac-b8c5d9393275"
CREATE = "/api/1/order/create"


def order_request() -> dict:
    """An order/create body as the kiosk sends it: a Product item with a modifier, a Card payment."""
    return {
        "organizationId": ORG,
        "terminalGroupId": TG,
        "createOrderSettings": {"servicePrint": False, "transportToFrontTimeout": 8, "checkStopList": False},
        "order": {
            "id": "2f0d3c52-7a4e-4b8e-9a65-0c1f2b3d4e5f",
            "externalNumber": "042",
            "orderTypeId": ORDER_TYPE,
            "phone": None,
            "items": [
                {
                    "type": "Product", "productId": PRODUCT, "productSizeId": None, "amount": 1, "price": 289.0,
                    "modifiers": [{"productId": MODIFIER, "amount": 1, "productGroupId": GROUP, "price": 40}],
                }
            ],
            "payments": [
                {
                    "paymentTypeKind": "Card", "sum": 329.0, "paymentTypeId": CARD, "isProcessedExternally": True,
                    "isFiscalizedExternally": True, "paymentAdditionalData": {"type": "Card"},
                }
            ],
        },
    }


def errors(body: dict, path: str = CREATE) -> list[str]:
    return iiko_schema.request_errors(path, body)


def test_valid_order_with_product_item_and_card_payment_passes():
    assert errors(order_request()) == []
    iiko_schema.validate_request(CREATE, order_request())  # does not raise


def test_order_built_by_build_order_passes():
    order = build_order(
        "2f0d3c52-7a4e-4b8e-9a65-0c1f2b3d4e5f", "A-042", ORDER_TYPE,
        [{"product_id": PRODUCT, "amount": 2, "price": Decimal("289.00"),
          "modifiers": [{"product_id": MODIFIER, "amount": 1, "price": Decimal("40"), "group_id": GROUP}]}],
        CARD, Decimal("658.00"), phone="+79991234567",
    )
    body = {"organizationId": ORG, "terminalGroupId": TG, "order": json.loads(json.dumps(order))}
    assert errors(body) == []
    assert errors(body, "/api/1/deliveries/create") == []


def test_unknown_field_in_a_subtype_fails_with_its_location():
    body = order_request()
    body["order"]["items"][0]["colour"] = "red"
    assert errors(body) == ["order.items[0]: Additional properties are not allowed ('colour' was unexpected)"]


def test_unknown_top_level_field_fails():
    body = order_request()
    body["kioskId"] = 7
    assert errors(body) == ["(body): Additional properties are not allowed ('kioskId' was unexpected)"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda b: b["order"]["items"][0].update(amount="1"), "order.items[0].amount: '1' is not of type 'number'"),
        (lambda b: b["order"]["items"][0].update(productId="42"), "order.items[0].productId: '42' is not a 'uuid'"),
        (lambda b: b["order"]["payments"][0].update(sum=-1), "order.payments[0].sum: -1 is less than the minimum of 0"),
        (lambda b: b["order"]["payments"][0].update(isProcessedExternally=None),
         "order.payments[0].isProcessedExternally: None is not of type 'boolean'"),
        (lambda b: b.update(organizationId=None), "organizationId: None is not of type 'string'"),
        (lambda b: b["order"].update(externalNumber="9" * 51), "order.externalNumber: '" + "9" * 51 + "' is too long"),
        (lambda b: b["order"]["items"][0].pop("price"), "order.items[0]: 'price' is a required property"),
        (lambda b: b["order"].pop("items"), "order: 'items' is a required property"),
    ],
)
def test_wrong_types_and_values_fail_readably(mutate, expected):
    body = order_request()
    mutate(body)
    assert errors(body) == [expected]


def test_discriminator_value_must_be_known_and_present():
    body = order_request()
    body["order"]["payments"][0]["paymentTypeKind"] = "Bitcoin"
    body["order"]["items"][0].pop("type")
    assert errors(body) == [
        "order.items[0]: 'type' is a required property",
        "order.payments[0].paymentTypeKind: 'Bitcoin' is not one of ['Cash', 'Card', 'LoyaltyCard', 'External']",
    ]


def test_each_subtype_has_its_own_fields():
    body = order_request()
    # A Compound item needs its primary component; a Product field on it is not allowed.
    body["order"]["items"].append({"type": "Compound", "amount": 1, "productId": PRODUCT})
    found = errors(body)
    assert "order.items[1]: 'primaryComponent' is a required property" in found
    assert "order.items[1]: Additional properties are not allowed ('productId' was unexpected)" in found


def test_nested_discriminator_and_nullable_references():
    body = order_request()
    body["order"]["payments"][0]["paymentAdditionalData"] = {"type": "Card", "number": "4276****1234"}
    body["order"]["customer"] = {"type": "regular", "name": "Иван"}  # a subtype referenced directly
    body["createOrderSettings"] = None  # nullable reference
    assert errors(body) == []
    body["order"]["payments"][0]["paymentAdditionalData"] = {"type": "Card", "credential": "x"}
    assert errors(body) == [
        "order.payments[0].paymentAdditionalData: Additional properties are not allowed ('credential' was unexpected)"
    ]


def test_subtype_referenced_directly_pins_the_discriminator():
    body = order_request()
    body["order"]["customer"] = {"type": "one-time", "name": "Иван"}
    assert errors(body) == ["order.customer.type: 'one-time' is not one of ['regular']"]


def test_responses_with_discriminated_state():
    path = "/api/1/commands/status"
    assert iiko_schema.response_errors(path, 200, {"state": "InProgress"}) == []
    assert iiko_schema.response_errors(path, 200, {"state": "Error", "exception": {"x": 1}, "errorReason": "e"}) == []
    assert iiko_schema.response_errors(path, 200, {"state": "InProgress", "errorReason": "e"}) == [
        "(body): Additional properties are not allowed ('errorReason' was unexpected)"
    ]
    assert iiko_schema.response_errors(path, 410, {"correlationId": ORDER_TYPE, "errorDescription": "old"}) == []
    assert iiko_schema.response_errors(path, 418, {}) == [f"(status): HTTP 418 is not a documented answer of {path}"]
    with pytest.raises(SchemaValidationError) as caught:
        iiko_schema.validate_response(path, 200, {"state": "Done"})
    assert caught.value.errors == ["state: 'Done' is not one of ['InProgress', 'Success', 'Error']"]
    assert "HTTP 200 answer of /api/1/commands/status" in str(caught.value)


def test_iiko_datetime_format_is_checked_in_answers():
    path = "/api/1/order/by_id"
    info = {"id": ORDER_TYPE, "organizationId": ORG, "timestamp": 1, "creationStatus": "Error",
            "errorInfo": {"code": "Common", "message": "m"}, "order": None}
    assert iiko_schema.response_errors(path, 200, {"correlationId": ORG, "orders": [info]}) == []
    info["errorInfo"]["code"] = "Whatever"
    assert len(iiko_schema.response_errors(path, 200, {"correlationId": ORG, "orders": [info]})) == 1


def test_validate_request_raises_typed_error():
    body = order_request()
    body["order"]["items"][0]["amount"] = 1000
    with pytest.raises(SchemaValidationError) as caught:
        iiko_schema.validate_request(CREATE, body)
    assert isinstance(caught.value, ValueError)
    assert caught.value.path == CREATE
    assert caught.value.errors == ["order.items[0].amount: 1000 is greater than the maximum of 999.999"]


def test_unknown_path_is_a_programming_error():
    with pytest.raises(UnknownOperationError):
        iiko_schema.request_errors("/api/1/no_such_method", {})


def test_translated_schema_is_valid_json_schema_and_every_operation_compiles():
    schema = iiko_schema.get_schema()
    Draft202012Validator.check_schema(schema.document)
    for path, operations in schema.spec["paths"].items():
        for method, operation in operations.items():
            schema.request_validator(path, method)
            for status in operation.get("responses", {}):
                schema.response_validator(path, int(status), method)


def test_validation_is_fast_enough_for_every_emulator_request():
    body = order_request()
    errors(body)  # compile once
    started = time.perf_counter()
    for _ in range(200):
        assert errors(body) == []
    assert time.perf_counter() - started < 2.0  # ~1 ms each on the CI machine


def test_schema_is_loaded_once_and_shared():
    assert iiko_schema.get_schema() is iiko_schema.get_schema()


def test_schema_path_env_override(monkeypatch, tmp_path):
    monkeypatch.delenv(iiko_schema.ENV_VAR, raising=False)
    assert iiko_schema.schema_path() == iiko_schema.PROJECT_ROOT.parent / "shared" / "reference" / (
        "iikocloud.openapi.json"
    )
    monkeypatch.setenv(iiko_schema.ENV_VAR, str(tmp_path / "other.json"))
    assert iiko_schema.schema_path() == tmp_path / "other.json"


def test_missing_schema_file_is_a_clear_error(tmp_path):
    with pytest.raises(SchemaUnavailableError, match="cannot load the iiko OpenAPI schema"):
        IikoSchema.from_file(tmp_path / "missing.json")


def test_a_small_spec_of_our_own_with_nullable_and_inheritance(tmp_path):
    spec = {
        "openapi": "3.0.1",
        "paths": {"/pet": {"post": {
            "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}},
            "responses": {"200": {"description": "ok"}},
        }}},
        "components": {"schemas": {
            "Pet": {"type": "object", "required": ["kind"], "additionalProperties": False,
                    "properties": {"kind": {"type": "string"}, "name": {"type": "string", "nullable": True}},
                    "discriminator": {"propertyName": "kind", "mapping": {"cat": "#/components/schemas/Cat"}}},
            "Cat": {"type": "object", "allOf": [{"$ref": "#/components/schemas/Pet"}], "additionalProperties": False,
                    "properties": {"lives": {"type": "int"}, "colour": {"type": "string", "enum": ["black"],
                                                                       "nullable": True}}},
        }},
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    schema = IikoSchema.from_file(tmp_path / "spec.json")
    assert schema.request_errors("/pet", {"kind": "cat", "name": None, "lives": 9, "colour": None}) == []
    assert schema.request_errors("/pet", {"kind": "cat", "lives": 9.5}) == ["lives: 9.5 is not of type 'integer'"]
    assert schema.request_errors("/pet", {"kind": "dog"}) == ["kind: 'dog' is not one of ['cat']"]
    assert schema.response_errors("/pet", 200, None) == []
    # The vendor file itself is never modified by the translation.
    assert "discriminator" in schema.spec["components"]["schemas"]["Pet"]
    assert copy.deepcopy(spec) == schema.spec
