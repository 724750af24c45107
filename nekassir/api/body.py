"""Reading a kiosk request body: JSON object, UTF-8, bounded in size and depth, numbers as Decimal."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from nekassir.api.errors import ApiError

# A kiosk order is a few kilobytes; 100 positions with long names stay far below this.
MAX_BODY_BYTES = 512 * 1024
# An order nests 4 levels (order > lines > line > modifiers > modifier); anything deeper is junk.
MAX_DEPTH = 16


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Iterative, so a hostile nesting cannot exhaust the stack."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _check_content_type(request: HttpRequest) -> None:
    if request.content_type != "application/json":
        raise ApiError(415)
    charset = (request.content_params or {}).get("charset", "utf-8").lower()
    if charset not in {"utf-8", "utf8"}:
        raise ApiError(415, message="Тело запроса должно быть JSON в кодировке UTF-8.")


def _raw_body(request: HttpRequest) -> bytes:
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        raise ApiError(400, "bad_request", "Некорректный заголовок Content-Length.") from None
    if declared > MAX_BODY_BYTES:
        raise ApiError(413)
    try:
        raw = request.body
    except RequestDataTooBig:
        raise ApiError(413) from None
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413)
    return raw


def read_json_object(request: HttpRequest) -> dict[str, Any]:
    """The body as a dict (JSON numbers as Decimal), or ApiError 415/413/400."""
    _check_content_type(request)
    raw = _raw_body(request)
    try:
        body = json.loads(raw.decode("utf-8"), parse_float=Decimal, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ApiError(400, "malformed_json", "Тело запроса — не корректный JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body_not_object", "Тело запроса должно быть JSON-объектом.")
    if _depth_exceeds(body, MAX_DEPTH):
        raise ApiError(400, "malformed_json", "Слишком глубокая вложенность JSON.")
    return body
