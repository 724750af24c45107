"""The kiosk API's endpoints. Thin: reading, idempotency, validation and saving live in their modules."""

from __future__ import annotations

import uuid

from django.http import HttpRequest
from ninja import Router, Status
from ninja.errors import AuthenticationError

from core.models import Kiosk
from nekassir.api.auth import KioskBearer, TokenClaim
from nekassir.api.body import read_json_object
from nekassir.api.errors import ApiError
from nekassir.api.idempotency import body_hash, replayed_order
from nekassir.api.orders import create_order
from nekassir.api.schemas import ErrorOut, OrderStatusOut
from nekassir.api.status import order_status_json
from nekassir.api.status_query import polled_order
from nekassir.api.validation import validate_order
from nekassir.models import Order
from payments.terminal import unresolved_money_operation

router = Router(tags=["orders"])


class KioskRequest(HttpRequest):
    """A request ``KioskBearer`` let through: ninja sets ``request.auth`` to the kiosk."""

    auth: Kiosk

CARD_UNAVAILABLE_MESSAGE = ("Оплата картой на этом киоске временно недоступна: проверяем результат предыдущей "
                            "оплаты. Заказ не принят, обратитесь к сотруднику.")

_ORDER_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OrderIn"}}},
    }
}


@router.post(
    "/orders",
    response={200: OrderStatusOut, 201: OrderStatusOut, 400: ErrorOut, 401: ErrorOut, 409: ErrorOut,
              413: ErrorOut, 415: ErrorOut, 422: ErrorOut, 503: ErrorOut},
    summary="Принять заказ киоска (идемпотентно по id)",
    description=(
        "201 — новый заказ принят, его оплата картой начинается сразу. 200 — тот же id с тем же телом: "
        "тот же заказ. 409 `idempotency_conflict` — тот же id с другим телом или от другого киоска "
        "(проверяется раньше всех остальных проверок тела). 422 `validation_error` — тело не соответствует "
        "схеме, поля в `error.details`. 422 `vat_not_allowed` — ставка НДС позиции или модификатора не подходит "
        "для системы налогообложения киоска на дату продажи (позиции названы в `error.details`: `field`, "
        "`line`, `product_id`). 422 `marking_*` — коды маркировки позиций (поле `marking_codes` в LineIn): "
        "`marking_codes_missing`, `marking_codes_mismatch`, `marking_code_invalid`, `marking_gtin_mismatch`, "
        "`marking_code_duplicate`, `marking_code_in_use`, `marking_codes_unexpected`; в `error.details` — `field`, "
        "`line`, `product_id` и `marking_code` (код, как его прислал киоск); ничего не сохраняется. "
        "Заказ с маркированными товарами сначала проверяет коды (статус `checking_marks`); отказ службы или "
        "кассы — `failed` с `error.code` `marking_rejected`, недоступность проверки — `marking_unavailable`. "
        "400 — тело не JSON-объект. 503 `card_unavailable` — оплата картой на этом "
        "киоске сейчас невозможна: исход прошлой операции терминала ещё не выяснен; заказ не сохранён."
    ),
    openapi_extra=_ORDER_BODY_DOC,
)
def post_order(request: KioskRequest):
    kiosk = request.auth
    body = read_json_object(request)
    digest = body_hash(body)
    order = replayed_order(kiosk, body, digest)
    if order is not None:
        return Status(200, order_status_json(order))
    data = validate_order(body, kiosk)
    refuse_while_card_unavailable(kiosk)
    order, created = create_order(kiosk, data, body, digest)
    return Status(201 if created else 200, order_status_json(order))


def refuse_while_card_unavailable(kiosk) -> None:
    """A card operation of this kiosk's terminal has an unknown outcome: the terminal takes no new sale until
    it is resolved (payments.terminal), so a new order is refused before anything is saved."""
    if unresolved_money_operation(kiosk) is not None:
        raise ApiError(503, "card_unavailable", CARD_UNAVAILABLE_MESSAGE)


@router.get(
    "/orders/{order_id}",
    response={200: OrderStatusOut, 401: ErrorOut, 404: ErrorOut},
    summary="Состояние заказа",
    auth=KioskBearer(deferred=True),
)
def get_order(request: HttpRequest, order_id: str):
    """Every kiosk polls its order every 250 ms: the token, its kiosk and the order are checked and read by one
    statement; only a miss looks at the token again, to tell a 401 from a 404."""
    claim: TokenClaim = request.auth  # type: ignore[attr-defined]  # set by ninja from KioskBearer(deferred)
    order = _polled_order(order_id, claim)
    if order is None:
        if claim.kiosk() is None:
            raise AuthenticationError()
        raise ApiError(404, message="Заказ не найден.")
    return Status(200, order_status_json(order))


def _polled_order(order_id: str, claim: TokenClaim) -> Order | None:
    """The order if its kiosk is active and holds this live token; only the columns the answer shows."""
    try:
        pk = uuid.UUID(order_id)
    except ValueError:
        return None
    return polled_order(pk, claim.digest)
