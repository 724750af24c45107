"""The kiosk API v1 (django-ninja): its error handlers and its OpenAPI document.

django-ninja, because it builds validation and the OpenAPI schema from the same pydantic models.
``POST /orders`` validates its body by hand (``OrderIn``) because the idempotency check must come
first, so its request schema is added to the document from that same model here.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.openapi.schema import REF_TEMPLATE
from ninja.renderers import JSONRenderer

from nekassir.api.auth import KioskBearer
from nekassir.api.errors import STATUS_ERRORS, ApiError, api_error_response, error_response
from nekassir.api.schemas import OrderIn
from nekassir.api.views import router

log = logging.getLogger(__name__)


class Utf8JSONRenderer(JSONRenderer):
    json_dumps_params = {"ensure_ascii": False}  # Russian stays readable


class KioskApi(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None):
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        order_in = OrderIn.model_json_schema(ref_template=REF_TEMPLATE, mode="validation")
        components = schema["components"]["schemas"]
        components.update(order_in.pop("$defs", {}))
        components["OrderIn"] = order_in
        return schema


api = KioskApi(
    title="Nekassir: API киоска",
    version="1",
    description=(
        "Заказы киосков с оплатой картой. Авторизация: `Authorization: Bearer <токен киоска>`. "
        "Любая ошибка — JSON `{\"error\": {\"code\", \"message\", \"details\"?}}`. "
        "400 — тело не JSON-объект; 422 — объект не прошёл проверку (поля в details)."
    ),
    auth=KioskBearer(),
    renderer=Utf8JSONRenderer(),
    urls_namespace="kiosk-api-v1",
    # The venue LAN has no internet: ninja serves the docs page's scripts itself only when "ninja"
    # is an installed app (whitenoise then serves them); otherwise it would load them from a CDN.
    docs_url="/docs" if "ninja" in settings.INSTALLED_APPS else None,
)
api.add_router("/", router)


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return api_error_response(exc)


@api.exception_handler(AuthenticationError)
def _unauthorized(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error_response(401)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    status = exc.status_code if exc.status_code in STATUS_ERRORS else 400
    return error_response(status)


@api.exception_handler(NinjaValidationError)
def _ninja_validation(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    # Only parameters ninja parses itself get here (the order body is validated in the view).
    return error_response(422, details=[
        {"field": ".".join(str(p) for p in e.get("loc", ())), "code": e.get("type", "invalid"),
         "message": "Некорректное значение."}
        for e in exc.errors
    ])


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(404)


@api.exception_handler(OperationalError)
def _database_busy(request: HttpRequest, exc: OperationalError) -> HttpResponse:
    log.warning("kiosk API: database unavailable on %s %s: %s", request.method, request.path, exc)
    response = error_response(503)
    response["Retry-After"] = "2"
    return response


@api.exception_handler(Exception)
def _internal_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    log.exception("kiosk API: unexpected error on %s %s", request.method, request.path)
    return error_response(500)
