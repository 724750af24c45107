"""Checking a parsed order body against ``OrderIn``, with field errors in Russian (422), then each line's and
modifier's VAT against the kiosk's taxation system and the day of the sale (422 ``vat_not_allowed``), then the
marked lines' codes (422 ``marking_*``, ``nekassir.api.marking``)."""

from __future__ import annotations

from datetime import date
from typing import Any, get_args

from django.utils import timezone
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_core.core_schema import ErrorType

from core.models import Kiosk
from fiscal.vat import refusal
from nekassir.api.errors import ApiError, safe_text
from nekassir.api.marking import check_marking
from nekassir.api.schemas import OrderIn

# pydantic's own error types, in the guest-facing language. Our custom types carry Russian already.
_MESSAGES = {
    "missing": "Обязательное поле.",
    "extra_forbidden": "Неизвестное поле.",
    "string_type": "Ожидается строка.",
    "string_too_short": "Пустая строка.",
    "string_too_long": "Строка длиннее {max_length} символов.",
    "enum": "Недопустимое значение. Допустимо: {expected}.",
    "literal_error": "Недопустимое значение. Допустимо: {expected}.",
    "uuid_type": "Ожидается UUID.",
    "uuid_parsing": "Ожидается UUID.",
    "uuid_version": "Ожидается UUID.",
    "list_type": "Ожидается массив.",
    "too_short": "Нужен хотя бы один элемент.",
    "too_long": "Больше {max_length} элементов.",
    "model_type": "Ожидается объект.",
    "model_attributes_type": "Ожидается объект.",
    "dict_type": "Ожидается объект.",
}
_DEFAULT_MESSAGE = "Некорректное значение."
_BUILTIN_TYPES = frozenset(get_args(ErrorType))


def _message(error: ErrorDetails) -> str:
    template = _MESSAGES.get(error["type"])
    if template is None:
        # PydanticCustomError messages are ours (Russian); anything else gets a neutral text.
        return _DEFAULT_MESSAGE if error["type"] in _BUILTIN_TYPES else error["msg"]
    try:
        return template.format(**error.get("ctx", {}))
    except (KeyError, IndexError):
        return _DEFAULT_MESSAGE


def _field(error: ErrorDetails) -> str:
    loc = error.get("loc") or ()
    if not loc:
        return str((error.get("ctx") or {}).get("field", ""))
    return safe_text(".".join(str(part) for part in loc))


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """pydantic errors as ``[{"field", "code", "message"}]``, never echoing the input."""
    return [
        {"field": _field(error), "code": error["type"], "message": _message(error)}
        for error in exc.errors(include_url=False, include_input=False)
    ]


def validate_order(body: dict[str, Any], kiosk: Kiosk, *, on: date | None = None) -> OrderIn:
    """The order as ``OrderIn``, or ApiError 422. ``on``: the day of the sale (today, in the venue's time zone)."""
    try:
        data = OrderIn.model_validate(body, context={"kiosk": kiosk})
    except ValidationError as exc:
        raise ApiError(422, "validation_error", details=field_errors(exc)) from None
    check_vat(data, kiosk, on or timezone.localdate())
    check_marking(data)  # 422 marking_* (issue 13)
    return data


def check_vat(data: OrderIn, kiosk: Kiosk, on: date) -> None:
    """Every rate of a new sale must fit the kiosk's taxation system (``fiscal.vat``); each refused line or
    modifier is named in ``details``. Returns and annulments never come here: they mirror their sale."""
    details = []
    for index, line in enumerate(data.lines):
        reason = refusal(line.vat, kiosk.taxation_type, on)
        if reason:
            details.append(_vat_detail(f"lines.{index}.vat", index, str(line.product_id), reason))
        for number, modifier in enumerate(line.modifiers):
            # A modifier without its own rate takes its line's, already named above.
            reason = refusal(modifier.vat, kiosk.taxation_type, on) if modifier.vat else None
            if reason:
                detail = _vat_detail(f"lines.{index}.modifiers.{number}.vat", index, str(line.product_id),
                                     f"модификатор {number + 1}: {reason}")
                details.append({**detail, "modifier": number})
    if details:
        first = details[0]
        message = f"Ставка НДС не подходит для системы налогообложения киоска: {first['message']}"
        raise ApiError(422, "vat_not_allowed", message, details=details)


def _vat_detail(field: str, index: int, product_id: str, reason: str) -> dict[str, Any]:
    return {"field": field, "code": "vat_not_allowed", "message": f"позиция {index + 1}: {reason}",
            "line": index, "product_id": product_id}
