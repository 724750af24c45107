"""The kiosk API's bodies as pydantic models: the one definition behind validation and OpenAPI.

Money and quantities travel as decimal STRINGS ("189.00", "0.350") and become ``Decimal`` here,
never float. Limits are deliberately tight: a kiosk order is small, and anything past these is a
kiosk bug better refused than fiscalised.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from fiscal.vat import Vat
from nekassir.models import MeasurementUnit, Order, OrderLine, OrderModifier

MAX_LINES = 100
MAX_MODIFIERS_PER_LINE = 20
# A receipt position per line and per modifier: the fiscal storage limits a receipt's size.
MAX_POSITIONS = 100
MAX_NAME_LENGTH = 1000
MAX_MONEY = Decimal("1000000.00")
MAX_EMAIL_OR_PHONE_LENGTH = 64  # FFD tag 1008
MAX_MARKING_CODES = 999  # one per unit: a line's quantity is at most 999.999
MAX_MARKING_CODE_LENGTH = 255

# [0-9], not \d: Python's \d also matches other scripts' digits, which Decimal() would accept.
MONEY_PATTERN = r"^[0-9]{1,7}(\.[0-9]{1,2})?$"
QUANTITY_PATTERN = r"^[0-9]{1,3}(\.[0-9]{1,3})?$"  # at most 999.999
PHONE_PATTERN = r"^\+(7[0-9]{10}|[1-689][0-9]{7,14})$"  # +7 and 10 digits, or another E.164 number


def _decimal_string(pattern: str, error_type: str, message: str):
    regex = re.compile(pattern)

    def parse(value: Any) -> Decimal:
        if not isinstance(value, str) or not regex.fullmatch(value):
            raise PydanticCustomError(error_type, message)
        return Decimal(value)

    return parse


def _not_above_max_money(value: Decimal) -> Decimal:
    if value > MAX_MONEY:
        raise PydanticCustomError("money_too_large", "Сумма больше 1000000.00.")
    return value


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise PydanticCustomError("quantity_not_positive", "Количество должно быть больше нуля.")
    return value


def _check_name(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("name_empty", "Пустое название.")
    # Neither PostgreSQL text nor JSON can store these; a real menu name never holds them.
    if "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value):
        raise PydanticCustomError("name_invalid_characters", "Название содержит недопустимые символы.")
    return value


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else value


def _check_phone(value: str) -> str:
    if not re.fullmatch(PHONE_PATTERN, value):
        raise PydanticCustomError(
            "phone_invalid", "Телефон в международном формате: +7 и 10 цифр, например +79161234567."
        )
    return value


def _check_email_or_phone(value: str) -> str:
    if value.startswith("+"):
        return _check_phone(value)
    if len(value) > MAX_EMAIL_OR_PHONE_LENGTH:
        raise PydanticCustomError("email_or_phone_invalid", "Адрес длиннее 64 символов.")
    try:
        validate_email(value)
    except DjangoValidationError:
        raise PydanticCustomError(
            "email_or_phone_invalid", "Нужен адрес электронной почты или телефон вида +79161234567."
        ) from None
    return value


Money = Annotated[
    Decimal,
    PlainValidator(_decimal_string(
        MONEY_PATTERN, "money_format",
        'Сумма — строка с десятичным числом, не больше двух знаков после точки, например "189.00".',
    )),
    AfterValidator(_not_above_max_money),
    WithJsonSchema({
        "type": "string", "pattern": MONEY_PATTERN, "examples": ["189.00"],
        "description": "Рубли десятичной строкой, не больше 2 знаков после точки, не больше 1000000.00.",
    }),
]
Quantity = Annotated[
    Decimal,
    PlainValidator(_decimal_string(
        QUANTITY_PATTERN, "quantity_format",
        'Количество — строка с десятичным числом до 999.999, не больше трёх знаков после точки, например "1".',
    )),
    AfterValidator(_positive),
    WithJsonSchema({
        "type": "string", "pattern": QUANTITY_PATTERN, "examples": ["1", "0.350"],
        "description": "Десятичная строка больше 0 и не больше 999.999, не больше 3 знаков после точки.",
    }),
]
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH),
    AfterValidator(_check_name),
]
Phone = Annotated[
    str | None,
    BeforeValidator(_blank_is_none),
    AfterValidator(lambda v: v if v is None else _check_phone(v)),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": PHONE_PATTERN}, {"type": "null"}],
                    "examples": ["+79161234567"]}),
]
EmailOrPhone = Annotated[
    str | None,
    BeforeValidator(_blank_is_none),
    AfterValidator(lambda v: v if v is None else _check_email_or_phone(v)),
    WithJsonSchema({"anyOf": [{"type": "string", "maxLength": MAX_EMAIL_OR_PHONE_LENGTH}, {"type": "null"}],
                    "description": "Куда отправить электронный чек: e-mail или телефон +7XXXXXXXXXX.",
                    "examples": ["guest@example.com"]}),
]


MarkingCode = Annotated[str, StringConstraints(max_length=MAX_MARKING_CODE_LENGTH)]


class _Strict(BaseModel):
    # An unknown field is a kiosk bug (a typo in "quantity" must not pass silently).
    model_config = ConfigDict(extra="forbid")


class ModifierIn(_Strict):
    """A modifier; ``quantity`` is per ONE unit of its line, as in iiko."""

    product_id: UUID
    group_id: UUID | None = Field(None, description="Группа модификаторов iiko (для группового модификатора).")
    name: Name
    price: Money
    quantity: Quantity
    vat: Vat | None = Field(None, description="Ставка НДС модификатора; по умолчанию — ставка позиции.")

    def amount(self, line_quantity: Decimal) -> Decimal:
        return OrderModifier.amount_of(self.price, self.quantity, line_quantity)


class LineIn(_Strict):
    product_id: UUID
    size_id: UUID | None = Field(None, description="Размер iiko (для товаров со шкалой размеров).")
    name: Name = Field(description="Название из меню iiko, как есть; в чек идёт версия, укладывающаяся в ФФД 1.2.")
    price: Money
    quantity: Quantity
    unit: MeasurementUnit = MeasurementUnit.PIECE
    vat: Vat
    modifiers: list[ModifierIn] = Field(default_factory=list, max_length=MAX_MODIFIERS_PER_LINE)
    marking_codes: list[MarkingCode] | None = Field(
        None, max_length=MAX_MARKING_CODES,
        description=(
            "Коды маркировки (Честный ЗНАК) маркированного товара: по одной строке на каждую единицу, ровно как "
            "прочитал сканер, с разделителем GS (\\u001d) и криптохвостом. Маркированный товар продаётся "
            "поштучно (unit piece): число кодов равно количеству. Для немаркированного товара поле не передаётся. "
            "Отказы 422: marking_codes_missing (у маркированного товара нет кодов), marking_codes_mismatch "
            "(число кодов не равно количеству, или товар не поштучный), marking_code_invalid (строка не код "
            "маркировки), marking_gtin_mismatch (GTIN кода не из GTIN этого товара), marking_code_duplicate "
            "(код дважды в заказе), marking_code_in_use (код в другом заказе в работе или продан и не возвращён), "
            "marking_codes_unexpected (коды у товара, не отмеченного как маркированный)."
        ),
        examples=[["0104600000000013215abc123\u001d93dGVz"]],
    )

    @property
    def amount(self) -> Decimal:
        return OrderLine.amount_of(self.price, self.quantity)

    @property
    def amount_with_modifiers(self) -> Decimal:
        return self.amount + sum((m.amount(self.quantity) for m in self.modifiers), Decimal(0))


class OrderIn(_Strict):
    """``POST /api/v1/orders``. ``total`` = Σ lines (price × quantity, rounded half-up to kopecks)
    + Σ modifiers (price × quantity × line quantity, rounded the same way)."""

    id: UUID = Field(description="UUID заказа, созданный киоском: ключ идемпотентности.")
    lines: list[LineIn] = Field(min_length=1, max_length=MAX_LINES)
    total: Money
    payment: Order.Payment
    order_type: Order.OrderType
    phone: Phone = Field(
        None, description="Телефон гостя; обязателен, если киоск передаёт заказы в iiko как самовывоз."
    )
    email_or_phone: EmailOrPhone = None

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> OrderIn:
        positions = sum(1 + len(line.modifiers) for line in self.lines)
        if positions > MAX_POSITIONS:
            raise PydanticCustomError(
                "too_many_positions", "В заказе больше {limit} позиций вместе с модификаторами.",
                {"limit": MAX_POSITIONS, "field": "lines"},
            )
        expected = sum((line.amount_with_modifiers for line in self.lines), Decimal(0))
        if expected != self.total:
            raise PydanticCustomError(
                "total_mismatch", "Сумма заказа {total} не равна сумме позиций {expected}.",
                {"total": f"{self.total:.2f}", "expected": f"{expected:.2f}", "field": "total"},
            )
        kiosk = (info.context or {}).get("kiosk")
        if kiosk is not None and kiosk.iiko_send_as_delivery and not self.phone:
            raise PydanticCustomError(
                "phone_required", "Нужен телефон гостя: заказы этого киоска уходят в iiko как самовывоз.",
                {"field": "phone"},
            )
        return self


# --- answers ----------------------------------------------------------------------------------------


class ReceiptOut(BaseModel):
    fd: int = Field(description="Номер фискального документа (ФД).")
    fpd: str = Field(description="Фискальный признак документа (ФПД).")
    receipt_number: int = Field(description="Номер чека за смену.")
    shift: int = Field(description="Номер смены.")
    date: str = Field(description="Дата и время чека, ISO 8601.")
    qr: str = Field(description="Строка QR-кода чека.")


class CardOut(BaseModel):
    masked_pan: str
    rrn: str


class IikoOut(BaseModel):
    number: str | None = None
    state: str


class OrderErrorOut(BaseModel):
    code: str
    message: str = Field(description="Текст для гостя, по-русски.")


class OrderStatusOut(BaseModel):
    """``GET /api/v1/orders/{id}``, and the answer to a POST that created or replayed an order."""

    id: UUID
    number: str = Field(examples=["K1-042"])
    status: Order.Status
    total: str = Field(examples=["189.00"])
    created_at: str = Field(description="ISO 8601 с часовым поясом.")
    receipt: ReceiptOut | None
    receipt_not_printed: bool = Field(
        description="Чек записан в ФН, но не напечатан (нет бумаги): покажите его гостю на экране по полям "
                    "receipt (ФД, ФПД, QR-строка ФНС); бумажную копию ККТ допечатает, когда бумагу заменят.")
    card: CardOut | None
    iiko: IikoOut | None
    error: OrderErrorOut | None


class ErrorDetailOut(BaseModel):
    field: str = Field(examples=["lines.0.price"])
    code: str
    message: str
    # vat_not_allowed names the refused line (0-based) and its product, and the modifier when it is one.
    line: int | None = Field(None, description="Номер позиции в lines (с 0) — для vat_not_allowed и marking_*.")
    product_id: str | None = Field(None, description="Товар этой позиции — для vat_not_allowed и marking_*.")
    modifier: int | None = Field(None, description="Номер модификатора позиции (с 0), если ставка его.")
    # marking_* codes name the line and, for one code's refusal, the code as sent.
    marking_code: str | None = Field(
        None, description="Код маркировки, как его прислал киоск — для отказов marking_code_* и marking_gtin_mismatch."
    )


class ErrorContentOut(BaseModel):
    code: str = Field(examples=["validation_error", "vat_not_allowed", "marking_code_in_use"])
    message: str
    details: list[ErrorDetailOut] | None = None


class ErrorOut(BaseModel):
    error: ErrorContentOut
