"""The top floor's models: the venue's orders as the kiosks sent them and as the checkout moves them, their
lines and modifiers, the deliveries to iiko (IikoAttempt), the refunds, the pickup numbers and the PIN tries.

Orders point down at the rooms' rows (the shift, the receipts, the card operation) and at the kiosk; nothing
below points back up here.
"""

from __future__ import annotations

import uuid
from decimal import ROUND_HALF_UP, Decimal

from django.db import models
from django.utils import timezone

from core.models import Kiosk
from fiscal.models import FiscalOperation, Shift
from fiscal.vat import Vat
from marking.models import MarkingCheck
from payments.acquiring import kopecks_to_rubles
from payments.models import CardOperation

# --- orders --------------------------------------------------------------------------------------

KOPECK = Decimal("0.01")


def to_kopecks(value: Decimal) -> Decimal:
    """Money rounded half-up to kopecks, the way a receipt position's amount is computed."""
    return value.quantize(KOPECK, rounding=ROUND_HALF_UP)


class MeasurementUnit(models.TextChoices):
    """ATOL ``measurementUnit`` values (FFD 1.2 tag 2108) that a food kiosk sells in."""

    PIECE = "piece", "шт"
    GRAM = "gram", "г"
    KILOGRAM = "kilogram", "кг"
    MILLILITER = "milliliter", "мл"
    LITER = "liter", "л"
    CENTIMETER = "centimeter", "см"
    METER = "meter", "м"
    OTHER = "otherUnits", "иные единицы"


class PickupCounter(models.Model):
    """The last pickup number given by a kiosk on a business day (see ``nekassir.numbers``)."""

    kiosk = models.ForeignKey(Kiosk, verbose_name="киоск", on_delete=models.PROTECT, related_name="pickup_counters")
    business_date = models.DateField("рабочий день")
    last_seq = models.PositiveIntegerField("последний номер", default=0)

    class Meta:
        verbose_name = "счётчик номеров заказов"
        verbose_name_plural = "счётчики номеров заказов"
        constraints = [
            models.UniqueConstraint(fields=["kiosk", "business_date"], name="pickup_counter_per_kiosk_day"),
        ]

    def __str__(self) -> str:
        return f"{self.kiosk_id} {self.business_date}: {self.last_seq}"


# The checkout steps before the final one, and the final statuses that wait for a manager
# (``Order.ACTIVE_STEPS``, ``Order.ATTENTION``): the venue page lists such orders among millions.
ACTIVE_STEPS = ("marks", "sell", "card", "iiko", "annul")
ATTENTION_STATUSES = ("not_delivered", "needs_attention")


class Order(models.Model):
    """A kiosk's card-paid order, as the kiosk sent it (``request_body``) and as the checkout moves it.

    The primary key is the kiosk's own uuid, which makes the API idempotent; ``body_hash`` tells a
    replay (same body) from a conflict (a different body under the same id).
    ``total`` = sum of the lines' amounts + sum of their modifiers' amounts (see ``OrderModifier``).
    """

    class Status(models.TextChoices):
        RECEIVED = "received", "принят"
        CHECKING_MARKS = "checking_marks", "проверка кодов маркировки"
        PRINTING_RECEIPT = "printing_receipt", "печать чека"
        AWAITING_CARD = "awaiting_card", "ожидание оплаты картой"
        SENDING_TO_IIKO = "sending_to_iiko", "передача в iiko"
        COMPLETED = "completed", "выполнен"
        CANCELLED = "cancelled", "отменён"
        FAILED = "failed", "не выполнен"
        NOT_DELIVERED = "not_delivered", "не передан в iiko"
        NEEDS_ATTENTION = "needs_attention", "требует внимания"

    class OrderType(models.TextChoices):
        TAKEAWAY = "takeaway", "с собой"
        DINE_IN = "dine_in", "в зале"

    class Payment(models.TextChoices):
        CARD = "card", "картой"

    class MarkingMode(models.TextChoices):
        """How the order's marked goods were sold (issue 13)."""

        NONE = "", "нет маркированных товаров"
        ONLINE = "online", "проверены службой и кассой"
        OFFLINE = "offline", "проданы по автономной проверке кассы"

    class Step(models.TextChoices):
        """Where the checkout is (``nekassir.checkout``); ``status`` is what the kiosk sees."""

        MARKS = "marks", "проверка маркировки"  # only orders with marked goods start here (issue 13)
        SELL = "sell", "чек прихода"
        CARD = "card", "оплата картой"
        IIKO = "iiko", "передача в iiko"
        ANNUL = "annul", "аннулирование чека"
        DONE = "done", "завершён"

    ACTIVE_STEPS = ACTIVE_STEPS  # every step but DONE
    ATTENTION = ATTENTION_STATUSES

    id = models.UUIDField("идентификатор", primary_key=True, default=uuid.uuid4, editable=False)
    kiosk = models.ForeignKey(Kiosk, verbose_name="киоск", on_delete=models.PROTECT, related_name="orders")
    number = models.CharField("номер", max_length=24, db_index=True, help_text="Номер для гостя, например K1-042.")
    business_date = models.DateField("день")
    seq = models.PositiveIntegerField("порядковый номер за день")
    status = models.CharField(
        "состояние", max_length=20, choices=Status.choices, default=Status.RECEIVED, db_index=True
    )
    order_type = models.CharField("тип заказа", max_length=10, choices=OrderType.choices)
    payment = models.CharField("оплата", max_length=10, choices=Payment.choices, default=Payment.CARD)
    phone = models.CharField("телефон гостя", max_length=16, blank=True)
    email_or_phone = models.CharField("электронный чек на", max_length=64, blank=True)
    total = models.DecimalField("сумма", max_digits=12, decimal_places=2)
    request_body = models.JSONField("запрос киоска", editable=False)
    body_hash = models.CharField("хеш запроса киоска", max_length=64, editable=False)
    error_code = models.CharField("код ошибки", max_length=64, blank=True)
    error_message = models.CharField("сообщение для гостя", max_length=255, blank=True)
    # --- the checkout's persisted progress (each id saved before its device call) ---------------
    step = models.CharField("шаг", max_length=8, choices=Step.choices, default=Step.SELL, db_index=True)
    shift = models.ForeignKey(
        Shift, verbose_name="смена", null=True, blank=True, on_delete=models.PROTECT, related_name="orders"
    )
    sell_operation = models.OneToOneField(
        FiscalOperation, verbose_name="чек прихода", null=True, blank=True, on_delete=models.PROTECT,
        related_name="sold_order",
    )
    annul_operation = models.OneToOneField(
        FiscalOperation, verbose_name="чек возврата (аннулирование)", null=True, blank=True,
        on_delete=models.PROTECT, related_name="annulled_order",
    )
    card_sale = models.OneToOneField(
        CardOperation, verbose_name="оплата картой", null=True, blank=True, on_delete=models.PROTECT,
        related_name="paid_order",
    )
    marking_check = models.ForeignKey(
        MarkingCheck, verbose_name="проверка кодов в службе", null=True, blank=True, on_delete=models.PROTECT,
        related_name="orders",
    )
    marking_mode = models.CharField(
        "продажа маркированных товаров", max_length=8, choices=MarkingMode.choices, default=MarkingMode.NONE,
        blank=True,
    )
    iiko_number = models.CharField("номер в iiko", max_length=32, blank=True)
    iiko_state = models.CharField("состояние в iiko", max_length=32, blank=True)
    iiko_round = models.PositiveSmallIntegerField(
        "круг передачи в iiko", default=1, help_text="Растёт при повторной отправке из панели: у круга свои попытки."
    )
    retry_at = models.DateTimeField("повторить после", null=True, blank=True, db_index=True)
    checkout_attempts = models.PositiveIntegerField("отложено раз", default=0)

    created_at = models.DateTimeField("создан", auto_now_add=True, db_index=True)
    # auto_now only acts on save(): compare-and-set .update() calls must set it themselves.
    updated_at = models.DateTimeField("изменён", auto_now=True)

    class Meta:
        verbose_name = "заказ"
        verbose_name_plural = "заказы"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["kiosk", "business_date", "seq"], name="order_pickup_seq_per_kiosk_day"),
            models.CheckConstraint(condition=models.Q(total__gte=0), name="order_total_not_negative"),
        ]
        indexes = [
            # Orders still in the checkout or waiting for a manager, newest first (the venue page).
            models.Index(fields=["created_at"], name="order_active_or_attention",
                         condition=models.Q(step__in=ACTIVE_STEPS) | models.Q(status__in=ATTENTION_STATUSES)),
            # How many wait for a manager, per kiosk (read from the index alone).
            models.Index(fields=["kiosk"], condition=models.Q(status__in=ATTENTION_STATUSES), name="order_attention"),
        ]

    def __str__(self) -> str:
        return f"{self.number} ({self.get_status_display()})"

    def __repr__(self) -> str:
        return f"<Order {self.number} {self.pk}>"


class OrderLine(models.Model):
    """One product of an order: ``name`` as iiko has it, ``receipt_name`` as the receipt prints it.

    ``amount`` = ``price`` × ``quantity`` rounded half-up to kopecks, modifiers not included.
    """

    order = models.ForeignKey(Order, verbose_name="заказ", on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField("позиция")
    product_id = models.UUIDField("товар iiko")
    size_id = models.UUIDField("размер iiko", null=True, blank=True)
    name = models.CharField("название", max_length=1000)
    receipt_name = models.CharField("название в чеке", max_length=128)
    price = models.DecimalField("цена", max_digits=12, decimal_places=2)
    quantity = models.DecimalField("количество", max_digits=12, decimal_places=3)
    unit = models.CharField(
        "единица", max_length=16, choices=MeasurementUnit.choices, default=MeasurementUnit.PIECE
    )
    vat = models.CharField("НДС", max_length=8, choices=Vat.choices)
    amount = models.DecimalField("стоимость", max_digits=12, decimal_places=2)

    class Meta:
        verbose_name = "позиция заказа"
        verbose_name_plural = "позиции заказа"
        ordering = ["order", "position"]
        constraints = [
            models.UniqueConstraint(fields=["order", "position"], name="order_line_position"),
        ]

    def __str__(self) -> str:
        return f"{self.receipt_name} × {self.quantity}"

    @staticmethod
    def amount_of(price: Decimal, quantity: Decimal) -> Decimal:
        return to_kopecks(price * quantity)


class OrderModifier(models.Model):
    """A modifier of a line (a syrup in a coffee), a priced item of its own in iiko.

    ``quantity`` is per ONE unit of the parent line, as iiko counts a modifier's ``amount``
    (its default "amount depends on the parent's amount"): two coffees with one syrup each are a
    line of quantity 2 and a modifier of quantity 1. So the modifier's money is
    ``amount`` = ``price`` × ``quantity`` × line quantity, rounded half-up to kopecks, and on the
    receipt a priced modifier is its own position of ``receipt_quantity`` units at ``price``.
    ``vat`` is the modifier's own code, or the line's when the kiosk sent none.
    """

    line = models.ForeignKey(OrderLine, verbose_name="позиция заказа", on_delete=models.CASCADE,
                             related_name="modifiers")
    position = models.PositiveSmallIntegerField("позиция в строке")
    product_id = models.UUIDField("модификатор iiko")
    group_id = models.UUIDField("группа модификаторов iiko", null=True, blank=True)
    name = models.CharField("название", max_length=1000)
    receipt_name = models.CharField("название в чеке", max_length=128)
    price = models.DecimalField("цена", max_digits=12, decimal_places=2)
    quantity = models.DecimalField("количество на единицу позиции", max_digits=12, decimal_places=3)
    vat = models.CharField("НДС", max_length=8, choices=Vat.choices)
    amount = models.DecimalField("стоимость", max_digits=12, decimal_places=2)

    class Meta:
        verbose_name = "модификатор"
        verbose_name_plural = "модификаторы"
        ordering = ["line", "position"]
        constraints = [
            models.UniqueConstraint(fields=["line", "position"], name="order_modifier_position"),
        ]

    def __str__(self) -> str:
        return f"{self.receipt_name} × {self.quantity}"

    @property
    def receipt_quantity(self) -> Decimal:
        """Units on the receipt: per-unit quantity × the line's quantity (up to 6 decimals)."""
        return self.quantity * self.line.quantity

    @staticmethod
    def amount_of(price: Decimal, quantity: Decimal, line_quantity: Decimal) -> Decimal:
        return to_kopecks(price * quantity * line_quantity)


class OrderMark(models.Model):
    """One marked unit of an order line: its code exactly as the scanner read it (GS kept) and its checks.

    ``state``: ``reserved`` while the order is in progress, ``sold`` once its sell receipt is done,
    ``returned`` once a refund's return receipt took it back, ``released`` when the order ended without a
    sale or its receipt was annulled. The constraint ``order_mark_code_active`` is our own registry: a code is
    in at most one order in progress or sold and not returned (two kiosks may scan one code before the marking
    operator knows it was sold).
    """

    class State(models.TextChoices):
        RESERVED = "reserved", "в заказе"
        SOLD = "sold", "продан"
        RETURNED = "returned", "возвращён"
        RELEASED = "released", "не продан"

    ACTIVE = (State.RESERVED, State.SOLD)

    order = models.ForeignKey(Order, verbose_name="заказ", on_delete=models.PROTECT, related_name="marks")
    line = models.ForeignKey(OrderLine, verbose_name="позиция заказа", on_delete=models.CASCADE, related_name="marks")
    unit = models.PositiveSmallIntegerField("единица", help_text="1..количество в позиции")
    code = models.CharField("код маркировки", max_length=255, help_text="Как прочитал сканер, с GS.")
    gtin = models.CharField("GTIN", max_length=14)
    state = models.CharField("состояние", max_length=10, choices=State.choices, default=State.RESERVED)
    service_result = models.JSONField("ответ службы проверки", null=True, blank=True)
    register_result = models.JSONField("проверка кассой", null=True, blank=True)
    validated_fn = models.CharField("ФН проверки", max_length=32, blank=True)
    validated_shift = models.PositiveIntegerField("смена проверки", null=True, blank=True)
    return_result = models.JSONField("проверка при возврате", null=True, blank=True)
    refund = models.ForeignKey(
        "Refund", verbose_name="возврат", null=True, blank=True, on_delete=models.PROTECT, related_name="marks"
    )
    created_at = models.DateTimeField("создан", auto_now_add=True)
    updated_at = models.DateTimeField("изменён", auto_now=True)

    class Meta:
        verbose_name = "код маркировки в заказе"
        verbose_name_plural = "коды маркировки в заказах"
        ordering = ["order", "line__position", "unit"]
        constraints = [
            models.UniqueConstraint(
                fields=["code"], condition=models.Q(state__in=["reserved", "sold"]), name="order_mark_code_active"
            ),
            models.UniqueConstraint(fields=["line", "unit"], name="order_mark_line_unit"),
        ]

    def __str__(self) -> str:
        return f"{self.gtin} #{self.unit} ({self.get_state_display()})"


class IikoAttempt(models.Model):
    """One attempt to create the order in iiko, with its own iiko order id saved before the call,
    and every request and answer kept (``nekassir.iiko_delivery``)."""

    class State(models.TextChoices):
        PENDING = "pending", "сохранена, не отправлена"
        SENT = "sent", "отправлена"
        UNKNOWN = "unknown", "исход неизвестен"
        SUCCESS = "success", "заказ создан"
        ERROR = "error", "ошибка"

    order = models.ForeignKey(Order, verbose_name="заказ", on_delete=models.PROTECT, related_name="iiko_attempts")
    iiko_order_id = models.CharField("id заказа в iiko", max_length=36, unique=True)
    as_delivery = models.BooleanField("как доставка-самовывоз", default=False)
    round = models.PositiveSmallIntegerField("круг", default=1)
    state = models.CharField("состояние", max_length=16, choices=State.choices, default=State.PENDING)
    correlation_id = models.CharField("correlationId", max_length=64, blank=True)
    request = models.JSONField("запрос", default=dict)
    responses = models.JSONField("ответы", default=list)
    error_message = models.TextField("ошибка", blank=True)
    iiko_number = models.CharField("номер в iiko", max_length=32, blank=True)
    iiko_status = models.CharField("статус в iiko", max_length=32, blank=True)
    created_at = models.DateTimeField("создана", auto_now_add=True)
    sent_at = models.DateTimeField("отправлена", null=True, blank=True)
    finished_at = models.DateTimeField("завершена", null=True, blank=True)

    class Meta:
        verbose_name = "попытка передачи в iiko"
        verbose_name_plural = "попытки передачи в iiko"
        ordering = ["order", "id"]

    def __str__(self) -> str:
        return f"iiko {self.iiko_order_id} ({self.get_state_display()})"


class PinAttempt(models.Model):
    """One try of a kiosk's service-menu PIN (the embed), saved before the PIN is checked: the throttle counts
    these rows, so tries arriving while a PIN is being checked already count it (``nekassir.panel.pin``).
    Refused tries are not saved, so at most ``KIOSK_PIN_KIOSK_ATTEMPTS`` wrong ones per kiosk and window."""

    class Outcome(models.TextChoices):
        CHECKING = "checking", "проверяется"  # a process that died while checking leaves it: it counts as a try
        WRONG = "wrong", "неверный"
        RIGHT = "right", "верный"

    kiosk = models.ForeignKey(Kiosk, verbose_name="киоск", on_delete=models.PROTECT, related_name="pin_attempts")
    address = models.CharField("адрес клиента", max_length=64)
    outcome = models.CharField("итог", max_length=16, choices=Outcome.choices, default=Outcome.CHECKING)
    created_at = models.DateTimeField("время", default=timezone.now)

    class Meta:
        verbose_name = "попытка ввода PIN"
        verbose_name_plural = "попытки ввода PIN"
        indexes = [models.Index(fields=["kiosk", "created_at"], name="pin_attempt_kiosk_time")]

    def __str__(self) -> str:
        return f"PIN {self.kiosk_id} {self.address} {self.outcome}"


class Refund(models.Model):
    """A manager's refund of some lines (or all) of an order (``nekassir.refunds``).

    Saved, with its amount, before anything is sent: refunds in flight count against what can still
    be refunded, so a double click or two managers at once can never refund twice or more than was
    paid. ``lines`` maps our OrderLine ids to the quantity returned.
    """

    class State(models.TextChoices):
        CREATED = "created", "создан"
        IN_PROGRESS = "in_progress", "выполняется"
        DONE = "done", "выполнен"
        FAILED = "failed", "не выполнен"
        NEEDS_ATTENTION = "needs_attention", "требует внимания"

    ACTIVE = (State.CREATED, State.IN_PROGRESS, State.DONE, State.NEEDS_ATTENTION)

    order = models.ForeignKey(Order, verbose_name="заказ", on_delete=models.PROTECT, related_name="refunds")
    kiosk = models.ForeignKey(Kiosk, verbose_name="киоск", on_delete=models.PROTECT, related_name="refunds")
    lines = models.JSONField("позиции и количества", default=dict)
    amount_kopecks = models.PositiveBigIntegerField("сумма, коп.")
    to_card = models.BooleanField("вернуть деньги на карту", default=True)
    cancel_in_iiko = models.BooleanField("отменить заказ в iiko", default=False)
    state = models.CharField("состояние", max_length=20, choices=State.choices, default=State.CREATED)
    card_operation = models.OneToOneField(
        CardOperation, verbose_name="операция терминала", null=True, blank=True, on_delete=models.PROTECT,
        related_name="refund"
    )
    return_operation = models.OneToOneField(
        FiscalOperation, verbose_name="чек возврата", null=True, blank=True, on_delete=models.PROTECT,
        related_name="refund",
        help_text="Чек возврата прихода этих позиций.",
    )
    iiko_state = models.CharField("отмена в iiko", max_length=64, blank=True)
    message = models.TextField("сообщение", blank=True)
    created_by = models.ForeignKey(
        "auth.User", verbose_name="кто", null=True, blank=True, on_delete=models.PROTECT, related_name="refunds"
    )
    created_at = models.DateTimeField("создан", auto_now_add=True)
    finished_at = models.DateTimeField("завершён", null=True, blank=True)

    class Meta:
        verbose_name = "возврат"
        verbose_name_plural = "возвраты"
        ordering = ["-id"]
        permissions = [("refund_order", "Может оформлять возвраты")]

    def __str__(self) -> str:
        return f"Возврат {self.pk} по заказу {self.order_id} ({self.get_state_display()})"

    @property
    def amount(self) -> Decimal:
        return kopecks_to_rubles(self.amount_kopecks)


class ReportDay(models.Model):
    """The accountant's report's kept figures of one venue day: its settled orders made before ``until`` by kiosk
    and shift, and their lines by kiosk and item (``nekassir.report_summary``). They count only while
    ``filled_generation`` equals ``generation``, which the code settling an order of that day bumps; refunds are
    never kept."""

    day = models.DateField("день", unique=True)
    generation = models.PositiveBigIntegerField("поколение", default=0)
    filled_generation = models.PositiveBigIntegerField("посчитано для поколения", null=True, blank=True)
    figures = models.TextField("цифры (JSON)", blank=True, default="")
    until = models.DateTimeField("по (не включая)", null=True, blank=True,
                                 help_text="Цифры — заказов, созданных до этого момента.")
    filled_at = models.DateTimeField("посчитано", null=True, blank=True)

    class Meta:
        verbose_name = "итоги дня для отчёта"
        verbose_name_plural = "итоги дней для отчёта"
        ordering = ["day"]

    def __str__(self) -> str:
        return f"{self.day} (поколение {self.generation})"
