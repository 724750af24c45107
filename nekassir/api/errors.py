"""Every kiosk API error is ``{"error": {"code", "message", "details"?}}`` with a 4xx status.

Status codes: 400 the body is not a JSON object at all (``malformed_json``, ``body_not_object``);
422 a JSON object that breaks the order contract (``validation_error``, field errors in
``details``); 401 ``unauthorized``; 404 ``not_found``; 405 ``method_not_allowed``;
409 ``idempotency_conflict``; 413 ``payload_too_large``; 415 ``unsupported_media_type``.
A fault of ours is a JSON 500 ``internal_error`` (503 ``unavailable`` when the database is busy),
never an HTML page.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse

MAX_DETAILS = 50
MAX_FIELD_LENGTH = 200

# Machine code and Russian message for the statuses the API answers with on its own.
STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "Некорректный запрос."),
    401: ("unauthorized", "Нужен действующий токен киоска: заголовок Authorization: Bearer <токен>."),
    403: ("forbidden", "Доступ запрещён."),
    404: ("not_found", "Не найдено."),
    405: ("method_not_allowed", "Метод не поддерживается для этого адреса."),
    409: ("conflict", "Конфликт с уже принятым запросом."),
    413: ("payload_too_large", "Тело запроса слишком большое."),
    415: ("unsupported_media_type", "Тело запроса должно быть JSON (Content-Type: application/json)."),
    422: ("validation_error", "Заказ не прошёл проверку."),
    429: ("too_many_requests", "Слишком много запросов."),
    500: ("internal_error", "Внутренняя ошибка сервера. Запрос можно повторить с тем же id."),
    503: ("unavailable", "Сервер занят. Повторите запрос с тем же id."),
}


class ApiError(Exception):
    """Raised anywhere in the API to answer with one error; nothing is written by then."""

    def __init__(self, status: int, code: str | None = None, message: str | None = None,
                 details: list[dict[str, str]] | None = None):
        default_code, default_message = STATUS_ERRORS.get(status, STATUS_ERRORS[400])
        super().__init__(code or default_code)
        self.status = status
        self.code = code or default_code
        self.message = message or default_message
        self.details = details


def safe_text(value: str, limit: int = MAX_FIELD_LENGTH) -> str:
    """A string that always encodes to UTF-8 (a JSON key may hold lone surrogates), kept short."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")[:limit]


def error_body(code: str, message: str, details: list[dict[str, str]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details[:MAX_DETAILS]
    return {"error": error}


def error_response(status: int, code: str | None = None, message: str | None = None,
                   details: list[dict[str, str]] | None = None) -> HttpResponse:
    error = ApiError(status, code, message, details)
    return api_error_response(error)


def api_error_response(error: ApiError) -> HttpResponse:
    body = json.dumps(error_body(error.code, error.message, error.details), ensure_ascii=False)
    response = HttpResponse(body, status=error.status, content_type="application/json; charset=utf-8")
    if error.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="kiosk"'
    return response
