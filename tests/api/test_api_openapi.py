"""The OpenAPI document the project serves describes the kiosk API as it behaves."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from tests.api.test_api_orders import order_body

OPENAPI_URL = "/api/v1/openapi.json"


@pytest.fixture(scope="module")
def document() -> dict:
    from django.test import Client

    response = Client().get(OPENAPI_URL)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    return response.json()


def validator_for(document: dict, component: str) -> jsonschema.Draft202012Validator:
    """A validator of one component, resolving the document's own ``#/components/...`` references."""
    schema = {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


def test_it_is_served_without_a_token_and_names_both_endpoints(document):
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {"/api/v1/orders", "/api/v1/orders/{order_id}"}
    assert set(document["paths"]["/api/v1/orders"]) == {"post"}
    assert set(document["paths"]["/api/v1/orders/{order_id}"]) == {"get"}


def test_the_endpoints_require_the_kiosk_bearer_token(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["KioskBearer"] == {"type": "http", "scheme": "bearer"}
    for methods in document["paths"].values():
        for operation in methods.values():
            assert operation["security"] == [{"KioskBearer": []}]
            assert "401" in operation["responses"]


def test_the_order_body_is_described(document):
    post = document["paths"]["/api/v1/orders"]["post"]
    assert post["requestBody"]["required"] is True
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/OrderIn"}
    assert {"200", "201", "400", "401", "409", "413", "415", "422"} <= set(post["responses"])
    schemas = document["components"]["schemas"]
    order_in = schemas["OrderIn"]
    assert set(order_in["required"]) == {"id", "lines", "total", "payment", "order_type"}
    assert order_in["additionalProperties"] is False
    assert set(schemas["LineIn"]["required"]) == {"product_id", "name", "price", "quantity", "vat"}
    assert set(schemas["ModifierIn"]["required"]) == {"product_id", "name", "price", "quantity"}
    assert schemas["Vat"]["enum"] == ["none", "vat0", "vat5", "vat7", "vat10", "vat20", "vat22", "vat105",
                                      "vat107", "vat110", "vat120", "vat122"]
    assert "kilogram" in schemas["MeasurementUnit"]["enum"]
    assert schemas["LineIn"]["properties"]["price"]["type"] == "string"


def test_every_reference_resolves(document):
    text = json.dumps(document)
    for ref in set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text)):
        assert ref in document["components"]["schemas"], ref


def test_a_valid_order_validates_against_the_served_schema(document):
    validator_for(document, "OrderIn").validate(order_body(phone="+79161234567", email_or_phone="a@example.com"))


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b["lines"][0].update(price="289.005"),
        lambda b: b["lines"][0].update(price=289),
        lambda b: b["lines"][0].update(quantity="1000"),
        lambda b: b["lines"][0].update(vat="vat18"),
        lambda b: b["lines"][0].update(unit="bucket"),
        lambda b: b.update(payment="cash"),
        lambda b: b.update(lines=[]),
        lambda b: b.update(coupon="FREE"),
        lambda b: b.update(phone="89161234567"),
        lambda b: b.pop("total"),
    ],
)
def test_the_schema_refuses_what_the_api_refuses(document, change):
    body = order_body()
    change(body)
    assert not validator_for(document, "OrderIn").is_valid(body)


@pytest.mark.django_db
def test_the_answers_match_their_schemas(document):
    from django.test import Client

    from core.models import Kiosk, KioskToken

    token = KioskToken.issue(Kiosk.objects.create(code="K1", name="Киоск 1", has_register=False))
    client = Client(headers={"Authorization": f"Bearer {token}"})
    created = client.post("/api/v1/orders", data=json.dumps(order_body()), content_type="application/json")
    validator_for(document, "OrderStatusOut").validate(created.json())
    refused = client.post("/api/v1/orders", data=json.dumps(order_body(total="1.00")),
                          content_type="application/json")
    validator_for(document, "ErrorOut").validate(refused.json())


def test_no_docs_page_loads_assets_from_the_internet():
    from django.test import Client

    response = Client().get("/api/v1/docs")
    if response.status_code == 404:  # docs disabled: ninja is not an installed app
        assert response.json()["error"]["code"] == "not_found"
        return
    assert response.status_code == 200
    assert b"cdn" not in response.content.lower()
